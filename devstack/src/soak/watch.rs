//! What the soak watches besides its own counters: each measured process's resident memory
//! (`VmRSS` of `/proc/<pid>/status`) and open file descriptors (entries of `/proc/<pid>/fd`), and
//! the agent service's state in its SQLite database, opened read-only: recorded MCP sessions
//! (rows of `mcp_sessions`, the handshakes kept so any replica can take a session over) and
//! conversations (rows of `conversations`), plus the size of the database and its WAL.
//!
//! The database is read because the agent service has no endpoint that counts them; a read-only
//! connection takes no write lock, so it does not slow the service it watches.

use std::path::{Path, PathBuf};

use sqlx::{
    SqlitePool,
    sqlite::{SqliteConnectOptions, SqlitePoolOptions},
};

use crate::load;

/// One process at one moment; `None` where `/proc` could not be read (it exited).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessSample {
    pub rss_kib: Option<u64>,
    pub fds: Option<u64>,
}

pub fn process(pid: u32) -> ProcessSample {
    ProcessSample {
        rss_kib: load::memory_kib(pid, "VmRSS:"),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
            .ok()
            .map(|entries| entries.count() as u64),
    }
}

impl ProcessSample {
    /// This sample with the lower descriptor count of the two: open descriptors come and go
    /// with the connections of the moment, and their floor over an interval is what a leak
    /// raises.
    pub fn fewest_fds(self, other: ProcessSample) -> ProcessSample {
        let fds = match (self.fds, other.fds) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        ProcessSample { fds, ..self }
    }
}

/// The agent service's state at one moment; `None` where the database could not be read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AgentState {
    pub sessions: Option<u64>,
    pub conversations: Option<u64>,
    /// The database file and its WAL, in bytes.
    pub db_bytes: Option<u64>,
}

/// The agent service's database, opened read-only.
pub struct AgentDb {
    path: PathBuf,
    pool: SqlitePool,
}

impl AgentDb {
    pub async fn open(path: &Path) -> anyhow::Result<AgentDb> {
        let options = SqliteConnectOptions::new().filename(path).read_only(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        Ok(AgentDb {
            path: path.to_owned(),
            pool,
        })
    }

    pub async fn sample(&self) -> AgentState {
        AgentState {
            sessions: self.count("SELECT COUNT(*) FROM mcp_sessions").await,
            conversations: self.count("SELECT COUNT(*) FROM conversations").await,
            db_bytes: file_bytes(&self.path).map(|db| {
                let mut wal = self.path.as_os_str().to_owned();
                wal.push("-wal");
                db + file_bytes(Path::new(&wal)).unwrap_or(0)
            }),
        }
    }

    async fn count(&self, sql: &'static str) -> Option<u64> {
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&self.pool).await.ok()?;
        u64::try_from(n).ok()
    }

    pub async fn close(self) {
        self.pool.close().await;
    }
}

fn file_bytes(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_of_descriptors_is_kept_with_the_latest_memory() {
        let earlier = ProcessSample {
            rss_kib: Some(100),
            fds: Some(90),
        };
        let now = ProcessSample {
            rss_kib: Some(120),
            fds: Some(110),
        };
        assert_eq!(
            now.fewest_fds(earlier),
            ProcessSample {
                rss_kib: Some(120),
                fds: Some(90)
            }
        );
        let gone = ProcessSample::default();
        assert_eq!(gone.fewest_fds(earlier).fds, Some(90));
    }

    #[test]
    fn this_process_has_memory_and_descriptors() {
        let me = process(std::process::id());
        assert!(me.rss_kib.is_some_and(|kib| kib > 0));
        assert!(me.fds.is_some_and(|n| n >= 3));
    }
}
