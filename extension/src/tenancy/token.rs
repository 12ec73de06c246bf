//! JSON Web Tokens for `steward.enter_tenant_token`: plain functions, no backend needed.
//!
//! A token is accepted only when:
//! - its header's `alg` is one steward verifies (HS256, RS256, ES256, EdDSA; never `none`) and is
//!   the algorithm of the key that verifies it (no key confusion: an RSA public key is never
//!   used as an HMAC secret);
//! - its header's `kid`, when present, names that key; without a `kid` every key of that
//!   algorithm is tried;
//! - the signature verifies (HMAC in constant time);
//! - `exp` is present and in the future, `nbf` (when present) is not in the future beyond a
//!   small leeway for clocks, `tenant_id` is a UUID and `sub` a non-empty string;
//! - the key's `issuer` and `audience`, when it names them, match `iss` and `aud`;
//! - the key's maximum lifetime, when it has one, bounds both `exp - iat` and `exp - now`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How far in the future a token's `nbf` may be (the identity provider's clock may run ahead).
pub const NBF_LEEWAY_SECONDS: i64 = 30;

/// The smallest RSA modulus accepted, in bits.
pub const RSA_MIN_BITS: usize = 2048;

/// The signature algorithms steward verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Hs256,
    Rs256,
    Es256,
    EdDsa,
}

impl Alg {
    pub fn parse(name: &str) -> Option<Alg> {
        match name {
            "HS256" => Some(Alg::Hs256),
            "RS256" => Some(Alg::Rs256),
            "ES256" => Some(Alg::Es256),
            "EdDSA" => Some(Alg::EdDsa),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::Hs256 => "HS256",
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
        }
    }
}

/// What a key verifies with.
#[derive(Clone)]
enum Material {
    Secret(Vec<u8>),
    Rsa(Box<rsa::pkcs1v15::VerifyingKey<Sha256>>),
    P256(Box<p256::ecdsa::VerifyingKey>),
    Ed25519(Box<ed25519_dalek::VerifyingKey>),
}

/// One row of `steward.signing_keys`, parsed.
#[derive(Clone)]
pub struct Key {
    pub id: String,
    pub alg: Alg,
    material: Material,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Seconds.
    pub max_lifetime: Option<i64>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Why a key's row cannot be used. The text never repeats a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(pub String);

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn key_err(why: impl Into<String>) -> KeyError {
    KeyError(why.into())
}

fn jwk_bytes(jwk: &Value, member: &str) -> Result<Vec<u8>, KeyError> {
    let text = jwk
        .get(member)
        .and_then(Value::as_str)
        .ok_or_else(|| key_err(format!("the JWK has no \"{member}\" string")))?;
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| key_err(format!("the JWK's \"{member}\" is not base64url")))
}

fn jwk_member<'a>(jwk: &'a Value, member: &str) -> Option<&'a str> {
    jwk.get(member).and_then(Value::as_str)
}

fn expect_member(jwk: &Value, member: &str, want: &str) -> Result<(), KeyError> {
    match jwk_member(jwk, member) {
        Some(v) if v == want => Ok(()),
        Some(v) => Err(key_err(format!(
            "the JWK's \"{member}\" is \"{v}\", expected \"{want}\""
        ))),
        None => Err(key_err(format!(
            "the JWK has no \"{member}\" (expected \"{want}\")"
        ))),
    }
}

