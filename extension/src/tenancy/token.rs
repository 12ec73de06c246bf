//! HS256 JSON Web Tokens for `steward.enter_tenant_token`: plain functions, no backend needed.
//!
//! Only what steward needs is accepted: header `alg` must be `HS256` (no `none`, no key
//! confusion), the signature must verify against one of the given keys in constant time, and the
//! claims must carry `tenant_id` (a UUID), `sub` (the actor) and `exp` (seconds since the epoch,
//! in the future).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub tenant_id: [u8; 16],
    pub tenant_text: String,
    pub sub: String,
    pub exp: i64,
}

/// Why a token was refused. The text never repeats the token or a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Malformed(&'static str),
    UnsupportedAlgorithm(String),
    BadSignature,
    Expired { exp: i64, now: i64 },
    MissingClaim(&'static str),
    BadClaim(&'static str),
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Malformed(why) => write!(f, "malformed token: {why}"),
            TokenError::UnsupportedAlgorithm(alg) => {
                write!(f, "token algorithm \"{alg}\" is not accepted (only HS256)")
            }
            TokenError::BadSignature => write!(f, "token signature does not verify"),
            TokenError::Expired { exp, .. } => {
                write!(f, "token expired at {exp} (seconds since the epoch)")
            }
            TokenError::MissingClaim(c) => write!(f, "token has no \"{c}\" claim"),
            TokenError::BadClaim(c) => {
                write!(f, "token claim \"{c}\" has the wrong type or format")
            }
        }
    }
}

fn b64(part: &str, what: &'static str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed(what))
}

/// Verifies `token` against `keys` at time `now` (seconds since the epoch).
pub fn verify<K: AsRef<[u8]>>(token: &str, keys: &[K], now: i64) -> Result<Claims, TokenError> {
    let mut parts = token.trim().split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("expected three dot-separated parts"));
    };
    let header: serde_json::Value = serde_json::from_slice(&b64(h, "header is not base64url")?)
        .map_err(|_| TokenError::Malformed("header is not JSON"))?;
    match header.get("alg").and_then(|a| a.as_str()) {
        Some("HS256") => {}
        Some(other) => return Err(TokenError::UnsupportedAlgorithm(other.to_string())),
        None => return Err(TokenError::Malformed("header has no alg")),
    }
    let signature = b64(s, "signature is not base64url")?;
    let signed = &token.trim()[..h.len() + 1 + p.len()];
    let verified = keys.iter().any(|key| {
        let Ok(mut mac) = HmacSha256::new_from_slice(key.as_ref()) else {
            return false;
        };
        mac.update(signed.as_bytes());
        mac.verify_slice(&signature).is_ok()
    });
    if !verified {
        return Err(TokenError::BadSignature);
    }
    let claims: serde_json::Value = serde_json::from_slice(&b64(p, "payload is not base64url")?)
        .map_err(|_| TokenError::Malformed("payload is not JSON"))?;
    let exp = match claims.get("exp") {
        None => return Err(TokenError::MissingClaim("exp")),
        Some(v) => v.as_i64().ok_or(TokenError::BadClaim("exp"))?,
    };
    if exp <= now {
        return Err(TokenError::Expired { exp, now });
    }
    let sub = match claims.get("sub") {
        None => return Err(TokenError::MissingClaim("sub")),
        Some(v) => v
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or(TokenError::BadClaim("sub"))?,
    };
    let tenant_text = match claims.get("tenant_id") {
        None => return Err(TokenError::MissingClaim("tenant_id")),
        Some(v) => v.as_str().ok_or(TokenError::BadClaim("tenant_id"))?,
    };
    let tenant_id = parse_uuid(tenant_text).ok_or(TokenError::BadClaim("tenant_id"))?;
    Ok(Claims {
        tenant_id,
        tenant_text: tenant_text.to_string(),
        sub: sub.to_string(),
        exp,
    })
}

