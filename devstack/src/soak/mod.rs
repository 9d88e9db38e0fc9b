//! The soak benchmark (`soak`): the whole stack, run as `devstack` runs it, driven through its
//! gateway for minutes with mixed and hostile traffic, and watched for growth.
//!
//! - [`stack`]: the release `devstack` binary as a child process, its addresses read from its
//!   banner, tokens signed with its key;
//! - [`traffic`]: the clients, the kinds of request they send and what counts as a proper answer;
//! - [`raw`]: the raw TCP clients (half-sent heads, idle keep-alive connections);
//! - [`watch`]: memory and descriptors of each measured process, sessions and conversations in
//!   the agent's database;
//! - [`report`]: the Markdown table and the verdict.
//!
//! Measured: the `devstack` child (every service of the stack runs in it) and the soak process
//! itself (a load generator that grows would be a false alarm worth seeing).

pub mod raw;
pub mod report;
pub mod stack;
pub mod traffic;
pub mod watch;

use std::{
    io::Write,
    path::PathBuf,
    sync::{Arc, PoisonError, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::Context;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use self::{
    report::{Check, Row},
    stack::{ChildStack, StackOptions},
    traffic::{ClientSettings, Kind, Tally, Targets},
    watch::AgentDb,
};
use crate::load;

/// How long and how hard to soak.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long the traffic runs.
    pub duration: Duration,
    /// Concurrent clients.
    pub clients: usize,
    /// One row per this interval.
    pub row_every: Duration,
    /// Requests per second of all clients together, at most.
    pub rate: f64,
    /// Rows up to this point are left out of the verdict.
    pub warmup: Duration,
    /// Allowed growth of memory and descriptors after the warm-up, in percent.
    pub tolerance_pct: f64,
    pub request_timeout: Duration,
    /// How long a slow or idle connection is held waiting for the server to close it.
    pub hold: Duration,
    pub troubleshoot_step_ms: u64,
    /// `CONVERSATIONS_PER_OWNER` of the experts.
    pub conversations_per_owner: u32,
    /// The `devstack` binary; by default the one beside this program.
    pub devstack: Option<PathBuf>,
}

/// What the run found.
#[derive(Debug)]
pub struct Outcome {
    pub rows: Vec<Row>,
    /// Memory and descriptors, or why they could not be judged.
    pub checks: Result<Vec<Check>, String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.checks
            .as_ref()
            .is_ok_and(|checks| checks.iter().all(|c| c.ok))
    }
}

/// Starts the stack, drives it for `settings.duration`, and writes the table (a row as each
/// interval ends), the totals, the errors seen and the verdict to `out`.
pub async fn run(settings: &Settings, out: &mut dyn Write) -> anyhow::Result<Outcome> {
    anyhow::ensure!(settings.clients > 0, "--clients must be at least 1");
    anyhow::ensure!(
        settings.rate > 0.0 && settings.rate.is_finite(),
        "--rate must be positive"
    );
    anyhow::ensure!(
        !settings.row_every.is_zero(),
        "--seconds-per-row must be at least 1"
    );
    let bin = match &settings.devstack {
        Some(bin) => bin.clone(),
        None => load::sibling_binary("devstack")?,
    };
    let data_dir = std::env::temp_dir().join(format!("soak-{}", std::process::id()));
    let options = StackOptions {
        troubleshoot_step_ms: settings.troubleshoot_step_ms,
        log_filter: "warn".to_owned(),
        conversations_per_owner: settings.conversations_per_owner,
    };
    let started = Instant::now();
    let stack = match ChildStack::start(&bin, &data_dir, &options).await {
        Ok(stack) => stack,
        Err(error) => {
            let _ = std::fs::remove_dir_all(&data_dir);
            return Err(error);
        }
    };
    let result = soak(settings, &stack, started.elapsed(), out).await;
    stack.stop().await;
    result
}

