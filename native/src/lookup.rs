//! A native cache miss becomes a control-plane lookup: the request leading a
//! miss (`authn::miss`) asks Python for the *record* only — an API key's, a
//! client certificate's identity, a token's introspection answer — and then
//! finishes natively. Python runs no pipeline step for it.
//!
//! - The hook is installed by the control plane (`_native.lookup_hook_set`,
//!   `bastion.gateway.lookups`); it is called off the tokio workers, on one
//!   dedicated thread fed by a bounded queue (`python/lookup.rs`), with
//!   `(kind, value, ticket)`. Python schedules the lookup on its event loop and
//!   returns at once; the lookup pushes what it found through
//!   `bastion.gateway.native_push` (which wakes the waiters, `settled`) and
//!   then answers the ticket: found, refused, or unavailable (its
//!   `ServiceUnavailableError`: the requests waiting for *that* lookup answer
//!   it, nothing is cached).
//! - No hook, a full queue, a lookup that fails in an unexpected way or is not
//!   answered within [`LOOKUP_WAIT`] (a backstop: Python answers each lookup
//!   within its own bound, a 503 past it): the lookup is *lost*, and the requests
//!   waiting for it get the kind's `503` ([`lost`]), rendered natively.
//! - `bastion_native_lookups_total{kind, outcome}` counts each lookup once.
//!
//! One thread rather than `spawn_blocking`: a flood of new keys must not
//! become hundreds of blocking threads queueing for the GIL; the thread takes
//! the GIL once for every batch of queued lookups, and a full queue is a lost
//! lookup (the request defers), never a wait.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::authn::miss::{Lead, Unavailable, LOOKUP_WAIT};

/// What is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The presented API key (Python's `ApiKeyService` lookup).
    ApiKey = 0,
    /// The verified leaf certificate's DER (the `mtls` identity derivation).
    Cert = 1,
    /// The opaque bearer token (the `introspection` client).
    Introspection = 2,
    /// A trusted issuer's key set, to refresh as Python would before judging a
    /// token of it: `"{issuer}\n{kid}"` (`JwksCache.refresh_for_kid`), or
    /// `"{issuer}"` for a token without a string `kid` (`JwksCache.get`).
    Jwks = 3,
    /// An OAuth client's status (`client_is_active`): the client id.
    Client = 4,
    /// A token exchanged from an API key: `"{audience}\n{token}"` (Python's
    /// `JwtAuthenticator.authenticate`, which pushes it as that key's).
    Exchanged = 5,
    /// A `kid` of bastion's own that the pushed signing keys lack: Python pushes
    /// its keys when they hold it (`native_push.signing_key`), else refuses.
    SigningKey = 6,
    /// A browser session: the hex SHA-256 of its id (`authn::session`): Python
    /// pushes the live session, or refuses an unknown or ended one.
    Session = 7,
}

impl Kind {
    /// The `kind` label (and what the Python hook receives).
    pub fn label(self) -> &'static str {
        KINDS[self as usize]
    }
}

/// The `kind` labels, by [`Kind`].
pub const KINDS: [&str; 8] = [
    "api_key",
    "cert",
    "introspection",
    "jwks",
    "client",
    "exchanged",
    "signing_key",
    "session",
];
/// The `outcome` labels.
pub const OUTCOMES: [&str; 4] = ["found", "refused", "unavailable", "lost"];
const LOST: usize = 3;

/// What Python answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A record was pushed (usable or not: the cache says).
    Found,
    /// Python refuses the credential (a refusal pushed where one is cached).
    Refused,
    /// The store or the endpoint failed: Python's 503.
    Unavailable(Arc<Unavailable>),
}

impl Answer {
    fn outcome(&self) -> usize {
        match self {
            Answer::Found => 0,
            Answer::Refused => 1,
            Answer::Unavailable(_) => 2,
        }
    }
}

/// The one reply of a lookup; dropped unanswered, the lookup is lost.
pub struct Reply {
    tx: oneshot::Sender<Answer>,
    kind: Kind,
}

impl Reply {
    pub fn send(self, answer: Answer) {
        let _ = self.tx.send(answer);
    }

    /// The lookup ran past the control plane's bound for it: its requests get the
    /// kind's `503` ([`lost`], rendered here: the answer has this one home), counted
    /// `unavailable` — the control plane answered, it failed — and nothing is cached.
    pub fn lost(self) {
        let why = lost(self.kind);
        self.send(Answer::Unavailable(why));
    }
}

/// The control plane's side of a lookup (see the module docs).
pub trait Hook: Send + Sync {
    /// Start the lookup of `value`; false when it cannot be started (then it is lost).
    fn ask(&self, kind: Kind, value: Vec<u8>, reply: Reply) -> bool;
}

