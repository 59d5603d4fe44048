//! Route matching over arbitrary request heads: host, method and request-target.
//!
//! The input is split on 0xFF bytes into `host`, `method` and `target`. Beyond
//! "never panics", a `Native` answer must come from a target the app hands to
//! its gateway (`RouteTable::target`), whose normal form is `normalize`'s and
//! is off the control plane's prefixes, for a native route, with an absolute
//! upstream target carrying the raw query; a target read as a refusal is one
//! `normalize` refuses with that detail.

#![no_main]

use std::sync::OnceLock;

use _native::paths::normalize;
use _native::router::{Routed, Target};
use _native::routes::RouteTable;
use libfuzzer_sys::fuzz_target;

const TABLE: &str = r#"{"version": 1,
  "match": {"reserved": ["/healthz", "/.well-known", "/oauth2", "/admin", "/auth/verify"],
            "preflight": false},
  "routes": [
    {"index": 0, "name": "root",
     "match": {"host": null, "prefix": "/", "methods": ["GET"], "strip_prefix": true,
               "upstream_base": "/r"}},
    {"index": 1, "name": "api",
     "match": {"host": null, "prefix": "/api", "methods": null, "strip_prefix": false,
               "upstream_base": ""}},
    {"index": 2, "name": "orders",
     "match": {"host": "admin.example", "prefix": "/api/orders", "methods": ["DELETE"],
               "strip_prefix": true, "upstream_base": "/v1"}},
    {"index": 3, "name": "python",
     "match": {"host": null, "prefix": "/py", "methods": null, "strip_prefix": false,
               "upstream_base": ""}},
    {"index": 4, "name": "escaped",
     "match": {"host": null, "prefix": "/caf%C3%A9", "methods": ["GET", "POST"],
               "strip_prefix": true, "upstream_base": ""}}
  ]}"#;

fn table() -> &'static RouteTable {
    static TABLE_CELL: OnceLock<RouteTable> = OnceLock::new();
    TABLE_CELL.get_or_init(|| RouteTable::from_json(TABLE).expect("the fuzz table loads"))
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 0xFF);
    let host = parts.next();
    let method = parts.next().unwrap_or(b"GET");
    let target = String::from_utf8_lossy(parts.next().unwrap_or(b"/"));
    let Ok(method) = http::Method::from_bytes(method) else {
        return;
    };
    let routes = table();
    let read = routes.target(&target);
    let raw_path = target.split_once('?').map_or(&*target, |(path, _)| path);
    match &read {
        Target::Gateway { path, .. } => {
            assert_eq!(normalize(raw_path.as_bytes()).as_deref(), Ok(path.as_ref()));
            assert_eq!(normalize(path.as_bytes()).as_deref(), Ok(path.as_ref()));
        }
        Target::Refused { detail, .. } => {
            assert_eq!(normalize(raw_path.as_bytes()), Err(*detail));
        }
        Target::Python(_) => {}
    }
    let routed = routes.route(host, &method, &target);
    let upstream = routes.route_upstream(host, &method, &target);
    assert_eq!(matches!(routed, Routed::Native { .. }), upstream.is_ok());
    if let Ok((_, upstream_path_and_query)) = upstream {
        let Target::Gateway { path, query } = read else {
            panic!("native only for a target the gateway reads: {target:?}");
        };
        assert!(![
            "/healthz",
            "/.well-known",
            "/oauth2",
            "/admin",
            "/auth/verify"
        ]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/"))));
        assert!(upstream_path_and_query.starts_with('/'));
        assert_eq!(
            upstream_path_and_query.split_once('?').map(|(_, q)| q),
            query
        );
    }
});
