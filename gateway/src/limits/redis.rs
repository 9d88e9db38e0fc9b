//! Quotas shared by gateway replicas: the same GCRA as [`super::local`], run in Redis as one Lua
//! script (`gcra.lua`, by EVALSHA) on the key `gateway:quota:<route name>:<tid>`, so N gateways
//! pointed at one Redis admit one quota together. The script takes the time from Redis, so the
//! replicas' clocks do not matter, and sets each key to expire once it says nothing a missing
//! key would not, so idle tenants leave nothing behind.
//!
//! Redis is a network hop in front of every limited call, so it is bounded: each call gets
//! [`REDIS_TIMEOUT`], then fails in the configured direction ([`OnFailure`]). While Redis keeps
//! failing, calls do not wait for it at all: one call per [`PROBE_INTERVAL`] tries it, on a fresh
//! connection, the rest fail at once. The start and the end of an outage are logged once each,
//! not once per call.

use std::{
    fmt,
    num::NonZeroU32,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use redis::{
    Client, RedisError, RedisResult, Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

use super::{OnFailure, Refused, by_route, per_minute};
use crate::{config::Config, policy::Refusal};

/// How long a limited call waits for Redis, connecting included. A Redis beside the gateway
/// answers in about a millisecond; one that has not answered after this is failing, and the
/// caller should not notice the wait for a quota on top of the backend's own time.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// While Redis is failing, how often one call tries it again (the others fail in the configured
/// direction without waiting). It is also the `Retry-After` of a call refused by a store failing
/// closed: a client that waits this long meets the first call that can find Redis back.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The first part of every key, so the quotas are recognisable in a Redis shared with other
/// uses. Two deployments sharing one Redis keep apart by database (`redis://host/1`).
const KEY_PREFIX: &str = "gateway:quota";

/// A Redis URL, checked, whose password never reaches a log or an error message.
#[derive(Clone)]
pub struct RedisUrl {
    /// Boxed: the settings carrying it stay small, and it is read once, at start.
    client: Box<Client>,
    /// The URL with its user and password (and a socket URL's `pass`) replaced by `***`.
    redacted: String,
}

impl RedisUrl {
    /// Checks `url` as the `redis` crate reads it. The error is for a person and never repeats
    /// the password (nor a URL that did not parse, which cannot be redacted).
    pub fn parse(url: &str) -> Result<RedisUrl, String> {
        let Some(parsed) = redis::parse_redis_url(url) else {
            return Err(
                "not a Redis URL: expected redis://[[user]:password@]host[:port][/db], \
                 rediss://... for TLS, or redis+unix:///path/to/socket"
                    .to_owned(),
            );
        };
        let mut shown = parsed.clone();
        if !shown.username().is_empty() || shown.password().is_some() {
            // Cannot fail: a URL with a user or password has a host, which is what these need.
            let _ = shown.set_password(None);
            let _ = shown.set_username("***");
        }
        // Socket URLs carry the password in the query: `redis+unix:///run/redis.sock?pass=...`.
        if shown.query_pairs().any(|(key, _)| key == "pass") {
            let pairs: Vec<(String, String)> = shown
                .query_pairs()
                .map(|(key, value)| {
                    let value = if key == "pass" { "***".into() } else { value };
                    (key.into_owned(), value.into_owned())
                })
                .collect();
            shown.query_pairs_mut().clear().extend_pairs(pairs);
        }
        let redacted = shown.to_string();
        let client = Client::open(parsed).map_err(|e| format!("{redacted}: {e}"))?;
        Ok(RedisUrl {
            client: Box::new(client),
            redacted,
        })
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({})", self.redacted)
    }
}

/// The quotas of every route, kept in Redis.
pub struct SharedLimits {
    /// One multiplexed connection for all calls, reconnected by the manager when it drops, and
    /// replaced by a fresh manager at each failed probe of an outage (see [`SharedLimits::fail`]).
    connection: Mutex<ConnectionManager>,
    script: Script,
    /// By route index (`None`: the route has no limit).
    routes: Vec<Option<SharedQuota>>,
    /// For the log lines, redacted.
    url: RedisUrl,
    on_failure: OnFailure,
    outage: Outage,
}

/// One limited route's GCRA parameters, those of the local limiter, in the script's units.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SharedQuota {
    /// `gateway:quota:<route name>:`, the tenant id goes after it.
    key_prefix: String,
    /// A minute divided by the limit.
    interval_us: u64,
    /// `interval_us * (limit - 1)`: a whole minute's quota may be spent at once.
    tolerance_us: u64,
}

impl SharedQuota {
    fn new(route: &str, limit: NonZeroU32) -> SharedQuota {
        let quota = per_minute(limit);
        let interval_us = u64::try_from(quota.replenish_interval().as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        SharedQuota {
            key_prefix: format!("{KEY_PREFIX}:{route}:"),
            interval_us,
            tolerance_us: interval_us.saturating_mul(u64::from(quota.burst_size().get() - 1)),
        }
    }

    fn key(&self, tenant: &str) -> String {
        let mut key = String::with_capacity(self.key_prefix.len() + tenant.len());
        key.push_str(&self.key_prefix);
        key.push_str(tenant);
        key
    }
}

impl SharedLimits {
    /// The limits of `config`'s routes in the Redis at `url`. Loads the script at once, so the
    /// log shows at start whether Redis answers; one that does not is an outage from the start,
    /// not a reason to stay down.
    pub async fn start(
        config: &Config,
        url: &RedisUrl,
        on_failure: OnFailure,
    ) -> anyhow::Result<SharedLimits> {
        let connection = connect(url).with_context(|| format!("--rate-limit-redis-url {url}"))?;
        let limits = SharedLimits {
            connection: Mutex::new(connection),
            script: Script::new(include_str!("gcra.lua")),
            routes: by_route(config, |route, limit| SharedQuota::new(&route.name, limit)),
            url: url.clone(),
            on_failure,
            outage: Outage::new(),
        };
        tracing::info!(
            redis = %limits.url,
            on_failure = %on_failure,
            "per-tenant rate limits are shared in Redis with every gateway using it"
        );
        let mut connection = limits.connection();
        let load = limits.script.load_async(&mut connection);
        match tokio::time::timeout(REDIS_TIMEOUT, load).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => limits.fail(&error),
            Err(_) => limits.fail(&NoAnswer),
        }
        Ok(limits)
    }

    /// Counts one call of `tenant` on route `route`, in Redis; while Redis fails, answers as
    /// `on_failure` says: admitted uncounted, or refused with [`Refusal::QuotaUnavailable`].
    pub async fn check(&self, route: usize, tenant: &str) -> Result<(), Refused> {
        let Some(Some(quota)) = self.routes.get(route) else {
            return Ok(());
        };
        if !self.outage.may_try() {
            return self.failed();
        }
        let mut connection = self.connection();
        let key = quota.key(tenant);
        let counted = async {
            let (interval, tolerance) = (quota.interval_us, quota.tolerance_us);
            match gcra(&mut connection, &self.script, &key, interval, tolerance).await {
                // The connection dropped while idle (Redis restarted, or closed it as managed
                // services do after idle minutes) and the manager is replacing it: once more on
                // the new one, within the same timeout, rather than an outage for one call. (Had
                // Redis counted the call before the drop, it counts twice: one call early.)
                Err(error) if error.is_connection_dropped() => {
                    gcra(&mut connection, &self.script, &key, interval, tolerance).await
                }
                counted => counted,
            }
        };
        match tokio::time::timeout(REDIS_TIMEOUT, counted).await {
            Ok(Ok(wait)) => {
                self.outage.end(&self.url);
                if wait.is_zero() {
                    Ok(())
                } else {
                    Err(Refused::over_quota(wait))
                }
            }
            Ok(Err(error)) => {
                self.fail(&error);
                self.failed()
            }
            Err(_) => {
                self.fail(&NoAnswer);
                self.failed()
            }
        }
    }

    fn connection(&self) -> ConnectionManager {
        // A clone shares the one connection; the lock is held for that copy only.
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Redis failed a call. A failure that starts an outage leaves the manager to reconnect; a
    /// probe that fails again replaces it, so a connection the manager would not retry (one whose
    /// handshake Redis refused, say for a password set since) cannot outlive the outage.
    fn fail(&self, error: &dyn fmt::Display) {
        if self.outage.begin(&self.url, self.on_failure, error) {
            return;
        }
        match connect(&self.url) {
            Ok(fresh) => {
                *self
                    .connection
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = fresh
            }
            Err(error) => {
                tracing::debug!(redis = %self.url, %error, "cannot replace the connection")
            }
        }
    }

    /// A call Redis could not count.
    fn failed(&self) -> Result<(), Refused> {
        match self.on_failure {
            OnFailure::Open => Ok(()),
            OnFailure::Closed => Err(Refused {
                refusal: Refusal::QuotaUnavailable,
                wait: PROBE_INTERVAL,
            }),
        }
    }
}

/// A connection manager for `url` that connects on first use. One attempt per connection
/// (no retries of its own), each bounded by [`REDIS_TIMEOUT`], so a call that waits for it sees
/// why it failed rather than a timeout; the calls pace the attempts during an outage.
fn connect(url: &RedisUrl) -> Result<ConnectionManager, RedisError> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(REDIS_TIMEOUT))
        .set_response_timeout(Some(REDIS_TIMEOUT))
        .set_number_of_retries(0);
    ConnectionManager::new_lazy_with_config(Client::clone(&url.client), config)
}

