//! The `session` authentication method: the browser sessions of bastion's own
//! login (`bastion.interaction.sessions`) in front of browser applications —
//! what oauth2-proxy and Pomerium do, inside bastion's process.
//!
//! - **The credential** is the `__Host-bastion_session` cookie ([`presented`]):
//!   exactly one, 1 to [`MAX_ID_BYTES`] base64url characters. Two of them
//!   (which one would act?), an empty, overlong or otherwise malformed one is
//!   no session ([`Presented::Unusable`]), never a lookup.
//! - **The cache** ([`Sessions`]) holds what Python's `SessionManager` found for
//!   the SHA-256 of the id (the database's `id_digest`): the user, and the
//!   session's absolute deadline and idle timeout. A hit is valid before both
//!   the absolute deadline and `last use + idle timeout`; each native use moves
//!   the last use. Unknown ids Python refused are held briefly
//!   ([`Sessions::refuse`]): a flood of forged cookies costs one lookup each.
//! - **A miss** is a lookup of kind `session` (`crate::lookup`; the value is the
//!   hex digest, never the id): concurrent misses of one id coalesce ([`miss`]).
//! - **Ended sessions** (logout, "sign out everywhere", a disabled user, either
//!   timeout) leave the cache through the change feed's `sessions` channel
//!   (message: the `id_digest`), which every node follows
//!   ([`Sessions::drop_digest`]); a user's change (`users` channel) drops that
//!   user's sessions ([`Sessions::drop_user`]); a lost subscription clears all.
//! - **Idle timeout**: native uses are reported at most once per
//!   [`REPORT_EVERY`] seconds per session ([`Sessions::take_used`]); Python
//!   writes them to the database in batches, at most once per its touch
//!   interval per session (never a write per request).
//! - **No session** ([`refusal`]): a browser navigation is sent to
//!   `/login?return_to=<its own path and query>` (303, built here from the
//!   request target only: never from `Host`, `X-Forwarded-Host` or `Referer`,
//!   so the address is always on bastion's origin); anything a script sent
//!   ([`wants_redirect`]) gets `401 session_required` as problem+json.
//! - **Upstream**: bastion's own cookies (`__Host-bastion_*`) never reach an
//!   upstream ([`strip_own_cookies`]) and an upstream cannot set them
//!   ([`drop_own_set_cookies`]): one protected app can neither read nor plant
//!   another's session.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use http::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, COOKIE, LOCATION, SET_COOKIE};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::bounded::{Bounded, Shared};
use super::miss::{Inflight, Miss};
use crate::http::{Identity, Person};
use crate::problem::Problem;

/// The session cookie `bastion.interaction.sessions.SESSION_COOKIE` sets.
pub const COOKIE_NAME: &str = "__Host-bastion_session";
/// bastion's own cookies (session, CSRF, …), lower-cased: never forwarded, never set upstream.
const OWN_PREFIX: &[u8] = b"__host-bastion_";
/// The longest id read (Python's `_MAX_TOKEN`; its ids are 43 characters).
pub const MAX_ID_BYTES: usize = 128;
/// Most sessions held.
pub const CACHE_MAX: usize = 100_000;
/// Most refused ids held.
pub const REFUSED_MAX: usize = 10_000;
/// A session's native uses are reported to Python at most this often (seconds).
pub const REPORT_EVERY: f64 = 1.0;
/// Where a browser without a session is sent (`bastion.http.endpoints.login`).
pub const LOGIN_PATH: &str = "/login";
/// The longest `return_to` the login takes (`MAX_RETURN_TO`); longer: none.
pub const MAX_RETURN_TO: usize = 2048;

/// The SHA-256 of a session id (the database's `id_digest`, as bytes).
pub type Digest = [u8; 32];

