//! The process-wide native caches the Python control plane fills and
//! invalidates: API keys by digest, verified tokens by SHA-256 of the token,
//! bastion's signing keys by kid, and revoked `jti`s until they expire.
//!
//! Python pushes what *it* accepted (an API key record when its own cache
//! fills, a token after it verified it: signature, claims, deny-list, client
//! status), and every change-feed delivery of `api-keys`, `clients`,
//! `signing-keys` and `revoked-tokens` drops entries here at once. A miss is
//! never an answer: the request is deferred to Python (concurrent misses of
//! one key wait for the first one's lookup, `miss`). API keys Python refused
//! are remembered briefly, and any `api-keys` change forgets them all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use ring::digest;
use serde_json::{Map, Value};

use super::api_key::{ApiKeyRecord, CachedKey, Digester};
use super::issuers::IssuerKeys;
use super::jwt::{self, JwtError, KeySet, Policy};
use super::miss::{Inflight, Miss, Refused};
use crate::http::Identity;

/// Most API keys held (the Python cache's `POSITIVE_CACHE_MAX`).
pub const API_KEY_CACHE_MAX: usize = 100_000;
/// Most verified tokens held (`DEFAULT_CACHE_SIZE`).
pub const TOKEN_CACHE_MAX: usize = 10_000;
/// How long a token verified natively on a miss is cached (`DEFAULT_CACHE_TTL`).
pub const MISS_TTL: f64 = 60.0;
/// How long an exchanged token valid within the leeway only is held, at most: for
/// the requests that waited for its lookup (the native wait is a second), no longer.
pub const LEEWAY_HOLD: f64 = 1.0;
/// The OAuth client id prefix of tokens exchanged from an API key (RFC 8693).
const API_KEY_CLIENT_PREFIX: &str = "apikey:";

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // A panic while holding a lock cannot leave these maps half-updated in a way
    // that allows more: every writer only inserts or removes whole entries.
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A verified token of bastion's own, as the native path may serve it.
#[derive(Debug, Clone)]
pub struct CachedToken {
    pub identity: Identity,
    /// `identity`'s headers, encoded at the entry's first use (a clone: anew).
    pub headers: crate::mutate::IdentityHeadersMemo,
    /// All claims (the route's `claims` / `roles` rules and `aud` read them).
    pub claims: Map<String, Value>,
    pub jti: String,
    pub client_id: Option<String>,
    /// Unix seconds: `min(exp, pushed + ttl)`.
    pub until: f64,
    /// RFC 8705 `cnf.x5t#S256`: the thumbprint of the client certificate the
    /// token is bound to (accepted only over a connection presenting it).
    pub bound: Option<super::mtls::Thumbprint>,
    /// The trusted external issuer that signed it (`None`: bastion's own).
    pub issuer: Option<Arc<str>>,
    /// A token exchanged from an API key (RFC 8693): the key's own limits.
    pub key_limits: Arc<[super::api_key::KeyLimit]>,
}

/// The API key a token was exchanged from, as Python's `JwtAuthenticator._as_key`
/// found it usable (pushed with the token: `native_push.token_exchanged`).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExchangedKey {
    key_id: String,
    routes: Option<Vec<String>>,
    key_limits: Vec<super::api_key::KeyLimit>,
}

/// Why a pushed token was not cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenPutError {
    /// `authn_configure` was never called.
    NotConfigured,
    /// The native verifier refused it (it must agree with Python's).
    Invalid(JwtError),
    /// Valid, but not for the native path (sender-constrained other than to a
    /// client certificate, exchanged from
    /// an API key, revoked meanwhile, unusable `sub`/`scope`, already ended).
    NotNative(&'static str),
}

impl TokenPutError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotConfigured => "not_configured",
            Self::Invalid(error) => error.reason(),
            Self::NotNative(why) => why,
        }
    }
}

