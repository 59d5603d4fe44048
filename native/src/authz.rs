//! The native `authorize` step (`bastion.gateway.authz`): a credential's route
//! allow-list and the route's required scopes per method ([`check`]), then the
//! route's required claims and roles ([`claims_check`]), in Python's order.
//!
//! A refusal says which of Python's 403s it is ([`Refusal`]): the gateway
//! renders it byte for byte (`crate::refusal`). The required claims come in
//! the settings' order (a list of pairs in the table), so the first failing
//! one is the one Python names; the required scopes are RFC 6749 scope tokens
//! (checked at table load, [`scope_tokens`]), so the challenge header of an
//! `insufficient_scope` is always Python's.
//!
//! Required claims and roles need the credential's claims, so
//! [`crate::authn`] checks them where it holds them and carries the verdict.

use serde::{Deserialize, Deserializer};
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
    check(route, identity, method, route_name).is_ok()
}

/// Why `authorize` refuses (`check_access`, `RequiredClaims.check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `RouteNotAllowedError`: the credential is restricted to other routes.
    RouteNotAllowed,
    /// `ForbiddenError`: the route's scopes name no rule for this method.
    NoRule,
    /// `InsufficientScopeError`: every scope the method needs (sorted, unique).
    InsufficientScope(Vec<String>),
    /// `ClaimMismatchError` naming the claim.
    ClaimMismatch(String),
    /// `MissingRoleError` naming the role.
    MissingRole(String),
}

/// `check_access`: the credential's route list, then the method's scopes.
pub fn check(
    route: &RouteAuth,
    identity: &Identity,
    method: &http::Method,
    route_name: &str,
) -> Result<(), Refusal> {
    if route.public {
        return Ok(());
    }
    if let Some(routes) = &identity.routes {
        if !routes.iter().any(|r| r == route_name) {
            return Err(Refusal::RouteNotAllowed);
        }
    }
    let Some(needed) = route.scopes.for_method(method.as_str()) else {
        return Err(Refusal::NoRule);
    };
    if needed.iter().all(|scope| identity.scopes.contains(scope)) {
        return Ok(());
    }
    let mut needed = needed.to_vec();
    needed.sort_unstable();
    needed.dedup();
    Err(Refusal::InsufficientScope(needed))
}

/// A route's required claims as the table lists them: `[name, value]` pairs
/// in the settings' order (`compile/auth.py`). An object is read only with at
/// most one member, where no order is lost (a JSON object is read back sorted,
/// and Python names the *first* failing claim of several).
pub fn ordered_claims<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, Value)>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Claims {
        Pairs(Vec<(String, Value)>),
        Object(Map<String, Value>),
    }
    match Claims::deserialize(d)? {
        Claims::Pairs(pairs) => Ok(pairs),
        Claims::Object(one) if one.len() <= 1 => Ok(one.into_iter().collect()),
        Claims::Object(_) => Err(serde::de::Error::custom(
            "claims: several claims in an object lose their order; list [name, value] pairs",
        )),
    }
}

/// Whether a scope is an RFC 6749 scope-token (`%x21 / %x23-5B / %x5D-7E`),
/// as the settings require (`bastion.settings.models._SCOPE_TOKEN`): printable
/// ASCII without space, `"` or `\`, so Python writes the `insufficient_scope`
/// challenge (`scope="…"`) as is.
pub fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// Refuse a table whose route requires a scope that is not a scope-token:
/// the settings refuse it (`routes[…].scopes…: … is not a scope`), so such a
/// table is a bug between the compiler and the crate.
pub fn scope_tokens(route: &RouteAuth) -> Result<(), String> {
    let listed = route.scopes.by_method.values().chain(&route.scopes.default);
    match listed.flatten().find(|scope| !is_scope_token(scope)) {
        Some(bad) => Err(format!("auth section: {bad:?} is not a scope token")),
        None => Ok(()),
    }
}

/// Python's `_same`: equal type and value (`true` is not `1`, `1` is not `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            // Python: int vs float are different types.
            let ints = |n: &serde_json::Number| n.is_i64() || n.is_u64();
            ints(x) == ints(y) && x.as_f64() == y.as_f64()
        }
        (Value::Array(_), Value::Array(_)) | (Value::Object(_), Value::Object(_)) => py_eq(a, b),
        _ => a == b,
    }
}

