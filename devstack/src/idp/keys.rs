//! The identity provider's RSA signing keys: generation with aws-lc, the key file that
//! `devstack token` and a running IdP share, the public key as a JWK (and as a `jsonwebtoken`
//! key, to verify the tokens clients ask to exchange), and RS256 signing of a compact JWS.
//!
//! We sign with aws-lc directly instead of `jsonwebtoken::encode`, because the attack tests
//! need tokens whose header says something other than what signed them (`alg: none`, a
//! foreign `kid`), which `jsonwebtoken` rightly refuses to produce. One signing path serves
//! both the honest tokens and the forged ones.
//!
//! The key file is PKCS#8 (`-----BEGIN PRIVATE KEY-----`), which is what aws-lc exports and
//! what `openssl` and `jsonwebtoken::EncodingKey::from_rsa_pem` read. Note for anyone handing
//! this key to `jsonwebtoken` as DER: with the aws-lc backend `EncodingKey::from_rsa_der`
//! wants PKCS#1 `RSAPrivateKey` DER (it calls `RsaKeyPair::from_der`), not the PKCS#8 that aws-lc
//! exports; `from_rsa_pem` unwraps PKCS#8 itself.

use std::{
    fs,
    io::{self, Write},
    path::Path,
    sync::atomic::{AtomicU64, Ordering},
};

use aws_lc_rs::{
    constant_time, digest,
    encoding::AsDer,
    rand::SystemRandom,
    rsa::KeySize,
    signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair, RsaPublicKeyComponents},
};
use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use jsonwebtoken::DecodingKey;
use serde_json::{Value, json};

use crate::Error;

const PKCS8_LABEL: &str = "PRIVATE KEY";
const PKCS1_LABEL: &str = "RSA PRIVATE KEY";