/// Every native authentication cache (one per process: [`caches`]).
pub struct Caches {
    digester: RwLock<Digester>,
    api_keys: RwLock<HashMap<[u8; 32], Arc<CachedKey>>>,
    /// Digests Python refused (no such key, never a valid key), until when.
    refused: RwLock<Refused>,
    /// API key lookups in flight (concurrent misses of one digest coalesce).
    inflight: Arc<Inflight>,
    /// Uses of keys dropped from the cache since the last drain (key id → time).
    dropped_uses: Mutex<HashMap<String, f64>>,
    policy: RwLock<Option<Policy>>,
    signing_keys: RwLock<Arc<KeySet>>,
    tokens: RwLock<HashMap<[u8; 32], Arc<CachedToken>>>,
    revoked: RwLock<HashMap<String, f64>>,
    /// OAuth clients Python found active, until when (Unix seconds).
    active_clients: RwLock<HashMap<String, f64>>,
    /// OAuth clients Python found disabled or deleted (a `client` lookup), until
    /// when (Unix seconds); dropped with the client's change, as the active ones.
    inactive_clients: RwLock<HashMap<String, f64>>,
    /// Whether an uncached token may be verified natively (Python turns it on
    /// only where every revocation reaches the native deny-list).
    verify_misses: AtomicBool,
    /// Bumped by every client change (see [`Self::token_verify_miss`]).
    clients_epoch: AtomicU64,
    /// Whether Python follows every invalidation channel (its own cache
    /// trusts hits only then); tokens are served natively only meanwhile.
    following: AtomicBool,
    /// The key sets of trusted external issuers (`super::issuers`).
    issuer_keys: IssuerKeys,
}

impl Default for Caches {
    fn default() -> Self {
        Self::new()
    }
}

/// The certificate a token's `cnf` binds it to (`bastion.gateway.authn.mtls.check_binding`):
/// none without `cnf`, with a `null` or an empty one or `{"x5t#S256": null}`;
/// `{"x5t#S256": <base64url SHA-256>}` binds to that certificate. Any other `cnf` (a
/// DPoP `jkt`, another member, a thumbprint no certificate can have) is refused
/// whatever the connection (`super::binding::check`): not cached.
pub(super) fn certificate_binding(
    cnf: Option<&Value>,
) -> Result<Option<super::mtls::Thumbprint>, TokenPutError> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let not_native = TokenPutError::NotNative("sender_constrained");
    let Some(cnf) = cnf.filter(|cnf| !cnf.is_null()) else {
        return Ok(None);
    };
    let Value::Object(members) = cnf else {
        return Err(not_native);
    };
    if members.is_empty() {
        return Ok(None);
    }
    match (members.len(), members.get("x5t#S256")) {
        (1, Some(Value::Null)) => Ok(None),
        (1, Some(Value::String(x5t))) => URL_SAFE_NO_PAD
            .decode(x5t)
            .ok()
            .and_then(|raw| raw.try_into().ok())
            // Canonical base64url only: Python compares the strings.
            .filter(|thumb: &[u8; 32]| URL_SAFE_NO_PAD.encode(thumb) == *x5t)
            .map(Some)
            .ok_or(not_native),
        _ => Err(not_native),
    }
}

/// A native miss of the OAuth client `client_id`'s status: lead its `client`
/// lookup (`crate::lookup`), or wait for the one in flight — every token of
/// one client shares it.
pub fn client_miss(client_id: &str) -> Miss {
    static INFLIGHT: std::sync::OnceLock<Arc<Inflight>> = std::sync::OnceLock::new();
    INFLIGHT
        .get_or_init(Arc::default)
        .miss(token_digest(client_id.as_bytes()))
}

/// A native miss of a token exchanged from an API key: lead its `exchanged`
/// lookup, or wait for the one in flight.
pub fn exchanged_miss(token: &[u8]) -> Miss {
    static INFLIGHT: std::sync::OnceLock<Arc<Inflight>> = std::sync::OnceLock::new();
    INFLIGHT.get_or_init(Arc::default).miss(token_digest(token))
}

/// A native miss of bastion's own signing key `kid`: lead its `signing_key`
/// lookup, or wait for the one in flight.
pub fn signing_key_miss(kid: &str) -> Miss {
    static INFLIGHT: std::sync::OnceLock<Arc<Inflight>> = std::sync::OnceLock::new();
    INFLIGHT
        .get_or_init(Arc::default)
        .miss(token_digest(kid.as_bytes()))
}

/// SHA-256 of a token: the verified-token cache's key.
pub fn token_digest(token: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, token).as_ref());
    out
}

