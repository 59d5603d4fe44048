//! Sender-constrained tokens: `bastion.gateway.authn.mtls.check_binding`
//! (RFC 8705 §3), which Python's `authenticate` step runs on the claims of
//! every identity a method vouched for — bastion's own tokens, trusted
//! issuers' and introspection answers alike.
//!
//! A token is accepted as a plain bearer token when it has no `cnf` (or a
//! JSON `null` one), an empty one, or `{"x5t#S256": null}`; bound to a client
//! certificate (`{"x5t#S256": "<base64url SHA-256>"}`) it is accepted only
//! over a connection presenting that certificate. Every other binding — DPoP's
//! `jkt`, any other member — is refused: no proof of possession is verified
//! here, so such a token is never taken as a bearer token (`cnf_unsupported`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

use super::mtls::Thumbprint;

/// Python's `check_binding` for a token's `cnf` claim over a connection with
/// the client certificate `cert` (its SHA-256 thumbprint): `Err` with the
/// reason Python records on its `401 invalid_token`.
pub fn check(cnf: Option<&Value>, cert: Option<&Thumbprint>) -> Result<(), &'static str> {
    let members = match cnf {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(members)) => members,
        Some(_) => return Err("malformed"),
    };
    if members.keys().any(|member| member != "x5t#S256") {
        return Err("cnf_unsupported");
    }
    match members.get("x5t#S256") {
        None | Some(Value::Null) => Ok(()),
        // The thumbprint is public: a plain comparison of the strings, as Python's.
        Some(Value::String(bound)) => match cert {
            Some(cert) if URL_SAFE_NO_PAD.encode(cert) == *bound => Ok(()),
            _ => Err("cnf_mismatch"),
        },
        Some(_) => Err("malformed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn binding_is_checked_as_python_checks_it() {
        let cert: Thumbprint = [7; 32];
        let x5t = URL_SAFE_NO_PAD.encode(cert);
        let other: Thumbprint = [8; 32];
        for unbound in [
            None,
            Some(json!(null)),
            Some(json!({})),
            Some(json!({"x5t#S256": null})),
        ] {
            assert_eq!(check(unbound.as_ref(), None), Ok(()), "{unbound:?}");
            assert_eq!(check(unbound.as_ref(), Some(&cert)), Ok(()), "{unbound:?}");
        }
        let bound = json!({"x5t#S256": x5t});
        assert_eq!(check(Some(&bound), Some(&cert)), Ok(()));
        assert_eq!(check(Some(&bound), Some(&other)), Err("cnf_mismatch"));
        assert_eq!(check(Some(&bound), None), Err("cnf_mismatch"));
        // Padded or otherwise spelled: Python compares the strings.
        let padded = json!({"x5t#S256": format!("{x5t}=")});
        assert_eq!(check(Some(&padded), Some(&cert)), Err("cnf_mismatch"));
        // DPoP (RFC 9449) and any other member: never a bearer token here.
        for unsupported in [
            json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}),
            json!({"x5t#S256": x5t, "jkt": "x"}),
            json!({"jwk": {}}),
        ] {
            assert_eq!(
                check(Some(&unsupported), Some(&cert)),
                Err("cnf_unsupported"),
                "{unsupported}"
            );
        }
        for malformed in [json!("x"), json!([]), json!(1), json!({"x5t#S256": 5})] {
            assert_eq!(
                check(Some(&malformed), Some(&cert)),
                Err("malformed"),
                "{malformed}"
            );
        }
    }
}
