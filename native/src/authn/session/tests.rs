use super::*;
use serde_json::json;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_str(value).expect("value"),
        );
    }
    map
}

const ID: &str = "Zm9vYmFyYmF6cXV4LWxvbmctZW5vdWdoLWlkLTQzY2g";

#[test]
fn session_cookie_is_read_among_others() {
    let h = headers(&[(
        "cookie",
        &format!("a=1; __Host-bastion_csrf=x; __Host-bastion_session={ID}; b=2"),
    )]);
    assert_eq!(presented(&h), Presented::Id(ID.as_bytes()));
    // Across several Cookie headers (HTTP/2 splits them).
    let h = headers(&[
        ("cookie", "a=1"),
        ("cookie", &format!("__Host-bastion_session={ID}")),
    ]);
    assert_eq!(presented(&h), Presented::Id(ID.as_bytes()));
    // Whitespace around the pair is not part of it.
    let h = headers(&[("cookie", &format!("  __Host-bastion_session = {ID} ;"))]);
    assert_eq!(presented(&h), Presented::Id(ID.as_bytes()));
}

#[test]
fn no_session_cookie_is_absent() {
    for value in [
        "a=1; b=2",
        "__host-bastion_session=abc",  // another name: case matters
        "__Host-bastion_sessionx=abc", // a longer name
        "x__Host-bastion_session=abc", // a prefixed name
        "__Host-bastion_session",      // no '=': not a pair
        "__Host-bastion_csrf=abc",     // bastion's other cookie
    ] {
        assert_eq!(
            presented(&headers(&[("cookie", value)])),
            Presented::Absent,
            "{value}"
        );
    }
    assert_eq!(presented(&HeaderMap::new()), Presented::Absent);
}

#[test]
fn two_session_cookies_are_refused_even_when_equal() {
    let same = format!("__Host-bastion_session={ID}; __Host-bastion_session={ID}");
    assert_eq!(
        presented(&headers(&[("cookie", &same)])),
        Presented::Unusable("duplicate")
    );
    let split = headers(&[
        ("cookie", &format!("__Host-bastion_session={ID}")),
        ("cookie", "__Host-bastion_session=other"),
    ]);
    assert_eq!(presented(&split), Presented::Unusable("duplicate"));
}

#[test]
fn oversize_and_bad_characters_are_unusable() {
    let long = "a".repeat(MAX_ID_BYTES + 1);
    let edge = "a".repeat(MAX_ID_BYTES);
    let cookie = |v: &str| headers(&[("cookie", &format!("__Host-bastion_session={v}"))]);
    assert_eq!(presented(&cookie(&long)), Presented::Unusable("too_large"));
    assert_eq!(presented(&cookie(&edge)), Presented::Id(edge.as_bytes()));
    for bad in [
        "", "a.b", "a/b", "a+b", "\"abc\"", "a%20b", "a,b", "ab=", "a\tb",
    ] {
        assert_eq!(
            presented(&cookie(bad)),
            Presented::Unusable("malformed"),
            "{bad:?}"
        );
    }
}

fn record(user: &str, expires_at: f64, last_seen_at: f64, idle: f64) -> (Record, f64) {
    let pushed = json!({"user_id": user, "username": "alice", "email": "a@example.com",
                        "roles": ["admin", "dev"], "expires_at": expires_at,
                        "last_seen_at": last_seen_at, "idle_timeout": idle});
    Record::from_push(&pushed.to_string()).expect("valid")
}

#[test]
fn a_pushed_record_is_the_users_identity() {
    let (record, seen) = record("u1", 200.0, 100.0, 30.0);
    assert_eq!(seen, 100.0);
    assert_eq!(record.identity.method, "session");
    assert_eq!(record.identity.subject.as_deref(), Some("u1"));
    let person = record.identity.person.as_deref().expect("person");
    assert_eq!(person.email.as_deref(), Some("a@example.com"));
    assert_eq!(person.roles, vec!["admin".to_owned(), "dev".to_owned()]);
    assert_eq!(record.claims.get("roles"), Some(&json!(["admin", "dev"])));
    assert_eq!(
        record.claims.get("preferred_username"),
        Some(&json!("alice"))
    );
}

