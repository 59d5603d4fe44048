//! The native route table: what `bastion.gateway.compile.compile_table`
//! produced, loaded once, immutable, and swapped as one `Arc` on reload.
//!
//! The JSON shape (version [`TABLE_VERSION`]):
//!
//! ```json
//! {"version": 1,
//!  "match": {"reserved": ["/healthz", "/oauth2", ...], "preflight": false},
//!  "routes": [{"index": 0, "name": "orders",
//!              "match": {"host": null, "prefix": "/api/orders", "methods": ["GET"],
//!                        "strip_prefix": false, "upstream_base": ""},
//!              "auth": ..., "limits": ..., "upstream": ...}]}
//! ```
//!
//! The `match` sections are parsed here (see `router.rs` for how they are
//! used); `auth`, `limits` and `upstream` are kept as raw JSON for the steps
//! that own them. Every route has one: `compile_table` compiles it from the
//! settings or raises (an invalid path is a configuration error), so a table
//! with a `null` match is refused (a bug between the compiler and the crate;
//! the previous table stays in force).

use std::fmt;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use serde::Deserialize;
use serde_json::Value;

use crate::router::{is_method_token, Router};

/// The one JSON shape this build loads (`bastion.gateway.compile.TABLE_VERSION`).
pub const TABLE_VERSION: u64 = 1;

/// Why a route table was refused. The old table stays in force.
#[derive(Debug)]
pub enum TableError {
    /// Not JSON, or not the shape of a route table.
    Json(serde_json::Error),
    /// A table of another version (a control plane of another build).
    Version(u64),
    /// A well-formed table with a value the router cannot take.
    Invalid(String),
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Json(err) => write!(f, "the route table is not valid: {err}"),
            Self::Version(version) => write!(
                f,
                "the route table has version {version}; this build loads version {TABLE_VERSION}"
            ),
            Self::Invalid(reason) => write!(f, "the route table is not valid: {reason}"),
        }
    }
}

impl std::error::Error for TableError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Json(err) => Some(err),
            _ => None,
        }
    }
}

impl From<serde_json::Error> for TableError {
    fn from(err: serde_json::Error) -> Self {
        Self::Json(err)
    }
}

/// How a request matches a route (`bastion.gateway.matcher.CompiledRoute`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchRule {
    /// Normalised host without port; `None` serves every host.
    pub host: Option<String>,
    /// The normalised path prefix, no trailing slash except `/` itself.
    pub prefix: String,
    /// Upper-case methods; `None` accepts every method (HEAD goes with GET).
    pub methods: Option<Vec<String>>,
    /// Whether the prefix is cut from the forwarded path.
    pub strip_prefix: bool,
    /// The path of the (first) upstream URL, prepended to the forwarded path:
    /// `""` or `/base` (no trailing slash).
    pub upstream_base: String,
}

impl MatchRule {
    /// Whether this route accepts `method` (HEAD where GET is).
    pub fn allows(&self, method: &str) -> bool {
        match &self.methods {
            None => true,
            Some(methods) => methods
                .iter()
                .any(|m| m == method || (method == "HEAD" && m == "GET")),
        }
    }

    fn check(&self) -> Result<(), String> {
        // A prefix the router could never reach with a clean path (say `/a;b`)
        // is still loaded: it cannot be matched natively, nor shadow a route.
        let prefix = self.prefix.as_str();
        if !is_path_like(prefix) || (prefix != "/" && prefix.ends_with('/')) {
            return Err(format!(
                "match.prefix {prefix:?} is not a normalised prefix"
            ));
        }
        if let Some(host) = &self.host {
            let plain = |b: u8| b.is_ascii_graphic() && !b.is_ascii_uppercase();
            if host.is_empty() || !host.bytes().all(plain) {
                return Err(format!("match.host {host:?} is not a normalised host"));
            }
        }
        if let Some(methods) = &self.methods {
            if methods.is_empty() || !methods.iter().all(|m| is_method_token(m)) {
                return Err(format!(
                    "match.methods {methods:?} are not upper-case methods"
                ));
            }
        }
        let base = self.upstream_base.as_str();
        if !base.is_empty() && (!is_path_like(base) || base.ends_with('/')) {
            return Err(format!(
                "match.upstream_base {base:?} is not a normalised path"
            ));
        }
        Ok(())
    }
}

/// `/`, then visible ASCII without empty, `.` or `..` segments (a trailing
/// slash aside): what `normalize_path` can return.
fn is_path_like(path: &str) -> bool {
    let Some(body) = path.strip_prefix('/') else {
        return false;
    };
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return false;
    }
    let body = body.strip_suffix('/').unwrap_or(body);
    body.is_empty()
        || body
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
}

