//! What went wrong with an upstream, as the problem Python's proxy renders.

use std::fmt;

/// Why an upstream exchange failed (`bastion.gateway.errors.UPSTREAM_CAUSES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Nothing listens on the port.
    Refused,
    /// The host name does not resolve.
    Dns,
    /// No route to the host, or another socket error.
    Unreachable,
    /// Connecting or waiting for the response took too long.
    Timeout,
    /// The TLS handshake failed.
    Tls,
    /// The upstream reset the connection.
    Reset,
    /// The upstream closed the connection before answering.
    Closed,
    /// The upstream's answer is not valid HTTP/1.1.
    InvalidResponse,
    /// Every target is ejected by the passive health checks.
    NoHealthyTarget,
}

impl Cause {
    /// The cause as Python's log lines and metrics spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Refused => "refused",
            Cause::Dns => "dns",
            Cause::Unreachable => "unreachable",
            Cause::Timeout => "timeout",
            Cause::Tls => "tls",
            Cause::Reset => "reset",
            Cause::Closed => "closed",
            Cause::InvalidResponse => "invalid_response",
            Cause::NoHealthyTarget => "no_healthy_target",
        }
    }
}

/// A failed upstream exchange, before any response byte reached the client.
///
/// [`UpstreamError::problem`] is what to render (the status, code, title and
/// detail of the matching Python error class); `cause`, `target` and `note`
/// are for the one log line and never sent to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamError {
    /// `UpstreamUnavailableError`: refused, unresolvable, reset, closed, invalid (502).
    Unavailable {
        cause: Cause,
        detail: &'static str,
        target: String,
        note: String,
    },
    /// `UpstreamTLSError`: the handshake with an https upstream failed (502).
    Tls { target: String, note: String },
    /// `UpstreamTimeoutError`: no connection or no answer in time (504).
    Timeout {
        detail: &'static str,
        target: String,
        note: String,
    },
    /// `NoHealthyUpstreamError`: every target is ejected; nothing was tried
    /// (503 with `Retry-After: retry_after`).
    NoHealthyTarget { retry_after: u64, target: String },
    /// The client's request body failed (it went away mid-upload): Python's
    /// `ClientDisconnectedError`, nobody is left to answer.
    ClientGone { note: String },
    /// The forwarded path is not a valid request target (cannot happen for a
    /// normalised path; rendered as Python's `invalid_path`).
    InvalidTarget { note: String },
}

pub(crate) const CONNECT_TIMEOUT: &str = "Connecting to the upstream timed out.";
pub(crate) const ANSWER_TIMEOUT: &str = "The upstream did not answer in time.";
pub(crate) const UNREACHABLE: &str = "The upstream could not be reached.";
/// The WebSocket door's (`bastion.gateway.websocket`): no handshake in time.
pub(crate) const WS_TIMEOUT: &str = "Connecting to the upstream WebSocket timed out.";
/// The WebSocket door's: the upstream's answer to the upgrade is not a valid one.
pub(crate) const WS_INVALID: &str = "The upstream's WebSocket handshake response was invalid.";
pub(crate) const NO_ANSWER: &str = "The upstream closed the connection without answering.";
const TLS_FAILED: &str = "The TLS handshake with the upstream failed.";
const NO_HEALTHY: &str = "Every upstream target of this route is failing; retry later.";

impl UpstreamError {
    /// `(status, code, title, detail)` exactly as Python's problem+json says it.
    pub fn problem(&self) -> (u16, &'static str, &'static str, &'static str) {
        match self {
            UpstreamError::Unavailable { detail, .. } => {
                (502, "upstream_unavailable", "Upstream unavailable", detail)
            }
            UpstreamError::Tls { .. } => {
                (502, "upstream_tls_error", "Upstream TLS error", TLS_FAILED)
            }
            UpstreamError::Timeout { detail, .. } => {
                (504, "upstream_timeout", "Upstream timeout", detail)
            }
            UpstreamError::NoHealthyTarget { .. } => (
                503,
                "upstream_unavailable",
                "Upstream unavailable",
                NO_HEALTHY,
            ),
            UpstreamError::ClientGone { .. } => (
                400,
                "bad_request",
                "Bad request",
                "The client went away before its request body was read.",
            ),
            UpstreamError::InvalidTarget { .. } => (
                400,
                "invalid_path",
                "Invalid request path",
                "The request path cannot be forwarded.",
            ),
        }
    }

    /// Seconds for `Retry-After` (only when every target is ejected).
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            UpstreamError::NoHealthyTarget { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The cause for the log line and metrics (`None`: not the upstream's fault).
    pub fn cause(&self) -> Option<Cause> {
        match self {
            UpstreamError::Unavailable { cause, .. } => Some(*cause),
            UpstreamError::Tls { .. } => Some(Cause::Tls),
            UpstreamError::Timeout { .. } => Some(Cause::Timeout),
            UpstreamError::NoHealthyTarget { .. } => Some(Cause::NoHealthyTarget),
            UpstreamError::ClientGone { .. } | UpstreamError::InvalidTarget { .. } => None,
        }
    }

    /// The upstream as `scheme://host:port` (several, comma-separated, when none was healthy).
    pub fn target(&self) -> &str {
        match self {
            UpstreamError::Unavailable { target, .. }
            | UpstreamError::Tls { target, .. }
            | UpstreamError::Timeout { target, .. }
            | UpstreamError::NoHealthyTarget { target, .. } => target,
            UpstreamError::ClientGone { .. } | UpstreamError::InvalidTarget { .. } => "",
        }
    }

    /// The system's or TLS library's own words.
    pub fn note(&self) -> &str {
        match self {
            UpstreamError::Unavailable { note, .. }
            | UpstreamError::Tls { note, .. }
            | UpstreamError::Timeout { note, .. }
            | UpstreamError::ClientGone { note }
            | UpstreamError::InvalidTarget { note } => note,
            UpstreamError::NoHealthyTarget { .. } => {
                "every target is ejected by the passive health checks"
            }
        }
    }

    /// Whether the failure counts against the target's health (a failed connection).
    pub(crate) fn counts_against_health(&self) -> bool {
        matches!(
            self,
            UpstreamError::Unavailable { .. }
                | UpstreamError::Tls { .. }
                | UpstreamError::Timeout { .. }
        )
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (status, code, _, detail) = self.problem();
        write!(f, "{status} {code}: {detail}")?;
        if let Some(cause) = self.cause() {
            write!(
                f,
                " (cause={} target={} note={})",
                cause.as_str(),
                self.target(),
                self.note()
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for UpstreamError {}

/// The body error the proxied response body yields when the upstream fails
/// mid-response (Python's `UpstreamAbortedError`): the listener must abort the
/// client connection, never finish the response as if it were complete.
#[derive(Debug)]
pub struct UpstreamAborted {
    pub cause: Cause,
    /// The upstream as `scheme://host:port` (for the log line).
    pub target: String,
    pub note: String,
}

impl UpstreamAborted {
    /// What Python's `UpstreamAbortedError` says (for the log line; never rendered).
    pub fn problem(&self) -> (u16, &'static str, &'static str) {
        (502, "upstream_aborted", "Upstream aborted")
    }
}

impl fmt::Display for UpstreamAborted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "upstream aborted mid-response ({}: {})",
            self.cause.as_str(),
            self.note
        )
    }
}

impl std::error::Error for UpstreamAborted {}
