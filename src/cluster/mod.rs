//! What replicas share through Redis (SPEC §10): upstream pages as a second cache tier,
//! one fetch per page across replicas (a lease), and each source's request budget.
//!
//! Redis is an optimisation, never a dependency: every call is bounded, a failed or slow
//! call is a miss (or a per-process budget), and the gateway answers from memory and the
//! upstreams until Redis answers again.

pub mod budget;
pub mod codec;
pub mod pages;
mod redis;

pub use self::redis::{Redis, RedisStatus};
