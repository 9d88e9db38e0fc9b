//! The one error type of the crate, and [`ConfigError`], the configuration mistake it most often
//! carries: what can go wrong reading the gateway's configuration and settings, or writing what
//! is rendered from it.

use std::{io, path::PathBuf};

/// A configuration value that is missing, malformed, or contradicts another; `key` is its path
/// in the TOML file (`routes[1].prefix`), so a person can go straight to the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// What can fail in the gateway crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file could not be read at all.
    #[error("cannot read the gateway configuration {}: {source}", path.display())]
    ReadConfig { path: PathBuf, source: io::Error },

    /// The configuration file was read but is not a valid gateway configuration.
    #[error("invalid gateway configuration {}: {error}", path.display())]
    InvalidConfig { path: PathBuf, error: ConfigError },

    /// A `gateway run` setting (a flag or its environment variable) has a value that cannot be
    /// used; `setting` names both.
    #[error("{setting}: {message}")]
    InvalidSetting {
        setting: &'static str,
        message: String,
    },

    /// A rendered file (or its folder) could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
}
