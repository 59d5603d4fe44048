//! The `limit` step: a route's rate limits and the API key's own, checked
//! together in one store call (the twin of `bastion.gateway.limit`).
//!
//! Each route limit draws from the bucket `"<route>:<per>:<value>"` (the
//! prefix is compiled by Python, `compile/limits.py`), where the value is the
//! request's API key id, subject, OAuth client id, client IP (by
//! [`ip_bucket`]) or the route name; a limit whose value the request lacks
//! does not apply. A key's limits draw from `apikey:<id>:<label>[~burst]`.
//! A risk-flagged requester's limits are divided by the flag's factor
//! (`crate::risk`, [`step_tightened`]); a Redis outage (no connection
//! configured included) is decided by each limit's `fail` ([`outage`]). The decision carries exactly Python's
//! `RateLimit-Policy` / `RateLimit` (and, refused, `Retry-After`) values.

mod gcra;
pub mod outage;
pub mod redis;
pub mod redis_tls;
mod registry;
pub mod shedding;
mod store;

use http::header::{HeaderName, HeaderValue};
use serde_json::Value;

pub use gcra::{ceil_seconds, decide, Decision, Limit, LimitError, MICROSECONDS};
pub use registry::{effective_key_limits, overrides, parse_key_limits, Overrides};
pub use store::{now_us, Bucket, Store, Take};

use std::net::IpAddr;

use crate::client_ip::ip_bucket;
use crate::http::Identity;

/// The bucket prefix of an API key's own limits (Python's `KEY_BUCKET_PREFIX`).
pub const KEY_BUCKET_PREFIX: &str = "apikey:";

/// The IETF `RateLimit` header names, built once (a name from a `&str` is
/// parsed and validated on every call; the gateway also removes these by name).
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// See [`RATELIMIT`].
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// Whose bucket a route limit counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    Key,
    Subject,
    Client,
    Ip,
    Route,
}

impl Per {
    fn parse(text: &str) -> Option<Per> {
        Some(match text {
            "key" => Per::Key,
            "subject" => Per::Subject,
            "client" => Per::Client,
            "ip" => Per::Ip,
            "route" => Per::Route,
            _ => return None,
        })
    }
}

/// One compiled route limit.
#[derive(Debug, Clone)]
pub struct Rule {
    pub per: Per,
    /// `"<route>:<per>:"` (`"<route>:<per>#<n>:"` when the route repeats `per`).
    pub prefix: String,
    pub limit: Limit,
    /// `fail: closed`: while Redis is unreachable, a request this limit applies
    /// to is refused (503) rather than decided locally.
    pub fail_closed: bool,
}

/// Where a route's buckets live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StoreKind {
    /// The in-process [`Store`] (`Store::current()`), shared with Python's limiter.
    #[default]
    Memory,
    /// Redis ([`redis::current()`]; a failure defers the request to Python).
    Redis,
}

/// A route's `limits` section, loaded once per route table.
#[derive(Debug, Clone, Default)]
pub struct RouteLimits {
    pub rules: Vec<Rule>,
    pub store: StoreKind,
    /// `ratelimit.key_limits_fail: closed` (the API key's own limits).
    pub key_fail_closed: bool,
}

/// A `limits` section the native core cannot load (the table is refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionError(pub String);

impl std::fmt::Display for SectionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "limits section: {}", self.0)
    }
}

impl std::error::Error for SectionError {}

