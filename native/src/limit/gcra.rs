//! GCRA on integer microseconds: the twin of `bastion.ratelimit.gcra`.
//!
//! A limit of `rate` per `period` with a bucket of `burst` has an emission
//! interval `T = round(period * 1e6 / rate)` µs and a tolerance `tau = burst * T`.
//! A key's whole state is its theoretical arrival time (TAT); a request costing
//! `c` is admitted at `now` iff `max(TAT, now) + c*T - tau <= now`.

use std::fmt;

/// Microseconds per second.
pub const MICROSECONDS: i64 = 1_000_000;

/// The period units and their seconds, in the order Python's `UNITS` lists them.
const UNITS: [(&str, i64); 4] = [
    ("second", 1),
    ("minute", 60),
    ("hour", 3600),
    ("day", 86400),
];

/// The largest tolerance Python accepts (kept exact by Lua's doubles).
const MAX_TOLERANCE_US: i64 = 1 << 50;

/// A limit that cannot be built; the message is Python's `ValueError` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitError(pub String);

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LimitError {}

/// `rate` requests per `period` seconds with a bucket of `burst` (Python's `Limit`).
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    pub rate: u64,
    pub period: f64,
    pub burst: u64,
    pub name: String,
    pub interval_us: i64,
    pub tolerance_us: i64,
    /// The label, the quoted policy name (RFC 9651 String) and the `RateLimit-Policy` item.
    label: String,
    quoted: String,
    policy_item: String,
}

impl Limit {
    /// Build a limit as Python's `Limit.__post_init__` does (same checks, same rounding).
    pub fn new(rate: u64, period: f64, burst: Option<u64>, name: &str) -> Result<Self, LimitError> {
        if rate < 1 {
            return Err(LimitError(format!(
                "rate must be a positive integer, not {rate}"
            )));
        }
        if !period.is_finite() || period <= 0.0 {
            return Err(LimitError(format!(
                "period must be a positive number of seconds, not {period}"
            )));
        }
        let burst = burst.unwrap_or(rate);
        if burst < 1 {
            return Err(LimitError(format!(
                "burst must be a positive integer, not {burst}"
            )));
        }
        // Python: round(period * 1e6 / rate), banker's rounding on the double.
        let interval = round_half_even(period * MICROSECONDS as f64 / rate as f64);
        if interval < 1.0 {
            return Err(LimitError(format!(
                "{rate} per {period}s is too fast: at most one request per microsecond can be limited"
            )));
        }
        let interval_us = interval as i64;
        let tolerance = i64::try_from(burst)
            .ok()
            .and_then(|b| b.checked_mul(interval_us))
            .filter(|t| *t <= MAX_TOLERANCE_US)
            .ok_or_else(|| LimitError(format!("burst {burst} over {period}s is too large")))?;
        let mut limit = Limit {
            rate,
            period,
            burst,
            name: name.to_owned(),
            interval_us,
            tolerance_us: tolerance,
            label: String::new(),
            quoted: String::new(),
            policy_item: String::new(),
        };
        limit.label = limit.make_label();
        limit.quoted = sf_string(&limit.label)?;
        let window = ((tolerance + MICROSECONDS - 1) / MICROSECONDS).max(1);
        limit.policy_item = format!("{};q={burst};w={window}", limit.quoted);
        Ok(limit)
    }

    /// Parse `"100/minute"`, `"10/min"`, `"5/s"` like Python's `Limit.parse`.
    pub fn parse(text: &str, burst: Option<u64>, name: &str) -> Result<Self, LimitError> {
        let lower = text.to_lowercase();
        let invalid = || {
            LimitError(format!(
                "invalid rate limit {}: expected '<count>/<unit>' such as '100/minute' \
                 (units: second, minute, hour, day)",
                py_repr(text)
            ))
        };
        let (count, word) = lower.split_once('/').ok_or_else(invalid)?;
        let (count, word) = (count.trim(), word.trim());
        if count.is_empty()
            || !count.bytes().all(|b| b.is_ascii_digit())
            || word.is_empty()
            || !word.bytes().all(|b| b.is_ascii_lowercase())
        {
            return Err(invalid());
        }
        let unit = unit_name(word)
            .or_else(|| {
                (word.len() > 2 && word.ends_with('s'))
                    .then(|| unit_name(&word[..word.len() - 1]))
                    .flatten()
            })
            .ok_or_else(|| {
                LimitError(format!(
                    "invalid rate limit {}: unknown unit {} (use second, minute, hour or day)",
                    py_repr(text),
                    py_repr(word)
                ))
            })?;
        let count: u64 = count.parse().map_err(|_| invalid())?;
        if count < 1 {
            return Err(LimitError(format!(
                "invalid rate limit {}: the count must be at least 1",
                py_repr(text)
            )));
        }
        let seconds = UNITS
            .iter()
            .find(|(n, _)| *n == unit)
            .map_or(1, |(_, s)| *s);
        Limit::new(count, seconds as f64, burst, name)
    }

