//! bastion's native data plane.
//!
//! The public listener, TLS and every gateway route's per-request path live
//! here (tokio + hyper + rustls); everything else is forwarded to bastion's
//! Python control plane over a private Unix socket. The Python side compiles
//! the typed settings into the route table this crate serves, and pushes keys
//! and changes into its caches (`python.rs` is the only FFI edge).
//!
//! Modules, one idea each:
//! - `client_ip`: the client address through trusted proxies.
//! - `http`: shared types (body, connection info, outcome, identity).
//! - `gateway`: one request through the native steps, or a defer to Python.
//! - `hygiene`: which request heads the native path takes (the rest: Python).
//! - `plane`: the process-wide state the control plane pushes into.
//! - `respond`: request id and security headers on native responses.
//! - `risk`: risk flags mirrored from Python (a flagged requester is deferred).
//! - `server`: the public listener (runtime, accept loop, HTTP/1.1 + h2, drain).
//! - `tls`: rustls configuration from PEM files, reloadable.
//! - `forward`: the hop of deferred requests to Python's private Unix socket.
//! - `python`: the PyO3 module `bastion._native` (feature `python`).

#![forbid(unsafe_op_in_unsafe_fn)]

/// The crate version, as the Python package reports it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod client_ip;
pub mod forward;
pub mod gateway;
pub mod http;
pub mod hygiene;
pub mod plane;
pub mod respond;
pub mod risk;
pub mod server;
pub mod tls;

#[cfg(feature = "python")]
mod python;