static HOOK: RwLock<Option<Arc<dyn Hook>>> = RwLock::new(None);

/// Install (or with `None`, remove) the lookup hook.
pub fn set_hook(hook: Option<Arc<dyn Hook>>) {
    *HOOK.write().unwrap_or_else(|p| p.into_inner()) = hook;
}

/// Whether a hook is installed.
pub fn hooked() -> bool {
    HOOK.read().unwrap_or_else(|p| p.into_inner()).is_some()
}

static COUNTS: [[AtomicU64; 4]; 8] = [const { [const { AtomicU64::new(0) }; 4] }; 8];

fn count(kind: Kind, outcome: usize) {
    COUNTS[kind as usize][outcome].fetch_add(1, Ordering::Relaxed);
}

/// Every `(kind, outcome, count)` of `bastion_native_lookups_total`.
pub fn counts() -> Vec<(&'static str, &'static str, u64)> {
    let mut out = Vec::with_capacity(KINDS.len() * OUTCOMES.len());
    for (k, kind) in KINDS.iter().enumerate() {
        for (o, outcome) in OUTCOMES.iter().enumerate() {
            out.push((*kind, *outcome, COUNTS[k][o].load(Ordering::Relaxed)));
        }
    }
    out
}

/// Ask the hook about `value`, waiting at most `limit`; `None`: lost (counted).
pub async fn ask(kind: Kind, value: Vec<u8>, limit: Duration) -> Option<Answer> {
    let hook = HOOK.read().unwrap_or_else(|p| p.into_inner()).clone();
    let answer = match hook {
        None => None,
        Some(hook) => {
            let (tx, rx) = oneshot::channel();
            if hook.ask(kind, value, Reply { tx, kind }) {
                tokio::time::timeout(limit, rx)
                    .await
                    .ok()
                    .and_then(Result::ok)
            } else {
                None
            }
        }
    };
    count(kind, answer.as_ref().map_or(LOST, Answer::outcome));
    answer
}

/// What the request leading a miss does once its lookup is over.
pub enum Led {
    /// Read the cache again (the answer was pushed; the waiters are woken).
    Read,
    /// Python refused the credential and caches nothing of it (a certificate).
    Refused,
    /// The lookup failed: answer Python's 503 (its waiters answer it too).
    Unavailable(Arc<Unavailable>),
    /// The lookup was lost (or `value` unknown): no answer will come.
    Lost(Lead),
}

/// The answer of a lost lookup — no hook, a full queue, an unexpected failure,
/// no answer within [`LOOKUP_WAIT`] — now that Python no longer serves the
/// request: fail closed with the kind's own `503` (`Retry-After: 1`), as a
/// failed lookup of that kind answers (`introspection_unavailable`,
/// `issuer_unavailable`); for a key or a certificate, whose lookup is a store
/// read or a parse, `service_unavailable`. Never an allow, never a `401` (the
/// credential may be good), never cached: the next request asks again.
pub fn lost(kind: Kind) -> Arc<Unavailable> {
    let (code, title, detail) = match kind {
        Kind::Introspection => (
            "introspection_unavailable",
            "Token introspection unavailable",
            "The token cannot be checked right now; try again shortly.",
        ),
        Kind::Jwks => (
            "issuer_unavailable",
            "Token issuer unavailable",
            "The keys of the token's issuer cannot be fetched right now.",
        ),
        Kind::ApiKey
        | Kind::Cert
        | Kind::Client
        | Kind::Exchanged
        | Kind::SigningKey
        | Kind::Session => (
            "service_unavailable",
            "Service unavailable",
            "The credential cannot be checked right now; try again shortly.",
        ),
    };
    Arc::new(Unavailable {
        code,
        title,
        detail: detail.to_owned(),
    })
}

/// Lead the lookup of `value` (`None`: the credential cannot be looked up alone).
/// `refused` runs before the waiters wake when Python refuses it.
pub async fn lead(kind: Kind, value: Option<&[u8]>, lead: Lead, refused: impl FnOnce()) -> Led {
    let Some(value) = value else {
        return Led::Lost(lead);
    };
    match ask(kind, value.to_vec(), LOOKUP_WAIT).await {
        None => Led::Lost(lead),
        Some(Answer::Found) => Led::Read,
        Some(Answer::Refused) => {
            refused();
            drop(lead);
            Led::Refused
        }
        Some(Answer::Unavailable(why)) => {
            lead.unavailable(why.clone());
            drop(lead);
            Led::Unavailable(why)
        }
    }
}

