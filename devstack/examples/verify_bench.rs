//! Measures what verifying a bearer token costs the services: the first sight of a token (full
//! RS256 signature check, key from the cached JWKS) against a token seen before (cache hit).
//!
//! Run: `cargo run --release -p devstack --example verify_bench`
#![allow(clippy::print_stdout)] // printing the report is this program's job

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use devstack::idp::{self, IdpConfig, TokenSpec, defaults};
use shared::auth::{JwtVerifier, jwks::Jwks, verifier::VerifierSettings};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let running = idp::spawn(IdpConfig::default()).await?;
    let jwks = Arc::new(Jwks::new(
        reqwest::Client::new(),
        format!("{}/jwks", running.url()),
    ));
    jwks.refresh().await.map_err(anyhow::Error::msg)?;
    let verifier = JwtVerifier::new(
        VerifierSettings {
            issuer: running.url().to_owned(),
            audiences: vec![defaults::AUDIENCE.to_owned()],
            allowed_tenants: None,
            leeway: Duration::from_secs(60),
            trusted_actors: Default::default(),
        },
        jwks,
    );
    const N: usize = 5_000;
    // Distinct tokens, so every uncached verification is a real first sight.
    let tokens: Vec<String> = (0..N)
        .map(|i| {
            running.idp.mint(&TokenSpec::new(
                defaults::CONTOSO,
                ["query"],
                &format!("user-{i}"),
            ))
        })
        .collect();

    let mut runs = Vec::new();
    for _ in 0..5 {
        let fresh = JwtVerifier::new(verifier.settings().clone(), verifier.jwks().clone());
        let started = Instant::now();
        for token in &tokens {
            fresh.verify(token).await?;
        }
        let first = started.elapsed() / N as u32;
        let started = Instant::now();
        for token in &tokens {
            fresh.verify(token).await?;
        }
        let cached = started.elapsed() / N as u32;
        runs.push((first, cached));
    }
    let first = median(runs.iter().map(|r| r.0).collect());
    let cached = median(runs.iter().map(|r| r.1).collect());
    println!("| verification (RS256, 2048-bit key) | median per token of 5 runs x {N} tokens |");
    println!("|---|---:|");
    println!(
        "| first sight (signature check) | {:.1} µs |",
        first.as_secs_f64() * 1e6
    );
    println!(
        "| seen before (cache hit) | {:.2} µs |",
        cached.as_secs_f64() * 1e6
    );
    Ok(())
}
