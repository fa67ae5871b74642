//! What a caller asked for, and how the sources will answer it. Pure: no I/O.
//!
//! [`parse`] turns a raw query string into a typed [`parse::ListQuery`] or a list of
//! named [`parse::ParamError`]s; [`plan`] decides, per source, what to call.

pub mod fields;
pub mod filter;
pub mod parse;
pub mod plan;
pub mod pushdown;