impl Key {
    /// Parses a key: `secret` for HS256, a public JWK for the others. A JWK that holds private
    /// members (`d`, `p`, `q`, `k`...) is refused: the database needs only the public half.
    pub fn parse(
        id: &str,
        alg: &str,
        secret: Option<&[u8]>,
        jwk: Option<&Value>,
        issuer: Option<String>,
        audience: Option<String>,
        max_lifetime: Option<i64>,
    ) -> Result<Key, KeyError> {
        let alg = Alg::parse(alg).ok_or_else(|| {
            key_err(format!(
                "algorithm \"{alg}\" is not one steward verifies (HS256, RS256, ES256, EdDSA)"
            ))
        })?;
        let material = match (alg, secret, jwk) {
            (Alg::Hs256, Some(s), None) => {
                if s.len() < 32 {
                    return Err(key_err(format!(
                        "an HS256 secret needs at least 32 bytes, this one has {}",
                        s.len()
                    )));
                }
                Material::Secret(s.to_vec())
            }
            (Alg::Hs256, _, _) => {
                return Err(key_err("an HS256 key has a secret and no JWK"));
            }
            (_, Some(_), _) | (_, _, None) => {
                return Err(key_err(format!(
                    "an {} key has a public JWK and no secret",
                    alg.name()
                )));
            }
            (_, None, Some(jwk)) => Key::public(alg, jwk)?,
        };
        if matches!(max_lifetime, Some(s) if s <= 0) {
            return Err(key_err("a maximum token lifetime must be positive"));
        }
        Ok(Key {
            id: id.to_string(),
            alg,
            material,
            issuer,
            audience,
            max_lifetime,
        })
    }

    fn public(alg: Alg, jwk: &Value) -> Result<Material, KeyError> {
        if !jwk.is_object() {
            return Err(key_err("the JWK is not a JSON object"));
        }
        for private in ["d", "p", "q", "dp", "dq", "qi", "k", "oth"] {
            if jwk.get(private).is_some() {
                return Err(key_err(format!(
                    "the JWK holds the private member \"{private}\": store only the public key"
                )));
            }
        }
        if let Some(a) = jwk_member(jwk, "alg") {
            if a != alg.name() {
                return Err(key_err(format!(
                    "the JWK says alg \"{a}\", the key's algorithm is \"{}\"",
                    alg.name()
                )));
            }
        }
        Ok(match alg {
            Alg::Rs256 => {
                expect_member(jwk, "kty", "RSA")?;
                let n = rsa::BigUint::from_bytes_be(&jwk_bytes(jwk, "n")?);
                let e = rsa::BigUint::from_bytes_be(&jwk_bytes(jwk, "e")?);
                if e != rsa::BigUint::from(65_537u32) {
                    return Err(key_err("the RSA public exponent must be 65537"));
                }
                if n.bits() < RSA_MIN_BITS {
                    return Err(key_err(format!(
                        "the RSA modulus has {} bits, at least {RSA_MIN_BITS} are required",
                        n.bits()
                    )));
                }
                let public = rsa::RsaPublicKey::new(n, e)
                    .map_err(|e| key_err(format!("not a usable RSA public key: {e}")))?;
                Material::Rsa(Box::new(rsa::pkcs1v15::VerifyingKey::new(public)))
            }
            Alg::Es256 => {
                expect_member(jwk, "kty", "EC")?;
                expect_member(jwk, "crv", "P-256")?;
                let (x, y) = (jwk_bytes(jwk, "x")?, jwk_bytes(jwk, "y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(key_err("a P-256 JWK's x and y are 32 bytes each"));
                }
                let point = p256::EncodedPoint::from_affine_coordinates(
                    x.as_slice().into(),
                    y.as_slice().into(),
                    false,
                );
                let key = p256::ecdsa::VerifyingKey::from_encoded_point(&point)
                    .map_err(|_| key_err("the JWK's x and y are not a point on P-256"))?;
                Material::P256(Box::new(key))
            }
            Alg::EdDsa => {
                expect_member(jwk, "kty", "OKP")?;
                expect_member(jwk, "crv", "Ed25519")?;
                let x: [u8; 32] = jwk_bytes(jwk, "x")?
                    .try_into()
                    .map_err(|_| key_err("an Ed25519 JWK's x is 32 bytes"))?;
                let key = ed25519_dalek::VerifyingKey::from_bytes(&x)
                    .map_err(|_| key_err("the JWK's x is not an Ed25519 public key"))?;
                Material::Ed25519(Box::new(key))
            }
            Alg::Hs256 => unreachable!("HS256 keys are secrets"),
        })
    }

    fn verifies(&self, signed: &[u8], signature: &[u8]) -> bool {
        use rsa::signature::Verifier;
        match &self.material {
            Material::Secret(secret) => {
                let Ok(mut mac) = HmacSha256::new_from_slice(secret) else {
                    return false;
                };
                mac.update(signed);
                mac.verify_slice(signature).is_ok()
            }
            Material::Rsa(key) => rsa::pkcs1v15::Signature::try_from(signature)
                .is_ok_and(|sig| key.verify(signed, &sig).is_ok()),
            // Both spellings of an ECDSA signature (high and low S) verify, as JWS (RFC 7518)
            // says: identity providers sign with either. steward keeps no list of tokens seen,
            // so a second spelling of a token is the same token.
            Material::P256(key) => p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify(signed, &sig).is_ok()),
            Material::Ed25519(key) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify_strict(signed, &sig).is_ok()),
        }
    }
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub tenant_id: [u8; 16],
    pub tenant_text: String,
    pub sub: String,
    pub exp: i64,
    /// The key that verified it.
    pub key_id: String,
}