#[test]
fn bad_records_are_refused() {
    for bad in [
        json!({"user_id": "", "username": "a", "expires_at": 1.0, "last_seen_at": 0.0, "idle_timeout": 1.0}),
        json!({"user_id": "u", "username": "a", "expires_at": 1.0, "last_seen_at": 0.0, "idle_timeout": 0.0}),
        json!({"user_id": "u", "username": "a", "expires_at": 1.0, "last_seen_at": 0.0}),
        json!({"user_id": "u", "username": "a", "expires_at": 1.0, "last_seen_at": 0.0, "idle_timeout": 1.0, "x": 1}),
    ] {
        assert!(Record::from_push(&bad.to_string()).is_err(), "{bad}");
    }
}

#[test]
fn a_session_lives_until_its_absolute_and_idle_ends() {
    let cache = Sessions::default();
    let (r, seen) = record("u1", 200.0, 100.0, 30.0);
    cache.put([1; 32], r, seen);
    assert!(cache.get(&[1; 32], 129.9).is_some());
    assert!(cache.get(&[1; 32], 130.0).is_none(), "idle");
    // A use moves the idle end, never past the absolute one.
    assert!(cache.use_at(&[1; 32], 120.0).is_some());
    assert!(cache.get(&[1; 32], 149.9).is_some());
    for t in [140.0, 160.0, 180.0] {
        assert!(cache.use_at(&[1; 32], t).is_some());
    }
    assert!(cache.get(&[1; 32], 199.9).is_some());
    assert!(cache.get(&[1; 32], 200.0).is_none(), "absolute");
    assert!(cache.use_at(&[1; 32], 200.0).is_none());
}

#[test]
fn uses_are_reported_at_most_once_per_interval() {
    let cache = Sessions::default();
    let (r, seen) = record("u1", 1e9, 100.0, 1e6);
    cache.put([1; 32], r, seen);
    assert!(cache.take_used().is_empty());
    for i in 0..10 {
        cache.use_at(&[1; 32], 101.0 + f64::from(i) * 0.05);
    }
    assert_eq!(cache.take_used(), vec![([1; 32], 101.0)]);
    assert!(cache.take_used().is_empty(), "drained");
    cache.use_at(&[1; 32], 101.5);
    assert!(cache.take_used().is_empty(), "within the interval");
    cache.use_at(&[1; 32], 102.0);
    assert_eq!(cache.take_used(), vec![([1; 32], 102.0)]);
}

#[test]
fn refusals_ends_and_user_changes_drop_entries() {
    let cache = Sessions::default();
    let (a, seen) = record("u1", 1e9, 100.0, 1e6);
    cache.put([1; 32], a, seen);
    let (b, seen) = record("u2", 1e9, 100.0, 1e6);
    cache.put([2; 32], b, seen);
    cache.refuse([3; 32], 110.0);
    assert!(cache.refused(&[3; 32], 109.0));
    assert!(!cache.refused(&[3; 32], 110.0));
    cache.drop_user("u1");
    assert!(cache.get(&[1; 32], 101.0).is_none());
    assert!(cache.get(&[2; 32], 101.0).is_some());
    cache.drop_digest(&[2; 32]);
    assert!(cache.get(&[2; 32], 101.0).is_none());
    cache.drop_digest(&[3; 32]);
    assert!(
        !cache.refused(&[3; 32], 101.0),
        "a started session's refusal goes"
    );
    // A refusal replaces a live entry; a push replaces a refusal.
    let (c, seen) = record("u3", 1e9, 100.0, 1e6);
    cache.put([4; 32], c, seen);
    cache.refuse([4; 32], 1e9);
    assert!(cache.get(&[4; 32], 101.0).is_none());
    let (c, seen) = record("u3", 1e9, 100.0, 1e6);
    cache.put([4; 32], c, seen);
    assert!(!cache.refused(&[4; 32], 101.0));
    cache.clear();
    assert!(cache.is_empty());
}