impl RouteLimits {
    /// Load the JSON section `compile/limits.py` wrote:
    /// `{"rules": [{"per", "prefix", "rate", "period", "burst", "interval_us", "tolerance_us",
    /// "fail"}], "store": "memory" | "redis", "key_limits_fail"}` (`fail` defaults to
    /// `closed`, as the settings do).
    /// The interval and tolerance Python computed are checked against ours.
    pub fn from_section(section: &Value) -> Result<RouteLimits, SectionError> {
        let rules = section
            .get("rules")
            .and_then(Value::as_array)
            .ok_or_else(|| SectionError("expected {\"rules\": [...]}".into()))?;
        let mut out = Vec::with_capacity(rules.len());
        for (index, rule) in rules.iter().enumerate() {
            let bad = |what: &str| SectionError(format!("rules[{index}]: {what}"));
            let per = rule
                .get("per")
                .and_then(Value::as_str)
                .and_then(Per::parse)
                .ok_or_else(|| bad("per must be key, subject, client, ip or route"))?;
            let prefix = rule
                .get("prefix")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("prefix missing"))?;
            let rate = rule
                .get("rate")
                .and_then(Value::as_u64)
                .ok_or_else(|| bad("rate"))?;
            let period = rule
                .get("period")
                .and_then(Value::as_f64)
                .ok_or_else(|| bad("period"))?;
            let burst = rule
                .get("burst")
                .and_then(Value::as_u64)
                .ok_or_else(|| bad("burst"))?;
            let limit = Limit::new(rate, period, Some(burst), "").map_err(|e| bad(&e.0))?;
            let expect = |name: &str, ours: i64| match rule.get(name).and_then(Value::as_i64) {
                Some(theirs) if theirs != ours => Err(bad(&format!(
                    "{name} {theirs} differs from the native {ours}"
                ))),
                _ => Ok(()),
            };
            expect("interval_us", limit.interval_us)?;
            expect("tolerance_us", limit.tolerance_us)?;
            let fail_closed = fail_closed(rule.get("fail")).map_err(|e| bad(&e))?;
            out.push(Rule {
                per,
                prefix: prefix.to_owned(),
                limit,
                fail_closed,
            });
        }
        let store = match section.get("store").and_then(Value::as_str) {
            None | Some("memory") => StoreKind::Memory,
            Some("redis") => StoreKind::Redis,
            Some(other) => return Err(SectionError(format!("unknown store {other:?}"))),
        };
        let key_fail_closed = fail_closed(section.get("key_limits_fail"))
            .map_err(|e| SectionError(format!("key_limits_fail: {e}")))?;
        Ok(RouteLimits {
            rules: out,
            store,
            key_fail_closed,
        })
    }

    /// Whether one of the limits that apply to this request fails closed
    /// (Python's `fails_closed`: a route limit whose value the request has, or
    /// the key's own limits).
    pub fn fails_closed(
        &self,
        identity: &Identity,
        key_limits: &[Limit],
        client_ip: Option<IpAddr>,
        route_name: &str,
    ) -> bool {
        let mut scratch = String::new();
        self.rules.iter().any(|rule| {
            scratch.clear();
            rule.fail_closed && push_value(&mut scratch, rule.per, identity, client_ip, route_name)
        }) || (self.key_fail_closed && identity.key_id.is_some() && !key_limits.is_empty())
    }
}

/// A `fail` setting: `closed` (the default) or `open`.
fn fail_closed(value: Option<&Value>) -> Result<bool, String> {
    match value.map(Value::as_str) {
        None | Some(Some("closed")) => Ok(true),
        Some(Some("open")) => Ok(false),
        Some(_) => Err("fail must be open or closed".into()),
    }
}

/// The limit step's answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitDecision {
    pub allowed: bool,
    /// Allowed: `ratelimit-policy`, `ratelimit` for the response (replacing any
    /// the upstream sent); refused: the same two, for the 429. Empty when no
    /// limit applied.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Refused: the `Retry-After` seconds (at least 1).
    pub retry_after: Option<u64>,
}

impl LimitDecision {
    /// No limit applied: allowed, no headers.
    pub fn unlimited() -> Self {
        LimitDecision {
            allowed: true,
            headers: Vec::new(),
            retry_after: None,
        }
    }
}

/// Append the request's value for `per` to `key`; `false` when it has none
/// (the limit does not apply).
fn push_value(
    key: &mut String,
    per: Per,
    identity: &Identity,
    client_ip: Option<IpAddr>,
    route_name: &str,
) -> bool {
    let value = match per {
        Per::Ip => match client_ip {
            Some(ip) => {
                key.push_str(&ip_bucket(ip));
                return true;
            }
            None => return false,
        },
        Per::Route => Some(route_name),
        Per::Key => identity.key_id.as_deref(),
        Per::Subject => identity.subject.as_deref(),
        Per::Client => identity.client_id.as_deref().filter(|c| !c.is_empty()),
    };
    match value {
        Some(value) => {
            key.push_str(value);
            true
        }
        None => false,
    }
}