/// Runs the script once: zero when the call is admitted, or the wait until one would be.
async fn gcra(
    connection: &mut ConnectionManager,
    script: &Script,
    key: &str,
    interval_us: u64,
    tolerance_us: u64,
) -> RedisResult<Duration> {
    let wait_us: u64 = script
        .key(key)
        .arg(interval_us)
        .arg(tolerance_us)
        .invoke_async(connection)
        .await?;
    Ok(Duration::from_micros(wait_us))
}

/// The error of a call [`REDIS_TIMEOUT`] cut.
struct NoAnswer;

impl fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no answer within {} ms", REDIS_TIMEOUT.as_millis())
    }
}

/// Whether Redis is failing, shared by every call: lock-free, since every limited call reads it.
struct Outage {
    epoch: Instant,
    /// 0 while Redis answers; during an outage, when (milliseconds since `epoch`, never 0) the
    /// next call may try Redis again.
    retry_at_ms: AtomicU64,
}

impl Outage {
    fn new() -> Outage {
        Outage {
            epoch: Instant::now(),
            retry_at_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn next_probe_ms(&self) -> u64 {
        self.now_ms()
            .saturating_add(u64::try_from(PROBE_INTERVAL.as_millis()).unwrap_or(u64::MAX))
            .max(1)
    }

    /// Whether this call asks Redis: always while it answers; during an outage, only the first
    /// call after each probe interval (which moves the next probe on for the others).
    fn may_try(&self) -> bool {
        let retry_at = self.retry_at_ms.load(Ordering::Acquire);
        if retry_at == 0 {
            return true;
        }
        self.now_ms() >= retry_at
            && self
                .retry_at_ms
                .compare_exchange(
                    retry_at,
                    self.next_probe_ms(),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    /// Redis failed a call; whether that began an outage. Only the call that finds it healthy
    /// logs the outage; a probe that fails again leaves the next probe where it put it.
    fn begin(&self, url: &RedisUrl, on_failure: OnFailure, error: &dyn fmt::Display) -> bool {
        let began = self
            .retry_at_ms
            .compare_exchange(0, self.next_probe_ms(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if !began {
            tracing::debug!(redis = %url, %error, "Redis still unavailable");
            return false;
        }
        let consequence = match on_failure {
            OnFailure::Open => "calls on limited routes are admitted without being counted",
            OnFailure::Closed => "calls on limited routes are refused with 503",
        };
        tracing::warn!(
            redis = %url,
            %error,
            on_failure = %on_failure,
            "Redis is unavailable: {consequence} until it answers again (rate-limit-redis-failure={on_failure})"
        );
        true
    }

    /// Redis answered. Only the call that ends an outage logs it; the others read one atomic.
    fn end(&self, url: &RedisUrl) {
        if self.retry_at_ms.load(Ordering::Acquire) != 0
            && self.retry_at_ms.swap(0, Ordering::AcqRel) != 0
        {
            tracing::info!(redis = %url, "Redis answers again: per-tenant quotas are shared again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::tests::{CONTOSO, FABRIKAM, config};

    #[test]
    fn a_route_quota_is_the_local_limiters_in_microseconds() {
        let quota = SharedQuota::new("contoso", NonZeroU32::new(3).expect("3"));
        assert_eq!(
            quota,
            SharedQuota {
                key_prefix: "gateway:quota:contoso:".to_owned(),
                interval_us: 20_000_000,
                tolerance_us: 40_000_000,
            }
        );
        assert_eq!(
            quota.key(CONTOSO),
            format!("gateway:quota:contoso:{CONTOSO}")
        );
        // A limit past a million a second still moves the clock on.
        let quota = SharedQuota::new("x", NonZeroU32::MAX);
        assert_eq!(quota.interval_us, 1);
        let one = SharedQuota::new("x", NonZeroU32::MIN);
        assert_eq!((one.interval_us, one.tolerance_us), (60_000_000, 0));
    }

    #[test]
    fn urls_are_checked_and_never_show_a_password() {
        let url = RedisUrl::parse("redis://:hunter2@127.0.0.1:6380/2").expect("valid");
        assert_eq!(url.to_string(), "redis://***@127.0.0.1:6380/2");
        assert_eq!(format!("{url:?}"), "RedisUrl(redis://***@127.0.0.1:6380/2)");
        let url = RedisUrl::parse("rediss://gateway:hunter2@cache.example.com").expect("valid");
        assert_eq!(url.to_string(), "rediss://***@cache.example.com");
        let url = RedisUrl::parse("redis://127.0.0.1").expect("valid");
        assert_eq!(url.to_string(), "redis://127.0.0.1");
        let url = RedisUrl::parse("redis+unix:///run/redis.sock?db=1&pass=hunter2").expect("valid");
        assert_eq!(
            url.to_string(),
            "redis+unix:///run/redis.sock?db=1&pass=***"
        );

        for (bad, fragment) in [
            ("hunter2", "not a Redis URL"),
            ("http://:hunter2@127.0.0.1:6379", "not a Redis URL"),
            (
                "redis://:hunter2@127.0.0.1:6379/first",
                "redis://***@127.0.0.1:6379/first",
            ),
            ("redis://:hunter2@0.0.0.0:6379", "wildcard"),
        ] {
            let error = RedisUrl::parse(bad).expect_err(bad);
            assert!(error.contains(fragment), "{bad}: {error}");
            assert!(!error.contains("hunter2"), "{bad}: {error}");
        }
    }

    /// A running Redis, or `None` (with a note) where none is installed.
    async fn redis() -> Option<testkit::redis::Redis> {
        if !testkit::redis::installed() {
            return None;
        }
        Some(testkit::redis::Redis::start().await)
    }

    async fn connection(redis: &testkit::redis::Redis) -> ConnectionManager {
        let client = Client::open(redis.url()).expect("a valid URL");
        ConnectionManager::new(client).await.expect("connected")
    }

    /// The script on one Redis connection, with one quota's parameters.
    struct Gcra {
        connection: ConnectionManager,
        script: Script,
        interval_us: u64,
        tolerance_us: u64,
    }

    impl Gcra {
        async fn new(redis: &testkit::redis::Redis, interval_us: u64, tolerance_us: u64) -> Gcra {
            Gcra {
                connection: connection(redis).await,
                script: Script::new(include_str!("gcra.lua")),
                interval_us,
                tolerance_us,
            }
        }

        /// One call on `key`: zero when admitted, else the wait.
        async fn call(&mut self, key: &str) -> Duration {
            let (interval, tolerance) = (self.interval_us, self.tolerance_us);
            gcra(&mut self.connection, &self.script, key, interval, tolerance)
                .await
                .expect("an answer")
        }

        async fn query(&mut self, command: &str, key: &str) -> i64 {
            redis::cmd(command)
                .arg(key)
                .query_async(&mut self.connection)
                .await
                .expect(command)
        }
    }

    #[tokio::test]
    async fn the_script_admits_a_burst_then_one_call_per_interval() {
        let Some(redis) = redis().await else { return };
        // 3 at once, then one every 500 ms.
        let mut gcra = Gcra::new(&redis, 500_000, 1_000_000).await;
        for i in 0..3 {
            assert_eq!(
                gcra.call("k").await,
                Duration::ZERO,
                "call {i} of the burst"
            );
        }
        let wait = gcra.call("k").await;
        // Less the time the calls took (a busy machine may take a while).
        let one_interval = Duration::from_millis(250)..=Duration::from_millis(500);
        assert!(one_interval.contains(&wait), "{wait:?}");
        assert_eq!(gcra.call("other").await, Duration::ZERO, "another key");

        tokio::time::sleep(wait).await;
        assert_eq!(
            gcra.call("k").await,
            Duration::ZERO,
            "refilled after {wait:?}"
        );
        let next = gcra.call("k").await;
        assert!(
            one_interval.contains(&next),
            "only one call refilled: {next:?}"
        );
    }

    #[tokio::test]
    async fn refused_calls_are_not_counted_and_idle_keys_expire() {
        let Some(redis) = redis().await else { return };
        // One call, then one every 300 ms.
        let mut gcra = Gcra::new(&redis, 300_000, 0).await;
        assert_eq!(gcra.call("k").await, Duration::ZERO);
        let first = gcra.call("k").await;
        assert!(first > Duration::ZERO, "{first:?}");
        for _ in 0..50 {
            let again = gcra.call("k").await;
            assert!(
                again > Duration::ZERO && again <= first,
                "{again:?} > {first:?}"
            );
        }
        // The key lives as long as the TAT is ahead, then vanishes.
        let ttl = gcra.query("PTTL", "k").await;
        assert!((1..=300).contains(&ttl), "PTTL {ttl}");
        tokio::time::sleep(first).await;
        assert_eq!(
            gcra.call("k").await,
            Duration::ZERO,
            "50 refused calls did not push the tenant back"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(gcra.query("EXISTS", "k").await, 0, "an idle key expired");
    }

    fn url(redis: &testkit::redis::Redis) -> RedisUrl {
        RedisUrl::parse(&redis.url()).expect("a valid URL")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn route_limits_count_in_redis_for_every_gateway() {
        let Some(redis) = redis().await else { return };
        let config = config("rate_limit_per_minute = 3");
        // Two sets of limits on one Redis: two gateways.
        let a = SharedLimits::start(&config, &url(&redis), OnFailure::Open)
            .await
            .expect("limits");
        let b = SharedLimits::start(&config, &url(&redis), OnFailure::Open)
            .await
            .expect("limits");
        for limits in [&a, &b, &a] {
            assert_eq!(limits.check(0, CONTOSO).await, Ok(()));
        }
        for limits in [&b, &a] {
            let refused = limits.check(0, CONTOSO).await.expect_err("over the quota");
            assert_eq!(refused.refusal, Refusal::RateLimited);
            assert!(
                refused.wait > Duration::from_secs(19) && refused.wait <= Duration::from_secs(20),
                "{refused:?}"
            );
        }
        assert_eq!(b.check(0, FABRIKAM).await, Ok(()), "another tenant");
        for _ in 0..10 {
            assert_eq!(a.check(1, CONTOSO).await, Ok(()), "a route without a limit");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_dropped_while_idle_costs_no_call() {
        let Some(redis) = redis().await else { return };
        let config = config("rate_limit_per_minute = 1000");
        let limits = SharedLimits::start(&config, &url(&redis), OnFailure::Closed)
            .await
            .expect("limits");
        assert_eq!(limits.check(0, CONTOSO).await, Ok(()));
        // As a managed Redis closes idle connections, or a restart behind a proxy would.
        let mut admin = connection(&redis).await;
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .query_async(&mut admin)
            .await
            .expect("CLIENT KILL");
        assert_eq!(killed, 1, "the gateway's connection");
        assert_eq!(
            limits.check(0, CONTOSO).await,
            Ok(()),
            "counted on a new connection"
        );
        assert_eq!(
            limits.outage.retry_at_ms.load(Ordering::Acquire),
            0,
            "no outage"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_handshake_does_not_outlive_the_outage() {
        if !testkit::redis::installed() {
            return;
        }
        let redis = testkit::redis::Redis::start_with(&["--requirepass", "right"]).await;
        let config = config("rate_limit_per_minute = 1000");
        let wrong = RedisUrl::parse(&format!("redis://:wrong@127.0.0.1:{}", redis.port()))
            .expect("a valid URL");
        let limits = SharedLimits::start(&config, &wrong, OnFailure::Closed)
            .await
            .expect("limits");
        let refused = limits
            .check(0, CONTOSO)
            .await
            .expect_err("Redis refuses the password");
        assert_eq!(refused.refusal, Refusal::QuotaUnavailable);

        // The operator sets the password the gateway has: it counts again, without a restart.
        let client = Client::open(format!("redis://:right@127.0.0.1:{}", redis.port()))
            .expect("a valid URL");
        let mut admin = ConnectionManager::new(client).await.expect("connected");
        let () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("requirepass")
            .arg("wrong")
            .query_async(&mut admin)
            .await
            .expect("CONFIG SET");
        let deadline = Instant::now() + Duration::from_secs(10);
        while limits.check(0, CONTOSO).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "never counted with the new password"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hung_redis_costs_a_call_at_most_the_timeout_then_nothing() {
        let Some(redis) = redis().await else { return };
        let config = config("rate_limit_per_minute = 1000");
        let open = SharedLimits::start(&config, &url(&redis), OnFailure::Open)
            .await
            .expect("limits");
        let closed = SharedLimits::start(&config, &url(&redis), OnFailure::Closed)
            .await
            .expect("limits");
        assert_eq!(open.check(0, CONTOSO).await, Ok(()));
        assert_eq!(closed.check(0, CONTOSO).await, Ok(()));

        redis.pause();
        let started = Instant::now();
        assert_eq!(open.check(0, CONTOSO).await, Ok(()), "fails open");
        let refused = closed.check(0, CONTOSO).await.expect_err("fails closed");
        assert_eq!(
            refused,
            Refused {
                refusal: Refusal::QuotaUnavailable,
                wait: PROBE_INTERVAL
            }
        );
        let first = started.elapsed();
        assert!(
            first < 2 * REDIS_TIMEOUT + Duration::from_millis(500),
            "{first:?}"
        );
        // Meanwhile nobody waits for Redis but one probe a second (of each set of limits).
        let mut waited = 0;
        for _ in 0..100 {
            let started = Instant::now();
            assert_eq!(open.check(0, CONTOSO).await, Ok(()));
            assert!(closed.check(0, CONTOSO).await.is_err());
            waited += usize::from(started.elapsed() > REDIS_TIMEOUT / 2);
        }
        assert!(waited <= 1, "{waited} of 100 calls waited for Redis");

        redis.resume();
        let deadline = Instant::now() + Duration::from_secs(10);
        while closed.check(0, CONTOSO).await.is_err() {
            assert!(Instant::now() < deadline, "Redis never counted again");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        while open.outage.retry_at_ms.load(Ordering::Acquire) != 0 {
            assert!(Instant::now() < deadline, "Redis never counted again");
            assert_eq!(open.check(0, CONTOSO).await, Ok(()));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