    /// `name` if set, else `100/minute` (or `7/90s` for another period).
    pub fn label(&self) -> &str {
        &self.label
    }

    fn make_label(&self) -> String {
        if !self.name.is_empty() {
            return self.name.clone();
        }
        for (unit, seconds) in UNITS {
            if self.period == seconds as f64 {
                return format!("{}/{unit}", self.rate);
            }
        }
        format!("{}/{}s", self.rate, py_g(self.period))
    }

    /// This limit shared by `parts` (risk tightening, fail-open share): Python's
    /// `divided`. Divided so far that one request would wait past the bound on
    /// a bucket (`MAX_TOLERANCE_US`, ~35 years), the furthest division within
    /// it: a division valid for `p` parts is valid for fewer, so the search is
    /// a bisection, the same in both planes.
    pub fn divided(&self, parts: u64) -> Limit {
        let split = |p: u64| {
            Limit::new(
                self.rate,
                self.period * p as f64,
                Some((self.burst / p).max(1)),
                &self.label,
            )
        };
        if parts <= 1 {
            return self.clone();
        }
        if let Ok(limit) = split(parts) {
            return limit;
        }
        let (mut low, mut high) = (1, parts);
        while high - low > 1 {
            let mid = low + (high - low) / 2;
            if split(mid).is_ok() {
                low = mid;
            } else {
                high = mid;
            }
        }
        split(low).unwrap_or_else(|_| self.clone())
    }

    /// The quoted policy name, as the `RateLimit` header items start.
    pub fn quoted(&self) -> &str {
        &self.quoted
    }

    /// This limit's `RateLimit-Policy` item: `"100/minute";q=100;w=60`.
    pub fn policy_item(&self) -> &str {
        &self.policy_item
    }
}

/// One limit's decision for one request (Python's `gcra.Decision`, times in µs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub new_tat: i64,
    pub remaining: i64,
    pub reset_after_us: i64,
    pub retry_after_us: i64,
}

/// Apply `limit` to a request costing `cost` at `now` given the key's `tat`.
pub fn decide(tat: Option<i64>, now: i64, limit: &Limit, cost: i64) -> Decision {
    let base = match tat {
        Some(tat) if tat >= now => tat,
        _ => now,
    };
    let (interval, tolerance) = (limit.interval_us, limit.tolerance_us);
    let new_tat = base + cost * interval;
    let allow_at = new_tat - tolerance;
    if allow_at > now {
        return Decision {
            allowed: false,
            new_tat: base,
            remaining: (now + tolerance - base).div_euclid(interval).max(0),
            reset_after_us: base - now,
            retry_after_us: allow_at - now,
        };
    }
    Decision {
        allowed: true,
        new_tat,
        remaining: (now + tolerance - new_tat).div_euclid(interval),
        reset_after_us: new_tat - now,
        retry_after_us: 0,
    }
}

/// Whole seconds rounded up (Python's `_ceil_seconds` on exact microseconds).
pub fn ceil_seconds(us: i64) -> i64 {
    if us <= 0 {
        0
    } else {
        (us + MICROSECONDS - 1) / MICROSECONDS
    }
}

fn unit_name(word: &str) -> Option<&'static str> {
    Some(match word {
        "s" | "sec" | "second" => "second",
        "m" | "min" | "minute" => "minute",
        "h" | "hour" => "hour",
        "d" | "day" => "day",
        _ => return None,
    })
}

fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (r - x).abs() == 0.5 {
        2.0 * (x / 2.0).round()
    } else {
        r
    }
}