/// The bucket key of one of an API key's own limits.
pub fn key_bucket(key_id: &str, limit: &Limit) -> String {
    let label = limit.label();
    if limit.burst == limit.rate {
        format!("{KEY_BUCKET_PREFIX}{key_id}:{label}")
    } else {
        format!("{KEY_BUCKET_PREFIX}{key_id}:{label}~{}", limit.burst)
    }
}

/// The buckets a request draws from: `(bucket key, limit)` for every route
/// limit whose value the request has, then the key's own limits.
pub fn checks_for<'a>(
    limits: &'a RouteLimits,
    identity: &Identity,
    key_limits: &'a [Limit],
    client_ip: Option<IpAddr>,
    route_name: &str,
) -> Vec<(String, &'a Limit)> {
    let mut checks: Vec<(String, &Limit)> = Vec::with_capacity(limits.rules.len() + 1);
    for rule in &limits.rules {
        let mut key = String::with_capacity(rule.prefix.len() + 40);
        key.push_str(&rule.prefix);
        if push_value(&mut key, rule.per, identity, client_ip, route_name) {
            checks.push((key, &rule.limit));
        }
    }
    if let Some(key_id) = identity.key_id.as_deref() {
        checks.extend(key_limits.iter().map(|l| (key_bucket(key_id, l), l)));
    }
    checks
}

/// Check every applicable limit of the route and the key's own in one store call.
///
/// `key_limits` are the key's effective limits (its operator override if set,
/// else its stored `rate_limits`: see [`effective_key_limits`]); `client_ip`
/// is the client address as resolved through trusted proxies (`crate::client_ip`);
/// `now` is [`now_us`] (or a test clock). A refused request consumes nothing.
pub fn check(
    store: &Store,
    limits: &RouteLimits,
    identity: &Identity,
    key_limits: &[Limit],
    client_ip: Option<IpAddr>,
    route_name: &str,
    now: i64,
) -> LimitDecision {
    let checks = checks_for(limits, identity, key_limits, client_ip, route_name);
    if checks.is_empty() {
        return LimitDecision::unlimited();
    }
    let take = store.take_limits(&checks, 1, now);
    decision_of(&checks, &take, now)
}

/// The shared limiter did not decide and a limit that applies fails closed:
/// Python's 503 `rate_limiter_unavailable` (`problem::Problem::rate_limiter_unavailable`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimiterUnavailable;

/// The limit step with the requester's limits divided by `factor` (its risk
/// flags, `crate::risk`; 1: not flagged), and a Redis failure decided by each
/// limit's `fail` ([`outage`]), as Python's limit step: the route's store
/// ([`StoreKind`]) decides, the in-process one at [`now_us`].
///
/// Python's order: the buckets (their keys from the undivided limits), then
/// the risk factor, then on an outage this node's share. Refused: answer
/// `problem::Problem::rate_limited(&decision)`; allowed: add
/// `decision.headers` to the response after removing the upstream's own
/// `ratelimit` / `ratelimit-policy`.
pub async fn step_tightened(
    limits: &RouteLimits,
    identity: &Identity,
    key_limits: &[Limit],
    client_ip: Option<IpAddr>,
    route_name: &str,
    factor: u64,
) -> Result<LimitDecision, LimiterUnavailable> {
    let checks = checks_for(limits, identity, key_limits, client_ip, route_name);
    if checks.is_empty() {
        return Ok(LimitDecision::unlimited());
    }
    let tightened = divide(&checks, factor);
    let checks: Vec<(String, &Limit)> = match &tightened {
        Some(owned) => checks
            .into_iter()
            .zip(owned)
            .map(|((key, _), limit)| (key, limit))
            .collect(),
        None => checks,
    };
    let local = |checks: &[(String, &Limit)]| {
        let store = Store::current();
        let now = now_us();
        let take = store.take_limits(checks, 1, now);
        decision_of(checks, &take, now)
    };
    if limits.store == StoreKind::Memory {
        return Ok(local(&checks));
    }
    // No connection configured (the table was loaded before the runtime set it
    // up, or after it was removed) is an outage like an unreachable server.
    let failed = match redis::current() {
        Some(limiter) => match limiter.take(&checks, 1).await {
            Ok((take, now)) => {
                outage::outage().succeeded();
                return Ok(decision_of(&checks, &take, now));
            }
            Err(error) => error.to_string(),
        },
        None => "no Redis connection is configured for the native limiter".to_owned(),
    };
    let closed = limits.fails_closed(identity, key_limits, client_ip, route_name);
    outage::outage().failed(&failed, closed);
    if closed {
        return Err(LimiterUnavailable);
    }
    // This node alone decides, with its share of each limit (Python's `_local_share`).
    let share = divide(&checks, outage::outage().nodes());
    Ok(match &share {
        Some(owned) => {
            let shared: Vec<(String, &Limit)> = checks
                .iter()
                .zip(owned)
                .map(|((key, _), limit)| (key.clone(), limit))
                .collect();
            local(&shared)
        }
        None => local(&checks),
    })
}