/// What a request's `Cookie` headers hold of bastion's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'h> {
    /// No session cookie.
    Absent,
    /// One well-formed session id.
    Id(&'h [u8]),
    /// A session cookie no session can have (the reason, for the audit log):
    /// `duplicate`, `too_large`, `malformed`.
    Unusable(&'static str),
}

/// Read the session cookie from every `Cookie` header (RFC 6265 §5.4 pairs,
/// `name=value` separated by `;`). The name is compared exactly (cookie names
/// are case-sensitive; a look-alike such as `__host-bastion_session` is not ours).
pub fn presented(headers: &HeaderMap) -> Presented<'_> {
    let mut found: Option<&[u8]> = None;
    for value in headers.get_all(COOKIE) {
        for pair in value.as_bytes().split(|b| *b == b';') {
            let Some(eq) = pair.iter().position(|b| *b == b'=') else {
                continue;
            };
            if pair[..eq].trim_ascii() != COOKIE_NAME.as_bytes() {
                continue;
            }
            if found.is_some() {
                return Presented::Unusable("duplicate");
            }
            found = Some(pair[eq + 1..].trim_ascii());
        }
    }
    match found {
        None => Presented::Absent,
        Some(id) if id.len() > MAX_ID_BYTES => Presented::Unusable("too_large"),
        Some(id) if id.is_empty() || !id.iter().all(|b| is_base64url(*b)) => {
            Presented::Unusable("malformed")
        }
        Some(id) => Presented::Id(id),
    }
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// The digest a session id is found by (`sha256_hex(id)` in Python, as bytes).
pub fn digest(id: &[u8]) -> Digest {
    super::cache::token_digest(id)
}

/// What Python pushes for a live session (`native_push.session_found`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Pushed {
    user_id: String,
    username: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    /// The absolute end (Unix seconds).
    expires_at: f64,
    /// The last use the database holds (Unix seconds).
    last_seen_at: f64,
    /// The idle timeout (seconds).
    idle_timeout: f64,
}

/// A live session as the native path uses it.
#[derive(Debug)]
pub struct Record {
    pub user_id: String,
    /// `method: "session"`, the user's id as subject, the user's email and roles.
    pub identity: Identity,
    /// `sub`, `preferred_username`, `email`, `roles`: what a route's `claims` /
    /// `roles` rules read.
    pub claims: Map<String, Value>,
    pub expires_at: f64,
    pub idle_timeout: f64,
}

impl Record {
    /// Read a pushed record and the last use it carries; refuses an empty
    /// user id, a non-finite deadline or a timeout that is not positive.
    pub fn from_push(json: &str) -> Result<(Record, f64), String> {
        let pushed: Pushed =
            serde_json::from_str(json).map_err(|e| format!("session record: {e}"))?;
        if pushed.user_id.is_empty() {
            return Err("session record: empty user_id".into());
        }
        let finite = [pushed.expires_at, pushed.last_seen_at, pushed.idle_timeout];
        if !finite.iter().all(|v| v.is_finite()) || pushed.idle_timeout <= 0.0 {
            return Err("session record: bad deadlines".into());
        }
        let mut claims = Map::new();
        claims.insert("sub".into(), Value::String(pushed.user_id.clone()));
        claims.insert(
            "preferred_username".into(),
            Value::String(pushed.username.clone()),
        );
        if let Some(email) = &pushed.email {
            claims.insert("email".into(), Value::String(email.clone()));
        }
        claims.insert(
            "roles".into(),
            Value::Array(pushed.roles.iter().cloned().map(Value::String).collect()),
        );
        let identity = Identity {
            method: "session",
            subject: Some(pushed.user_id.clone()),
            person: Some(Arc::new(Person {
                username: pushed.username,
                email: pushed.email,
                roles: pushed.roles,
            })),
            ..Identity::default()
        };
        let record = Record {
            user_id: pushed.user_id,
            identity,
            claims,
            expires_at: pushed.expires_at,
            idle_timeout: pushed.idle_timeout,
        };
        Ok((record, pushed.last_seen_at))
    }
}

struct Entry {
    record: Arc<Record>,
    /// The last use (Unix seconds, as `f64` bits: positive floats order as their bits).
    seen: AtomicU64,
    /// The last use reported to Python (same encoding).
    reported: AtomicU64,
}

impl Entry {
    fn live(&self, now: f64) -> bool {
        let seen = f64::from_bits(self.seen.load(Ordering::Acquire));
        now < self.record.expires_at && now < seen + self.record.idle_timeout
    }
}