#[test]
fn an_answer_older_than_a_drop_is_not_held() {
    let cache = Sessions::default();
    let put = |cache: &Sessions, user: &str| {
        let (r, seen) = record(user, 1e12, 100.0, 1e6);
        cache.put([1; 32], r, seen)
    };
    // A lookup's answer arriving after the session's end was delivered: not held.
    cache.begin_lookup([1; 32]);
    cache.drop_digest(&[1; 32]);
    assert!(!put(&cache, "u1"));
    assert!(cache.get(&[1; 32], 101.0).is_none());
    // A drop before the lookup began does not matter.
    cache.begin_lookup([1; 32]);
    assert!(put(&cache, "u1"));
    assert!(cache.get(&[1; 32], 101.0).is_some());
    // Its user's change, or a clear, while it ran: not held either.
    cache.begin_lookup([1; 32]);
    cache.drop_user("u1");
    assert!(!put(&cache, "u1"));
    cache.begin_lookup([1; 32]);
    cache.drop_user("someone-else");
    assert!(put(&cache, "u1"));
    cache.begin_lookup([1; 32]);
    cache.clear();
    assert!(!put(&cache, "u1"));
    // A push no lookup asked for is held.
    assert!(put(&cache, "u1"));
}

#[test]
fn navigations_are_redirected_and_scripts_are_not() {
    let get = http::Method::GET;
    assert!(wants_redirect(&get, &HeaderMap::new()));
    assert!(wants_redirect(&http::Method::HEAD, &HeaderMap::new()));
    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    assert!(wants_redirect(&get, &headers(&[("accept", browser)])));
    assert!(wants_redirect(&get, &headers(&[("accept", "*/*")])));
    assert!(wants_redirect(
        &get,
        &headers(&[("accept", "application/json, text/html")])
    ));
    assert!(wants_redirect(
        &get,
        &headers(&[("sec-fetch-mode", "navigate")])
    ));
    assert!(wants_redirect(
        &get,
        &headers(&[("sec-fetch-mode", "no-cors")])
    ));
    assert!(!wants_redirect(
        &get,
        &headers(&[("accept", "application/json")])
    ));
    assert!(!wants_redirect(
        &get,
        &headers(&[("accept", "Application/JSON; charset=utf-8")])
    ));
    assert!(!wants_redirect(
        &get,
        &headers(&[("x-requested-with", "XMLHttpRequest")])
    ));
    assert!(!wants_redirect(
        &get,
        &headers(&[("sec-fetch-mode", "cors")])
    ));
    assert!(!wants_redirect(
        &get,
        &headers(&[("sec-fetch-mode", "same-origin")])
    ));
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let method = http::Method::from_bytes(method.as_bytes()).expect("method");
        assert!(!wants_redirect(&method, &headers(&[("accept", browser)])));
    }
}

#[test]
fn the_login_address_keeps_the_deep_link_on_this_origin() {
    assert_eq!(
        login_location("/app/reports?q=a%20b&x=1"),
        "/login?return_to=/app/reports%3Fq%3Da%2520b%26x%3D1"
    );
    assert_eq!(login_location("/app/"), "/login?return_to=/app/");
    // Anything the login would not return to: the bare login, never elsewhere.
    for target in [
        "//evil.example/x",
        "/\\evil.example",
        "https://evil.example/",
        "/app/../x",
        "/app/./x",
        "/a b",
        "/é",
        "",
        "evil",
    ] {
        assert_eq!(login_location(target), "/login", "{target:?}");
    }
    let long = format!("/{}", "a".repeat(MAX_RETURN_TO));
    assert_eq!(login_location(&long), "/login");
    // Every address is the login's path with one query parameter: whatever the
    // target holds is inside that parameter, percent-encoded (`?`, `&`, `#`, `\`).
    for target in [
        "/%2F%2Fevil.example",
        "/%5Cevil",
        "/app?next=//evil.example#x",
    ] {
        let location = login_location(target);
        let (path, query) = location.split_once('?').expect("a query");
        assert_eq!(path, "/login");
        assert!(query.starts_with("return_to=/"), "{location}");
        assert!(!query[10..].contains(['?', '&', '#', '\\']), "{location}");
    }
}