/// Parses the canonical 8-4-4-4-12 form (and the 32-hex-digit form) of a UUID.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !(s.len() == 32 || s.len() == 36) {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Signs claims with `key` (used by tests and the demo to mint tokens).
pub fn sign(claims: &serde_json::Value, key: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{header}.{payload}");
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(signed.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signed}.{sig}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const TENANT: &str = "0193a4d2-7c1e-7000-8000-000000000001";

    fn good() -> serde_json::Value {
        json!({"tenant_id": TENANT, "sub": "alice@example.com", "exp": 2_000_000_000})
    }

    #[test]
    fn a_good_token_verifies() {
        let c = verify(&sign(&good(), KEY), &[KEY], 1_900_000_000).unwrap();
        assert_eq!(c.sub, "alice@example.com");
        assert_eq!(c.tenant_text, TENANT);
        assert_eq!(c.tenant_id[15], 1);
    }

    #[test]
    fn refusals() {
        let t = sign(&good(), KEY);
        let cases: Vec<(String, TokenError)> = vec![
            (sign(&good(), b"another key"), TokenError::BadSignature),
            (format!("{t}x"), TokenError::BadSignature),
            (
                "a.b".into(),
                TokenError::Malformed("expected three dot-separated parts"),
            ),
            (
                sign(&json!({"tenant_id": TENANT, "sub": "a", "exp": 5}), KEY),
                TokenError::Expired {
                    exp: 5,
                    now: 1_900_000_000,
                },
            ),
            (
                sign(&json!({"tenant_id": TENANT, "sub": "a"}), KEY),
                TokenError::MissingClaim("exp"),
            ),
            (
                sign(&json!({"sub": "a", "exp": 2_000_000_000}), KEY),
                TokenError::MissingClaim("tenant_id"),
            ),
            (
                sign(
                    &json!({"tenant_id": "nope", "sub": "a", "exp": 2_000_000_000}),
                    KEY,
                ),
                TokenError::BadClaim("tenant_id"),
            ),
            (
                sign(
                    &json!({"tenant_id": TENANT, "sub": "", "exp": 2_000_000_000}),
                    KEY,
                ),
                TokenError::BadClaim("sub"),
            ),
        ];
        for (token, want) in cases {
            assert_eq!(
                verify(&token, &[KEY], 1_900_000_000),
                Err(want),
                "token {token}"
            );
        }
    }

    #[test]
    fn alg_none_and_tampered_payload_are_refused() {
        let t = sign(&good(), KEY);
        let parts: Vec<&str> = t.split('.').collect();
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let forged = format!("{none_header}.{}.", parts[1]);
        assert_eq!(
            verify(&forged, &[KEY], 0),
            Err(TokenError::UnsupportedAlgorithm("none".into()))
        );
        let other = URL_SAFE_NO_PAD.encode(
            json!({"tenant_id": "0193a4d2-7c1e-7000-8000-000000000002", "sub": "x", "exp": 2_000_000_000})
                .to_string(),
        );
        let swapped = format!("{}.{other}.{}", parts[0], parts[2]);
        assert_eq!(verify(&swapped, &[KEY], 0), Err(TokenError::BadSignature));
    }

    #[test]
    fn any_of_several_keys_verifies() {
        let t = sign(&good(), KEY);
        assert!(verify(&t, &[b"old".as_slice(), KEY], 0).is_ok());
        assert_eq!(
            verify(&t, &[b"old".as_slice()], 0),
            Err(TokenError::BadSignature)
        );
        assert_eq!(verify::<&[u8]>(&t, &[], 0), Err(TokenError::BadSignature));
    }

    #[test]
    fn uuid_parsing() {
        assert!(parse_uuid(TENANT).is_some());
        assert!(parse_uuid("0193a4d27c1e70008000000000000001").is_some());
        assert!(parse_uuid("0193a4d2-7c1e-7000-8000-00000000000").is_none());
        assert!(parse_uuid("zz93a4d2-7c1e-7000-8000-000000000001").is_none());
    }
}