/// Why a token was refused. The text never repeats the token or a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Malformed(&'static str),
    UnsupportedAlgorithm(String),
    /// No key (not revoked) of the token's algorithm, or none with the token's `kid`.
    UnknownKey {
        alg: String,
        kid: Option<String>,
    },
    BadSignature,
    Expired {
        exp: i64,
        now: i64,
    },
    NotYetValid {
        nbf: i64,
        now: i64,
    },
    MissingClaim(&'static str),
    BadClaim(&'static str),
    WrongIssuer {
        key: String,
        want: String,
        got: Option<String>,
    },
    WrongAudience {
        key: String,
        want: String,
    },
    TooLong {
        key: String,
        lifetime: i64,
        max: i64,
    },
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Malformed(why) => write!(f, "malformed token: {why}"),
            TokenError::UnsupportedAlgorithm(alg) => write!(
                f,
                "token algorithm \"{alg}\" is not accepted (HS256, RS256, ES256, EdDSA)"
            ),
            TokenError::UnknownKey {
                alg,
                kid: Some(kid),
            } => write!(
                f,
                "token names key \"{}\", which is not a current {alg} key in steward.signing_keys",
                kid.chars().take(64).collect::<String>().escape_debug()
            ),
            TokenError::UnknownKey { alg, kid: None } => write!(
                f,
                "no current {alg} key in steward.signing_keys could verify the token"
            ),
            TokenError::BadSignature => write!(f, "token signature does not verify"),
            TokenError::Expired { exp, .. } => {
                write!(f, "token expired at {exp} (seconds since the epoch)")
            }
            TokenError::NotYetValid { nbf, .. } => {
                write!(
                    f,
                    "token is not valid before {nbf} (seconds since the epoch)"
                )
            }
            TokenError::MissingClaim(c) => write!(f, "token has no \"{c}\" claim"),
            TokenError::BadClaim(c) => {
                write!(f, "token claim \"{c}\" has the wrong type or format")
            }
            TokenError::WrongIssuer { key, want, got } => match got {
                Some(got) => write!(
                    f,
                    "token issuer \"{got}\" is not \"{want}\", the issuer of key \"{key}\""
                ),
                None => write!(
                    f,
                    "token has no \"iss\" claim; key \"{key}\" requires issuer \"{want}\""
                ),
            },
            TokenError::WrongAudience { key, want } => write!(
                f,
                "token audience does not include \"{want}\", the audience of key \"{key}\""
            ),
            TokenError::TooLong { key, lifetime, max } => write!(
                f,
                "token lives {lifetime} s, longer than the {max} s key \"{key}\" allows"
            ),
        }
    }
}

fn b64(part: &str, what: &'static str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed(what))
}

/// The latest NumericDate accepted: 9999-12-31T23:59:59Z.
const MAX_DATE: i64 = 253_402_300_799;