#[test]
fn the_refusal_is_a_redirect_or_a_401() {
    let redirect = refusal(true, "/app/?q=1");
    assert_eq!(redirect.status, StatusCode::SEE_OTHER);
    assert_eq!(redirect.code, "session_required");
    assert_eq!(
        redirect.headers,
        vec![(
            LOCATION,
            HeaderValue::from_static("/login?return_to=/app/%3Fq%3D1")
        )]
    );
    let api = refusal(false, "/app/?q=1");
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    assert_eq!(api.code, "session_required");
    assert!(api.headers.is_empty());
    assert!(api.www_authenticate.is_some());
}

#[test]
fn own_cookies_are_stripped_and_the_rest_kept_in_order() {
    let mut h = headers(&[
        (
            "cookie",
            &format!("a=1; __Host-bastion_session={ID}; b=2; __HOST-BASTION_csrf=z"),
        ),
        ("cookie", "__Host-bastion_other=1"),
        ("cookie", "c=3"),
        ("accept", "*/*"),
    ]);
    strip_own_cookies(&mut h);
    let cookies: Vec<&str> = h
        .get_all(COOKIE)
        .iter()
        .map(|v| v.to_str().expect("ascii"))
        .collect();
    assert_eq!(cookies, vec!["a=1; b=2", "c=3"]);
    assert_eq!(h.get(ACCEPT).map(HeaderValue::as_bytes), Some(&b"*/*"[..]));
    // Nothing of bastion's: untouched, byte for byte.
    let mut plain = headers(&[("cookie", "a=1;b=2 ;  c=3")]);
    strip_own_cookies(&mut plain);
    assert_eq!(
        plain.get(COOKIE).map(HeaderValue::as_bytes),
        Some(&b"a=1;b=2 ;  c=3"[..])
    );
    // Only bastion's: no Cookie header at all.
    let mut only = headers(&[("cookie", &format!("__Host-bastion_session={ID}"))]);
    strip_own_cookies(&mut only);
    assert!(only.get(COOKIE).is_none());
    // A value that merely mentions the prefix is someone else's cookie.
    let mut mention = headers(&[(
        "cookie",
        "note=__Host-bastion_session; __Host-bastion_csrf=1",
    )]);
    strip_own_cookies(&mut mention);
    assert_eq!(
        mention.get(COOKIE).map(HeaderValue::as_bytes),
        Some(&b"note=__Host-bastion_session"[..])
    );
}

#[test]
fn upstream_set_cookies_of_bastion_are_dropped() {
    let mut h = headers(&[
        (
            "set-cookie",
            "__Host-bastion_session=planted; Path=/; Secure; HttpOnly",
        ),
        ("set-cookie", "app=1; Path=/"),
        ("set-cookie", " __host-Bastion_csrf=x"),
        ("set-cookie", "other=__Host-bastion_session"),
        ("content-type", "text/html"),
    ]);
    drop_own_set_cookies(&mut h);
    let kept: Vec<&str> = h
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().expect("ascii"))
        .collect();
    assert_eq!(kept, vec!["app=1; Path=/", "other=__Host-bastion_session"]);
    assert!(h.get("content-type").is_some());
}

