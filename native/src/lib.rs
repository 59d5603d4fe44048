//! bastion's native data plane.
//!
//! The public listener, TLS and every gateway route's per-request path live
//! here (tokio + hyper + rustls); everything else is forwarded to bastion's
//! Python control plane over a private Unix socket. The Python side compiles
//! the typed settings into the route table this crate serves, and pushes keys
//! and changes into its caches (`python.rs` is the only FFI edge).
//!
//! Modules, one idea each:
//! - `client`: the in-task HTTP/1.1 client and keep-alive pool (upstreams, Python).
//! - `client_ip`: the client address through trusted proxies.
//! - `cors`: per-route CORS (preflights answered, origins checked, response headers).
//! - `authn`: API keys and bastion's JWTs from the native caches.
//! - `authz`: route allow-lists, scopes, claims and roles.
//! - `authn`: API keys and bastion's JWTs from the native caches.
//! - `authz`: route allow-lists, scopes, claims and roles.
//! - `client_ip`: the client address through trusted proxies.
//! - `http`: shared types (body, connection info, outcome, identity).
//! - `gateway`: one request through the native steps, or a defer to Python (the doors).
//! - `decide`: the decision steps from `match` to `limit`, shared by the doors.
//! - `verdict`: what a decision records and renders (the head it reads, a denial's audit parts, metering).
//! - `forward_auth`: `/auth/verify` decided by the gateway's steps (the forward-auth door).
//! - `hygiene`: which request heads the native path takes (the rest: Python).
//! - `ip_rules`: a route's client-address allow / deny networks.
//! - `mutate`: the headers a request carries upstream (identity headers, X-Forwarded-*).
//! - `assertion`: the signed identity assertion (ring signs it with the pushed current key).
//! - `plane`: the process-wide state the control plane pushes into.
//! - `respond`: request id and security headers on native responses.
//! - `risk`: risk flags mirrored from Python (a flagged requester is deferred).
//! - `server`: the public listener (runtime, accept loop, HTTP/1.1 + h2, drain).
//! - `h1`: the lean HTTP/1.1 connection loop (hyper takes what it does not).
//! - `table`: one loaded configuration (router + native routes), swapped whole.
//! - `tls`: rustls configuration from PEM files, reloadable.
//! - `forward`: the hop of deferred requests to Python's private Unix socket.
//! - `routes`: the route table compiled by Python, swapped whole on reload.
//! - `paths`: Python's `normalize_path`, ported (and the fast test for paths already normal).
//! - `target`: the request-target as the app reads it, before the doors (normal form, its 400).
//! - `router`: host + path + method to a route, or a defer.
//! - `upstream`: the route's upstream targets, keep-alive pools, health and the proxy.
//! - `audit`: the bounded queue of decision events the Python audit writer drains.
//! - `metrics`: request counters and latency histograms, read by Python's `/metrics`.
//! - `problem`: problem+json responses identical to Python's.
//! - `refusal`: the refusals of `match`, `body` and `authorize` (404, 405, 400, 413, 403s), rendered as Python does.
//! - `limit`: GCRA rate limits, the shared in-process store, RateLimit headers, load shedding.
//! - `log`: log lines queued for Python's logging (no log I/O on the hot path).
//! - `lookup`: a native cache miss asks the control plane for the record (API key,
//!   certificate identity, introspection answer), then the request goes on natively.
//! - `websocket`: WebSocket upgrades: the upstream handshake and the frame relay.
//! - `python`: the PyO3 module `bastion._native` (feature `python`).

#![forbid(unsafe_op_in_unsafe_fn)]

// The extension's Rust allocations (requests, headers, buffers) go through
// mimalloc: glibc malloc took ~11 % of a proxied request's CPU (perf, bench/gateway).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The crate version, as the Python package reports it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod assertion;
pub mod audit;
pub mod authn;
pub mod authz;
pub mod body_limit;
pub mod client;
pub mod client_ip;
pub mod cors;
pub mod decide;
pub mod forward;
pub mod forward_auth;
pub mod forward_family;
pub mod gateway;
pub mod h1;
pub mod http;
pub mod hygiene;
pub mod ip_rules;
pub mod limit;
pub mod log;
pub mod lookup;
pub mod metrics;
pub mod mutate;
pub mod paths;
pub mod plane;
pub mod preflight;
pub mod problem;
pub mod refusal;
pub mod respond;
pub mod risk;
pub mod router;
pub mod routes;
pub mod sampling;
pub mod server;
pub mod table;
pub mod target;
pub mod tls;
pub mod tracing;
pub mod upstream;
pub mod verdict;
pub mod websocket;

#[cfg(feature = "python")]
mod python;
