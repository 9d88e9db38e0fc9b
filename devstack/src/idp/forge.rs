//! Tokens no honest issuer signs, for tests that a verifier refuses them: unsigned (`alg: none`)
//! tokens, HMAC tokens (the key-confusion attack, where the published RSA public key is used as
//! an HS256 secret), and any header and claims with a signature of the caller's choosing.
//!
//! Tokens signed with a real but unpublished RSA key come from
//! [`Idp::foreign_key_token`](super::Idp::foreign_key_token); genuine signatures over a
//! misleading header from [`Idp::mint_with`](super::Idp::mint_with).

use aws_lc_rs::hmac;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use super::keys::signing_input;

/// `header.claims.signature`, with `signature` as given (empty for none).
pub fn compact(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}",
        signing_input(header, claims),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// An unsigned token: header `{"alg": "none", "typ": "JWT"}`, empty signature.
pub fn unsigned(claims: &Value) -> String {
    compact(&json!({"alg": "none", "typ": "JWT"}), claims, &[])
}

/// A token MACed with HMAC-SHA256 under `secret`, with `header` as given (put `"alg": "HS256"`
/// and the published `kid` in it for the key-confusion attack, and the bytes of
/// [`SigningKey::public_key_pem`](super::SigningKey::public_key_pem) as `secret`).
pub fn hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let input = signing_input(header, claims);
    let tag = hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_tokens_end_with_a_dot() {
        let token = unsigned(&json!({"sub": "mallory"}));
        assert!(token.ends_with('.'));
        assert_eq!(token.split('.').count(), 3);
    }

    #[test]
    fn hs256_tokens_verify_as_hs256_elsewhere() {
        // jsonwebtoken is an independent implementation: if it accepts the MAC, the token is
        // the real HS256 a confused verifier would accept.
        let secret = b"-----BEGIN PUBLIC KEY-----\n...";
        let token = hs256(
            &json!({"alg": "HS256", "typ": "JWT"}),
            &json!({"sub": "mallory"}),
            secret,
        );
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret(secret),
            &validation,
        )
        .expect("valid HS256");
        assert_eq!(data.claims["sub"], "mallory");
    }
}