/// The `ServiceUnavailableError`s a lookup may end with, as Python names them
/// (code, title); any other is not rendered natively (the lookup is lost).
const UNAVAILABLE: [(&str, &str); 5] = [
    ("database_unavailable", "Database unavailable"),
    ("issuer_unavailable", "Token issuer unavailable"),
    (
        "introspection_unavailable",
        "Token introspection unavailable",
    ),
    ("shared_state_unavailable", "Shared state unavailable"),
    ("service_unavailable", "Service unavailable"),
];

/// Python's failure `(code, title, detail)`, when the native path renders it.
pub fn unavailable(code: &str, title: &str, detail: &str) -> Option<Unavailable> {
    let (code, title) = UNAVAILABLE
        .iter()
        .find(|(c, t)| *c == code && *t == title)?;
    Some(Unavailable {
        code,
        title,
        detail: detail.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Answering(Mutex<Vec<(Kind, Vec<u8>)>>, Option<Answer>);

    impl Hook for Answering {
        fn ask(&self, kind: Kind, value: Vec<u8>, reply: Reply) -> bool {
            self.0.lock().expect("lock").push((kind, value));
            if let Some(answer) = &self.1 {
                reply.send(answer.clone());
            }
            true
        }
    }

    /// Answers every lookup as past its bound (`LookupTicket.lost()`).
    struct Late;

    impl Hook for Late {
        fn ask(&self, _: Kind, _: Vec<u8>, reply: Reply) -> bool {
            reply.lost();
            true
        }
    }

    fn count_of(kind: &str, outcome: &str) -> u64 {
        counts()
            .into_iter()
            .find(|(k, o, _)| *k == kind && *o == outcome)
            .map_or(0, |(_, _, n)| n)
    }

    // One test: the hook is process-wide.
    #[tokio::test]
    async fn a_lookup_is_answered_or_lost_and_counted() {
        set_hook(None);
        let lost = count_of("cert", "lost");
        assert_eq!(ask(Kind::Cert, b"der".to_vec(), LOOKUP_WAIT).await, None);
        assert_eq!(count_of("cert", "lost"), lost + 1);

        let hook = Arc::new(Answering(Mutex::default(), Some(Answer::Found)));
        set_hook(Some(hook.clone()));
        assert!(hooked());
        let found = count_of("api_key", "found");
        let answer = ask(Kind::ApiKey, b"bst_x".to_vec(), LOOKUP_WAIT).await;
        assert_eq!(answer, Some(Answer::Found));
        assert_eq!(count_of("api_key", "found"), found + 1);
        assert_eq!(
            hook.0.lock().expect("lock")[0],
            (Kind::ApiKey, b"bst_x".to_vec())
        );

        // A reply dropped unanswered, or never sent in time: lost.
        set_hook(Some(Arc::new(Answering(Mutex::default(), None))));
        let lost = count_of("introspection", "lost");
        let answer = ask(
            Kind::Introspection,
            b"t".to_vec(),
            Duration::from_millis(20),
        )
        .await;
        assert_eq!(answer, None);
        assert_eq!(count_of("introspection", "lost"), lost + 1);

        // Past the control plane's bound: the kind's own 503, counted `unavailable`.
        set_hook(Some(Arc::new(Late)));
        for kind in [Kind::Jwks, Kind::ApiKey] {
            let unavailable = count_of(kind.label(), "unavailable");
            let answer = ask(kind, b"v".to_vec(), LOOKUP_WAIT).await;
            assert_eq!(answer, Some(Answer::Unavailable(super::lost(kind))));
            assert_eq!(count_of(kind.label(), "unavailable"), unavailable + 1);
        }
        set_hook(None);
        assert!(!hooked());
    }

    #[test]
    fn a_lost_lookup_is_its_kinds_unavailable_answer() {
        let codes: Vec<&str> = [Kind::ApiKey, Kind::Cert, Kind::Introspection, Kind::Jwks]
            .into_iter()
            .map(|kind| lost(kind).code)
            .collect();
        assert_eq!(
            codes,
            [
                "service_unavailable",
                "service_unavailable",
                "introspection_unavailable",
                "issuer_unavailable"
            ]
        );
        // Each one a failure Python renders with that code and title.
        for kind in [Kind::ApiKey, Kind::Cert, Kind::Introspection, Kind::Jwks] {
            let why = lost(kind);
            assert!(unavailable(why.code, why.title, &why.detail).is_some());
        }
        assert_eq!(Kind::Jwks.label(), "jwks");
    }

    #[test]
    fn only_python_failures_known_here_are_rendered() {
        let why = unavailable("database_unavailable", "Database unavailable", "d").expect("known");
        assert_eq!(
            (why.code, why.title, why.detail.as_str()),
            ("database_unavailable", "Database unavailable", "d")
        );
        assert!(unavailable("database_unavailable", "Other title", "d").is_none());
        assert!(unavailable("upstream_unavailable", "Bad gateway", "d").is_none());
    }
}