/// One route of the table.
#[derive(Debug, Clone, Deserialize)]
pub struct Route {
    /// Its position in `settings.routes` (and in the table).
    pub index: usize,
    /// Its unique name (audit, metrics, key route allow-lists).
    pub name: String,
    /// How requests match it (never `None` in a loaded table: refused).
    #[serde(rename = "match")]
    pub matcher: Option<MatchRule>,
    /// The raw `auth` section (parsed by the authenticate/authorize steps).
    #[serde(default)]
    pub auth: Value,
    /// The raw `limits` section (parsed by the limit step).
    #[serde(default)]
    pub limits: Value,
    /// The raw `upstream` section (parsed by the proxy).
    #[serde(default)]
    pub upstream: Value,
}

/// Table-wide inputs of the router.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableMatch {
    /// `bastion.http.RESERVED_PREFIXES`: the control plane's own paths.
    pub reserved: Vec<String>,
    /// Some route answers CORS preflights, so an `OPTIONS` request may be
    /// matched by the method it asks for: the router defers every `OPTIONS`.
    pub preflight: bool,
}

#[derive(Deserialize)]
struct Versioned {
    version: u64,
}

#[derive(Deserialize)]
struct RawTable {
    #[serde(rename = "match")]
    matching: TableMatch,
    routes: Vec<Route>,
}

/// The immutable route table of one configuration.
#[derive(Debug, Default)]
pub struct RouteTable {
    pub(crate) routes: Vec<Route>,
    pub(crate) matching: TableMatch,
    pub(crate) router: Router,
}

impl RouteTable {
    /// Load the JSON of `compile_table`; refuses another version or a value
    /// the router could misread.
    pub fn from_json(json: &str) -> Result<Self, TableError> {
        let Versioned { version } = serde_json::from_str(json)?;
        if version != TABLE_VERSION {
            return Err(TableError::Version(version));
        }
        let raw: RawTable = serde_json::from_str(json)?;
        for prefix in &raw.matching.reserved {
            if !prefix.starts_with('/') {
                return Err(TableError::Invalid(format!(
                    "match.reserved {prefix:?} does not start with '/'"
                )));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (position, route) in raw.routes.iter().enumerate() {
            let name = &route.name;
            if route.index != position {
                return Err(TableError::Invalid(format!(
                    "routes[{name}] has index {} at position {position}",
                    route.index
                )));
            }
            if !names.insert(name.as_str()) {
                return Err(TableError::Invalid(format!(
                    "two routes are named {name:?}"
                )));
            }
            match &route.matcher {
                Some(rule) => rule
                    .check()
                    .map_err(|reason| TableError::Invalid(format!("routes[{name}].{reason}")))?,
                None => {
                    return Err(TableError::Invalid(format!(
                        "routes[{name}] has no match section"
                    )))
                }
            }
        }
        let router = Router::new(&raw.routes);
        Ok(Self {
            routes: raw.routes,
            matching: raw.matching,
            router,
        })
    }

    /// The routes, in settings order (`routes()[i].index == i`).
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route at `index`.
    pub fn get(&self, index: usize) -> Option<&Route> {
        self.routes.get(index)
    }
}

/// The table in force: read per request without a lock, replaced whole on
/// `routes reload` (a request keeps the table it started with).
#[derive(Debug, Default)]
pub struct LiveTable(ArcSwap<RouteTable>);

impl LiveTable {
    /// Start with `table`.
    pub fn new(table: Arc<RouteTable>) -> Self {
        Self(ArcSwap::new(table))
    }

    /// The current table (cheap; hold it for the whole request).
    pub fn current(&self) -> Guard<Arc<RouteTable>> {
        self.0.load()
    }

    /// Put `table` in force for every request that starts from now on.
    pub fn replace(&self, table: Arc<RouteTable>) {
        self.0.store(table);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn table_json(routes: &str) -> String {
        format!(
            r#"{{"version": 1, "match": {{"reserved": ["/oauth2", "/admin"], "preflight": false}},
                "routes": [{routes}]}}"#
        )
    }

    const ORDERS: &str = r#"{"index": 0, "name": "orders",
        "match": {"host": null, "prefix": "/api/orders", "methods": ["GET"],
                  "strip_prefix": true, "upstream_base": "/v1"},
        "auth": {"public": true}, "limits": [], "upstream": {"url": "http://x"}}"#;

