//! One loaded configuration of the native gateway: the router, each native
//! route's parsed steps, and the table-wide settings — built from
//! `bastion.gateway.compile.compile_table`'s JSON, immutable, swapped whole on
//! reload (`plane::load_table`).

use crate::authn::RouteAuth;
use crate::client_ip::TrustedProxies;
use crate::cors::{CorsPolicy, CorsSection};
use crate::hygiene::HeadLimits;
use crate::ip_rules::{IpRules, IpSection};
use crate::limit::RouteLimits;
use crate::routes::RouteTable;
use crate::upstream::Upstream;

/// The parsed sections of one route.
pub struct NativeRoute {
    pub auth: RouteAuth,
    pub limits: RouteLimits,
    pub upstream: Upstream,
    pub max_body: u64,
    /// The route's CORS policy (`None`: the route has no `cors`).
    pub cors: Option<CorsPolicy>,
    /// The route's IP allow / deny networks (`edge.ip`), if it has any.
    pub ip: Option<IpRules>,
    /// The route upstream's adaptive concurrency limit (`ratelimit.shedding`).
    pub shed: Option<std::sync::Arc<crate::limit::shedding::Adaptive>>,
    /// The route's WebSocket limits (`edge.websocket`); `None`: upgrades are Python's.
    pub websocket: Option<crate::websocket::Policy>,
}

/// One loaded configuration: the router, each native route's steps, and the
/// table-wide settings. Immutable; a reload builds a new one and swaps it.
pub struct Table {
    pub routes: RouteTable,
    /// Each route's steps, by route index (every route is native).
    pub native: Vec<NativeRoute>,
    pub head: HeadLimits,
    pub trusted: TrustedProxies,
    /// How `/auth/verify` reads the request it judges.
    pub forward_auth: crate::forward_family::ForwardAuth,
    /// OpenTelemetry tracing (`edge.tracing`); `None`: off.
    pub tracing: Option<crate::sampling::Sampler>,
}

#[derive(serde::Deserialize)]
struct EdgeTable {
    max_headers: usize,
    max_header_bytes: usize,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    #[serde(default)]
    tracing: Option<crate::sampling::TracingSection>,
}

#[derive(serde::Deserialize)]
struct EdgeRoute {
    max_body: u64,
    #[serde(default)]
    cors: Option<CorsSection>,
    #[serde(default)]
    ip: Option<IpSection>,
    #[serde(default)]
    websocket: Option<crate::websocket::WebSocketSection>,
}

impl Table {
    /// Load `compile_table`'s JSON. Errors name the route and section: a
    /// section the native core cannot parse is a bug between the compiler and
    /// this crate, so the table is refused rather than served half-right.
    pub fn from_json(json: &str) -> Result<Table, String> {
        let routes = RouteTable::from_json(json).map_err(|e| e.to_string())?;
        let raw: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let edge: EdgeTable = serde_json::from_value(raw["edge"].clone())
            .map_err(|e| format!("table edge section: {e}"))?;
        let trusted = TrustedProxies::parse(&edge.trusted_proxies)?;
        // A table without the section (compile_table always writes it) reads the
        // settings' default family, as Python's endpoint would.
        let forward_auth = match raw.get("forward_auth") {
            Some(section) if !section.is_null() => serde_json::from_value(section.clone())
                .map_err(|e| format!("table forward_auth section: {e}"))?,
            _ => crate::forward_family::ForwardAuth::default(),
        };
        let tracing = edge
            .tracing
            .map(crate::sampling::Sampler::from_section)
            .transpose()?;
        let raw_routes = raw["routes"].as_array().cloned().unwrap_or_default();
        let mut native = Vec::with_capacity(routes.routes().len());
        for (route, raw_route) in routes.routes().iter().zip(raw_routes.iter()) {
            let name = &route.name;
            let auth = RouteAuth::from_section(&route.auth)
                .map_err(|e| format!("route {name}: auth: {e}"))?;
            crate::authz::scope_tokens(&auth).map_err(|e| format!("route {name}: auth: {e}"))?;
            let limits = RouteLimits::from_section(&route.limits)
                .map_err(|e| format!("route {name}: limits: {}", e.0))?;
            let upstream = Upstream::from_section(&route.upstream)
                .map_err(|e| format!("route {name}: {e}"))?;
            let edge: EdgeRoute = serde_json::from_value(raw_route["edge"].clone())
                .map_err(|e| format!("route {name}: edge: {e}"))?;
            let cors = edge
                .cors
                .map(CorsPolicy::from_section)
                .transpose()
                .map_err(|e| format!("route {name}: edge: {e}"))?;
            let ip = match &edge.ip {
                Some(section) => Some(
                    IpRules::from_section(section).map_err(|e| format!("route {name}: ip: {e}"))?,
                ),
                None => None,
            };
            let shed = match route.limits.get("shedding") {
                Some(section) if !section.is_null() => {
                    let config = crate::limit::shedding::SheddingConfig::from_section(section)
                        .map_err(|e| format!("route {name}: limits: {e}"))?;
                    Some(crate::limit::shedding::for_route(name, config))
                }
                _ => None,
            };
            let websocket = match &edge.websocket {
                Some(section) => Some(
                    crate::websocket::Policy::from_section(section)
                        .map_err(|e| format!("route {name}: {e}"))?,
                ),
                None => None,
            };
            native.push(NativeRoute {
                auth,
                limits,
                upstream,
                max_body: edge.max_body,
                cors,
                ip,
                shed,
                websocket,
            });
        }
        Ok(Table {
            routes,
            native,
            head: HeadLimits {
                max_headers: edge.max_headers,
                max_header_bytes: edge.max_header_bytes,
            },
            trusted,
            forward_auth,
            tracing,
        })
    }
}
