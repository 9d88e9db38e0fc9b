//! Per-tenant rate limits of each route: `rate_limit_per_minute` calls per tenant on a route,
//! as API Management's `rate-limit-by-key` enforces with the key `<route>:<tid>`.
//!
//! The algorithm is GCRA: the bucket holds a minute's worth of calls and refills continuously,
//! so a tenant may burst up to its whole quota and then gets one call every `60 / limit`
//! seconds; APIM's fixed renewal window lets the same number through per minute, with a refill
//! all at once instead. A refused call is not counted.
//!
//! Where the counts live is [`QuotaStore`]: in this process ([`local`], governor), or in Redis
//! ([`redis`], the same GCRA as one Lua script) so that every gateway replica pointed at the
//! same Redis admits one quota together. The proxy sees neither: it awaits
//! [`RateLimits::check`], which for the local store completes at once, as cheap as before.

pub mod local;
pub mod redis;

use std::{fmt, num::NonZeroU32, time::Duration};

use governor::Quota;

pub use self::{
    local::LocalLimits,
    redis::{PROBE_INTERVAL, REDIS_TIMEOUT, RedisUrl, SharedLimits},
};
use crate::{
    config::{Config, Route},
    policy::Refusal,
};

/// Where the gateway keeps its tenants' quotas (`gateway run --rate-limit-redis-url`).
#[derive(Debug, Clone, Default)]
pub enum QuotaStore {
    /// In this process: each gateway counts on its own.
    #[default]
    Local,
    /// In one Redis shared by every replica.
    Redis {
        url: RedisUrl,
        on_failure: OnFailure,
    },
}

/// What a limited route does while Redis does not answer (`--rate-limit-redis-failure`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OnFailure {
    /// Admit the call uncounted: the quota is a fairness measure, not a security boundary
    /// (authentication and the tenant allow-list still apply), so an outage of Redis should not
    /// become an outage of every limited route.
    #[default]
    Open,
    /// Refuse the call with 503 and `Retry-After`, for deployments where an uncounted call costs
    /// more than a refused one.
    Closed,
}

impl fmt::Display for OnFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OnFailure::Open => "open",
            OnFailure::Closed => "closed",
        })
    }
}

/// A call the limits do not admit: the refusal to answer with, and the wait for `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// [`Refusal::RateLimited`] over the quota, [`Refusal::QuotaUnavailable`] when the quota
    /// cannot be counted and the store fails closed.
    pub refusal: Refusal,
    pub wait: Duration,
}

impl Refused {
    fn over_quota(wait: Duration) -> Refused {
        Refused {
            refusal: Refusal::RateLimited,
            wait,
        }
    }
}

/// The quotas of every route, in the store the gateway was started with.
pub enum RateLimits {
    Local(LocalLimits),
    /// Boxed: it is ten times the local limits' size, and behind a network call anyway.
    Shared(Box<SharedLimits>),
}

impl RateLimits {
    /// The limits of `config`'s routes in `store`. A shared store is reached at once (and the
    /// start logged), but an unreachable Redis does not stop the gateway: it starts in the
    /// store's failure direction, as it would run on during an outage.
    pub async fn start(config: &Config, store: &QuotaStore) -> anyhow::Result<RateLimits> {
        Ok(match store {
            QuotaStore::Local => RateLimits::Local(LocalLimits::new(config)),
            QuotaStore::Redis { url, on_failure } => RateLimits::Shared(Box::new(
                SharedLimits::start(config, url, *on_failure).await?,
            )),
        })
    }

    /// Counts one call of `tenant` on route `route` (an index into the configuration's routes):
    /// `Ok` when it is admitted, else why not and how long to wait.
    pub async fn check(&self, route: usize, tenant: &str) -> Result<(), Refused> {
        match self {
            RateLimits::Local(limits) => limits.check(route, tenant).map_err(Refused::over_quota),
            RateLimits::Shared(limits) => limits.check(route, tenant).await,
        }
    }
}

/// One `T` per route of `config`, by route index, made from its limit (`None`: no limit).
fn by_route<T>(config: &Config, limiter: impl Fn(&Route, NonZeroU32) -> T) -> Vec<Option<T>> {
    config
        .routes
        .iter()
        .map(|route| {
            route
                .rate_limit_per_minute
                .map(|limit| limiter(route, limit))
        })
        .collect()
}

/// The quota of a route with `limit` calls a minute: the whole minute's worth at once, then
/// one call every `60 / limit` seconds.
fn per_minute(limit: NonZeroU32) -> Quota {
    Quota::per_minute(limit).allow_burst(limit)
}

/// The `Retry-After` value for a wait: whole seconds, rounded up, at least 1 (a client told
/// `0` would retry at once and be refused again).
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const CONTOSO: &str = "c0a7050c-0000-4000-8000-000000000001";
    pub(crate) const FABRIKAM: &str = "fab1ca70-0000-4000-8000-000000000002";

    /// Two routes: `limited` (index 0) admitting both tenants, with `limit` (a
    /// `rate_limit_per_minute` line), and `open` (index 1) without a limit.
    pub(crate) fn config(limit: &str) -> Config {
        Config::from_toml(&format!(
            r#"
            listen = "127.0.0.1:8080"
            public_base_url = "http://127.0.0.1:8080"
            [auth]
            issuer = "http://127.0.0.1:4444"
            [[routes]]
            name = "limited"
            prefix = "/limited"
            upstreams = ["127.0.0.1:8001"]
            allowed_tenants = ["{CONTOSO}", "{FABRIKAM}"]
            {limit}
            [[routes]]
            name = "open"
            prefix = "/open"
            upstreams = ["127.0.0.1:8001"]
            allowed_tenants = ["{CONTOSO}"]
            "#
        ))
        .expect("valid configuration")
    }

    #[tokio::test]
    async fn the_local_store_refuses_with_429_and_the_wait() {
        let limits = RateLimits::start(&config("rate_limit_per_minute = 1"), &QuotaStore::Local)
            .await
            .expect("local limits");
        assert_eq!(limits.check(0, CONTOSO).await, Ok(()));
        let refused = limits.check(0, CONTOSO).await.expect_err("refused");
        assert_eq!(refused.refusal, Refusal::RateLimited);
        assert!(refused.wait > Duration::from_secs(59), "{refused:?}");
        assert_eq!(
            limits.check(1, CONTOSO).await,
            Ok(()),
            "route without a limit"
        );
    }

    #[test]
    fn retry_after_rounds_up_to_a_whole_second() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(19_001)), 20);
        assert_eq!(retry_after_secs(Duration::from_secs(20)), 20);
    }
}
