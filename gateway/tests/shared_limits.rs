//! Gateway replicas sharing their tenants' quotas in Redis: two `gateway` processes (the real
//! binary) in front of one upstream and one real redis-server admit one quota together; when
//! Redis is killed they fail open or closed as configured, saying so once; when it is back, the
//! quotas count again. Skipped with a note without redis-server, unless `REQUIRE_REDIS=1`.

mod common;

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::*;
use devstack::{
    idp::{RunningIdp, defaults},
    load::{self, LineSink},
};
use testkit::redis::Redis;
use tokio::process::Child;

/// What both replicas are reached at, behind their load balancer: tokens are issued for it.
const PUBLIC_BASE_URL: &str = "http://gateway.test";

/// The password of the Redis in [`two_gateways_admit_one_quota_together_and_fail_open`]: it
/// must never appear in what a gateway prints.
const PASSWORD: &str = "quota-s3cret";

const OUTAGE_STARTS: &str = "Redis is unavailable";
const OUTAGE_ENDS: &str = "Redis answers again";

/// A `gateway run` process; killed when dropped.
struct Replica {
    addr: String,
    log: Arc<Mutex<Vec<String>>>,
    _child: Child,
    _dir: tempfile::TempDir,
}

impl Replica {
    /// A gateway with `/limited` (`limit` calls per tenant per minute) and `/open`, both to
    /// `upstream` and admitting Contoso and Fabrikam, and `env` (the Redis settings).
    async fn start(idp: &RunningIdp, upstream: &str, limit: u32, env: &[(&str, &str)]) -> Replica {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("gateway.toml");
        std::fs::write(
            &config,
            format!(
                r#"
                listen = "127.0.0.1:0"
                public_base_url = "{PUBLIC_BASE_URL}"
                [auth]
                issuer = "{issuer}"
                {routes}
                "#,
                issuer = idp.url(),
                routes = limited_and_open_routes(upstream, limit),
            ),
        )
        .expect("write the configuration");
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let kept = log.clone();
        let keep: LineSink = Arc::new(move |line: &str| {
            kept.lock().expect("log lock").push(line.to_owned());
        });
        let until_listening = {
            let keep = keep.clone();
            move |line: &str| {
                keep(line);
                load::listening_addr(line)
            }
        };
        let config = config.display().to_string();
        let env = [("GATEWAY_CONFIG", config.as_str()), ("RUST_LOG", "info")]
            .into_iter()
            .chain(env.iter().copied());
        let started = tokio::time::timeout(
            Duration::from_secs(30),
            load::spawn_until(
                Path::new(env!("CARGO_BIN_EXE_gateway")),
                &["run"],
                env,
                until_listening,
                keep,
            ),
        )
        .await;
        let Ok(Ok((child, addr))) = started else {
            panic!(
                "the gateway did not start; it said:\n{}",
                log.lock().expect("log lock").join("\n")
            );
        };
        Replica {
            addr,
            log,
            _child: child,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn logs(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// The lines of its log that contain `text`.
    fn lines_with(&self, text: &str) -> Vec<String> {
        let log = self.log.lock().expect("log lock");
        log.iter().filter(|l| l.contains(text)).cloned().collect()
    }
}

/// Two replicas with the same Redis settings in front of one upstream, and a token of each tenant
/// good on both.
struct Pair {
    a: Replica,
    b: Replica,
    /// The calls the upstream received.
    hits: Arc<AtomicUsize>,
    http: reqwest::Client,
    contoso: String,
    fabrikam: String,
    _idp: RunningIdp,
}

impl Pair {
    async fn start(limit: u32, env: &[(&str, &str)]) -> Pair {
        let idp = idp().await;
        let (upstream, hits) = echo_upstream().await;
        let (a, b) = tokio::join!(
            Replica::start(&idp, &upstream, limit, env),
            Replica::start(&idp, &upstream, limit, env)
        );
        Pair {
            a,
            b,
            hits,
            http: reqwest::Client::new(),
            contoso: token(&idp, defaults::CONTOSO),
            fabrikam: token(&idp, defaults::FABRIKAM),
            _idp: idp,
        }
    }
}

/// A token of `tenant` good on both routes of every replica.
fn token(idp: &RunningIdp, tenant: &str) -> String {
    mint_for(
        idp,
        tenant,
        serde_json::json!([
            format!("{PUBLIC_BASE_URL}/limited/mcp"),
            format!("{PUBLIC_BASE_URL}/open/mcp")
        ]),
    )
}

fn retry_after(response: &reqwest::Response) -> u64 {
    response.headers()["retry-after"]
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("whole seconds")
}

/// Calls `/limited` as `token` through `replicas` in turn until one is refused with 429; the
/// number admitted before it. Each refusal carries `Retry-After` within `max_retry_after`.
async fn admitted_until_429(
    http: &reqwest::Client,
    replicas: &[&Replica],
    token: &str,
    max_retry_after: u64,
) -> usize {
    for admitted in 0..1000 {
        let replica = replicas[admitted % replicas.len()];
        let response = get_as(http, replica.url("/limited/mcp"), token).await;
        match response.status().as_u16() {
            200 => {}
            429 => {
                let wait = retry_after(&response);
                assert!((1..=max_retry_after).contains(&wait), "Retry-After {wait}");
                refusal(response, 429, "rate_limited").await;
                return admitted;
            }
            other => panic!("call {admitted} got {other}: {}", replica.logs()),
        }
    }
    panic!("never limited")
}

/// Sends calls as `token` (of a tenant whose quota the test does not count) through `replica`
/// until its log says Redis answers again: only calls try Redis, one a second during an outage.
async fn until_redis_answers(http: &reqwest::Client, replica: &Replica, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while replica.lines_with(OUTAGE_ENDS).is_empty() {
        assert!(
            Instant::now() < deadline,
            "Redis never answered again: {}",
            replica.logs()
        );
        let _ = get_as(http, replica.url("/limited/mcp"), token).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn hits_now(hits: &AtomicUsize) -> usize {
    hits.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_admit_one_quota_together_and_fail_open() {
    if !testkit::redis::installed() {
        return;
    }
    let mut redis = Redis::start_with(&["--requirepass", PASSWORD]).await;
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{}", redis.port());
    let pair = Pair::start(6, &[("RATE_LIMIT_REDIS_URL", url.as_str())]).await;
    let Pair {
        a,
        b,
        hits,
        http,
        contoso,
        fabrikam,
        ..
    } = &pair;
    let shown = format!("redis://***@127.0.0.1:{}", redis.port());
    for replica in [a, b] {
        let started = replica.lines_with("rate limits are shared in Redis");
        assert_eq!(started.len(), 1, "{}", replica.logs());
        assert!(started[0].contains(&shown), "{}", started[0]);
        assert!(started[0].contains("on_failure=open"), "{}", started[0]);
    }

    // 6 a minute in all, through either replica; one call every 10 s after that.
    assert_eq!(admitted_until_429(http, &[a, b], contoso, 10).await, 6);
    assert_eq!(admitted_until_429(http, &[b, a], contoso, 10).await, 0);
    assert_eq!(hits_now(hits), 6, "refused calls reach nothing");
    for replica in [a, b] {
        for (path, token) in [("/limited/mcp", fabrikam), ("/open/mcp", contoso)] {
            let response = get_as(http, replica.url(path), token).await;
            assert_eq!(
                response.status(),
                200,
                "{path}: another tenant, another route"
            );
        }
    }

    // Redis killed: calls go through uncounted, promptly, and each replica says so once.
    redis.stop().await;
    let started = Instant::now();
    for i in 0..20 {
        let replica = [a, b][i % 2];
        let response = get_as(http, replica.url("/limited/mcp"), contoso).await;
        assert_eq!(response.status(), 200, "call {i} while Redis is down");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "20 calls took {:?} while Redis was down",
        started.elapsed()
    );
    for replica in [a, b] {
        let warned = replica.lines_with(OUTAGE_STARTS);
        assert_eq!(warned.len(), 1, "{}", replica.logs());
        assert!(warned[0].contains("WARN"), "{}", warned[0]);
        assert!(
            warned[0].contains("admitted without being counted"),
            "{}",
            warned[0]
        );
        assert!(warned[0].contains(&shown), "{}", warned[0]);
    }

    // Back, empty (nothing persisted): once each replica has found it, the quota counts again.
    redis.restart().await;
    for replica in [a, b] {
        until_redis_answers(http, replica, fabrikam).await;
    }
    assert_eq!(admitted_until_429(http, &[b, a], contoso, 10).await, 6);
    assert_eq!(admitted_until_429(http, &[a, b], contoso, 10).await, 0);
    for replica in [a, b] {
        assert_eq!(
            replica.lines_with(OUTAGE_STARTS).len(),
            1,
            "{}",
            replica.logs()
        );
        let recovered = replica.lines_with(OUTAGE_ENDS);
        assert_eq!(recovered.len(), 1, "{}", replica.logs());
        assert!(recovered[0].contains("INFO"), "{}", recovered[0]);
        assert!(!replica.logs().contains(PASSWORD), "{}", replica.logs());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_closed_answers_503_with_retry_after_until_redis_is_back() {
    if !testkit::redis::installed() {
        return;
    }
    let mut redis = Redis::start().await;
    let url = redis.url();
    let env = [
        ("RATE_LIMIT_REDIS_URL", url.as_str()),
        ("RATE_LIMIT_REDIS_FAILURE", "closed"),
    ];
    let pair = Pair::start(3, &env).await;
    let Pair {
        a,
        b,
        hits,
        http,
        contoso,
        fabrikam,
        ..
    } = &pair;
    // 3 a minute: one call every 20 s after the burst.
    assert_eq!(admitted_until_429(http, &[a, b], contoso, 20).await, 3);

    redis.stop().await;
    let before = hits_now(hits);
    for replica in [a, b, a, b] {
        let response = get_as(http, replica.url("/limited/mcp"), fabrikam).await;
        assert_eq!(retry_after(&response), 1);
        let body = refusal(response, 503, "quota_unavailable").await;
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("Retry-After")),
            "{body}"
        );
        // A route without a limit needs no Redis.
        let response = get_as(http, replica.url("/open/mcp"), fabrikam).await;
        assert_eq!(response.status(), 200);
    }
    assert_eq!(
        hits_now(hits),
        before + 4,
        "only the calls to /open got through"
    );
    for replica in [a, b] {
        let warned = replica.lines_with(OUTAGE_STARTS);
        assert_eq!(warned.len(), 1, "{}", replica.logs());
        assert!(warned[0].contains("refused with 503"), "{}", warned[0]);
    }

    redis.restart().await;
    for replica in [a, b] {
        until_redis_answers(http, replica, fabrikam).await;
    }
    // Contoso starts over on the empty Redis: 3 again across both replicas.
    assert_eq!(admitted_until_429(http, &[b, a], contoso, 20).await, 3);
}

/// `rediss://`: TLS to Redis, verified against the system's CA store (`SSL_CERT_FILE` here,
/// the test CA); a gateway that does not trust the certificate counts nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_is_tls_verified_against_the_system_ca_store() {
    if !testkit::redis::installed() {
        return;
    }
    let redis = Redis::start_tls().await;
    let url = redis.url();
    let ca: PathBuf = redis.ca_file().expect("a TLS Redis has a CA");
    let ca = ca.to_str().expect("a UTF-8 path");
    let idp = idp().await;
    let (upstream, _hits) = echo_upstream().await;
    let trusting = [
        ("RATE_LIMIT_REDIS_URL", url.as_str()),
        ("SSL_CERT_FILE", ca),
    ];
    let distrusting = [
        ("RATE_LIMIT_REDIS_URL", url.as_str()),
        ("RATE_LIMIT_REDIS_FAILURE", "closed"),
    ];
    let (a, b, untrusting) = tokio::join!(
        Replica::start(&idp, &upstream, 2, &trusting),
        Replica::start(&idp, &upstream, 2, &trusting),
        Replica::start(&idp, &upstream, 2, &distrusting),
    );
    let http = reqwest::Client::new();
    let contoso = token(&idp, defaults::CONTOSO);
    assert_eq!(admitted_until_429(&http, &[&a, &b], &contoso, 30).await, 2);
    for replica in [&a, &b] {
        assert!(
            replica.lines_with(OUTAGE_STARTS).is_empty(),
            "{}",
            replica.logs()
        );
    }
    let response = get_as(&http, untrusting.url("/limited/mcp"), &contoso).await;
    refusal(response, 503, "quota_unavailable").await;
    let warned = untrusting.lines_with(OUTAGE_STARTS);
    assert_eq!(warned.len(), 1, "{}", untrusting.logs());
    assert!(
        warned[0].contains("certificate"),
        "the reason: {}",
        warned[0]
    );
}
