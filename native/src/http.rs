//! The types every part of the data plane shares: the body type, what the
//! listener knows about a connection, and what the gateway decides.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};

/// Any boxed error crossing a body or a task boundary.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The one response/request body type of the data plane: an incoming body,
/// an upstream's streamed body, or a small buffer we rendered ourselves.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body from bytes we own (problem+json, a preflight answer).
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A streamed body (hyper's `Incoming`, an upstream's response) as [`Body`].
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// What the listener knows about the connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The TCP peer (not yet resolved through trusted proxies).
    pub peer: SocketAddr,
    /// The request arrived over TLS.
    pub tls: bool,
    /// The client certificate chain, DER, leaf first (verified against
    /// `tls.client_ca`); empty without one.
    pub client_certs: Vec<Vec<u8>>,
}

/// What the native gateway decided for one request.
pub enum Outcome {
    /// The native path answered (a proxied upstream response, a 429, a 502…).
    Respond(http::Response<Body>),
    /// Not for the native path: forward the request, unchanged, to the
    /// Python control plane (a non-gateway path, a route the native core does
    /// not serve yet, a credential not in its caches, any denial it does not
    /// render itself). Python's semantics are the specification, so deferring
    /// is always correct, only slower.
    Defer(http::Request<Body>),
}

/// Who a gateway request acts for, as the `authenticate` step established it
/// (the native twin of `bastion.gateway.authn.identity.Identity`).
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// The authenticator that vouched: "public", "api_key", "jwt", …
    pub method: &'static str,
    /// `None` only for the anonymous identity of a public route.
    pub subject: Option<String>,
    /// The OAuth client, where one is known (a JWT's `client_id`).
    pub client_id: Option<String>,
    /// Granted scopes, sorted and de-duplicated.
    pub scopes: Vec<String>,
    /// The API key's id when an API key vouched.
    pub key_id: Option<String>,
    /// Route names this credential may call (`None`: any).
    pub routes: Option<Vec<String>>,
    /// The signed-in person behind a browser session (`session`): sent upstream
    /// as the email and roles identity headers.
    pub person: Option<std::sync::Arc<Person>>,
}

/// What a browser session's user adds to its [`Identity`] (`authn::session`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Person {
    pub username: String,
    pub email: Option<String>,
    pub roles: Vec<String>,
}
