//! The header family a forward-auth proxy names the request to judge with
//! (`forward_auth.headers`), as the route table holds it: nginx's
//! `X-Original-*` or Traefik / Caddy's `X-Forwarded-*` (`crate::forward_auth`
//! reads them).

use serde::Deserialize;

/// `forward_auth.headers`: the header family the original request is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// The settings' default.
    #[default]
    Nginx,
    Forwarded,
}

/// The table's `forward_auth` section.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardAuth {
    pub headers: Family,
}

pub(crate) const ORIGINAL_METHOD: &str = "x-original-method";
pub(crate) const ORIGINAL_URI: &str = "x-original-uri";
pub(crate) const FORWARDED_METHOD: &str = "x-forwarded-method";
pub(crate) const FORWARDED_URI: &str = "x-forwarded-uri";
pub(crate) const FORWARDED_HOST: &str = "x-forwarded-host";

impl Family {
    /// `forward_auth.headers` as the settings spell it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Family::Nginx => "nginx",
            Family::Forwarded => "forwarded",
        }
    }

    /// This family's (method, URI) header names; then the other family's.
    pub(crate) fn names(self) -> ([&'static str; 2], [&'static str; 2]) {
        let nginx = [ORIGINAL_METHOD, ORIGINAL_URI];
        let forwarded = [FORWARDED_METHOD, FORWARDED_URI];
        match self {
            Family::Nginx => (nginx, forwarded),
            Family::Forwarded => (forwarded, nginx),
        }
    }
}
