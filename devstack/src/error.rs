//! The one error type of the crate: what can go wrong building the identity provider, loading
//! its signing key, or resolving what a `devstack` command was asked for.
//!
//! Protocol answers of the token endpoint (`invalid_client` and friends) are not errors of the
//! crate; they are responses, built beside the route in `idp/http.rs`.

use std::{io, path::PathBuf};

/// What can fail in devstack: building the identity provider, its key, serving it, or a
/// command's arguments.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// aws-lc could not make a key; only a broken random source does this.
    #[error("cannot generate an RSA signing key")]
    KeyGeneration,

    /// The bytes are not an RSA private key in a form we read.
    #[error("{origin}: not an RSA private key (PKCS#8 or PKCS#1, PEM or DER): {reason}")]
    InvalidKey { origin: String, reason: String },

    /// Reading, creating or writing the key file failed.
    #[error("{action} {}: {source}", path.display())]
    KeyFile {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    /// A tenant name nobody configured (a tid in UUID form is always accepted).
    #[error("unknown tenant {given:?}; known tenants: {known}")]
    UnknownTenant { given: String, known: String },

    /// The identity provider's settings contradict each other.
    #[error("invalid identity provider settings: {0}")]
    InvalidConfig(String),

    /// The listener failed while serving.
    #[error("serving the identity provider: {0}")]
    Serve(#[source] io::Error),
}