    #[test]
    fn loads_a_table() {
        let table = RouteTable::from_json(&table_json(ORDERS)).expect("loads");
        let route = table.get(0).expect("one route");
        assert_eq!(route.name, "orders");
        assert_eq!(route.auth, serde_json::json!({"public": true}));
        assert_eq!(route.limits, serde_json::json!([]));
        assert_eq!(route.upstream, serde_json::json!({"url": "http://x"}));
        assert_eq!(
            route.matcher,
            Some(MatchRule {
                host: None,
                prefix: "/api/orders".into(),
                methods: Some(vec!["GET".into()]),
                strip_prefix: true,
                upstream_base: "/v1".into(),
            })
        );
        assert_eq!(table.matching.reserved, ["/oauth2", "/admin"]);
    }

    #[test]
    fn refuses_another_version() {
        let json = table_json(ORDERS).replacen("\"version\": 1", "\"version\": 2", 1);
        let err = RouteTable::from_json(&json).expect_err("version 2");
        assert!(matches!(err, TableError::Version(2)));
        assert_eq!(
            err.to_string(),
            "the route table has version 2; this build loads version 1"
        );
        // The version is read before the shape: a future shape is still a version error.
        let err = RouteTable::from_json(r#"{"version": 3, "routes": "?"}"#).expect_err("v3");
        assert!(matches!(err, TableError::Version(3)));
    }

    #[test]
    fn refuses_what_the_router_could_misread() {
        let cases = [
            (
                ORDERS.replace("\"/api/orders\"", "\"/api/orders/\""),
                "routes[orders].match.prefix \"/api/orders/\" is not a normalised prefix",
            ),
            (
                ORDERS.replace("\"/api/orders\"", "\"/api/../x\""),
                "routes[orders].match.prefix \"/api/../x\" is not a normalised prefix",
            ),
            (
                ORDERS.replace("\"host\": null", "\"host\": \"API.example\""),
                "routes[orders].match.host \"API.example\" is not a normalised host",
            ),
            (
                ORDERS.replace("[\"GET\"]", "[\"get\"]"),
                "routes[orders].match.methods [\"get\"] are not upper-case methods",
            ),
            (
                ORDERS.replace("[\"GET\"]", "[]"),
                "routes[orders].match.methods [] are not upper-case methods",
            ),
            (
                ORDERS.replace("\"/v1\"", "\"/v1/\""),
                "routes[orders].match.upstream_base \"/v1/\" is not a normalised path",
            ),
            (
                ORDERS.replace("\"index\": 0", "\"index\": 1"),
                "routes[orders] has index 1 at position 0",
            ),
            (
                ORDERS.replace("\"match\": {\"host\"", "\"match\": null, \"x\": {\"host\""),
                "routes[orders] has no match section",
            ),
        ];
        for (route, message) in cases {
            let err = RouteTable::from_json(&table_json(&route)).expect_err(message);
            assert_eq!(
                err.to_string(),
                format!("the route table is not valid: {message}")
            );
        }
        let twice = format!(
            "{ORDERS}, {}",
            ORDERS.replace("\"index\": 0", "\"index\": 1")
        );
        let err = RouteTable::from_json(&table_json(&twice)).expect_err("two names");
        assert_eq!(
            err.to_string(),
            "the route table is not valid: two routes are named \"orders\""
        );
        let unknown = ORDERS.replace("\"strip_prefix\"", "\"regex\": \".*\", \"strip_prefix\"");
        assert!(matches!(
            RouteTable::from_json(&table_json(&unknown)),
            Err(TableError::Json(_))
        ));
        assert!(matches!(
            RouteTable::from_json("{"),
            Err(TableError::Json(_))
        ));
    }

    #[test]
    fn a_route_without_match_is_refused() {
        // `compile_table` always compiles one (or raises): no table defers wholesale.
        let json = table_json(
            r#"{"index": 0, "name": "odd",
                "match": null, "auth": null, "limits": null, "upstream": null}"#,
        );
        let err = RouteTable::from_json(&json).expect_err("no match section");
        assert_eq!(
            err.to_string(),
            "the route table is not valid: routes[odd] has no match section"
        );
    }

    #[test]
    fn live_table_swaps_whole() {
        let live = LiveTable::default();
        assert!(live.current().routes().is_empty());
        let held = live.current();
        let table = RouteTable::from_json(&table_json(ORDERS)).expect("loads");
        live.replace(Arc::new(table));
        assert!(
            held.routes().is_empty(),
            "a request keeps the table it started with"
        );
        assert_eq!(live.current().routes()[0].name, "orders");
    }
}
