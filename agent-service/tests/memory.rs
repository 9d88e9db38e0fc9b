//! Conversation memory against real SQLite files: ownership, ids, durability across a restart,
//! two replicas on one file, expiry and the MCP-session stand-in.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use agent_service::memory::{
    Clock, ConversationId, ConversationStore, MemoryConfig, MemoryError, Owner, SessionKey,
    SqliteConversations, ToolCallRecord, Turn, TurnStatus, spawn_sweeper,
};
use chrono::{DateTime, TimeZone, Utc};
use tokio_util::sync::CancellationToken;

/// A clock the test moves by hand.
#[derive(Debug)]
struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    fn new() -> Arc<Self> {
        Arc::new(ManualClock(Mutex::new(start())))
    }

    fn advance(&self, by: Duration) {
        let mut now = self.0.lock().expect("clock lock");
        *now += chrono::Duration::from_std(by).expect("short duration");
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock lock")
    }
}

fn owner(tenant: &str, subject: &str) -> Owner {
    Owner {
        tenant: tenant.into(),
        subject: subject.into(),
    }
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0)
        .single()
        .expect("a valid date")
}

fn turn(question: &str) -> Turn {
    Turn {
        domain: "billing".into(),
        question: question.into(),
        answer: format!("answer to {question}"),
        status: TurnStatus::Done,
        tool_calls: vec![ToolCallRecord {
            name: "get_billing_summary".into(),
            arguments: serde_json::json!({ "customer_id": 251 }),
            ok: true,
            error: None,
        }],
        error: None,
        asked_at: start(),
    }
}

/// A memory database file in a fresh folder (a subfolder, so opening creates it), and a clock
/// the test moves.
struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    clock: Arc<ManualClock>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data").join("agent.db");
        Fixture {
            _dir: dir,
            path,
            clock: ManualClock::new(),
        }
    }

    /// Another store instance (a restart, or a replica) on the fixture's file and clock.
    async fn open(&self, config: MemoryConfig) -> SqliteConversations {
        SqliteConversations::open_with_clock(&self.path, config, self.clock.clone())
            .await
            .expect("open the memory database")
    }
}

fn with_ttl(ttl: Duration) -> MemoryConfig {
    MemoryConfig {
        ttl,
        ..MemoryConfig::default()
    }
}

fn questions(turns: &[agent_service::memory::StoredTurn]) -> Vec<String> {
    turns.iter().map(|t| t.turn.question.clone()).collect()
}

/// The questions of a conversation, oldest first, as `owner` reads them.
async fn asked(store: &dyn ConversationStore, owner: &Owner, id: &ConversationId) -> Vec<String> {
    questions(
        &store
            .history(owner, id, None)
            .await
            .expect("the owner reads"),
    )
}

/// Rows actually in the file, to show a sweep deletes rather than hides.
async fn row_counts(path: &Path) -> (i64, i64) {
    let pool =
        sqlx::SqlitePool::connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(path))
            .await
            .expect("open the file directly");
    let mut counts = (0, 0);
    for (sql, count) in [
        ("SELECT COUNT(*) FROM conversations", &mut counts.0),
        ("SELECT COUNT(*) FROM turns", &mut counts.1),
    ] {
        *count = sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&pool)
            .await
            .expect("count rows");
    }
    pool.close().await;
    counts
}

#[tokio::test]
async fn new_conversations_get_unique_unguessable_ids() {
    let fixture = Fixture::new();
    let store = fixture.open(MemoryConfig::default()).await;
    let alice = owner("contoso", "alice");
    let mut seen = BTreeSet::new();
    for _ in 0..500 {
        let id = store.create(&alice).await.expect("create");
        let text = id.as_str();
        let random = text.strip_prefix("conv_").expect("prefixed");
        assert_eq!(random.len(), 22, "128 bits in URL-safe base64: {text}");
        assert!(
            random
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{text}"
        );
        assert_eq!(ConversationId::parse(text).expect("parses"), id);
        assert!(seen.insert(text.to_owned()), "{text} repeated");
    }
    // A rough check that the bits are random, not a counter: the first character of 500 ids
    // takes most of its 64 possible values.
    let firsts: BTreeSet<_> = seen.iter().map(|id| id.as_bytes()[5]).collect();
    assert!(
        firsts.len() > 30,
        "first characters barely vary: {firsts:?}"
    );
}