/// Every limit of `checks` divided by `parts` (`None`: `parts` is 1, unchanged).
fn divide(checks: &[(String, &Limit)], parts: u64) -> Option<Vec<Limit>> {
    (parts > 1).then(|| {
        checks
            .iter()
            .map(|(_, limit)| limit.divided(parts))
            .collect()
    })
}

/// The decisions and headers of a [`Take`], exactly as Python's `evaluate` +
/// `bastion.ratelimit.headers` derive them from the TATs.
pub fn decision_of(checks: &[(String, &Limit)], take: &Take, now: i64) -> LimitDecision {
    let cost = 1;
    let decisions: Vec<Decision> = checks
        .iter()
        .zip(&take.tats)
        .map(|((_, limit), tat)| {
            let d = decide(*tat, now, limit, cost);
            if take.admitted || !d.allowed {
                d
            } else {
                decide(*tat, now, limit, 0) // refused elsewhere: nothing consumed here
            }
        })
        .collect();
    let mut policy = String::with_capacity(40 * checks.len());
    let mut state = String::with_capacity(40 * checks.len());
    for (index, ((_, limit), d)) in checks.iter().zip(&decisions).enumerate() {
        if index > 0 {
            policy.push_str(", ");
            state.push_str(", ");
        }
        policy.push_str(limit.policy_item());
        // `{quoted};r={remaining};t={reset}` written by hand: `write!`'s formatting
        // machinery was most of this function's ~1,700 instructions a request.
        state.push_str(limit.quoted());
        state.push_str(";r=");
        push_decimal(&mut state, d.remaining);
        state.push_str(";t=");
        push_decimal(&mut state, ceil_seconds(d.reset_after_us));
    }
    let mut headers = Vec::with_capacity(2);
    for (name, value) in [(&RATELIMIT_POLICY, policy), (&RATELIMIT, state)] {
        // Printable ASCII by construction (labels are checked when a Limit is built).
        // The String's buffer becomes the value's (validated, not copied).
        if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(value.into_bytes())) {
            headers.push((name.clone(), value));
        }
    }
    let retry_after = (!take.admitted).then(|| {
        let longest = decisions
            .iter()
            .map(|d| d.retry_after_us)
            .max()
            .unwrap_or(0);
        ceil_seconds(longest).max(1) as u64
    });
    LimitDecision {
        allowed: take.admitted,
        headers,
        retry_after,
    }
}

