//! users-gateway: one normalized, exactly paginated `GET /users` over two training
//! platforms, Thought Industries and TapIntoSafety.
//!
//! A tour in reading order, following one request:
//! - [`config`]: environment > TOML > defaults, secrets redacted.
//! - [`app`]: builds everything from a `Config`; [`http`] holds the router and handlers.
//! - [`query`]: parses the caller's query and plans which sources to call (pure).
//! - [`execute`]: runs the plan: concurrent fan-out through the [`cache`] to [`providers`].
//! - [`cluster`]: what replicas share through Redis: pages, leases, request budgets.
//! - [`merge`]: exact re-pagination across sources (pure).
//! - [`providers`]: one adapter per upstream API plus the shared HTTP client.
//! - [`sandbox`]: both upstream APIs simulated, for `--demo`, tests and benchmarks.
//! - [`model`] and [`telemetry`]: domain types; logs, request ids and metrics.
//! - [`raw_records`]: a page's upstream records, packed; only `include=raw` unpacks them.

pub mod app;
pub mod cache;
pub mod cluster;
pub mod config;
pub mod execute;
pub mod http;
pub mod merge;
pub mod model;
pub mod providers;
pub mod query;
pub mod raw_records;
pub mod sandbox;
pub mod telemetry;
