//! The quotas of one gateway on its own: each limited route has a keyed GCRA limiter (governor)
//! in this process, keyed by the verified `tid`. What it admits, the [`super::redis`] store
//! admits for all replicas together.
//!
//! Keys only ever come from tenants on the route's allow-list (the tenant check runs first), so
//! the key set is bounded by the configuration and needs no eviction.

use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, RateLimiter, clock::Clock};

use super::{by_route, per_minute};
use crate::config::Config;

/// The limiters of every route, by route index (`None`: the route has no limit).
pub struct LocalLimits {
    routes: Vec<Option<DefaultKeyedRateLimiter<String>>>,
}

impl LocalLimits {
    pub fn new(config: &Config) -> LocalLimits {
        LocalLimits {
            routes: by_route(config, |_, limit| RateLimiter::keyed(per_minute(limit))),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::tests::{CONTOSO, FABRIKAM, config};

    #[test]
    fn each_tenant_gets_its_own_quota_on_each_route() {
        let limits = LocalLimits::new(&config("rate_limit_per_minute = 3"));
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
        let limits = LocalLimits::new(&config("rate_limit_per_minute = 1"));
        assert_eq!(limits.check(0, CONTOSO), Ok(()));
        let first = limits.check(0, CONTOSO).expect_err("refused");
        for _ in 0..50 {
            let again = limits.check(0, CONTOSO).expect_err("still refused");
            assert!(again <= first, "{again:?} > {first:?}");
        }
    }
}