/// A NumericDate claim: an integer, or a number with a fraction (truncated), from 0 to year 9999
/// (so that no arithmetic on it can overflow).
fn numeric_date(claims: &Value, name: &'static str) -> Result<Option<i64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| {
                v.as_f64()
                    .filter(|f| f.is_finite() && f.abs() < 1e15)
                    .map(|f| f as i64)
            })
            .filter(|d| (0..=MAX_DATE).contains(d))
            .map(Some)
            .ok_or(TokenError::BadClaim(name)),
    }
}

/// Verifies `token` against `keys` at time `now` (seconds since the epoch).
pub fn verify(token: &str, keys: &[Key], now: i64) -> Result<Claims, TokenError> {
    let token = token.trim();
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("expected three dot-separated parts"));
    };
    let header: Value = serde_json::from_slice(&b64(h, "header is not base64url")?)
        .map_err(|_| TokenError::Malformed("header is not JSON"))?;
    let alg_name = match header.get("alg").and_then(Value::as_str) {
        Some(a) => a,
        None => return Err(TokenError::Malformed("header has no alg")),
    };
    let alg =
        Alg::parse(alg_name).ok_or_else(|| TokenError::UnsupportedAlgorithm(alg_name.into()))?;
    if header.get("crit").is_some() {
        return Err(TokenError::Malformed(
            "header has critical extensions steward does not know",
        ));
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.as_str()),
        Some(_) => return Err(TokenError::Malformed("header's kid is not a string")),
    };
    let signature = b64(s, "signature is not base64url")?;
    let signed = &token.as_bytes()[..h.len() + 1 + p.len()];
    let mut candidates = keys
        .iter()
        .filter(|k| k.alg == alg && kid.is_none_or(|kid| kid == k.id))
        .peekable();
    if candidates.peek().is_none() {
        return Err(TokenError::UnknownKey {
            alg: alg.name().into(),
            kid: kid.map(str::to_string),
        });
    }
    let key = candidates
        .find(|k| k.verifies(signed, &signature))
        .ok_or(TokenError::BadSignature)?;
    let claims: Value = serde_json::from_slice(&b64(p, "payload is not base64url")?)
        .map_err(|_| TokenError::Malformed("payload is not JSON"))?;
    if !claims.is_object() {
        return Err(TokenError::Malformed("payload is not a JSON object"));
    }
    let exp = numeric_date(&claims, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
    if exp <= now {
        return Err(TokenError::Expired { exp, now });
    }
    if let Some(nbf) = numeric_date(&claims, "nbf")? {
        if nbf > now + NBF_LEEWAY_SECONDS {
            return Err(TokenError::NotYetValid { nbf, now });
        }
    }
    let iat = numeric_date(&claims, "iat")?;
    if let Some(want) = &key.issuer {
        let got = match claims.get("iss") {
            None => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return Err(TokenError::BadClaim("iss")),
        };
        if got != Some(want.as_str()) {
            return Err(TokenError::WrongIssuer {
                key: key.id.clone(),
                want: want.clone(),
                got: got.map(str::to_string),
            });
        }
    }
    if let Some(want) = &key.audience {
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => a == want,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(want)),
            _ => false,
        };
        if !ok {
            return Err(TokenError::WrongAudience {
                key: key.id.clone(),
                want: want.clone(),
            });
        }
    }
    if let Some(max) = key.max_lifetime {
        // From issue to expiry, and from now to expiry: a token without iat is no escape.
        let lifetime = (exp - iat.unwrap_or(now)).max(exp - now);
        if lifetime > max {
            return Err(TokenError::TooLong {
                key: key.id.clone(),
                lifetime,
                max,
            });
        }
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
        key_id: key.id.clone(),
    })
}