impl Caches {
    pub fn new() -> Caches {
        Caches {
            digester: RwLock::new(Digester::Plain),
            api_keys: RwLock::new(HashMap::new()),
            refused: RwLock::new(Refused::default()),
            inflight: Arc::new(Inflight::default()),
            dropped_uses: Mutex::new(HashMap::new()),
            policy: RwLock::new(None),
            signing_keys: RwLock::new(Arc::new(KeySet::default())),
            tokens: RwLock::new(HashMap::new()),
            revoked: RwLock::new(HashMap::new()),
            active_clients: RwLock::new(HashMap::new()),
            inactive_clients: RwLock::new(HashMap::new()),
            verify_misses: AtomicBool::new(false),
            clients_epoch: AtomicU64::new(0),
            following: AtomicBool::new(false),
            issuer_keys: IssuerKeys::default(),
        }
    }

    /// Set bastion's issuer, leeway, maximum token lifetime and API key pepper;
    /// everything cached under the previous configuration is dropped (and its
    /// unreported uses).
    pub fn configure(&self, policy: Policy, pepper: Option<&[u8]>) {
        *write(&self.digester) = Digester::new(pepper);
        *write(&self.policy) = Some(policy);
        self.api_keys_clear();
        // A new configuration is a new start: uses recorded before it are not reported.
        let _ = self.api_keys_used();
        self.tokens_clear();
        self.issuer_keys.clear();
    }

    /// The key sets of trusted external issuers Python pushed.
    pub fn issuer_keys(&self) -> &IssuerKeys {
        &self.issuer_keys
    }

    /// Whether uncached tokens may be verified natively now: Python allowed it
    /// and follows every invalidation channel.
    pub fn misses_verifiable(&self) -> bool {
        self.verify_misses.load(Ordering::SeqCst) && self.following()
    }

    // -- API keys -----------------------------------------------------------

    /// The stored digest of a presented key under the configured pepper.
    pub fn api_key_digest(&self, key: &[u8]) -> [u8; 32] {
        read(&self.digester).digest(key)
    }

    /// Cache `record` under `digest` for `ttl` seconds from `now`.
    pub fn api_key_put(&self, digest: [u8; 32], record: ApiKeyRecord, now: f64, ttl: f64) {
        let entry = Arc::new(CachedKey::new(record, now + ttl.max(0.0)));
        let mut keys = write(&self.api_keys);
        if keys.len() >= API_KEY_CACHE_MAX && !keys.contains_key(&digest) {
            self.keep_uses(keys.drain().map(|(_, key)| key));
        }
        if let Some(previous) = keys.insert(digest, entry) {
            self.keep_uses([previous]);
        }
        drop(keys);
        write(&self.refused).remove(&digest);
        self.inflight.settled(&digest);
    }

    /// Remember that Python refused the key with this digest (unknown, or a
    /// format that can never be valid) for `ttl` seconds from `now`.
    pub fn api_key_refuse(&self, digest: [u8; 32], now: f64, ttl: f64) {
        write(&self.refused).insert(digest, now + ttl.max(0.0));
        self.inflight.settled(&digest);
    }

    /// Whether the key with this digest is one Python refused, at `now`.
    pub fn api_key_refused(&self, digest: &[u8; 32], now: f64) -> bool {
        read(&self.refused).contains(digest, now)
    }

    pub fn api_keys_refused_len(&self) -> usize {
        read(&self.refused).len()
    }

    /// A native miss of `digest`: lead its lookup (defer), wait for the one in
    /// flight, or defer at once (see [`super::miss`]).
    pub fn api_key_miss(&self, digest: [u8; 32]) -> Miss {
        self.inflight.miss(digest)
    }

    fn keep_uses(&self, dropped: impl IntoIterator<Item = Arc<CachedKey>>) {
        let mut uses = self
            .dropped_uses
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for key in dropped {
            if let Some(at) = key.take_last_used() {
                let latest = uses.entry(key.id.clone()).or_insert(at);
                *latest = latest.max(at);
            }
        }
    }