#[tokio::test]
async fn only_the_owner_continues_and_others_see_an_unknown_id() {
    let fixture = Fixture::new();
    let store = fixture.open(MemoryConfig::default()).await;
    let alice = owner("contoso", "alice");
    let id = store.create(&alice).await.expect("create");
    store
        .append(&alice, &id, &turn("q1"))
        .await
        .expect("owner appends");
    assert_eq!(asked(&store, &alice, &id).await, ["q1"]);

    let never_issued = ConversationId::generate().expect("randomness");
    let unknown = store
        .history(&alice, &never_issued, None)
        .await
        .expect_err("unknown id");
    assert_eq!(unknown, MemoryError::UnknownConversation);

    for stranger in [
        owner("contoso", "bob"),    // same tenant, another subject
        owner("fabrikam", "alice"), // same subject name, another tenant
        owner("fabrikam", "bob"),
    ] {
        let read = store.history(&stranger, &id, None).await.expect_err("read");
        let write = store
            .append(&stranger, &id, &turn("intruder"))
            .await
            .expect_err("write");
        // Identical to an id that never existed, message included.
        assert_eq!(read, unknown, "{stranger:?}");
        assert_eq!(write, unknown, "{stranger:?}");
        assert_eq!(read.to_string(), unknown.to_string());
    }
    // Nothing the strangers tried was written.
    assert_eq!(asked(&store, &alice, &id).await, ["q1"]);
}