async fn soak(
    settings: &Settings,
    stack: &ChildStack,
    start_up: Duration,
    out: &mut dyn Write,
) -> anyhow::Result<Outcome> {
    let lifetime = settings.duration + Duration::from_secs(3600);
    let targets = Arc::new(Targets::new(stack, settings.clients, lifetime)?);
    let client_settings = ClientSettings {
        per_second: settings.rate / settings.clients as f64,
        request_timeout: settings.request_timeout,
        hold: settings.hold,
    };
    traffic::preflight(&targets, &client_settings).await?;
    let db = AgentDb::open(&stack.agent_db)
        .await
        .with_context(|| format!("opening {} read-only", stack.agent_db.display()))?;
    let pids = [("devstack", stack.pid), ("soak", std::process::id())];
    let names: Vec<String> = pids.iter().map(|(name, _)| (*name).to_owned()).collect();

    writeln!(
        out,
        "soak: {} clients for {} s, at most {} requests/s, a row every {} s; devstack (pid {}) \
         ready in {:.1} s; slow and idle connections held up to {} s; {} logical CPUs",
        settings.clients,
        settings.duration.as_secs(),
        settings.rate,
        settings.row_every.as_secs(),
        stack.pid,
        start_up.as_secs_f64(),
        settings.hold.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    )?;
    writeln!(
        out,
        "sessions and conversations: rows of the agent's SQLite database ({}), read-only; \
         per kind: proper answers/errors in the interval; 429: rate-limited, any kind\n",
        stack.agent_db.display()
    )?;
    writeln!(out, "{}", report::header(&names))?;
    out.flush()?;

    let tally = Arc::new(Tally::default());
    let stop = CancellationToken::new();
    let held = Arc::new(Semaphore::new(settings.clients));
    let mut clients = Vec::with_capacity(settings.clients);
    for id in 0..settings.clients {
        clients.push(tokio::spawn(traffic::client(
            id,
            targets.clone(),
            tally.clone(),
            client_settings.clone(),
            held.clone(),
            stop.clone(),
        )));
    }

    let began = Instant::now();
    let mut rows = Vec::new();
    let mut previous = tally.counts();
    let mut next = settings.row_every;
    loop {
        let end = next.min(settings.duration);
        // Descriptors are sampled each second and their floor kept (connections of the moment
        // come and go); memory is the row's last sample.
        let mut floor: Vec<Option<watch::ProcessSample>> = vec![None; pids.len()];
        loop {
            let left = (began + end).saturating_duration_since(Instant::now());
            tokio::time::sleep(left.min(Duration::from_secs(1))).await;
            for (kept, (_, pid)) in floor.iter_mut().zip(&pids) {
                let now = watch::process(*pid);
                *kept = Some(kept.map_or(now, |kept| now.fewest_fds(kept)));
            }
            if left <= Duration::from_secs(1) {
                break;
            }
        }
        let counts = tally.counts();
        let row = Row {
            at: began.elapsed(),
            processes: floor.into_iter().map(Option::unwrap_or_default).collect(),
            agent: db.sample().await,
            counts: counts.since(&previous),
        };
        previous = counts;
        writeln!(out, "{}", report::row(&row))?;
        out.flush()?;
        rows.push(row);
        if end >= settings.duration {
            break;
        }
        next += settings.row_every;
    }
    stop.cancel();
    for client in clients {
        match tokio::time::timeout(Duration::from_secs(10), client).await {
            Ok(Ok(Err(error))) => writeln!(out, "a client failed: {error:#}")?,
            Ok(Err(join)) => writeln!(out, "a client failed: {join}")?,
            Ok(Ok(Ok(()))) | Err(_) => {}
        }
    }
    db.close().await;

    summary(settings, stack, &tally, &rows, out)?;
    let checks = report::verdict(&rows, &names, settings.warmup, settings.tolerance_pct);
    writeln!(
        out,
        "\nverdict (target: memory and descriptors within {} % after the first {} s):",
        settings.tolerance_pct,
        settings.warmup.as_secs()
    )?;
    match &checks {
        Ok(checks) => {
            for check in checks {
                writeln!(out, "- {check}")?;
            }
        }
        Err(why) => writeln!(out, "- not judged: {why}")?,
    }
    let outcome = Outcome { rows, checks };
    writeln!(out, "{}", if outcome.passed() { "PASS" } else { "FAIL" })?;
    Ok(outcome)
}

/// Totals, errors by description, how held connections ended, and the child's log.
fn summary(
    settings: &Settings,
    stack: &ChildStack,
    tally: &Tally,
    rows: &[Row],
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    writeln!(out, "\ntotals: {}", report::totals(rows))?;
    let messages = tally.messages();
    if !messages.is_empty() {
        writeln!(out, "errors seen:")?;
        for (kind, message, n) in messages {
            writeln!(out, "- {} x{n}: {message}", kind.label())?;
        }
    }
    for kind in [Kind::Slow, Kind::Idle] {
        let closed = tally.closed_after(kind);
        let median = load::median(&closed);
        writeln!(
            out,
            "{} connections: the server closed {} (median after {}); the soak gives up after {} s",
            kind.label(),
            closed.len(),
            median.map_or_else(|| "-".to_owned(), |s| format!("{s:.1} s")),
            settings.hold.as_secs(),
        )?;
    }
    let output = &stack.output;
    let lines = output.lines.load(Ordering::Relaxed);
    let panics = output.panics.load(Ordering::Relaxed);
    write!(
        out,
        "devstack log after start: {lines} lines at warn or above, {panics} panics"
    )?;
    let first = output
        .first_panic
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    match first {
        Some(first) => writeln!(out, " (first: {first})")?,
        None => writeln!(out)?,
    }
    Ok(())
}
