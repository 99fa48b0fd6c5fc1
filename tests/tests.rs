//! End-to-end tests: each starts the real server on an ephemeral loopback port and talks to it
//! over real sockets.

mod util;

mod amplification;
mod auth;
mod auth_scopes;
mod bar_intervals;
mod bbo;
mod book;
mod cluster;
mod cluster_resume;
mod config;
mod contract;
mod contract_book;
mod contract_client;
mod drain;
mod encoding;
mod feeds;
mod fencing;
mod import;
mod indicator_history;
mod ingest_http;
mod limits;
mod memory;
mod module_graph;
mod noloss;
mod partitions;
mod pipeline;
mod plans;
mod portfolio;
mod portfolio_channel;
mod predictions;
mod reads;
mod replay_from;
mod rest;
mod service;
mod shutdown;
mod store;
mod ticker;
mod venue_books;
mod venues;
mod web;
mod ws;