/// An RSA 2048 key pair that signs RS256 tokens, with its key id.
///
/// The `kid` is the key's RFC 7638 thumbprint, so every process that loads the same key file
/// publishes and stamps the same `kid` without agreeing on anything else.
pub struct SigningKey {
    pair: RsaKeyPair,
    kid: String,
    /// Public modulus and exponent, base64url without padding, as a JWK carries them.
    n: String,
    e: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh RSA 2048 key (tens of milliseconds: aws-lc is C).
    pub fn generate() -> Result<Self, Error> {
        let pair =
            RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_unspecified| Error::KeyGeneration)?;
        Ok(Self::from_pair(pair))
    }

    /// Reads a private key in PEM (`PRIVATE KEY` or `RSA PRIVATE KEY`) or DER (PKCS#8 or
    /// PKCS#1); `origin` names where the bytes came from, for the error.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidKey {
            origin: origin.to_owned(),
            reason,
        };
        let pair = if bytes.trim_ascii_start().starts_with(b"-----BEGIN ") {
            let text = std::str::from_utf8(bytes).map_err(|e| invalid(e.to_string()))?;
            let (label, der) = pem_decode(text).map_err(invalid)?;
            match label.as_str() {
                PKCS8_LABEL => RsaKeyPair::from_pkcs8(&der),
                PKCS1_LABEL => RsaKeyPair::from_der(&der),
                other => return Err(invalid(format!("PEM label {other:?}"))),
            }
        } else {
            RsaKeyPair::from_pkcs8(bytes).or_else(|_| RsaKeyPair::from_der(bytes))
        }
        .map_err(|rejected| invalid(rejected.to_string()))?;
        Ok(Self::from_pair(pair))
    }

    /// The private key as PKCS#8 DER.
    pub fn to_pkcs8_der(&self) -> Vec<u8> {
        self.pair
            .as_der()
            .expect("aws-lc serialises a key pair it holds")
            .as_ref()
            .to_vec()
    }

    /// The private key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn to_pem(&self) -> String {
        pem_encode(PKCS8_LABEL, &self.to_pkcs8_der())
    }

    /// The public key as SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`), what a
    /// naive verifier would be configured with; the HS256 key-confusion attack uses these
    /// bytes as the HMAC secret.
    pub fn public_key_pem(&self) -> String {
        let spki = self
            .pair
            .public_key()
            .as_der()
            .expect("aws-lc serialises a public key it holds");
        pem_encode("PUBLIC KEY", spki.as_ref())
    }

    /// Loads the key at `path`, or creates it there (0600, missing parent folders 0700) when the
    /// file does not exist; an existing key file readable by others is made owner-only. A
    /// `.der` file is written as PKCS#8 DER, anything else as PEM.
    ///
    /// Creation is atomic: the key is written to a private temporary file and hard-linked into
    /// place, so two processes starting at once (a running devstack and `devstack token`) end up
    /// with the same key, and neither ever reads a half-written file.
    pub fn load_or_create(path: &Path) -> Result<Self, Error> {
        match fs::read(path) {
            Ok(bytes) => {
                // A key file copied in or left by an earlier version may be readable by others.
                if let Err(error) = shared::files::restrict(path) {
                    tracing::warn!(path = %path.display(), %error, "the signing key file could not be made owner-only");
                }
                return Self::from_bytes(&bytes, &path.display().to_string());
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(key_file("reading", path, source)),
        }
        let key = Self::generate()?;
        let der = path.extension().is_some_and(|ext| ext == "der");
        let contents = if der {
            key.to_pkcs8_der()
        } else {
            key.to_pem().into_bytes()
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            shared::files::create_private_dir(dir)
                .map_err(|e| key_file("creating the folder of", path, e))?;
        }
        // Unique per process and per call: two threads of one test binary may race here too.
        static ATTEMPT: AtomicU64 = AtomicU64::new(0);
        let attempt = ATTEMPT.fetch_add(1, Ordering::Relaxed);
        let temporary = path.with_extension(format!("tmp-{}-{attempt}", std::process::id()));
        write_private(&temporary, &contents).map_err(|e| key_file("writing", &temporary, e))?;
        let linked = fs::hard_link(&temporary, path);
        // The temporary name is ours alone; failing to remove it leaves litter, not a fault.
        let _ = fs::remove_file(&temporary);
        match linked {
            Ok(()) => Ok(key),
            // Another process created the key first: use theirs, so both sign with one key.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let bytes = fs::read(path).map_err(|e| key_file("reading", path, e))?;
                Self::from_bytes(&bytes, &path.display().to_string())
            }
            Err(source) => Err(key_file("creating", path, source)),
        }
    }

    /// The key id: RFC 7638 SHA-256 thumbprint, base64url.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK (`kty`, `use`, `kid`, `n`, `e`, and `alg: RS256` when
    /// `with_alg`; Entra ID publishes its keys without `alg`).
    pub fn jwk(&self, with_alg: bool) -> Value {
        let mut jwk = json!({
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "n": self.n,
            "e": self.e,
        });
        if with_alg {
            jwk["alg"] = "RS256".into();
        }
        jwk
    }

    /// The header an honest token from this key carries: `{alg: RS256, typ: JWT, kid}`.
    pub fn header(&self) -> Value {
        json!({"alg": "RS256", "typ": "JWT", "kid": self.kid})
    }

    /// Signs `header.claims` with RS256 and returns the compact JWS, whatever `header` says:
    /// that is the point for forged headers, and the caller's business for honest ones.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let signing_input = signing_input(header, claims);
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .expect("RS256 signing with a valid key and a modulus-sized buffer cannot fail");
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// The public key as `jsonwebtoken` verifies with it: how the token endpoint checks the
    /// subject tokens it is asked to exchange, with the very bytes the JWKS publishes.
    pub(crate) fn decoding_key(&self) -> Result<DecodingKey, jsonwebtoken::errors::Error> {
        DecodingKey::from_rsa_components(&self.n, &self.e)
    }

    fn from_pair(pair: RsaKeyPair) -> Self {
        let components = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        let n = URL_SAFE_NO_PAD.encode(&components.n);
        let e = URL_SAFE_NO_PAD.encode(&components.e);
        let kid = thumbprint(&n, &e);
        Self { pair, kid, n, e }
    }
}

/// `base64url(header) "." base64url(claims)`: the bytes a JWS signature covers.
pub(crate) fn signing_input(header: &Value, claims: &Value) -> String {
    let part = |value: &Value| {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("a JSON value serialises"))
    };
    format!("{}.{}", part(header), part(claims))
}

/// RFC 7638 §3: SHA-256 over the required members in lexicographic order, no whitespace.
fn thumbprint(n: &str, e: &str) -> String {
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
}