    /// The keys used natively since the last call, with their latest use (Unix
    /// seconds): Python writes them with its own batched last-used times.
    pub fn api_keys_used(&self) -> Vec<(String, f64)> {
        let mut uses: HashMap<String, f64> = std::mem::take(
            &mut *self
                .dropped_uses
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for key in read(&self.api_keys).values() {
            if let Some(at) = key.take_last_used() {
                let latest = uses.entry(key.id.clone()).or_insert(at);
                *latest = latest.max(at);
            }
        }
        uses.into_iter().collect()
    }

    pub fn api_key_get(&self, digest: &[u8; 32]) -> Option<Arc<CachedKey>> {
        read(&self.api_keys).get(digest).cloned()
    }

    /// Drop the key `key_id` (and the tokens exchanged from it).
    pub fn api_key_drop(&self, key_id: &str) {
        let mut dropped = Vec::new();
        write(&self.api_keys).retain(|_, key| {
            let keep = key.id != key_id;
            if !keep {
                dropped.push(key.clone());
            }
            keep
        });
        self.keep_uses(dropped);
        // Any change of any key may make a refused digest usable (a key created,
        // re-enabled): refusals are cheap to learn again, so all go.
        write(&self.refused).clear();
        self.tokens_forget_client(&format!("{API_KEY_CLIENT_PREFIX}{key_id}"));
    }

    pub fn api_keys_clear(&self) {
        let dropped: Vec<_> = write(&self.api_keys).drain().map(|(_, key)| key).collect();
        self.keep_uses(dropped);
        write(&self.refused).clear();
    }

    pub fn api_keys_len(&self) -> usize {
        read(&self.api_keys).len()
    }

    // -- signing keys and tokens ----------------------------------------------

    /// Replace bastion's signing keys (a JWKS document); every cached token is
    /// dropped. Returns how many keys were taken.
    pub fn signing_keys_set(&self, jwks: &str) -> Result<usize, String> {
        let (keys, _skipped) = KeySet::from_jwks(jwks)?;
        let count = keys.len();
        *write(&self.signing_keys) = Arc::new(keys);
        self.tokens_clear();
        Ok(count)
    }

    pub fn signing_key_known(&self, kid: &str) -> bool {
        read(&self.signing_keys).get(kid).is_some()
    }

    pub fn set_following(&self, following: bool) {
        self.following.store(following, Ordering::SeqCst);
        if !following {
            self.tokens_clear();
        }
    }

    pub fn following(&self) -> bool {
        self.following.load(Ordering::SeqCst)
    }

    /// Cache `token`, exchanged from the API key `key` (JSON: `key_id`, `routes`,
    /// `key_limits`), which Python accepted as that key: verified natively, its
    /// `client_id` `apikey:<key_id>` (and its `key_id` claim, if any, the same);
    /// its identity acts as the key (its id, routes and limits). Dropped with the
    /// key's change (`tokens_forget_client("apikey:<id>")`, the `api-keys` channel).
    pub fn token_put_exchanged(
        &self,
        token: &str,
        key: &str,
        now: f64,
        ttl: f64,
    ) -> Result<(), TokenPutError> {
        let key: ExchangedKey =
            serde_json::from_str(key).map_err(|_| TokenPutError::NotNative("invalid_key"))?;
        let mut entry = self.verified_as(token, now, ttl, true)?;
        if entry.until <= now {
            // Valid within the leeway only: Python caches nothing, but the requests
            // that waited for this lookup judge with it — held a second at most, and
            // never past the leeway.
            let leeway = read(&self.policy).as_ref().map_or(0.0, |p| p.leeway);
            let exp = entry
                .claims
                .get("exp")
                .and_then(Value::as_f64)
                .unwrap_or(now);
            entry.until = (now + LEEWAY_HOLD).min(exp + leeway);
            if entry.until <= now {
                return Err(TokenPutError::NotNative("ended"));
            }
        }
        let client = format!("{API_KEY_CLIENT_PREFIX}{}", key.key_id);
        let key_claim_ok = match entry.claims.get("key_id") {
            None => true,
            Some(Value::String(id)) => *id == key.key_id,
            Some(_) => false,
        };
        if key.key_id.is_empty() || entry.client_id.as_deref() != Some(&client) || !key_claim_ok {
            return Err(TokenPutError::NotNative("invalid_claim"));
        }
        entry.identity.key_id = Some(key.key_id);
        entry.identity.routes = key.routes;
        entry.key_limits = Arc::from(key.key_limits);
        self.insert_token(token, Arc::new(entry), now);
        Ok(())
    }

    /// Verify `token` natively and cache it until `min(exp, now + ttl)`.
    ///
    /// Python calls this after it accepted the token (so the deny-list and the
    /// client's status were checked there); the native verifier must agree.
    pub fn token_put(&self, token: &str, now: f64, ttl: f64) -> Result<(), TokenPutError> {
        let entry = self.verified(token, now, ttl)?;
        if entry.until <= now {
            return Err(TokenPutError::NotNative("ended"));
        }
        self.insert_token(token, Arc::new(entry), now);
        Ok(())
    }

    /// A token not in the cache, verified natively: served (and cached) only
    /// when Python turned this on, follows every channel, and found the token's
    /// client active within the token cache's lifetime. A token valid within the
    /// leeway only (past its `exp`) is served and not cached, as Python's
    /// `_remember` keeps nothing that has ended.
    pub fn token_verify_miss(&self, token: &str, now: f64) -> Option<Arc<CachedToken>> {
        if !self.verify_misses.load(Ordering::SeqCst) || !self.following() {
            return None;
        }
        let entry = self.verified(token, now, MISS_TTL).ok()?;
        let client = entry.client_id.as_deref()?;
        // A client change racing with this verification must not leave the token
        // cached: the epoch says whether one happened meanwhile.
        let epoch = self.clients_epoch.load(Ordering::SeqCst);
        let active = read(&self.active_clients)
            .get(client)
            .is_some_and(|until| *until > now);
        if !active {
            return None;
        }
        let entry = Arc::new(entry);
        if entry.until <= now {
            return Some(entry);
        }
        self.insert_token(token, entry.clone(), now);
        if self.clients_epoch.load(Ordering::SeqCst) != epoch {
            write(&self.tokens).remove(&token_digest(token.as_bytes()));
            return None;
        }
        Some(entry)
    }

    /// Allow native verification of uncached tokens (see [`Self::token_verify_miss`]).
    pub fn set_verify_misses(&self, on: bool) {
        self.verify_misses.store(on, Ordering::SeqCst);
    }

    /// Remember that Python found the OAuth client `client_id` disabled or
    /// deleted, for `ttl` seconds (or until the client changes): its tokens are
    /// refused natively (`client_disabled`).
    pub fn client_inactive(&self, client_id: &str, now: f64, ttl: f64) {
        write(&self.active_clients).remove(client_id);
        write(&self.inactive_clients).remove(client_id);
        let mut clients = write(&self.inactive_clients);
        if clients.len() >= TOKEN_CACHE_MAX && !clients.contains_key(client_id) {
            clients.retain(|_, until| *until > now);
            if clients.len() >= TOKEN_CACHE_MAX {
                clients.clear();
            }
        }
        clients.insert(client_id.to_owned(), now + ttl.max(0.0));
    }

    /// What Python last said of the OAuth client `client_id` at `now`: active
    /// (`Some(true)`), disabled or deleted (`Some(false)`), or nothing held.
    pub fn client_state(&self, client_id: &str, now: f64) -> Option<bool> {
        let held = |clients: &RwLock<HashMap<String, f64>>| {
            read(clients)
                .get(client_id)
                .is_some_and(|until| *until > now)
        };
        if held(&self.active_clients) {
            Some(true)
        } else if held(&self.inactive_clients) {
            Some(false)
        } else {
            None
        }
    }

    /// Remember that Python found the OAuth client `client_id` active, for `ttl` seconds.
    pub fn client_active(&self, client_id: &str, now: f64, ttl: f64) {
        write(&self.inactive_clients).remove(client_id);
        let mut clients = write(&self.active_clients);
        if clients.len() >= TOKEN_CACHE_MAX && !clients.contains_key(client_id) {
            clients.retain(|_, until| *until > now);
            if clients.len() >= TOKEN_CACHE_MAX {
                clients.clear();
            }
        }
        clients.insert(client_id.to_owned(), now + ttl.max(0.0));
    }

    pub(super) fn verified(
        &self,
        token: &str,
        now: f64,
        ttl: f64,
    ) -> Result<CachedToken, TokenPutError> {
        self.verified_as(token, now, ttl, false)
    }

    /// [`Self::verified`]; `exchanged`: a token exchanged from an API key is
    /// taken too (its key is the caller's to attach).
    fn verified_as(
        &self,
        token: &str,
        now: f64,
        ttl: f64,
        exchanged: bool,
    ) -> Result<CachedToken, TokenPutError> {
        let policy = read(&self.policy)
            .clone()
            .ok_or(TokenPutError::NotConfigured)?;
        let keys = read(&self.signing_keys).clone();
        let claims = jwt::verify(token, &keys, &policy, now).map_err(TokenPutError::Invalid)?;
        let bound = certificate_binding(claims.get("cnf"))?;
        let client_id = match claims.get("client_id") {
            Some(Value::String(id)) => id.clone(),
            _ => return Err(TokenPutError::NotNative("invalid_claim")),
        };
        let from_key =
            client_id.starts_with(API_KEY_CLIENT_PREFIX) || claims.contains_key("key_id");
        if from_key != exchanged {
            return Err(TokenPutError::NotNative(if exchanged {
                "not_exchanged"
            } else {
                "exchanged_from_api_key"
            }));
        }
        let subject = match claims.get("sub") {
            Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
            _ => return Err(TokenPutError::NotNative("invalid_claim")),
        };
        let mut scopes: Vec<String> = match claims.get("scope") {
            None => Vec::new(),
            Some(Value::String(scope)) => scope.split_whitespace().map(str::to_owned).collect(),
            Some(_) => return Err(TokenPutError::NotNative("invalid_claim")),
        };
        scopes.sort();
        scopes.dedup();
        let jti = match claims.get("jti") {
            Some(Value::String(jti)) => jti.clone(),
            _ => return Err(TokenPutError::Invalid(JwtError::MissingClaim)),
        };
        let exp = claims
            .get("exp")
            .and_then(Value::as_f64)
            .ok_or(TokenPutError::Invalid(JwtError::MissingClaim))?;
        // At or before `now` for a token valid within the leeway only: never cached.
        let until = exp.min(now + ttl);
        if self.token_revoked(&jti, now) {
            return Err(TokenPutError::NotNative("revoked"));
        }
        Ok(CachedToken {
            identity: Identity {
                method: "jwt",
                subject: Some(subject),
                client_id: Some(client_id.clone()),
                scopes,
                key_id: None,
                routes: None,
                person: None,
            },
            headers: crate::mutate::IdentityHeadersMemo::default(),
            claims,
            jti,
            client_id: Some(client_id),
            until,
            bound,
            issuer: None,
            key_limits: Arc::from([]),
        })
    }

    pub(super) fn insert_token(&self, token: &str, entry: Arc<CachedToken>, now: f64) {
        let digest = token_digest(token.as_bytes());
        let mut tokens = write(&self.tokens);
        if tokens.len() >= TOKEN_CACHE_MAX && !tokens.contains_key(&digest) {
            tokens.retain(|_, t| t.until > now);
            if tokens.len() >= TOKEN_CACHE_MAX {
                tokens.clear();
            }
        }
        tokens.insert(digest, entry);
    }

    /// The cached token with this digest, if it is still usable at `now`.
    pub fn token_get(&self, digest: &[u8; 32], now: f64) -> Option<Arc<CachedToken>> {
        if !self.following() {
            return None;
        }
        let entry = read(&self.tokens).get(digest).cloned()?;
        if now >= entry.until || self.token_revoked(&entry.jti, now) {
            return None;
        }
        Some(entry)
    }

    /// Deny-list `jti` until `exp` (+ leeway) and drop its cached tokens.
    pub fn token_revoke(&self, jti: &str, exp: f64, now: f64) {
        let leeway = read(&self.policy).as_ref().map_or(0.0, |p| p.leeway);
        let until = exp + leeway;
        if until > now {
            let mut revoked = write(&self.revoked);
            if revoked.len() >= TOKEN_CACHE_MAX {
                revoked.retain(|_, end| *end > now);
            }
            let end = revoked.entry(jti.to_owned()).or_insert(until);
            *end = end.max(until);
        }
        write(&self.tokens).retain(|_, t| t.jti != jti);
    }

    pub fn token_revoked(&self, jti: &str, now: f64) -> bool {
        read(&self.revoked).get(jti).is_some_and(|end| *end > now)
    }

    /// Drop the cached tokens of the OAuth client `client_id`.
    pub fn tokens_forget_client(&self, client_id: &str) {
        self.clients_epoch.fetch_add(1, Ordering::SeqCst);
        write(&self.active_clients).remove(client_id);
        write(&self.inactive_clients).remove(client_id);
        write(&self.tokens).retain(|_, t| t.client_id.as_deref() != Some(client_id));
    }

    /// Drop every cached token and client status (the deny-list stays).
    pub fn tokens_clear(&self) {
        self.clients_epoch.fetch_add(1, Ordering::SeqCst);
        write(&self.active_clients).clear();
        write(&self.inactive_clients).clear();
        write(&self.tokens).clear();
    }

    pub fn tokens_len(&self) -> usize {
        read(&self.tokens).len()
    }

    pub fn token_cached(&self, token: &str) -> bool {
        read(&self.tokens).contains_key(&token_digest(token.as_bytes()))
    }
}
