//! End-to-end tests: each starts the real server on an ephemeral loopback port and talks to it
//! over real sockets.

mod util;

mod config;
mod ingest_http;
mod portfolio;
mod rest;
mod shutdown;
mod store;
mod ws;