/// The live sessions by id digest, the ids refused, the uses to report.
pub struct Sessions {
    entries: Shared<Digest, Arc<Entry>>,
    refused: Mutex<Bounded<Digest, f64>>,
    used: Mutex<HashMap<Digest, f64>>,
    /// A lookup's answer must not resurrect a session dropped while it ran (an end
    /// delivered between Python's read and its push): every lookup and every drop takes
    /// a number from `seq`, and a push older than a drop of its session is not held.
    seq: AtomicU64,
    /// digest -> the number its lookup began with.
    lookups: Mutex<Bounded<Digest, u64>>,
    /// digest -> the number of its last drop.
    dropped: Mutex<Bounded<Digest, u64>>,
    /// user id -> the number of its last drop (bounded: cleared past `REFUSED_MAX`).
    users_dropped: Mutex<HashMap<String, u64>>,
    /// The number of the last clear.
    cleared: AtomicU64,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            entries: Shared::new(CACHE_MAX),
            refused: Mutex::new(Bounded::new(REFUSED_MAX)),
            used: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(1),
            lookups: Mutex::new(Bounded::new(REFUSED_MAX)),
            dropped: Mutex::new(Bounded::new(REFUSED_MAX)),
            users_dropped: Mutex::new(HashMap::new()),
            cleared: AtomicU64::new(0),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Whole values only: a panic elsewhere cannot leave one half-made.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Sessions {
    /// The live session `digest` at `now` (before its absolute deadline and its
    /// idle end), without counting a use.
    pub fn get(&self, digest: &Digest, now: f64) -> Option<Arc<Record>> {
        let entry = self.entries.get(digest)?;
        entry.live(now).then(|| entry.record.clone())
    }

    /// [`Sessions::get`], counting a use at `now` (the idle end moves; the use
    /// is reported to Python at most every [`REPORT_EVERY`] seconds).
    pub fn use_at(&self, digest: &Digest, now: f64) -> Option<Arc<Record>> {
        let entry = self.entries.get(digest)?;
        if !entry.live(now) {
            return None;
        }
        entry.seen.fetch_max(now.to_bits(), Ordering::AcqRel);
        let reported = f64::from_bits(entry.reported.load(Ordering::Acquire));
        if now - reported >= REPORT_EVERY {
            entry.reported.store(now.to_bits(), Ordering::Release);
            lock(&self.used).insert(*digest, now);
        }
        Some(entry.record.clone())
    }

    fn next(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::AcqRel)
    }

    /// A lookup of `digest` begins (see `seq`).
    pub fn begin_lookup(&self, digest: Digest) {
        let number = self.next();
        lock(&self.lookups).insert(digest, number);
    }

    /// Hold `record` for `digest`, last used at `last_seen` (a refusal of it goes);
    /// false, holding nothing, when the session, its user or everything was dropped
    /// since its lookup began (the answer may be older than the end it missed).
    pub fn put(&self, digest: Digest, record: Record, last_seen: f64) -> bool {
        if let Some(begun) = lock(&self.lookups).remove(&digest) {
            let stale = lock(&self.dropped).get(&digest).is_some_and(|d| *d > begun)
                || self.cleared.load(Ordering::Acquire) > begun
                || lock(&self.users_dropped)
                    .get(&record.user_id)
                    .is_some_and(|d| *d > begun);
            if stale {
                return false;
            }
        }
        let seen = last_seen.max(0.0).to_bits();
        let entry = Arc::new(Entry {
            record: Arc::new(record),
            seen: AtomicU64::new(seen),
            reported: AtomicU64::new(seen),
        });
        lock(&self.refused).remove(&digest);
        self.entries.put(digest, entry);
        true
    }

    /// Python found no live session for `digest`: refused natively until `until`.
    pub fn refuse(&self, digest: Digest, until: f64) {
        self.entries.write().remove(&digest);
        lock(&self.refused).insert(digest, until);
    }

    /// Whether `digest` is refused at `now`.
    pub fn refused(&self, digest: &Digest, now: f64) -> bool {
        lock(&self.refused)
            .get(digest)
            .is_some_and(|until| now < *until)
    }

    /// The session `digest` started or ended (the feed's `sessions` channel):
    /// forget what is held of it, a refusal included.
    pub fn drop_digest(&self, digest: &Digest) {
        let number = self.next();
        lock(&self.dropped).insert(*digest, number);
        self.entries.write().remove(digest);
        lock(&self.refused).remove(digest);
    }

