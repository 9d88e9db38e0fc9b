//! The memory's contract, asserted the same way on every backend (see `backends/`: SQLite in a
//! file, Cosmos DB on a local emulator): ownership, ids, durability across a restart, two
//! replicas on one database, expiry and sweeping, the per-owner caps, the MCP-session stand-in,
//! MCP session handshakes and owners, and actions held for confirmation.

mod backends;

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use agent_service::memory::{
    ConversationId, ConversationStore, MemoryConfig, MemoryError, Owner, ProposedAction,
    SessionKey, ToolCallRecord, Turn, TurnStatus, spawn_sweeper,
};
use backends::{backends, start};
use rmcp::{
    model::{ClientCapabilities, Implementation, InitializeRequestParams},
    transport::streamable_http_server::session::store::SessionState,
};
use serde_json::json;
use shared::auth::Identity;
use tokio_util::sync::CancellationToken;

fn owner(tenant: &str, subject: &str) -> Owner {
    Owner {
        tenant: tenant.into(),
        subject: subject.into(),
    }
}

fn turn(question: &str) -> Turn {
    Turn {
        domain: "billing".into(),
        question: question.into(),
        answer: format!("answer to {question}"),
        status: TurnStatus::Done,
        tool_calls: vec![ToolCallRecord {
            name: "get_billing_summary".into(),
            // A number a double cannot hold comes back exactly as written.
            arguments: json!({ "customer_id": 251, "reference": 9_007_199_254_740_993u64 }),
            ok: true,
            error: None,
        }],
        error: None,
        asked_at: start(),
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

/// A verified caller, as the MCP layer hands it to the session owners.
fn identity(tenant: &str, subject: &str) -> Identity {
    Identity {
        subject: subject.into(),
        object_id: None,
        tenant: tenant.into(),
        roles: BTreeSet::new(),
        scopes: BTreeSet::new(),
        client_id: None,
        expires_at: i64::MAX,
        audiences: Vec::new(),
        actors: Vec::new(),
    }
}

fn handshake() -> SessionState {
    SessionState::new(InitializeRequestParams::new(
        ClientCapabilities::default(),
        Implementation::new("legacy-client", "1.0"),
    ))
}

fn unlock() -> ProposedAction {
    ProposedAction {
        domain: "account".into(),
        tool: "unlock_account".into(),
        arguments: json!({"customer_id": 254, "reference": 9_007_199_254_740_993u64})
            .as_object()
            .cloned()
            .expect("object"),
        action: "Unlock the online account of customer 254".into(),
    }
}

#[tokio::test]
async fn new_conversations_get_unique_unguessable_ids() {
    for backend in backends().await {
        let store = backend.open(MemoryConfig::default()).await;
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
        // A rough check that the bits are random, not a counter: the first character of 500
        // ids takes most of its 64 possible values.
        let firsts: BTreeSet<_> = seen.iter().map(|id| id.as_bytes()[5]).collect();
        assert!(
            firsts.len() > 30,
            "first characters barely vary: {firsts:?}"
        );
    }
}

#[tokio::test]
async fn only_the_owner_continues_and_others_see_an_unknown_id() {
    for backend in backends().await {
        let store = backend.open(MemoryConfig::default()).await;
        let alice = owner("contoso", "alice");
        let id = store.create(&alice).await.expect("create");
        store
            .append(&alice, &id, &turn("q1"))
            .await
            .expect("owner appends");
        assert_eq!(asked(&*store, &alice, &id).await, ["q1"]);

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
            owner("contosoalice", ""), // the same letters, split elsewhere
            owner("contos", "oalice"),
        ] {
            let read = store.history(&stranger, &id, None).await.expect_err("read");
            let write = store
                .append(&stranger, &id, &turn("intruder"))
                .await
                .expect_err("write");
            // Identical to an id that never existed, message included.
            assert_eq!(read, unknown, "{}: {stranger:?}", backend.name);
            assert_eq!(write, unknown, "{}: {stranger:?}", backend.name);
            assert_eq!(read.to_string(), unknown.to_string());
        }
        // Nothing the strangers tried was written.
        assert_eq!(asked(&*store, &alice, &id).await, ["q1"]);
    }
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
    for backend in backends().await {
        let alice = owner("contoso", "alice");
        let id = {
            let store = backend.open(MemoryConfig::default()).await;
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

        let restarted = backend.open(MemoryConfig::default()).await;
        let all = restarted.history(&alice, &id, None).await.expect("history");
        assert_eq!(questions(&all), ["q1", "q2", "q3", "q4", "q5"]);
        assert_eq!(
            all.iter().map(|t| t.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(
            all[0].turn,
            turn("q1"),
            "{}: the turn comes back whole",
            backend.name
        );
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
}

#[tokio::test]
async fn two_replicas_on_one_database_lose_no_concurrent_appends() {
    for backend in backends().await {
        // Opened as the service opens them (system clock), not on the test's clock.
        let config = MemoryConfig {
            max_turns: 1000,
            ..MemoryConfig::default()
        };
        let a = backend
            .open_as_the_service(config.clone())
            .await
            .conversations();
        let b = backend.open_as_the_service(config).await.conversations();
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
            let seq = joined
                .expect("task")
                .unwrap_or_else(|e| panic!("{}: append: {e}", backend.name));
            assert!(
                seqs.insert(seq),
                "{}: seq {seq} handed out twice",
                backend.name
            );
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
}

#[tokio::test]
async fn conversations_expire_after_the_ttl_since_last_activity_and_are_swept() {
    for backend in backends().await {
        let clock = &backend.clock;
        let store = backend.open(with_ttl(Duration::from_secs(60 * 60))).await;
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
        assert_eq!(asked(&*store, &alice, &active).await, ["q1"]);
        // Expired conversations stay until swept, then go with their turns.
        let stored = |conversations, turns| (conversations, turns);
        let now = backend.stored().await;
        assert_eq!(
            stored(now.conversations, now.turns),
            (2, 2),
            "{}",
            backend.name
        );
        assert_eq!(store.sweep().await.expect("sweep"), 1);
        let now = backend.stored().await;
        assert_eq!(
            stored(now.conversations, now.turns),
            (1, 1),
            "{}",
            backend.name
        );

        clock.advance(60 * minute);
        assert_eq!(store.sweep().await.expect("sweep"), 1);
        let now = backend.stored().await;
        assert_eq!(
            stored(now.conversations, now.turns),
            (0, 0),
            "{}",
            backend.name
        );
        assert_eq!(
            store.history(&alice, &active, None).await,
            Err(MemoryError::UnknownConversation)
        );
    }
}

#[tokio::test]
async fn the_background_sweeper_deletes_expired_conversations_until_shut_down() {
    for backend in backends().await {
        let store = backend.open(with_ttl(Duration::from_secs(60))).await;
        let alice = owner("contoso", "alice");
        store.create(&alice).await.expect("create");
        backend.clock.advance(Duration::from_secs(61));

        let shutdown = CancellationToken::new();
        let sweeper = spawn_sweeper(
            store.conversations(),
            Duration::from_millis(10),
            shutdown.clone(),
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while backend.stored().await.conversations != 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: never swept",
                backend.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), sweeper)
            .await
            .expect("the sweeper stops on shutdown")
            .expect("the sweeper did not panic");
    }
}

#[tokio::test]
async fn an_mcp_session_stands_in_for_the_conversation_id() {
    for backend in backends().await {
        let config = with_ttl(Duration::from_secs(60 * 60));
        let store = backend.open(config.clone()).await;
        let replica = backend.open(config).await;
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
        assert_eq!(asked(&*replica, &alice, &first).await, ["q1"]);

        // The same session id presented by someone else is a different conversation, and
        // theirs.
        for other in [owner("contoso", "bob"), owner("fabrikam", "alice")] {
            let theirs = store.for_session(&other, &session).await.expect("bind");
            assert_ne!(theirs, first);
            assert!(asked(&*store, &other, &theirs).await.is_empty());
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
        backend.clock.advance(Duration::from_secs(61 * 60));
        let fresh = store.for_session(&alice, &session).await.expect("rebind");
        assert_ne!(fresh, first);
        assert!(asked(&*store, &alice, &fresh).await.is_empty());
        assert_eq!(
            replica.for_session(&alice, &session).await.expect("again"),
            fresh,
            "{}: the replica follows the new binding",
            backend.name
        );

        assert!(matches!(
            SessionKey::of_session("has a space"),
            Err(MemoryError::MalformedSession { .. })
        ));
    }
}

#[tokio::test]
async fn replicas_binding_one_session_at_once_agree_on_one_conversation() {
    for backend in backends().await {
        let replicas = [
            backend.open(MemoryConfig::default()).await.conversations(),
            backend.open(MemoryConfig::default()).await.conversations(),
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
        assert_eq!(
            bound.len(),
            1,
            "{}: one session became {bound:?}",
            backend.name
        );
        assert_eq!(
            backend.stored().await.conversations,
            1,
            "{}: no second conversation was left behind",
            backend.name
        );
    }
}

#[tokio::test]
async fn sizes_are_bounded() {
    for backend in backends().await {
        let store = backend
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
        assert!(asked(&*store, &alice, &id).await.is_empty());

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
        assert_eq!(
            backend.stored().await.turns,
            3,
            "{}: dropped, not hidden",
            backend.name
        );

        let invalid = MemoryConfig {
            max_turns: 0,
            ..MemoryConfig::default()
        };
        let error = backend
            .try_open(invalid, backend.clock.clone())
            .await
            .err()
            .expect("max_turns 0");
        assert!(error.to_string().contains("max_turns"), "{error}");
    }
}

#[tokio::test]
async fn mcp_session_handshakes_are_kept_for_any_replica_until_they_expire() {
    for backend in backends().await {
        let config = with_ttl(Duration::from_secs(60 * 60));
        let store = backend.open(config.clone()).await;
        let replica = backend.open(config).await;
        let session = "5b1f0c2e-8d7a-4e36-9a51-0c4d2b7e9f13";
        store
            .sessions()
            .store(session, &handshake())
            .await
            .expect("store");

        let loaded = replica
            .sessions()
            .load(session)
            .await
            .expect("load")
            .expect("the replica finds it");
        assert_eq!(loaded.initialize_params.client_info.name, "legacy-client");
        assert!(
            replica
                .sessions()
                .load("another")
                .await
                .expect("load")
                .is_none()
        );

        // Past the TTL it is unknown at once, and the sweep deletes it.
        backend.clock.advance(Duration::from_secs(61 * 60));
        assert!(
            store
                .sessions()
                .load(session)
                .await
                .expect("load")
                .is_none()
        );
        store.sweep().await.expect("sweep");
        assert_eq!(
            backend.stored().await.handshakes,
            0,
            "{}: swept",
            backend.name
        );

        // A client that ends its session (DELETE) takes its handshake with it.
        store
            .sessions()
            .store(session, &handshake())
            .await
            .expect("store again");
        store.sessions().delete(session).await.expect("delete");
        assert!(
            replica
                .sessions()
                .load(session)
                .await
                .expect("load")
                .is_none()
        );
    }
}

#[tokio::test]
async fn an_mcp_session_is_its_owners_only_until_it_ends_or_expires() {
    for backend in backends().await {
        let config = with_ttl(Duration::from_secs(60 * 60));
        let store = backend.open(config.clone()).await;
        let replica = backend.open(config).await;
        let alice = identity("contoso", "alice");
        let session = "5b1f0c2e-8d7a-4e36-9a51-0c4d2b7e9f13";
        store.sessions().bind(session, &alice).await.expect("bind");

        for owners in [store.sessions(), replica.sessions()] {
            assert_eq!(owners.owned_by(session, &alice).await, Ok(true));
            for stranger in [
                identity("contoso", "bob"),
                identity("fabrikam", "alice"),
                identity("contosoalice", ""),
            ] {
                assert_eq!(
                    owners.owned_by(session, &stranger).await,
                    Ok(false),
                    "{}: {stranger:?}",
                    backend.name
                );
            }
            assert_eq!(owners.owned_by("another", &alice).await, Ok(false));
            assert_eq!(owners.owned_by("not a session id", &alice).await, Ok(false));
        }

        // Ended on one replica: no longer hers on the other.
        replica.sessions().forget(session).await.expect("forget");
        assert_eq!(store.sessions().owned_by(session, &alice).await, Ok(false));
        store
            .sessions()
            .forget(session)
            .await
            .expect("forgetting twice is harmless");

        // Bound again, then past the TTL: unknown at once.
        store.sessions().bind(session, &alice).await.expect("bind");
        backend.clock.advance(Duration::from_secs(61 * 60));
        assert_eq!(
            replica.sessions().owned_by(session, &alice).await,
            Ok(false)
        );
        store.sweep().await.expect("sweep");
    }
}

#[tokio::test]
async fn an_owner_holds_at_most_the_cap_of_sessions_the_oldest_end() {
    for backend in backends().await {
        let store = backend
            .open(MemoryConfig {
                max_sessions_per_owner: 2,
                ..MemoryConfig::default()
            })
            .await;
        let sessions = store.sessions();
        let (alice, bob) = (identity("t1", "alice"), identity("t1", "bob"));
        sessions.bind("bobs", &bob).await.expect("bind");
        for (n, session) in ["one", "two", "three"].into_iter().enumerate() {
            backend.clock.advance(Duration::from_secs(1));
            sessions.store(session, &handshake()).await.expect("store");
            sessions.bind(session, &alice).await.expect("bind");
            assert_eq!(sessions.owned_by(session, &alice).await, Ok(true), "{n}");
        }
        assert_eq!(
            sessions.owned_by("one", &alice).await,
            Ok(false),
            "{}: the oldest of three ended at a cap of two",
            backend.name
        );
        assert!(
            sessions.load("one").await.expect("load").is_none(),
            "{}: its handshake went too",
            backend.name
        );
        for session in ["two", "three"] {
            assert_eq!(sessions.owned_by(session, &alice).await, Ok(true));
            assert!(sessions.load(session).await.expect("load").is_some());
        }
        // Another owner's sessions do not count against hers.
        assert_eq!(sessions.owned_by("bobs", &bob).await, Ok(true));
    }
}

#[tokio::test]
async fn an_owner_keeps_at_most_the_cap_of_conversations_the_least_recently_active_go() {
    for backend in backends().await {
        let store = backend
            .open(MemoryConfig {
                max_conversations_per_owner: 2,
                ..MemoryConfig::default()
            })
            .await;
        let alice = owner("t1", "alice");
        let bob = owner("t1", "bob");
        let bobs = store.create(&bob).await.expect("create");
        let first = store.create(&alice).await.expect("create");
        backend.clock.advance(Duration::from_secs(1));
        let second = store.create(&alice).await.expect("create");
        store
            .append(&alice, &second, &turn("soon gone"))
            .await
            .expect("append");
        store.hold(&alice, &second, &unlock()).await.expect("held");
        backend.clock.advance(Duration::from_secs(1));
        // A turn makes the first the most recently active: the second is the one to go.
        store
            .append(&alice, &first, &turn("still here?"))
            .await
            .expect("append");
        backend.clock.advance(Duration::from_secs(1));
        let third = store.create(&alice).await.expect("create");

        assert_eq!(asked(&*store, &alice, &first).await, ["still here?"]);
        assert!(store.history(&alice, &third, None).await.is_ok());
        assert!(matches!(
            store.history(&alice, &second, None).await,
            Err(MemoryError::UnknownConversation)
        ));
        // Someone else's conversations do not count against hers.
        assert!(store.history(&bob, &bobs, None).await.is_ok());
        // The second went with its turn and its held action.
        let stored = backend.stored().await;
        assert_eq!(
            (stored.conversations, stored.turns, stored.actions),
            (3, 1, 0),
            "{}",
            backend.name
        );
    }
}

#[tokio::test]
async fn held_actions_expire_after_their_ttl_and_are_swept() {
    for backend in backends().await {
        let clock = &backend.clock;
        let store = backend
            .open(MemoryConfig {
                confirmation_ttl: Duration::from_secs(60),
                ..MemoryConfig::default()
            })
            .await;
        let owner = owner("contoso", "alice");
        let conversation = store.create(&owner).await.expect("conversation");
        let action = unlock();
        let early = store
            .hold(&owner, &conversation, &action)
            .await
            .expect("held");
        let late = store
            .hold(&owner, &conversation, &action)
            .await
            .expect("held");
        assert_ne!(early.id, late.id);
        assert_eq!(early.expires_at, start() + chrono::Duration::seconds(60));

        clock.advance(Duration::from_secs(59));
        assert_eq!(
            store
                .claim(&owner, &conversation, "account", &early.id)
                .await
                .expect("claimed in time"),
            action,
            "{}: the action comes back exactly as held",
            backend.name
        );
        clock.advance(Duration::from_secs(2));
        assert_eq!(
            store
                .claim(&owner, &conversation, "account", &late.id)
                .await,
            Err(MemoryError::UnknownConfirmation),
            "expired"
        );
        // Held only in a conversation of the owner's.
        let mallory = Owner {
            subject: "mallory".into(),
            ..owner.clone()
        };
        assert_eq!(
            store.hold(&mallory, &conversation, &action).await,
            Err(MemoryError::UnknownConversation)
        );
        assert_eq!(store.sweep_actions().await.expect("swept"), 2);
        assert_eq!(store.sweep_actions().await.expect("swept"), 0);
        assert_eq!(backend.stored().await.actions, 0, "{}", backend.name);
    }
}

#[tokio::test]
async fn a_confirmation_is_used_once_even_by_replicas_racing_and_only_where_it_was_held() {
    for backend in backends().await {
        let replicas = [
            backend.open(MemoryConfig::default()).await,
            backend.open(MemoryConfig::default()).await,
        ];
        let alice = owner("contoso", "alice");
        let conversation = replicas[0].create(&alice).await.expect("conversation");
        let other = replicas[0].create(&alice).await.expect("conversation");
        let held = replicas[1]
            .hold(&alice, &conversation, &unlock())
            .await
            .expect("held");

        // Anyone else, another conversation or another expert: the same refusal as an id that
        // never existed, and the action is still there for its owner.
        let never = agent_service::memory::ConfirmationId::generate().expect("randomness");
        for (who, wherein, domain, id) in [
            (owner("contoso", "bob"), &conversation, "account", &held.id),
            (
                owner("fabrikam", "alice"),
                &conversation,
                "account",
                &held.id,
            ),
            (alice.clone(), &other, "account", &held.id),
            (alice.clone(), &conversation, "billing", &held.id),
            (alice.clone(), &conversation, "account", &never),
        ] {
            assert_eq!(
                replicas[0].claim(&who, wherein, domain, id).await,
                Err(MemoryError::UnknownConfirmation),
                "{}: {who:?} {domain}",
                backend.name
            );
        }

        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..20 {
            let (store, alice, conversation, id) = (
                replicas[n % 2].clone(),
                alice.clone(),
                conversation.clone(),
                held.id.clone(),
            );
            tasks.spawn(async move { store.claim(&alice, &conversation, "account", &id).await });
        }
        let (mut claimed, mut used) = (0, 0);
        while let Some(joined) = tasks.join_next().await {
            match joined.expect("task") {
                Ok(action) => {
                    assert_eq!(action, unlock());
                    claimed += 1;
                }
                Err(MemoryError::ConfirmationUsed) => used += 1,
                Err(other) => panic!("{}: {other:?}", backend.name),
            }
        }
        assert_eq!((claimed, used), (1, 19), "{}", backend.name);
        assert_eq!(
            replicas[1]
                .claim(&alice, &conversation, "account", &held.id)
                .await,
            Err(MemoryError::ConfirmationUsed),
            "and later too"
        );
        // An action is held only in a live conversation.
        let gone = ConversationId::generate().expect("randomness");
        assert_eq!(
            replicas[0].hold(&alice, &gone, &unlock()).await,
            Err(MemoryError::UnknownConversation)
        );
    }
}

#[tokio::test]
async fn health_names_the_backend_and_database_only() {
    for backend in backends().await {
        let store = backend.open(MemoryConfig::default()).await;
        store.ping().await.expect("the backend answers");
        assert_eq!(store.backend(), backend.name);
        let database = store.database();
        assert!(!database.is_empty());
        assert!(
            !database.contains('/') && !database.contains("127.0.0.1"),
            "{}: neither a path nor an endpoint: {database}",
            backend.name
        );
    }
}
