//! The development identity provider's client secrets are public, so it refuses to listen where
//! other machines could reach it unless `ALLOW_OPEN_NETWORK=true` says the network is trusted,
//! and then says so loudly. `devstack idp` on a real listener bound to `0.0.0.0:0`.

use std::{
    io,
    sync::{Arc, Mutex},
    time::Duration,
};

use clap::Parser;
use devstack::config::{Cli, Command, IdpArgs};
use tokio::net::TcpListener;

fn idp_args(dir: &tempfile::TempDir, extra: &[&str]) -> IdpArgs {
    let data = dir.path().display().to_string();
    let args = [
        &[
            "devstack",
            "idp",
            "--bind",
            "0.0.0.0:0",
            "--data-dir",
            &data,
        ][..],
        extra,
    ]
    .concat();
    match Cli::try_parse_from(args).expect("flags parse").command {
        Some(Command::Idp(args)) => args,
        other => panic!("idp subcommand, got {other:?}"),
    }
}

/// Everything logged at WARN and above while the returned guard lives (this thread only).
fn capture_warnings() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("log lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink(buffer.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    (buffer, tracing::subscriber::set_default(subscriber))
}

#[tokio::test(flavor = "current_thread")]
async fn the_idp_refuses_a_non_loopback_listener_without_allow_open_network() {
    let dir = tempfile::tempdir().expect("temp dir");
    let args = idp_args(&dir, &[]);
    // The flag's address is refused before anything binds...
    let error = args.check_exposure().expect_err("0.0.0.0 is not loopback");
    let message = error.to_string();
    assert!(message.contains("IDP_BIND_ADDR=0.0.0.0:0"), "{message}");
    assert!(message.contains("ALLOW_OPEN_NETWORK=true"), "{message}");

    // ... and so is a listener already bound there: the IdP never serves on it.
    let listener = TcpListener::bind("0.0.0.0:0").await.expect("bind");
    let served = tokio::time::timeout(
        Duration::from_secs(5),
        devstack::run_idp(args, listener, std::future::pending()),
    )
    .await
    .expect("refused at once, not served");
    let message = served.expect_err("refused").to_string();
    assert!(message.contains("ALLOW_OPEN_NETWORK"), "{message}");
}

#[tokio::test(flavor = "current_thread")]
async fn with_allow_open_network_the_idp_serves_and_warns() {
    let (logs, _guard) = capture_warnings();
    let dir = tempfile::tempdir().expect("temp dir");
    let args = idp_args(&dir, &["--allow-open-network", "true"]);
    args.check_exposure().expect("allowed");
    let listener = TcpListener::bind("0.0.0.0:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = devstack::run_idp(args, listener, async move {
        let _ = stopped.await;
    });
    let client = async move {
        let url = format!("http://127.0.0.1:{port}/.well-known/openid-configuration");
        let document: serde_json::Value = reqwest::get(&url)
            .await
            .expect("the IdP answers")
            .json()
            .await
            .expect("JSON");
        let _ = stop.send(());
        document
    };
    let (served, document) = tokio::join!(served, client);
    served.expect("served until stopped");
    assert!(document["jwks_uri"].is_string(), "{document}");
    let logs = String::from_utf8_lossy(&logs.lock().expect("log lock")).into_owned();
    assert!(
        logs.contains("WARN") && logs.contains("ALLOW_OPEN_NETWORK=true"),
        "warned loudly: {logs}"
    );
}