/// `n` in decimal, as `Display` spells it (a `-` before a negative number).
fn push_decimal(out: &mut String, n: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        out.push('-');
    }
    for &digit in &digits[at..] {
        out.push(char::from(digit));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decimals_are_display_s() {
        for n in [
            0,
            1,
            9,
            10,
            99,
            100,
            12_345,
            -1,
            -10,
            -987,
            i64::MAX,
            i64::MIN,
        ] {
            let mut out = String::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string());
        }
    }

    fn section() -> RouteLimits {
        RouteLimits::from_section(&json!({"rules": [
            {"per": "key", "prefix": "orders:key:", "rate": 2, "period": 60.0, "burst": 2},
            {"per": "ip", "prefix": "orders:ip:", "rate": 10, "period": 60.0, "burst": 10,
             "interval_us": 6_000_000, "tolerance_us": 60_000_000},
        ]}))
        .expect("valid section")
    }

    fn key_identity() -> Identity {
        Identity {
            method: "api_key",
            subject: Some("user-1".into()),
            key_id: Some("k1".into()),
            ..Identity::default()
        }
    }

    fn header_strings(d: &LimitDecision) -> Vec<(String, String)> {
        d.headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect()
    }

    #[test]
    fn route_limits_then_refusal_with_python_headers() {
        let store = Store::new();
        let limits = section();
        let now = 1_700_000_000 * MICROSECONDS;
        let id = key_identity();
        let first = check(
            &store,
            &limits,
            &id,
            &[],
            "2001:db8::1".parse().ok(),
            "orders",
            now,
        );
        assert!(first.allowed);
        assert_eq!(
            header_strings(&first),
            vec![
                (
                    "ratelimit-policy".into(),
                    "\"2/minute\";q=2;w=60, \"10/minute\";q=10;w=60".into()
                ),
                (
                    "ratelimit".into(),
                    "\"2/minute\";r=1;t=30, \"10/minute\";r=9;t=6".into()
                ),
            ]
        );
        assert!(
            check(
                &store,
                &limits,
                &id,
                &[],
                "2001:db8::2".parse().ok(),
                "orders",
                now
            )
            .allowed
        );
        let refused = check(
            &store,
            &limits,
            &id,
            &[],
            "2001:db8::3".parse().ok(),
            "orders",
            now,
        );
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Some(30));
        assert_eq!(
            header_strings(&refused)[1].1,
            "\"2/minute\";r=0;t=60, \"10/minute\";r=8;t=12"
        );
        assert_eq!(store.len(), 2); // orders:key:k1 and orders:ip:2001:db8::/64
    }

    #[test]
    fn key_limits_and_missing_values() {
        let store = Store::new();
        let anonymous = Identity::default();
        let limits = section();
        // No key, no ip: nothing applies, no headers.
        let none = check(&store, &limits, &anonymous, &[], None, "orders", 0);
        assert_eq!(none, LimitDecision::unlimited());
        let own = parse_key_limits(&json!([{"rate": "1/second", "burst": 3}])).expect("valid");
        assert_eq!(key_bucket("k1", &own[0]), "apikey:k1:1/second~3");
        let id = key_identity();
        let empty = RouteLimits::default();
        let admitted = (0..5)
            .filter(|_| check(&store, &empty, &id, &own, None, "r", 10_000_000).allowed)
            .count();
        assert_eq!(admitted, 3);
    }

    #[tokio::test]
    async fn step_uses_the_routes_store_and_an_unconfigured_redis_is_an_outage() {
        let memory = section();
        let id = key_identity();
        let first = step_tightened(&memory, &id, &[], None, "orders", 1).await;
        assert!(first.is_ok_and(|d| d.allowed && d.headers.len() == 2));
        redis::configure(None);
        // Every rule fails open: decided in the local store, as Python's fallback.
        let redis = RouteLimits::from_section(&json!({"store": "redis", "rules": [
            {"per": "key", "prefix": "orders:key:", "rate": 2, "period": 60.0, "burst": 2,
             "fail": "open"}]}))
        .expect("valid section");
        let open = step_tightened(&redis, &id, &[], None, "orders-open", 1).await;
        assert!(open.is_ok_and(|d| d.allowed));
        // The key's own limits fail closed by default: Python's 503.
        let own = parse_key_limits(&json!([{"rate": "1/second"}])).expect("valid");
        let closed = step_tightened(&redis, &id, &own, None, "orders-closed", 1).await;
        assert_eq!(closed, Err(LimiterUnavailable));
    }

    #[test]
    fn bad_sections_are_refused() {
        let err = RouteLimits::from_section(&json!({"rules": [
            {"per": "ip", "prefix": "r:ip:", "rate": 3, "period": 1.0, "burst": 3, "interval_us": 1}]}))
        .map(|_| ());
        assert_eq!(
            err,
            Err(SectionError(
                "rules[0]: interval_us 1 differs from the native 333333".into()
            ))
        );
        assert!(RouteLimits::from_section(&json!({"rules": [{"per": "who"}]})).is_err());
        let redis = RouteLimits::from_section(&json!({"rules": [], "store": "redis"}));
        assert_eq!(redis.map(|r| r.store), Ok(StoreKind::Redis));
        assert!(RouteLimits::from_section(&json!({"rules": [], "store": "disk"})).is_err());
    }
}