/// Compares two secrets in constant time, so response timing says nothing about how much of
/// a guessed client secret was right.
pub(crate) fn secrets_match(given: &str, expected: &str) -> bool {
    constant_time::verify_slices_are_equal(given.as_bytes(), expected.as_bytes()).is_ok()
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

/// The label and DER of the first PEM block in `text`.
fn pem_decode(text: &str) -> Result<(String, Vec<u8>), String> {
    let mut lines = text.lines().map(str::trim).skip_while(|l| l.is_empty());
    let label = lines
        .next()
        .and_then(|l| l.strip_prefix("-----BEGIN "))
        .and_then(|l| l.strip_suffix("-----"))
        .ok_or("no PEM BEGIN line")?
        .to_owned();
    let end = format!("-----END {label}-----");
    let mut body = String::new();
    for line in lines.by_ref() {
        if line == end {
            return STANDARD
                .decode(body)
                .map(|der| (label, der))
                .map_err(|e| format!("PEM body: {e}"));
        }
        body.push_str(line);
    }
    Err(format!("no {end:?} line"))
}

/// Creates `path` readable and writable by its owner only, and writes `contents` to it.
fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

fn key_file(action: &'static str, path: &Path, source: io::Error) -> Error {
    Error::KeyFile {
        action,
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_is_the_rfc7638_thumbprint() {
        // The example key of RFC 7638 §3.1 and the thumbprint the RFC gives for it.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        assert_eq!(
            thumbprint(n, "AQAB"),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn pem_and_der_round_trip_to_the_same_key() {
        let key = SigningKey::generate().expect("generate");
        let pem = key.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(pem.lines().all(|l| l.len() <= 64));
        let from_pem = SigningKey::from_bytes(pem.as_bytes(), "pem").expect("pem");
        let from_der = SigningKey::from_bytes(&key.to_pkcs8_der(), "der").expect("der");
        assert_eq!(from_pem.kid(), key.kid());
        assert_eq!(from_der.kid(), key.kid());
        assert_eq!(from_pem.jwk(true), key.jwk(true));
    }

    #[test]
    fn junk_is_refused_with_its_origin() {
        let error = SigningKey::from_bytes(b"not a key", "data/x.pem").expect_err("junk");
        assert!(error.to_string().starts_with("data/x.pem: not an RSA"));
        let error = SigningKey::from_bytes(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "cert.pem",
        )
        .expect_err("certificate");
        assert!(error.to_string().contains("CERTIFICATE"), "{error}");
    }

    #[test]
    fn the_jwk_is_rsa_2048_and_alg_is_optional() {
        let key = SigningKey::generate().expect("generate");
        let jwk = key.jwk(true);
        assert_eq!(jwk["kty"], "RSA");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["alg"], "RS256");
        assert_eq!(jwk["e"], "AQAB");
        let n = URL_SAFE_NO_PAD
            .decode(jwk["n"].as_str().expect("n"))
            .expect("base64url");
        assert_eq!(n.len(), 256, "2048-bit modulus, no leading zero byte");
        assert!(key.jwk(false).get("alg").is_none());
    }

    #[test]
    fn a_signature_covers_header_and_claims() {
        let key = SigningKey::generate().expect("generate");
        let token = key.sign(&key.header(), &json!({"sub": "alice"}));
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("signature");
        let public = aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            key.pair.public_key().as_ref(),
        );
        let signed = format!("{}.{}", parts[0], parts[1]);
        public
            .verify(signed.as_bytes(), &signature)
            .expect("verifies");
        assert!(public.verify(b"other", &signature).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn the_key_file_and_its_folders_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &Path| fs::metadata(path).expect("metadata").permissions().mode() & 0o777;
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("data").join("devstack").join("key.pem");
        let key = SigningKey::load_or_create(&path).expect("created");
        assert_eq!(mode(&path), 0o600, "key file");
        assert_eq!(mode(&root.path().join("data")), 0o700);
        assert_eq!(mode(&root.path().join("data").join("devstack")), 0o700);

        // A key file someone made readable to all is tightened when loaded, same key.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let loaded = SigningKey::load_or_create(&path).expect("loaded");
        assert_eq!(loaded.kid(), key.kid());
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(secrets_match("s3cret", "s3cret"));
        assert!(!secrets_match("s3cre", "s3cret"));
        assert!(!secrets_match("", "s3cret"));
    }
}
