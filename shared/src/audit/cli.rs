//! The services' `audit` subcommand: a tenant's stored events since a time, as JSON lines.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use chrono::{DateTime, Utc};

use super::{AuditError, AuditEvent, AuditFilter, AuditStore, SqliteAuditStore};

/// `audit`: print a tenant's stored tool-call events as JSON lines, newest last, without
/// starting the server.
#[derive(Debug, Clone, clap::Args)]
pub struct AuditQueryArgs {
    /// Tenant id (`tid`) whose events to print.
    #[arg(long)]
    pub tenant: String,
    /// Events since: a time back from now (`30m`, `1h`, `7d`, `45s`) or an RFC 3339 time
    /// (`2026-05-01T00:00:00Z`).
    #[arg(long, value_parser = parse_since_now)]
    pub since: DateTime<Utc>,
    /// At most this many events, the newest.
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
    /// Database file; default: the service's DB_PATH.
    #[arg(long)]
    pub db_path: Option<PathBuf>,
}

fn parse_since_now(text: &str) -> Result<DateTime<Utc>, String> {
    parse_since(text, Utc::now())
}

/// `--since`: `N` followed by `s`, `m`, `h` or `d` before `now`, or an RFC 3339 time.
pub fn parse_since(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    let invalid = || format!("{text:?} is neither a duration (30m, 1h, 7d) nor an RFC 3339 time");
    let unit_at = text.len().checked_sub(1).ok_or_else(invalid)?;
    let (number, unit) = text.split_at(unit_at);
    let number: i64 = number.parse().map_err(|_| invalid())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(invalid()),
    };
    number
        .checked_mul(seconds)
        .and_then(chrono::Duration::try_seconds)
        .and_then(|age| now.checked_sub_signed(age))
        .filter(|_| number >= 0)
        .ok_or_else(invalid)
}

/// Writes the events `args` selects from the database (`args.db_path`, else `default_db_path`)
/// to `out`, one JSON line each, oldest first; returns how many.
pub async fn print_events(
    args: &AuditQueryArgs,
    default_db_path: &Path,
    out: &mut (dyn Write + Send),
) -> Result<usize, AuditError> {
    let filter = AuditFilter {
        tenant: Some(args.tenant.clone()),
        since: Some(args.since),
        limit: args.limit,
    };
    let events = read_events(args.db_path.as_deref().unwrap_or(default_db_path), &filter).await?;
    for event in &events {
        writeln!(out, "{}", serde_json::to_string(event)?)?;
    }
    out.flush()?;
    Ok(events.len())
}

/// The events `filter` selects from the existing database at `db_path`, oldest first, read
/// once (the connections are closed before it returns).
pub async fn read_events(
    db_path: &Path,
    filter: &AuditFilter,
) -> Result<Vec<AuditEvent>, AuditError> {
    let store = SqliteAuditStore::open_existing(db_path).await?;
    let events = store.query(filter).await;
    store.pool().close().await;
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_rfc3339_times() {
        let now = DateTime::parse_from_rfc3339("2026-05-10T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let at = |s: &str| parse_since(s, now).map(|t| t.to_rfc3339());
        assert_eq!(at("30m").as_deref(), Ok("2026-05-10T11:30:00+00:00"));
        assert_eq!(at("1h").as_deref(), Ok("2026-05-10T11:00:00+00:00"));
        assert_eq!(at("7d").as_deref(), Ok("2026-05-03T12:00:00+00:00"));
        assert_eq!(
            at("2026-05-01T08:00:00+02:00").as_deref(),
            Ok("2026-05-01T06:00:00+00:00")
        );
        for bad in ["", "h", "1w", "-1h", "yesterday", "99999999999999999d"] {
            assert!(parse_since(bad, now).is_err(), "{bad:?}");
        }
    }
}

/// What a service binary can do besides serving; both services offer the same.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ServiceCommand {
    /// Print the stored audit trail of a tenant's tool calls, as JSON lines (newest last), from
    /// DB_PATH, without starting the server.
    Audit(AuditQueryArgs),
}

/// Prints `policy` as a policy file (`--print-policy`).
pub fn print_policy(policy: &crate::auth::RolePolicy) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout();
    out.write_all(policy.to_toml().as_bytes())?;
    out.flush()
}