#[tokio::test]
async fn malformed_ids_are_refused_with_a_clear_error() {
    let good = ConversationId::generate().expect("randomness");
    let long = format!("{good}x");
    for bad in [
        "",
        "conv_",
        "42",
        "conv_short",
        "conv_AAAAAAAAAAAAAAAAAAAAA+",
        "conv_AAAAAAAAAAAAAAAAAAAA==",
        "conv_AAAAAAAAAAAAAAAAAAAA/A",
        "CONV_AAAAAAAAAAAAAAAAAAAAAA",
        "conv_AAAAAAAAAAAAAAAAAAAAA\u{e9}",
        "conv_AAAAAAAAAAAAAAAAAAAAA'; DROP TABLE turns; --",
        long.as_str(),
    ] {
        let error = ConversationId::parse(bad).expect_err(bad);
        assert!(matches!(error, MemoryError::MalformedId { .. }), "{bad:?}");
        let message = error.to_string();
        assert!(
            message.contains("conversation_id") && message.contains("conv_"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn turns_survive_a_restart_in_order() {
    let fixture = Fixture::new();
    let alice = owner("contoso", "alice");
    let id = {
        let store = fixture.open(MemoryConfig::default()).await;
        let id = store.create(&alice).await.expect("create");
        for n in 1..=5 {
            let stored = store
                .append(&alice, &id, &turn(&format!("q{n}")))
                .await
                .expect("append");
            assert_eq!(stored.seq, n);
        }
        id
    };

    let restarted = fixture.open(MemoryConfig::default()).await;
    let all = restarted.history(&alice, &id, None).await.expect("history");
    assert_eq!(questions(&all), ["q1", "q2", "q3", "q4", "q5"]);
    assert_eq!(
        all.iter().map(|t| t.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(all[0].turn, turn("q1"));
    assert!(all.windows(2).all(|w| w[0].recorded_at <= w[1].recorded_at));

    let recent = restarted
        .history(&alice, &id, Some(2))
        .await
        .expect("last 2");
    assert_eq!(questions(&recent), ["q4", "q5"]);
    assert!(
        restarted
            .history(&alice, &id, Some(0))
            .await
            .expect("none")
            .is_empty()
    );
    assert_eq!(
        restarted
            .history(&alice, &id, Some(50))
            .await
            .expect("more than there are")
            .len(),
        5
    );

    let next = restarted
        .append(&alice, &id, &turn("q6"))
        .await
        .expect("continue");
    assert_eq!(next.seq, 6);
}

#[tokio::test]
async fn two_instances_on_one_file_lose_no_concurrent_appends() {
    // Opened as the service opens it (system clock), not through the fixture's clock.
    let fixture = Fixture::new();
    let path = &fixture.path;
    let config = MemoryConfig {
        max_turns: 1000,
        ..MemoryConfig::default()
    };
    let a: Arc<dyn ConversationStore> = Arc::new(
        SqliteConversations::open(path, config.clone())
            .await
            .expect("replica a"),
    );
    let b: Arc<dyn ConversationStore> = Arc::new(
        SqliteConversations::open(path, config)
            .await
            .expect("replica b"),
    );
    let alice = owner("contoso", "alice");
    let id = a.create(&alice).await.expect("create on a");
    // b sees a's conversation at once.
    assert!(asked(b.as_ref(), &alice, &id).await.is_empty());

    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..50 {
        for (name, store) in [("a", &a), ("b", &b)] {
            let (store, alice, id) = (Arc::clone(store), alice.clone(), id.clone());
            tasks.spawn(async move {
                store
                    .append(&alice, &id, &turn(&format!("{name}{n}")))
                    .await
                    .map(|t| t.seq)
            });
        }
    }
    let mut seqs = BTreeSet::new();
    while let Some(joined) = tasks.join_next().await {
        let seq = joined.expect("task").expect("append");
        assert!(seqs.insert(seq), "seq {seq} handed out twice");
    }
    assert_eq!(seqs, (1..=100).collect());

    for store in [&a, &b] {
        let all = store.history(&alice, &id, None).await.expect("history");
        assert_eq!(
            all.iter().map(|t| t.seq).collect::<Vec<_>>(),
            (1..=100).collect::<Vec<_>>()
        );
        let asked: BTreeSet<_> = questions(&all).into_iter().collect();
        let expected: BTreeSet<_> = (0..50)
            .flat_map(|n| [format!("a{n}"), format!("b{n}")])
            .collect();
        assert_eq!(asked, expected);
    }
}

#[tokio::test]
async fn conversations_expire_after_the_ttl_since_last_activity_and_are_swept() {
    let fixture = Fixture::new();
    let (path, clock) = (&fixture.path, &fixture.clock);
    let store = fixture.open(with_ttl(Duration::from_secs(60 * 60))).await;
    let alice = owner("contoso", "alice");
    let active = store.create(&alice).await.expect("create");
    let idle = store.create(&alice).await.expect("create");
    store
        .append(&alice, &idle, &turn("old"))
        .await
        .expect("append");
    let minute = Duration::from_secs(60);

    clock.advance(50 * minute);
    store
        .append(&alice, &active, &turn("q1"))
        .await
        .expect("activity");
    // Reading is not activity: it does not keep `idle` alive.
    store
        .history(&alice, &idle, None)
        .await
        .expect("still live");
    assert_eq!(store.sweep().await.expect("sweep"), 0);

    clock.advance(20 * minute); // idle: 70 min since its turn; active: 20 min
    assert_eq!(
        store.history(&alice, &idle, None).await,
        Err(MemoryError::UnknownConversation)
    );
    assert_eq!(
        store.append(&alice, &idle, &turn("late")).await,
        Err(MemoryError::UnknownConversation)
    );
    assert_eq!(asked(&store, &alice, &active).await, ["q1"]);
    // Expired rows stay until swept, then go with their turns.
    assert_eq!(row_counts(path).await, (2, 2));
    assert_eq!(store.sweep().await.expect("sweep"), 1);
    assert_eq!(row_counts(path).await, (1, 1));

    clock.advance(60 * minute);
    assert_eq!(store.sweep().await.expect("sweep"), 1);
    assert_eq!(row_counts(path).await, (0, 0));
    assert_eq!(
        store.history(&alice, &active, None).await,
        Err(MemoryError::UnknownConversation)
    );
}

#[tokio::test]
async fn the_background_sweeper_deletes_expired_conversations_until_shut_down() {
    let fixture = Fixture::new();
    let store = Arc::new(fixture.open(with_ttl(Duration::from_secs(60))).await);
    let alice = owner("contoso", "alice");
    store.create(&alice).await.expect("create");
    fixture.clock.advance(Duration::from_secs(61));

    let shutdown = CancellationToken::new();
    let sweeper = spawn_sweeper(store.clone(), Duration::from_millis(10), shutdown.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while row_counts(&fixture.path).await.0 != 0 {
        assert!(tokio::time::Instant::now() < deadline, "never swept");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), sweeper)
        .await
        .expect("the sweeper stops on shutdown")
        .expect("the sweeper did not panic");
}

#[tokio::test]
async fn an_mcp_session_stands_in_for_the_conversation_id() {
    let fixture = Fixture::new();
    let config = with_ttl(Duration::from_secs(60 * 60));
    let store = fixture.open(config.clone()).await;
    let replica = fixture.open(config).await;
    let alice = owner("contoso", "alice");
    let session = SessionKey::of_session("5b1f0c2e-8d7a-4e36-9a51-0c4d2b7e9f13").expect("uuid");

    let first = store.for_session(&alice, &session).await.expect("bind");
    store
        .append(&alice, &first, &turn("q1"))
        .await
        .expect("append");
    assert_eq!(
        store.for_session(&alice, &session).await.expect("again"),
        first
    );
    assert_eq!(
        replica
            .for_session(&alice, &session)
            .await
            .expect("on the replica"),
        first
    );
    assert_eq!(asked(&replica, &alice, &first).await, ["q1"]);

    // The same session id presented by someone else is a different conversation, and theirs.
    for other in [owner("contoso", "bob"), owner("fabrikam", "alice")] {
        let theirs = store.for_session(&other, &session).await.expect("bind");
        assert_ne!(theirs, first);
        assert!(asked(&store, &other, &theirs).await.is_empty());
        assert_eq!(
            store.history(&other, &first, None).await,
            Err(MemoryError::UnknownConversation)
        );
    }
    let another_session = SessionKey::of_session("another-session").expect("word");
    assert_ne!(
        store
            .for_session(&alice, &another_session)
            .await
            .expect("bind"),
        first
    );

    // After the TTL the session gets a fresh, empty conversation.
    fixture.clock.advance(Duration::from_secs(61 * 60));
    let fresh = store.for_session(&alice, &session).await.expect("rebind");
    assert_ne!(fresh, first);
    assert!(asked(&store, &alice, &fresh).await.is_empty());

    assert!(matches!(
        SessionKey::of_session("has a space"),
        Err(MemoryError::MalformedSession { .. })
    ));
}

#[tokio::test]
async fn replicas_binding_one_session_at_once_agree_on_one_conversation() {
    let fixture = Fixture::new();
    let replicas: Vec<Arc<dyn ConversationStore>> = vec![
        Arc::new(fixture.open(MemoryConfig::default()).await),
        Arc::new(fixture.open(MemoryConfig::default()).await),
    ];
    let alice = owner("contoso", "alice");
    let session = SessionKey::of_session("first-contact").expect("word");
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..20 {
        let (store, alice, session) = (replicas[n % 2].clone(), alice.clone(), session.clone());
        tasks.spawn(async move { store.for_session(&alice, &session).await });
    }
    let mut bound = BTreeSet::new();
    while let Some(joined) = tasks.join_next().await {
        bound.insert(joined.expect("task").expect("bind").to_string());
    }
    assert_eq!(bound.len(), 1, "one session became {bound:?}");
}

#[tokio::test]
async fn sizes_are_bounded() {
    let fixture = Fixture::new();
    let store = fixture
        .open(MemoryConfig {
            max_turns: 3,
            max_turn_bytes: 2048,
            ..MemoryConfig::default()
        })
        .await;
    let alice = owner("contoso", "alice");
    let id = store.create(&alice).await.expect("create");

    let huge = turn(&"x".repeat(4096));
    let refused = store
        .append(&alice, &id, &huge)
        .await
        .expect_err("too large");
    assert!(
        matches!(refused, MemoryError::TurnTooLarge { limit: 2048, bytes } if bytes > 4096),
        "{refused:?}"
    );
    assert!(asked(&store, &alice, &id).await.is_empty());

    // Only the most recent max_turns turns are kept; sequence numbers keep counting.
    for n in 1..=5 {
        store
            .append(&alice, &id, &turn(&format!("q{n}")))
            .await
            .expect("append");
    }
    let kept = store.history(&alice, &id, None).await.expect("history");
    assert_eq!(questions(&kept), ["q3", "q4", "q5"]);
    assert_eq!(kept.iter().map(|t| t.seq).collect::<Vec<_>>(), [3, 4, 5]);

    let invalid = MemoryConfig {
        max_turns: 0,
        ..MemoryConfig::default()
    };
    let error = SqliteConversations::open(&fixture.path, invalid)
        .await
        .expect_err("max_turns 0");
    assert!(error.to_string().contains("max_turns"), "{error}");
}

#[tokio::test]
async fn mcp_session_handshakes_are_kept_for_any_replica_until_they_expire() {
    use rmcp::{
        model::{ClientCapabilities, Implementation, InitializeRequestParams},
        transport::streamable_http_server::session::store::{SessionState, SessionStore},
    };
    let fixture = Fixture::new();
    let config = with_ttl(Duration::from_secs(60 * 60));
    let store = fixture.open(config.clone()).await;
    let replica = fixture.open(config).await;
    let session = "5b1f0c2e-8d7a-4e36-9a51-0c4d2b7e9f13";
    let state = SessionState::new(InitializeRequestParams::new(
        ClientCapabilities::default(),
        Implementation::new("legacy-client", "1.0"),
    ));
    store.store(session, &state).await.expect("store");

    let loaded = replica
        .load(session)
        .await
        .expect("load")
        .expect("the replica finds it");
    assert_eq!(loaded.initialize_params.client_info.name, "legacy-client");
    assert!(replica.load("another").await.expect("load").is_none());

    // Past the TTL it is unknown at once, and the sweep deletes it.
    fixture.clock.advance(Duration::from_secs(61 * 60));
    assert!(store.load(session).await.expect("load").is_none());
    store.sweep().await.expect("sweep");
    let rows: i64 = {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", fixture.path.display()))
            .await
            .expect("open the file");
        sqlx::query_scalar("SELECT COUNT(*) FROM mcp_sessions")
            .fetch_one(&pool)
            .await
            .expect("count")
    };
    assert_eq!(rows, 0, "swept");

    // A client that ends its session (DELETE) takes its handshake with it.
    store.store(session, &state).await.expect("store again");
    store.delete(session).await.expect("delete");
    assert!(replica.load(session).await.expect("load").is_none());
}

#[tokio::test]
async fn an_owner_keeps_at_most_the_cap_of_conversations_the_least_recently_active_go() {
    let fixture = Fixture::new();
    let store = fixture
        .open(MemoryConfig {
            max_conversations_per_owner: 2,
            ..MemoryConfig::default()
        })
        .await;
    let alice = owner("t1", "alice");
    let bob = owner("t1", "bob");
    let bobs = store.create(&bob).await.expect("create");
    let first = store.create(&alice).await.expect("create");
    fixture.clock.advance(Duration::from_secs(1));
    let second = store.create(&alice).await.expect("create");
    fixture.clock.advance(Duration::from_secs(1));
    // A turn makes the first the most recently active: the second is the one to go.
    store
        .append(&alice, &first, &turn("still here?"))
        .await
        .expect("append");
    fixture.clock.advance(Duration::from_secs(1));
    let third = store.create(&alice).await.expect("create");

    assert_eq!(asked(&store, &alice, &first).await, ["still here?"]);
    assert!(store.history(&alice, &third, None).await.is_ok());
    assert!(matches!(
        store.history(&alice, &second, None).await,
        Err(MemoryError::UnknownConversation)
    ));
    // Someone else's conversations do not count against hers.
    assert!(store.history(&bob, &bobs, None).await.is_ok());
    assert_eq!(row_counts(&fixture.path).await.0, 3);
}
