//! Running the third-party MCP peers of the interop tests (the Python SDK client, the
//! conformance suite), installed in `<repo>/.interop/` by `scripts/setup-interop.sh`: the one
//! way every crate's interop tests find them, run them and report their failures.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::process::Command;

/// The peers finish in seconds; this only stops a hung peer from hanging the test run.
const PEER_TIMEOUT: Duration = Duration::from_secs(600);

/// The workspace root, where `.interop/` and `scripts/` are.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root")
}

/// Fails the test (never skips it) when a peer is not installed.
pub fn require_peer(path: &Path) {
    assert!(
        path.exists(),
        "interop peer not installed: {} is missing. Run scripts/setup-interop.sh \
         (or scripts/test.sh, which runs it) first.",
        path.display()
    );
}

/// Runs a peer from the workspace root to completion and asserts that it exits with status 0,
/// showing its output and `service_log` (the log of the service it talked to) if not.
pub async fn run_peer(program: &Path, args: &[&str], service_log: impl FnOnce() -> String) {
    let label = format!("{} {}", program.display(), args.join(" "));
    let child = Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {label}: {e}"));
    let output = tokio::time::timeout(PEER_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{label} did not finish within {PEER_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    let shown = format!(
        "$ {label}\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{label} failed ({})\n{shown}\n--- service log\n{}",
        output.status,
        service_log()
    );
    eprintln!("{shown}");
}