/// RFC 9651 String: printable ASCII only, `\` and `"` escaped.
fn sf_string(value: &str) -> Result<String, LimitError> {
    if value.chars().any(|c| !(' '..='~').contains(&c)) {
        return Err(LimitError(format!(
            "policy name {} must be printable ASCII",
            py_repr(value)
        )));
    }
    Ok(format!(
        "\"{}\"",
        value.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// Python's `repr()` of a plain string (enough for error messages).
fn py_repr(text: &str) -> String {
    if text.contains('\'') && !text.contains('"') {
        format!("\"{text}\"")
    } else {
        format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// Python's `format(x, "g")` for the periods limits use (6 significant digits).
fn py_g(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e6 {
        return format!("{}", x as i64);
    }
    let text = format!("{:.6}", x);
    let trimmed = text.trim_end_matches('0').trim_end_matches('.');
    // 6 significant digits: enough for configured periods (seconds with a fraction).
    let digits: usize = trimmed.chars().filter(|c| c.is_ascii_digit()).count();
    if digits <= 6 {
        trimmed.to_owned()
    } else {
        format!("{}", (x * 1e6).round() / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_matches_python() {
        let limit = Limit::parse("100/minute", None, "").expect("valid");
        assert_eq!(limit.interval_us, 600_000);
        assert_eq!(limit.tolerance_us, 60_000_000);
        assert_eq!(limit.label(), "100/minute");
        assert_eq!(limit.policy_item(), "\"100/minute\";q=100;w=60");
        let short = Limit::parse(" 5 / Secs ", Some(2), "").expect("valid");
        assert_eq!((short.rate, short.period, short.burst), (5, 1.0, 2));
        assert_eq!(short.label(), "5/second");
        assert_eq!(
            Limit::parse("5/ms", None, "").map_err(|e| e.0),
            Err(
                "invalid rate limit '5/ms': unknown unit 'ms' (use second, minute, hour or day)"
                    .to_owned()
            )
        );
        assert_eq!(
            Limit::parse("0/s", None, "").map_err(|e| e.0),
            Err("invalid rate limit '0/s': the count must be at least 1".to_owned())
        );
        assert!(Limit::parse("-1/s", None, "").is_err());
        assert!(Limit::parse("2000000/s", None, "").is_err());
    }

    proptest::proptest! {
        /// Parsing never panics, and what parses has Python's integer interval.
        #[test]
        fn parse_never_panics(text in "\\PC{0,24}", burst in proptest::option::of(0u64..1_000_000)) {
            if let Ok(limit) = Limit::parse(&text, burst, "") {
                proptest::prop_assert!(limit.interval_us >= 1);
                proptest::prop_assert_eq!(limit.tolerance_us, limit.burst as i64 * limit.interval_us);
            }
        }
    }

    #[test]
    fn exactly_n_at_one_instant() {
        for n in [1u64, 3, 7, 10, 100, 997] {
            let limit = Limit::new(n, 60.0, None, "").expect("valid");
            let mut tat = None;
            let mut admitted = 0;
            for _ in 0..(n + 5) {
                let d = decide(tat, 1_000, &limit, 1);
                if d.allowed {
                    admitted += 1;
                    tat = Some(d.new_tat);
                }
            }
            assert_eq!(admitted, n);
        }
    }

    #[test]
    fn decisions_match_python_vectors() {
        // From tests/ratelimit/test_memory_limiter.py: 3/minute.
        let limit = Limit::parse("3/minute", None, "").expect("valid");
        let now = 1_700_000_000 * MICROSECONDS;
        let first = decide(None, now, &limit, 1);
        assert_eq!(
            (
                first.allowed,
                first.remaining,
                ceil_seconds(first.reset_after_us)
            ),
            (true, 2, 20)
        );
        let mut tat = Some(first.new_tat);
        for _ in 0..2 {
            tat = Some(decide(tat, now, &limit, 1).new_tat);
        }
        let refused = decide(tat, now, &limit, 1);
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.retry_after_us, 20 * MICROSECONDS);
        assert_eq!(ceil_seconds(refused.reset_after_us), 60);
    }

    #[test]
    fn divided_past_the_bound_is_the_furthest_division_within_it() {
        // 1/day: one request per 8.64e10 µs; the bound (2^50) holds 13,031 of them.
        let daily = Limit::parse("1/day", None, "").expect("valid");
        let most = daily.divided(13_031);
        assert_eq!((most.period, most.burst), (86_400.0 * 13_031.0, 1));
        let clamped = daily.divided(1_000 * 64);
        assert_eq!((clamped.period, clamped.label()), (most.period, "1/day"));
        assert!(Limit::new(1, 86_400.0 * 13_032.0, None, "").is_err());
    }

    #[test]
    fn divided_and_odd_periods() {
        let limit = Limit::new(7, 90.0, None, "").expect("valid");
        assert_eq!(limit.label(), "7/90s");
        let half = Limit::parse("10/minute", None, "")
            .expect("valid")
            .divided(4);
        assert_eq!(
            (half.rate, half.period, half.burst, half.label()),
            (10, 240.0, 2, "10/minute")
        );
        assert_eq!(
            Limit::new(1, 1.5, None, "").expect("valid").label(),
            "1/1.5s"
        );
    }
}
