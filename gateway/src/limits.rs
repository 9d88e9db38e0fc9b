//! Per-tenant rate limits of each route: `rate_limit_per_minute` calls per tenant on a route,
//! as API Management's `rate-limit-by-key` enforces with the key `<route>:<tid>`.
//!
//! Each limited route has its own keyed GCRA limiter (governor), keyed by the verified `tid`.
//! The bucket holds a minute's worth of calls and refills continuously, so a tenant may burst
//! up to its whole quota and then gets one call every `60 / limit` seconds; APIM's fixed
//! renewal window lets the same number through per minute, with a refill all at once instead.
//! Keys only ever come from tenants on the route's allow-list (the tenant check runs first), so
//! the key set is bounded by the configuration and needs no eviction.

use std::{num::NonZeroU32, time::Duration};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};

use crate::config::Config;

/// The limiters of every route, by route index (`None`: the route has no limit).
pub struct RateLimits {
    routes: Vec<Option<DefaultKeyedRateLimiter<String>>>,
}

impl RateLimits {
    pub fn new(config: &Config) -> RateLimits {
        let routes = config
            .routes
            .iter()
            .map(|route| {
                route
                    .rate_limit_per_minute
                    .map(|limit| RateLimiter::keyed(per_minute(limit)))
            })
            .collect();
        RateLimits { routes }
    }

    /// Counts one call of `tenant` on route `route`: `Ok` when it is within the limit, or how
    /// long until the next call would be admitted. The call is not counted when refused, so
    /// a client that keeps retrying too early is not pushed further back.
    pub fn check(&self, route: usize, tenant: &str) -> Result<(), Duration> {
        let Some(Some(limiter)) = self.routes.get(route) else {
            return Ok(());
        };
        // `check_key` takes the key by reference but the store owns `String`s: the allocation
        // is one short string per call on limited routes only.
        limiter
            .check_key(&tenant.to_owned())
            .map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))
    }
}

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

    const CONTOSO: &str = "c0a7050c-0000-4000-8000-000000000001";
    const FABRIKAM: &str = "fab1ca70-0000-4000-8000-000000000002";

    fn limits(limit: &str) -> RateLimits {
        let config = Config::from_toml(&format!(
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
        .expect("valid configuration");
        RateLimits::new(&config)
    }

    #[test]
    fn each_tenant_gets_its_own_quota_on_each_route() {
        let limits = limits("rate_limit_per_minute = 3");
        for _ in 0..3 {
            assert_eq!(limits.check(0, CONTOSO), Ok(()));
        }
        let wait = limits.check(0, CONTOSO).expect_err("fourth call refused");
        // One call's worth of refill at 3 per minute is 20 s.
        assert!(
            wait > Duration::from_secs(19) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert_eq!(
            limits.check(0, FABRIKAM),
            Ok(()),
            "another tenant unaffected"
        );
        for _ in 0..100 {
            assert_eq!(limits.check(1, CONTOSO), Ok(()), "route without a limit");
        }
    }

    #[test]
    fn refused_calls_do_not_push_the_tenant_further_back() {
        let limits = limits("rate_limit_per_minute = 1");
        assert_eq!(limits.check(0, CONTOSO), Ok(()));
        let first = limits.check(0, CONTOSO).expect_err("refused");
        for _ in 0..50 {
            let again = limits.check(0, CONTOSO).expect_err("still refused");
            assert!(again <= first, "{again:?} > {first:?}");
        }
    }

    #[test]
    fn retry_after_rounds_up_to_a_whole_second() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(19_001)), 20);
        assert_eq!(retry_after_secs(Duration::from_secs(20)), 20);
    }
}