/// Python's `==` inside a list or dict: numbers by value, `True == 1`.
fn py_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Bool(x), Value::Number(n)) | (Value::Number(n), Value::Bool(x)) => {
            n.as_f64() == Some(if *x { 1.0 } else { 0.0 })
        }
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| py_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| py_eq(v, w)))
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
        // `claims.get(name)` is `None`, which is the same as a required `null`.
        (None, want) => want.is_null(),
    }
}

/// Whether `claims` satisfy the route's `claims` and `roles` (`RequiredClaims.check`).
pub fn claims_hold(route: &RouteAuth, claims: &Map<String, Value>) -> bool {
    claims_check(route, claims).is_ok()
}

/// `RequiredClaims.check`: the first failing claim (in the settings' order:
/// the table lists them as `[name, value]` pairs), then the first missing role.
pub fn claims_check(route: &RouteAuth, claims: &Map<String, Value>) -> Result<(), Refusal> {
    let failing = route
        .claims
        .iter()
        .find(|(name, expected)| !holds(claims.get(name.as_str()), expected));
    if let Some((name, _)) = failing {
        return Err(Refusal::ClaimMismatch(name.clone()));
    }
    if route.roles.is_empty() {
        return Ok(());
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
                // Python's `_lookup`: no mapping on the way, no roles.
                _ => break,
            }
        }
    }
    let granted: Vec<&str> = match held {
        // Python's `str.split()`: its whitespace is Unicode's and U+001C..U+001F.
        Some(Value::String(text)) => text
            .split(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
            .filter(|part| !part.is_empty())
            .collect(),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    match route
        .roles
        .iter()
        .find(|role| !granted.contains(&role.as_str()))
    {
        Some(role) => Err(Refusal::MissingRole(role.clone())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn route(section: Value) -> RouteAuth {
        RouteAuth::from_section(&section).expect("section")
    }

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn who(scopes: &[&str], routes: Option<&[&str]>) -> Identity {
        Identity {
            method: "api_key",
            subject: Some("s".into()),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            routes: routes.map(|r| r.iter().map(|s| (*s).to_owned()).collect()),
            ..Identity::default()
        }
    }

    #[test]
    fn check_access_refusals_in_pythons_order() {
        let r = route(json!({
            "public": false, "methods": ["api_key"],
            "scopes": {"by_method": {"POST": ["w", "r", "w"], "GET": ["r"]}}
        }));
        let get = &http::Method::GET;
        let post = &http::Method::POST;
        assert_eq!(check(&r, &who(&["r"], None), get, "o"), Ok(()));
        assert_eq!(
            check(&r, &who(&["r"], None), &http::Method::HEAD, "o"),
            Ok(())
        );
        assert_eq!(
            check(&r, &who(&["r"], None), post, "o"),
            Err(Refusal::InsufficientScope(vec!["r".into(), "w".into()]))
        );
        // The route list comes first, then the method's rule.
        assert_eq!(
            check(&r, &who(&[], Some(&["x"])), post, "o"),
            Err(Refusal::RouteNotAllowed)
        );
        assert_eq!(
            check(&r, &who(&["r", "w"], None), &http::Method::DELETE, "o"),
            Err(Refusal::NoRule)
        );
        let public = route(json!({"public": true}));
        assert_eq!(check(&public, &who(&[], Some(&[])), post, "o"), Ok(()));
    }

    #[test]
    fn claims_are_read_in_order() {
        let section = |claims: Value| {
            RouteAuth::from_section(&json!({
                "public": false, "methods": ["api_key"], "claims": claims
            }))
        };
        let listed = section(json!([["b", 1], ["a", "x"]])).expect("pairs");
        assert_eq!(
            listed.claims,
            vec![("b".into(), json!(1)), ("a".into(), json!("x"))]
        );
        let one = section(json!({"tier": "gold"})).expect("one member");
        assert_eq!(one.claims, vec![("tier".into(), json!("gold"))]);
        assert!(section(json!({})).expect("none").claims.is_empty());
        let err = section(json!({"b": 1, "a": 2})).expect_err("order lost");
        assert!(err.contains("lose their order"), "{err}");
        assert!(section(json!([["a"]])).is_err());
    }

    #[test]
    fn scopes_must_be_scope_tokens() {
        for good in ["orders:read", "a", "!#[]~", "x/y"] {
            assert!(is_scope_token(good), "{good}");
        }
        for bad in ["", "a b", "x\"y", "a\\b", "é", "tab\t", "\u{7f}"] {
            assert!(!is_scope_token(bad), "{bad:?}");
        }
        let ok = route(json!({
            "public": false, "methods": ["api_key"],
            "scopes": {"by_method": {"GET": ["r"]}, "default": ["w:x"]}
        }));
        assert_eq!(scope_tokens(&ok), Ok(()));
        for scopes in [
            json!({"by_method": {"GET": ["r", "é"]}}),
            json!({"by_method": {}, "default": ["a\"b"]}),
        ] {
            let bad = route(json!({"public": false, "methods": ["api_key"], "scopes": scopes}));
            assert!(scope_tokens(&bad).is_err());
        }
    }

    #[test]
    fn an_empty_route_list_allows_no_route() {
        // Python's check_access: a restriction to no routes is not "unrestricted" (no API
        // key can carry one today: an empty list there means any route).
        let r = route(json!({
            "public": false, "methods": ["api_key"], "scopes": {"by_method": {}, "default": []}
        }));
        let get = &http::Method::GET;
        assert_eq!(
            check(&r, &who(&[], Some(&[])), get, "o"),
            Err(Refusal::RouteNotAllowed)
        );
        assert_eq!(check(&r, &who(&[], None), get, "o"), Ok(()));
        assert_eq!(check(&r, &who(&[], Some(&["o"])), get, "o"), Ok(()));
    }

    #[test]
    fn claims_and_roles_name_what_fails() {
        let r = route(json!({
            "public": false, "methods": ["jwt"], "jwt": {"audience": "a"},
            "claims": [["tier", "gold"], ["n", 1], ["gone", null]],
            "roles": ["admin", "ops"], "roles_claim": "realm.roles"
        }));
        let good = json!({"tier": "gold", "n": 1, "realm": {"roles": "ops\u{1f}admin"}});
        assert_eq!(claims_check(&r, &claims(good)), Ok(()));
        assert_eq!(
            claims_check(&r, &claims(json!({"tier": "gold", "n": 1.0}))),
            Err(Refusal::ClaimMismatch("n".into()))
        );
        // Two failing claims: Python names the first in its settings' order.
        assert_eq!(
            claims_check(&r, &claims(json!({"n": true}))),
            Err(Refusal::ClaimMismatch("tier".into()))
        );
        let reversed = route(json!({
            "public": false, "methods": ["jwt"], "jwt": {"audience": "a"},
            "claims": [["n", 1], ["tier", "gold"]]
        }));
        assert_eq!(
            claims_check(&reversed, &claims(json!({"n": true}))),
            Err(Refusal::ClaimMismatch("n".into()))
        );
        assert_eq!(
            claims_check(
                &r,
                &claims(json!({"tier": "gold", "n": 1, "realm": {"roles": ["ops"]}}))
            ),
            Err(Refusal::MissingRole("admin".into()))
        );
        assert_eq!(
            claims_check(
                &r,
                &claims(json!({"tier": "gold", "n": 1, "realm": ["admin"]}))
            ),
            Err(Refusal::MissingRole("admin".into()))
        );
        let nested = route(json!({
            "public": false, "methods": ["jwt"], "jwt": {"audience": "a"},
            "claims": [["grp", [[1, true]]], ["obj", {"a": [1.0]}]]
        }));
        // Inside lists and objects, Python's `==`: 1 == 1.0 == True.
        let held = json!({"grp": [[1.0, 1], "x"], "obj": {"a": [true]}});
        assert_eq!(claims_check(&nested, &claims(held)), Ok(()));
    }
}
