//! bastion's native data plane.
//!
//! The public listener, TLS and every gateway route's per-request path live
//! here (tokio + hyper + rustls); everything else is forwarded to bastion's
//! Python control plane over a private Unix socket. The Python side compiles
//! the typed settings into the route table this crate serves, and pushes keys
//! and changes into its caches (`python.rs` is the only FFI edge).
//!
//! Modules, one idea each:
//! - `authn`: API keys and bastion's JWTs from the native caches.
//! - `authz`: route allow-lists, scopes, claims and roles.
//! - `http`: shared types (body, connection info, outcome, identity).
//! - `gateway`: one request through the native steps, or a defer to Python.
//! - `python`: the PyO3 module `bastion._native` (feature `python`).

#![forbid(unsafe_op_in_unsafe_fn)]

/// The crate version, as the Python package reports it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod authn;
pub mod authz;
pub mod gateway;
pub mod http;

#[cfg(feature = "python")]
mod python;