    /// The user `user_id` changed (the feed's `users` channel): forget their sessions.
    pub fn drop_user(&self, user_id: &str) {
        let number = self.next();
        {
            let mut users = lock(&self.users_dropped);
            if users.len() >= REFUSED_MAX {
                // Forgetting older drops is safe only with a clear: everything is looked up again.
                users.clear();
                self.cleared.store(number, Ordering::Release);
                self.entries.clear();
            }
            users.insert(user_id.to_owned(), number);
        }
        self.entries
            .write()
            .retain(|_, entry| entry.record.user_id != user_id);
    }

    /// Forget everything (a lost subscription: messages may have been missed).
    pub fn clear(&self) {
        let number = self.next();
        self.cleared.store(number, Ordering::Release);
        self.entries.clear();
        lock(&self.refused).clear();
    }

    /// The uses not yet reported, `(digest, unix time)`, and forget them.
    pub fn take_used(&self) -> Vec<(Digest, f64)> {
        lock(&self.used).drain().collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The process-wide sessions.
pub fn sessions() -> &'static Sessions {
    static SESSIONS: OnceLock<Sessions> = OnceLock::new();
    SESSIONS.get_or_init(Sessions::default)
}

fn inflight() -> &'static Arc<Inflight> {
    static INFLIGHT: OnceLock<Arc<Inflight>> = OnceLock::new();
    INFLIGHT.get_or_init(Arc::default)
}

/// A native miss of the session `digest`: lead its lookup, or wait for the one in flight.
pub fn miss(digest: Digest) -> Miss {
    let miss = inflight().miss(digest);
    if matches!(miss, Miss::Lead(_)) {
        sessions().begin_lookup(digest);
    }
    miss
}

/// Python pushed an answer for `digest`: wake whoever waits for it.
pub fn settled(digest: &Digest) {
    inflight().settled(digest);
}

/// Wake every waiter (the cache was cleared).
pub fn settle_all() {
    inflight().settle_all();
}

/// Lower-case hex of a digest (the lookup's value, the database's `id_digest`).
pub fn hex(digest: &Digest) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

// -- no session: a redirect to the login, or a 401 ------------------------------

static X_REQUESTED_WITH: HeaderName = HeaderName::from_static("x-requested-with");
static SEC_FETCH_MODE: HeaderName = HeaderName::from_static("sec-fetch-mode");

/// Whether a request without a session is a browser navigation, sent to the
/// login (else a script's call, answered `401`): a `GET` or `HEAD`, without
/// `X-Requested-With`, not a `fetch()` / XHR by its `Sec-Fetch-Mode`
/// (`cors`, `same-origin`, `websocket`), and not asking for JSON without HTML
/// (`Accept: application/json` and no `text/html`).
pub fn wants_redirect(method: &http::Method, headers: &HeaderMap) -> bool {
    if method != http::Method::GET && method != http::Method::HEAD {
        return false;
    }
    if headers.contains_key(&X_REQUESTED_WITH) {
        return false;
    }
    let scripted = headers.get_all(&SEC_FETCH_MODE).iter().any(|mode| {
        let mode = mode.as_bytes().trim_ascii();
        [&b"cors"[..], b"same-origin", b"websocket"]
            .iter()
            .any(|m| mode.eq_ignore_ascii_case(m))
    });
    if scripted {
        return false;
    }
    let (mut json, mut html) = (false, false);
    for value in headers.get_all(ACCEPT) {
        let value = value.as_bytes().to_ascii_lowercase();
        for range in value.split(|b| *b == b',') {
            let media = range.split(|b| *b == b';').next().unwrap_or_default();
            match media.trim_ascii() {
                b"application/json" => json = true,
                b"text/html" | b"application/xhtml+xml" => html = true,
                _ => {}
            }
        }
    }
    !json || html
}

/// Whether `target` (a request's path and query) is a path the login returns
/// to as it is (`bastion.interaction.return_to.check_return_to`'s first
/// round): one leading `/`, URL characters only, no backslash, no dot segment.
fn returnable(target: &str) -> bool {
    if target.len() > MAX_RETURN_TO || !target.starts_with('/') || target.starts_with("//") {
        return false;
    }
    let url_char = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?#%".contains(&b);
    if !target.bytes().all(url_char) {
        return false;
    }
    let path = target.split('?').next().unwrap_or_default();
    !path
        .split('/')
        .any(|segment| segment == "." || segment == "..")
}