/// Parses a UUID in its canonical 8-4-4-4-12 form, or as 32 hex digits; nothing else (no signs,
/// no dashes elsewhere, no braces): what the service routes by must read the same here.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    let hex: Vec<u8> = match b.len() {
        32 => b.to_vec(),
        36 => {
            if [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
                return None;
            }
            b.iter().copied().filter(|c| *c != b'-').collect()
        }
        _ => return None,
    };
    if hex.len() != 32 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = digit(hex[2 * i]) << 4 | digit(hex[2 * i + 1]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const TENANT: &str = "0193a4d2-7c1e-7000-8000-000000000001";
    const NOW: i64 = 1_900_000_000;

    fn enc(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    fn hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
        let signed = format!("{}.{}", enc(header), enc(claims));
        let mut mac = HmacSha256::new_from_slice(secret).unwrap();
        mac.update(signed.as_bytes());
        format!(
            "{signed}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    fn hs(claims: &Value) -> String {
        hs256(&json!({"alg": "HS256", "typ": "JWT"}), claims, SECRET)
    }

    fn secret_key(id: &str) -> Key {
        Key::parse(id, "HS256", Some(SECRET), None, None, None, None).unwrap()
    }

    fn good() -> Value {
        json!({"tenant_id": TENANT, "sub": "alice@example.com", "exp": NOW + 600})
    }

    #[test]
    fn a_good_token_verifies() {
        let c = verify(&hs(&good()), &[secret_key("k1")], NOW).unwrap();
        assert_eq!(c.sub, "alice@example.com");
        assert_eq!(c.tenant_text, TENANT);
        assert_eq!(c.tenant_id[15], 1);
        assert_eq!(c.key_id, "k1");
    }

    #[test]
    fn claim_refusals() {
        let with = |extra: Value| {
            let mut c = good();
            for (k, v) in extra.as_object().unwrap() {
                if v.is_null() {
                    c.as_object_mut().unwrap().remove(k);
                } else {
                    c[k] = v.clone();
                }
            }
            hs(&c)
        };
        let cases = vec![
            (
                with(json!({"exp": NOW - 1})),
                TokenError::Expired {
                    exp: NOW - 1,
                    now: NOW,
                },
            ),
            (
                with(json!({"exp": NOW})),
                TokenError::Expired { exp: NOW, now: NOW },
            ),
            (with(json!({"exp": null})), TokenError::MissingClaim("exp")),
            (with(json!({"exp": "soon"})), TokenError::BadClaim("exp")),
            (
                with(json!({"nbf": NOW + NBF_LEEWAY_SECONDS + 1})),
                TokenError::NotYetValid {
                    nbf: NOW + NBF_LEEWAY_SECONDS + 1,
                    now: NOW,
                },
            ),
            (with(json!({"nbf": []})), TokenError::BadClaim("nbf")),
            (with(json!({"exp": i64::MAX})), TokenError::BadClaim("exp")),
            (with(json!({"iat": i64::MIN})), TokenError::BadClaim("iat")),
            (with(json!({"exp": -5})), TokenError::BadClaim("exp")),
            (
                with(json!({"tenant_id": null})),
                TokenError::MissingClaim("tenant_id"),
            ),
            (
                with(json!({"tenant_id": "nope"})),
                TokenError::BadClaim("tenant_id"),
            ),
            (
                with(json!({"tenant_id": 7})),
                TokenError::BadClaim("tenant_id"),
            ),
            (with(json!({"sub": ""})), TokenError::BadClaim("sub")),
            (with(json!({"sub": null})), TokenError::MissingClaim("sub")),
        ];
        for (token, want) in cases {
            assert_eq!(verify(&token, &[secret_key("k1")], NOW), Err(want));
        }
        // Within the leeway, and a fractional exp: accepted.
        assert!(verify(
            &with(json!({"nbf": NOW + NBF_LEEWAY_SECONDS})),
            &[secret_key("k1")],
            NOW
        )
        .is_ok());
        assert!(verify(
            &with(json!({"exp": (NOW + 10) as f64 + 0.5})),
            &[secret_key("k1")],
            NOW
        )
        .is_ok());
    }

    #[test]
    fn structural_refusals() {
        let t = hs(&good());
        let parts: Vec<&str> = t.split('.').collect();
        let keys = [secret_key("k1")];
        assert_eq!(
            verify("a.b", &keys, NOW),
            Err(TokenError::Malformed("expected three dot-separated parts"))
        );
        assert_eq!(
            verify(&format!("{t}x"), &keys, NOW),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verify(&format!("{t}.x"), &keys, NOW),
            Err(TokenError::Malformed("expected three dot-separated parts"))
        );
        // Padding is not base64url without padding.
        assert_eq!(
            verify(
                &format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
                &keys,
                NOW
            ),
            Err(TokenError::Malformed("header is not base64url"))
        );
        // alg none, and a payload swapped under a good signature.
        let none = format!("{}.{}.", enc(&json!({"alg": "none"})), parts[1]);
        assert_eq!(
            verify(&none, &keys, NOW),
            Err(TokenError::UnsupportedAlgorithm("none".into()))
        );
        let mut other = good();
        other["tenant_id"] = json!("0193a4d2-7c1e-7000-8000-000000000002");
        let swapped = format!("{}.{}.{}", parts[0], enc(&other), parts[2]);
        assert_eq!(verify(&swapped, &keys, NOW), Err(TokenError::BadSignature));
        // Critical header extensions, a kid that is not a string, a payload that is no object.
        let crit = hs256(&json!({"alg": "HS256", "crit": ["exp"]}), &good(), SECRET);
        assert!(matches!(
            verify(&crit, &keys, NOW),
            Err(TokenError::Malformed(_))
        ));
        let kid = hs256(&json!({"alg": "HS256", "kid": 5}), &good(), SECRET);
        assert!(matches!(
            verify(&kid, &keys, NOW),
            Err(TokenError::Malformed(_))
        ));
        let arr = hs256(&json!({"alg": "HS256"}), &json!([1]), SECRET);
        assert_eq!(
            verify(&arr, &keys, NOW),
            Err(TokenError::Malformed("payload is not a JSON object"))
        );
    }

    #[test]
    fn keys_are_chosen_by_kid_and_algorithm() {
        let other = Key::parse("old", "HS256", Some(&[7u8; 32]), None, None, None, None).unwrap();
        let t = hs(&good());
        assert!(verify(&t, &[other.clone(), secret_key("k1")], NOW).is_ok());
        assert_eq!(
            verify(&t, std::slice::from_ref(&other), NOW),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verify(&t, &[], NOW),
            Err(TokenError::UnknownKey {
                alg: "HS256".into(),
                kid: None
            })
        );
        // A kid picks that key alone: the right secret under another key's id does not verify.
        let named = |kid: &str| hs256(&json!({"alg": "HS256", "kid": kid}), &good(), SECRET);
        assert!(verify(&named("k1"), &[other.clone(), secret_key("k1")], NOW).is_ok());
        assert_eq!(
            verify(&named("old"), &[other.clone(), secret_key("k1")], NOW),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verify(&named("gone"), &[other, secret_key("k1")], NOW),
            Err(TokenError::UnknownKey {
                alg: "HS256".into(),
                kid: Some("gone".into())
            })
        );
    }

    #[test]
    fn issuer_audience_and_lifetime_of_the_key() {
        let key = Key::parse(
            "idp",
            "HS256",
            Some(SECRET),
            None,
            Some("https://idp.example".into()),
            Some("steward".into()),
            Some(3600),
        )
        .unwrap();
        let keys = [key];
        let claims = |extra: Value| {
            let mut c = good();
            c["iss"] = json!("https://idp.example");
            c["aud"] = json!("steward");
            c["iat"] = json!(NOW);
            for (k, v) in extra.as_object().unwrap() {
                if v.is_null() {
                    c.as_object_mut().unwrap().remove(k);
                } else {
                    c[k] = v.clone();
                }
            }
            hs(&c)
        };
        assert!(verify(&claims(json!({})), &keys, NOW).is_ok());
        assert!(verify(&claims(json!({"aud": ["other", "steward"]})), &keys, NOW).is_ok());
        assert!(verify(&claims(json!({"iat": null})), &keys, NOW).is_ok());
        assert!(matches!(
            verify(&claims(json!({"iss": "https://evil.example"})), &keys, NOW),
            Err(TokenError::WrongIssuer { .. })
        ));
        assert!(matches!(
            verify(&claims(json!({"iss": null})), &keys, NOW),
            Err(TokenError::WrongIssuer { got: None, .. })
        ));
        assert!(matches!(
            verify(&claims(json!({"aud": "other"})), &keys, NOW),
            Err(TokenError::WrongAudience { .. })
        ));
        assert!(matches!(
            verify(&claims(json!({"aud": null})), &keys, NOW),
            Err(TokenError::WrongAudience { .. })
        ));
        assert_eq!(
            verify(&claims(json!({"exp": NOW + 7200})), &keys, NOW),
            Err(TokenError::TooLong {
                key: "idp".into(),
                lifetime: 7200,
                max: 3600
            })
        );
        // Issued long ago but expiring soon is still too long a token.
        assert!(matches!(
            verify(&claims(json!({"iat": NOW - 7000})), &keys, NOW),
            Err(TokenError::TooLong { .. })
        ));
        // Without iat, the time left counts.
        assert!(matches!(
            verify(&claims(json!({"iat": null, "exp": NOW + 4000})), &keys, NOW),
            Err(TokenError::TooLong { .. })
        ));
    }

    fn sign_with(alg: &str, kid: &str, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
        let signed = format!(
            "{}.{}",
            enc(&json!({"alg": alg, "kid": kid, "typ": "JWT"})),
            enc(claims)
        );
        let sig = sign(signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    #[test]
    fn public_keys_verify_and_are_never_confused() {
        use ed25519_dalek::Signer as _;
        use rsa::traits::PublicKeyParts;

        let ed = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
        let ed_jwk = json!({"kty": "OKP", "crv": "Ed25519",
                            "x": URL_SAFE_NO_PAD.encode(ed.verifying_key().as_bytes())});
        let ec = p256::ecdsa::SigningKey::from_slice(&[5u8; 32]).unwrap();
        let point = ec.verifying_key().to_encoded_point(false);
        let ec_jwk = json!({"kty": "EC", "crv": "P-256",
                            "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
                            "y": URL_SAFE_NO_PAD.encode(point.y().unwrap())});
        let rsa_private = {
            use rsa::pkcs8::DecodePrivateKey;
            rsa::RsaPrivateKey::from_pkcs8_pem(include_str!("testdata/rsa2048.pem")).unwrap()
        };
        let rsa_jwk = json!({"kty": "RSA",
                             "n": URL_SAFE_NO_PAD.encode(rsa_private.n().to_bytes_be()),
                             "e": URL_SAFE_NO_PAD.encode(rsa_private.e().to_bytes_be())});
        // An RSA key must use the public exponent 65537.
        let mut e3 = rsa_jwk.clone();
        e3["e"] = json!("Aw");
        assert!(Key::parse("e3", "RS256", None, Some(&e3), None, None, None).is_err());
        let keys = [
            Key::parse("ed", "EdDSA", None, Some(&ed_jwk), None, None, None).unwrap(),
            Key::parse("ec", "ES256", None, Some(&ec_jwk), None, None, None).unwrap(),
            Key::parse("rsa", "RS256", None, Some(&rsa_jwk), None, None, None).unwrap(),
        ];
        let ed_token = sign_with("EdDSA", "ed", &good(), |m| ed.sign(m).to_bytes().to_vec());
        let ec_token = sign_with("ES256", "ec", &good(), |m| {
            let s: p256::ecdsa::Signature = ec.sign(m);
            s.to_bytes().to_vec()
        });
        let rsa_signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(rsa_private.clone());
        let rsa_token = sign_with("RS256", "rsa", &good(), |m| {
            use rsa::signature::SignatureEncoding;
            rsa::signature::Signer::sign(&rsa_signer, m).to_vec()
        });
        for (t, id) in [(&ed_token, "ed"), (&ec_token, "ec"), (&rsa_token, "rsa")] {
            assert_eq!(verify(t, &keys, NOW).unwrap().key_id, id);
        }
        // The classic confusion: an HS256 token whose "secret" is the RSA key's public JWK text.
        let confused = hs256(
            &json!({"alg": "HS256", "kid": "rsa"}),
            &good(),
            rsa_jwk.to_string().as_bytes(),
        );
        assert_eq!(
            verify(&confused, &keys, NOW),
            Err(TokenError::UnknownKey {
                alg: "HS256".into(),
                kid: Some("rsa".into())
            })
        );
        // A signature made by one key under another's kid, or a tampered payload, fails.
        let wrong_kid = sign_with("EdDSA", "ec", &good(), |m| ed.sign(m).to_bytes().to_vec());
        assert!(verify(&wrong_kid, &keys, NOW).is_err());
        let p: Vec<&str> = ec_token.split('.').collect();
        let mut other = good();
        other["sub"] = json!("mallory");
        let tampered = format!("{}.{}.{}", p[0], enc(&other), p[2]);
        assert_eq!(verify(&tampered, &keys, NOW), Err(TokenError::BadSignature));
    }

    #[test]
    fn bad_key_rows_are_refused() {
        let parse = |alg: &str, secret: Option<&[u8]>, jwk: Option<Value>| {
            Key::parse("k", alg, secret, jwk.as_ref(), None, None, None).map(|_| ())
        };
        assert!(parse("HS512", Some(SECRET), None).is_err());
        assert!(parse("none", Some(SECRET), None).is_err());
        assert!(parse("HS256", Some(b"short"), None).is_err());
        assert!(parse("HS256", None, Some(json!({}))).is_err());
        assert!(parse("RS256", Some(SECRET), None).is_err());
        assert!(parse("RS256", None, None).is_err());
        assert!(parse("EdDSA", None, Some(json!("x"))).is_err());
        assert!(parse("EdDSA", None, Some(json!({"kty": "OKP", "crv": "Ed25519"}))).is_err());
        assert!(parse(
            "EdDSA",
            None,
            Some(json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}))
        )
        .is_err());
        // A private member, a mismatched alg member, a small RSA modulus, a point off the curve.
        let x = URL_SAFE_NO_PAD.encode([3u8; 32]);
        assert!(parse(
            "EdDSA",
            None,
            Some(json!({"kty": "OKP", "crv": "Ed25519", "x": x, "d": x}))
        )
        .is_err());
        assert!(parse(
            "EdDSA",
            None,
            Some(json!({"kty": "OKP", "crv": "Ed25519", "x": x, "alg": "ES256"}))
        )
        .is_err());
        let small = URL_SAFE_NO_PAD.encode([0xffu8; 128]);
        let e = URL_SAFE_NO_PAD.encode([1u8, 0, 1]);
        assert!(parse(
            "RS256",
            None,
            Some(json!({"kty": "RSA", "n": small, "e": e}))
        )
        .is_err());
        let y = URL_SAFE_NO_PAD.encode([1u8; 32]);
        assert!(parse(
            "ES256",
            None,
            Some(json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}))
        )
        .is_err());
        assert!(Key::parse("k", "HS256", Some(SECRET), None, None, None, Some(0)).is_err());
    }

    #[test]
    fn uuid_parsing() {
        assert!(parse_uuid(TENANT).is_some());
        assert!(parse_uuid("0193a4d27c1e70008000000000000001").is_some());
        assert!(parse_uuid("0193a4d2-7c1e-7000-8000-00000000000").is_none());
        assert!(parse_uuid("zz93a4d2-7c1e-7000-8000-000000000001").is_none());
        // Dashes elsewhere, a sign, braces: not a UUID here (nor for the service's router).
        assert!(parse_uuid("0193a4d27c1e-7000-8000-0000000000-01").is_none());
        assert!(parse_uuid("+193a4d2-7c1e-7000-8000-000000000001").is_none());
        assert!(parse_uuid("{193a4d2-7c1e-7000-8000-00000000001}").is_none());
        assert_eq!(parse_uuid(TENANT), parse_uuid(&TENANT.to_uppercase()));
    }
}
