//! Integration tests: the real router on 127.0.0.1:0 over the sandbox on 127.0.0.1:0.
//! One test binary, so the crate is linked once.

mod breaker;
mod cache;
mod callers;
mod cli;
mod errors;
mod faults;
mod helpers;
mod hostile;
mod hostile_views;
mod limits;
mod load;
mod misbehaving;
mod openapi;
mod paging;
mod plan;
mod query;
mod redis_server;
mod replicas;
mod resilience;
mod revalidate;
mod secrets;
mod users;