/// The login's address for a browser that asked for `target` (its path and
/// query, as routed): `/login?return_to=<target, percent-encoded>`, or plain
/// `/login` for a target the login would not return to. Always a path on
/// bastion's own origin: nothing of `Host` or any other header goes in.
pub fn login_location(target: &str) -> String {
    if !returnable(target) {
        return LOGIN_PATH.to_owned();
    }
    let mut out = String::with_capacity(LOGIN_PATH.len() + 11 + 3 * target.len());
    out.push_str(LOGIN_PATH);
    out.push_str("?return_to=");
    for b in target.bytes() {
        // Python's `quote(target, safe="/")`: unreserved characters and `/` stay.
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
    out
}

/// `401 session_required`: a script's request on a `session` route without a
/// usable session (the login is for browsers).
pub fn session_required() -> Problem {
    let mut problem = Problem::plain(
        StatusCode::UNAUTHORIZED,
        "session_required",
        "Session required",
        "This route requires a signed-in browser session; sign in at /login.".into(),
    );
    problem.www_authenticate = Some("Session realm=\"bastion\"");
    problem
}

/// The answer to a request without a usable session: a navigation through the
/// gateway door (`navigation`) is `303 See Other` to the login
/// ([`login_location`] of `target`), anything else [`session_required`].
pub fn refusal(navigation: bool, target: &str) -> Problem {
    if !navigation {
        return session_required();
    }
    let mut problem = Problem::plain(
        StatusCode::SEE_OTHER,
        "session_required",
        "Session required",
        "Sign in to continue.".into(),
    );
    // Built from URL characters only: always a valid header value.
    if let Ok(location) = HeaderValue::from_str(&login_location(target)) {
        problem.headers.push((LOCATION, location));
    } else {
        problem
            .headers
            .push((LOCATION, HeaderValue::from_static(LOGIN_PATH)));
    }
    problem
}

// -- bastion's own cookies never cross to an upstream -------------------------------

fn own_name(name: &[u8]) -> bool {
    let name = name.trim_ascii();
    name.len() >= OWN_PREFIX.len() && name[..OWN_PREFIX.len()].eq_ignore_ascii_case(OWN_PREFIX)
}

fn holds_own(value: &[u8]) -> bool {
    value
        .windows(OWN_PREFIX.len())
        .any(|w| w.eq_ignore_ascii_case(OWN_PREFIX))
}

/// Remove bastion's own cookies (`__Host-bastion_*`, any case) from the
/// request's `Cookie` headers, keeping every other pair in order; a header left
/// empty goes. Headers without one are left untouched (no allocation).
pub fn strip_own_cookies(headers: &mut HeaderMap) {
    if !headers
        .get_all(COOKIE)
        .iter()
        .any(|v| holds_own(v.as_bytes()))
    {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| {
            let pairs: Vec<&[u8]> = value
                .as_bytes()
                .split(|b| *b == b';')
                .map(<[u8]>::trim_ascii)
                .filter(|pair| !pair.is_empty())
                .filter(|pair| {
                    let name = pair.split(|b| *b == b'=').next().unwrap_or_default();
                    !own_name(name)
                })
                .collect();
            if pairs.is_empty() {
                return None;
            }
            HeaderValue::from_bytes(&pairs.join(&b"; "[..])).ok()
        })
        .collect();
    headers.remove(COOKIE);
    for value in kept {
        headers.append(COOKIE, value);
    }
}

/// Remove every `Set-Cookie` of an upstream's response that would set one of
/// bastion's own cookies (session fixation by a compromised app).
pub fn drop_own_set_cookies(headers: &mut HeaderMap) {
    let own = |v: &HeaderValue| {
        let name = v
            .as_bytes()
            .split(|b| *b == b'=')
            .next()
            .unwrap_or_default();
        own_name(name)
    };
    if !headers.get_all(SET_COOKIE).iter().any(own) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(SET_COOKIE)
        .iter()
        .filter(|v| !own(v))
        .cloned()
        .collect();
    headers.remove(SET_COOKIE);
    for value in kept {
        headers.append(SET_COOKIE, value);
    }
}

#[cfg(test)]
mod tests;
