//! tickcast: a real-time market-data streaming server.
//!
//! Data flows feed → ingest → ring/rooms → ws session:
//! - [`feed`]: adapters that turn sources (synthetic, replay files, upstream WebSocket, HTTP)
//!   into validated ticks;
//! - [`ingest`]: assigns each channel's `seq` once and encodes each event once;
//! - [`ring`]: per-channel history for snapshots, resume and the pipeline;
//! - [`pipeline`], [`bars`]: per-second OHLCV bars and indicators on a crossbeam worker pool;
//! - [`rooms`]: subscriptions and fan-out into bounded per-connection queues;
//! - [`protocol`]: the wire contract (`docs/PROTOCOL.md`): ops, event encoders, error codes;
//! - [`ws`]: the WebSocket endpoint and sessions; [`api`]: HTTP routes and errors;
//! - [`store`]: SQLite/PostgreSQL repository, write-behind tick persistence, retention;
//!   [`import`]: bulk-loads history files into it (`tickcast import`);
//! - `predict`: forecasting models fitted on 1 s bar closes; `portfolio`: average-cost
//!   accounting for the portfolio endpoints;
//! - `timestamp`: the one parser of times on every input (feeds, HTTP ingest, REST);
//! - [`server`]: wiring, start-up and graceful shutdown (imported by nothing but the binary and
//!   the tests); [`config`]: layered configuration, each section owned and validated by its
//!   component (`config_section` holds what they share).
//!
//! Modules are public only where the binary, the end-to-end tests or the benches reach into
//! them; the rest is `pub(crate)`, so the compiler reports dead code.

pub mod api;
pub mod auth;
pub(crate) mod bars;
pub mod book;
pub mod client;
pub mod cluster;
pub mod config;
pub(crate) mod config_section;
pub(crate) mod encoding;
pub mod feed;
#[cfg(test)]
mod fuzz;
pub mod import;
pub mod ingest;
pub mod model;
pub(crate) mod money;
pub mod pipeline;
pub mod portfolio;
pub(crate) mod predict;
pub mod protocol;
pub(crate) mod redact;
pub mod ring;
pub mod rooms;
pub mod server;
pub mod shutdown;
pub mod store;
pub(crate) mod symbol_name;
pub mod telemetry;
pub(crate) mod timestamp;
pub mod ws;
