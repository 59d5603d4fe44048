//! What the control plane pushes into the limit step: operator overrides of
//! API keys' limits (`bastion.ratelimit.keys.KeyLimitOverrides`), process-wide,
//! read on every request with a key, written rarely. (A risk-flagged
//! requester's limits, these included, are divided in the limit step: `crate::risk`.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use serde_json::Value;

use super::gcra::{Limit, LimitError};

/// At most this many limits per key (Python's `_MAX_LIMITS`).
const MAX_KEY_LIMITS: usize = 20;

/// The limits of stored `rate_limits` entries (`[{"rate": "10/minute", "burst": 5}]`),
/// as Python's `compile_key_limits`: equal limits kept once, at most 20.
pub fn parse_key_limits(entries: &Value) -> Result<Vec<Limit>, LimitError> {
    let entries = match entries {
        Value::Null => return Ok(Vec::new()),
        Value::Array(entries) => entries,
        _ => return Err(LimitError("rate_limits must be a list".into())),
    };
    if entries.len() > MAX_KEY_LIMITS {
        return Err(LimitError(format!(
            "at most {MAX_KEY_LIMITS} limits per key, not {}",
            entries.len()
        )));
    }
    let mut limits: Vec<Limit> = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let rate = match entry.get("rate") {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        let burst = match entry.get("burst") {
            None | Some(Value::Null) => None,
            Some(value) => Some(value.as_u64().filter(|b| *b >= 1).ok_or_else(|| {
                LimitError(format!(
                    "limits[{index}]: burst must be a positive integer, not {value}"
                ))
            })?),
        };
        let limit = Limit::parse(&rate, burst, "")
            .map_err(|e| LimitError(format!("limits[{index}]: {}", e.0)))?;
        if !limits.contains(&limit) {
            limits.push(limit);
        }
    }
    Ok(limits)
}

/// Operator overrides of API keys' limits, by key id.
#[derive(Default)]
pub struct Overrides {
    by_key: RwLock<HashMap<String, Arc<[Limit]>>>,
    count: AtomicUsize,
}

impl Overrides {
    /// The override of `key_id` (`None`: the key's own limits apply).
    pub fn get(&self, key_id: &str) -> Option<Arc<[Limit]>> {
        if self.count.load(Ordering::Relaxed) == 0 {
            return None; // the common case: no override anywhere, no lock
        }
        let map = self.by_key.read().unwrap_or_else(|p| p.into_inner());
        map.get(key_id).cloned()
    }

    /// Replace `key_id`'s override (`None` removes it).
    pub fn set(&self, key_id: &str, limits: Option<Vec<Limit>>) {
        let mut map = self.by_key.write().unwrap_or_else(|p| p.into_inner());
        match limits {
            Some(limits) => {
                map.insert(key_id.to_owned(), limits.into());
            }
            None => {
                map.remove(key_id);
            }
        }
        self.count.store(map.len(), Ordering::Relaxed);
    }

    /// Replace every override at once (a full reload).
    pub fn replace_all(&self, all: HashMap<String, Vec<Limit>>) {
        let mut map = self.by_key.write().unwrap_or_else(|p| p.into_inner());
        *map = all.into_iter().map(|(k, v)| (k, v.into())).collect();
        self.count.store(map.len(), Ordering::Relaxed);
    }

    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The process-wide overrides the control plane keeps in step with the database.
pub fn overrides() -> &'static Overrides {
    static OVERRIDES: OnceLock<Overrides> = OnceLock::new();
    OVERRIDES.get_or_init(Overrides::default)
}

/// A key's effective limits: its override if one is set, else its own.
pub fn effective_key_limits(key_id: &str, own: &[Limit]) -> Arc<[Limit]> {
    overrides().get(key_id).unwrap_or_else(|| own.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_limits_parse_like_python() {
        let limits = parse_key_limits(&json!([
            {"rate": "10/minute"}, {"rate": "10/minute", "burst": null}, {"rate": "5/s", "burst": 2}
        ]))
        .expect("valid");
        assert_eq!(limits.len(), 2);
        assert_eq!(limits[1].burst, 2);
        let err = parse_key_limits(&json!([{"rate": "10/fortnight"}])).map(|_| ());
        assert_eq!(
            err.map_err(|e| e.0),
            Err(
                "limits[0]: invalid rate limit '10/fortnight': unknown unit 'fortnight' \
                 (use second, minute, hour or day)"
                    .to_owned()
            )
        );
    }

    #[test]
    fn overrides_replace_own_limits() {
        let own = parse_key_limits(&json!([{"rate": "1/second"}])).expect("valid");
        assert_eq!(effective_key_limits("k", &own)[0].rate, 1);
        overrides().set(
            "k",
            Some(parse_key_limits(&json!([{"rate": "9/second"}])).expect("valid")),
        );
        assert_eq!(effective_key_limits("k", &own)[0].rate, 9);
        overrides().set("k", None);
        assert_eq!(effective_key_limits("k", &own)[0].rate, 1);
    }
}