#[test]
fn digests_are_sha256_in_hex() {
    let d = digest(b"abc");
    assert_eq!(
        hex(&d),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

mod routes {
    use super::*;
    use crate::authn::{admit, unadmitted, Caches, RouteAuth, Unadmitted};

    fn route(methods: &[&str]) -> RouteAuth {
        let section = json!({"public": false, "methods": methods,
                             "scopes": {"by_method": {}, "default": []}});
        RouteAuth::from_section(&section).expect("a valid section")
    }

    fn uri(target: &str) -> http::Uri {
        target.parse().expect("uri")
    }

    #[test]
    fn a_session_route_without_a_session_is_no_session() {
        let caches = Caches::new();
        let none = HeaderMap::new();
        assert_eq!(
            unadmitted(&caches, &route(&["session"]), None, &none, 1.0),
            Unadmitted::NoSession("absent")
        );
        // A route listing session answers its refusal, not the bearer 401.
        assert_eq!(
            unadmitted(&caches, &route(&["api_key", "session"]), None, &none, 1.0),
            Unadmitted::NoSession("absent")
        );
        let doubled = headers(&[(
            "cookie",
            "__Host-bastion_session=a; __Host-bastion_session=a",
        )]);
        assert_eq!(
            unadmitted(&caches, &route(&["session"]), None, &doubled, 1.0),
            Unadmitted::NoSession("duplicate")
        );
        // Without session in the list: the bearer 401, whatever cookie is sent.
        let cookie = headers(&[("cookie", &format!("__Host-bastion_session={ID}"))]);
        assert_eq!(
            unadmitted(&caches, &route(&["api_key"]), None, &cookie, 1.0),
            Unadmitted::Unauthenticated
        );
    }

    #[test]
    fn the_first_method_whose_credential_is_present_decides() {
        let caches = Caches::new();
        let both = headers(&[
            ("authorization", "Bearer bst_not_a_real_key"),
            ("cookie", &format!("__Host-bastion_session={ID}")),
        ]);
        // api_key first: the key decides (refused: not well formed).
        assert_eq!(
            unadmitted(&caches, &route(&["api_key", "session"]), None, &both, 1.0),
            Unadmitted::Refused
        );
        // session first: an unknown session is a lookup of its digest.
        assert_eq!(
            unadmitted(&caches, &route(&["session", "api_key"]), None, &both, 1.0),
            Unadmitted::SessionMiss(digest(ID.as_bytes()))
        );
    }

    #[test]
    fn a_cached_session_is_admitted_and_a_refused_one_is_no_session() {
        let caches = Caches::new();
        // Ids of their own: the session cache is process-wide.
        let (live, refused) = (
            "bGl2ZS1zZXNzaW9uLWZvci10aGUtcm91dGUtdGVzdA",
            "cmVmdXNlZC1zZXNzaW9u",
        );
        let (record, seen) = record("u-live", 1e12, authn_now(), 3600.0);
        sessions().put(digest(live.as_bytes()), record, seen);
        sessions().refuse(digest(refused.as_bytes()), 1e12);
        let now = authn_now();
        let get = http::Method::GET;
        let with = |id: &str| headers(&[("cookie", &format!("a=1; __Host-bastion_session={id}"))]);
        let admitted = admit(
            &caches,
            &route(&["session"]),
            "app",
            &get,
            &uri("/app/"),
            &with(live),
            None,
            now,
        )
        .expect("admitted");
        assert_eq!(admitted.identity.method, "session");
        assert_eq!(admitted.identity.subject.as_deref(), Some("u-live"));
        // The cookie header is not a credential header: it is filtered, not dropped.
        assert!(admitted.credential_headers.is_empty());
        assert_eq!(
            unadmitted(&caches, &route(&["session"]), None, &with(refused), now),
            Unadmitted::NoSession("unknown")
        );
        sessions().drop_digest(&digest(live.as_bytes()));
        assert!(admit(
            &caches,
            &route(&["session"]),
            "app",
            &get,
            &uri("/app/"),
            &with(live),
            None,
            now
        )
        .is_none());
    }

    fn authn_now() -> f64 {
        crate::authn::unix_now()
    }
}
