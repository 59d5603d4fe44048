//! The native `authorize` step (`bastion.gateway.authz`): a credential's route
//! allow-list and the route's required scopes per method. A `false` is never
//! rendered here: the gateway defers and Python answers its exact 403.
//!
//! Required claims and roles (`RequiredClaims`) need the token's claims, so
//! [`crate::authn::authenticate`] checks them ([`claims_hold`]) and defers when
//! they fail; an API key identity on a route with such rules always defers.

use serde_json::{Map, Value};

use crate::authn::RouteAuth;
use crate::http::Identity;

/// Whether `identity` may call `route_name` with `method` (`check_access`).
pub fn authorize(
    route: &RouteAuth,
    identity: &Identity,
    method: &http::Method,
    route_name: &str,
) -> bool {
    if route.public {
        return true;
    }
    if let Some(routes) = &identity.routes {
        if !routes.iter().any(|r| r == route_name) {
            return false;
        }
    }
    let Some(needed) = route.scopes.for_method(method.as_str()) else {
        return false;
    };
    needed.iter().all(|scope| identity.scopes.contains(scope))
}

/// Python's `_same`: equal type and value (`true` is not `1`, `1` is not `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            // Python: int vs float are different types.
            let ints = |n: &serde_json::Number| n.is_i64() || n.is_u64();
            ints(x) == ints(y) && x.as_f64() == y.as_f64()
        }
        _ => a == b,
    }
}

fn holds(actual: Option<&Value>, expected: &Value) -> bool {
    match (actual, expected) {
        (Some(Value::Array(items)), Value::Array(wanted)) => wanted
            .iter()
            .all(|want| items.iter().any(|item| same(item, want))),
        (_, Value::Array(_)) => false,
        (Some(Value::Array(items)), want) => items.iter().any(|item| same(item, want)),
        (Some(actual), want) => same(actual, want),
        (None, _) => false,
    }
}

/// Whether `claims` satisfy the route's `claims` and `roles` (`RequiredClaims.check`).
pub fn claims_hold(route: &RouteAuth, claims: &Map<String, Value>) -> bool {
    for (name, expected) in &route.claims {
        if !holds(claims.get(name), expected) {
            return false;
        }
    }
    if route.roles.is_empty() {
        return true;
    }
    let mut held: Option<&Value> = None;
    let mut current = claims;
    for (i, part) in route.roles_path.iter().enumerate() {
        let value = current.get(part);
        if i + 1 == route.roles_path.len() {
            held = value;
        } else {
            match value {
                Some(Value::Object(inner)) => current = inner,
                _ => return false,
            }
        }
    }
    let granted: Vec<&str> = match held {
        Some(Value::String(text)) => text.split_whitespace().collect(),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    route
        .roles
        .iter()
        .all(|role| granted.contains(&role.as_str()))
}
