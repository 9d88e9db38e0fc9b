//! Opening a service's SQLite database the one way the platform does (feature `sqlite`).
//!
//! One file in WAL mode, so readers never wait for the writer; foreign keys on; a busy timeout,
//! so concurrent writers (the connections of one service, or replicas sharing the file) queue
//! instead of failing; and the owning crate's migrations applied before the pool is handed out.
//! Each crate keeps its own schema (`sqlx::migrate!()` reads the crate's `migrations/` folder)
//! and passes it in.
//!
//! The file holds personal data (conversations, customers, the audit trail), so it is owner-only
//! on Unix: its folder is created 0700 and the file 0600 before SQLite opens it ([`crate::files`]);
//! SQLite gives the `-wal` and `-shm` files it creates the main file's permissions, so they are
//! 0600 too.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use sqlx::{
    SqlitePool,
    migrate::{MigrateError, Migrator},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

/// How long a statement waits for the write lock, and a caller for a pooled connection.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create directory {}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make {} owner-only: {source}", path.display())]
    Permissions {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("opening the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("migrating the database: {0}")]
    Migrate(#[source] MigrateError),
}

/// Opens (creating it and its directory if needed) the database file at `path` with up to
/// `connections` pooled connections, and applies `migrator` (the caller's `sqlx::migrate!()`).
pub async fn open_file(
    path: &Path,
    connections: u32,
    migrator: &Migrator,
) -> Result<SqlitePool, OpenError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::files::create_private_dir(dir).map_err(|source| OpenError::CreateDir {
            dir: dir.to_owned(),
            source,
        })?;
    }
    let private = |path: &Path, result: std::io::Result<()>| {
        result.map_err(|source| OpenError::Permissions {
            path: path.to_owned(),
            source,
        })
    };
    // Created (empty, which SQLite takes as a new database) or tightened before SQLite opens it,
    // so it is never readable by others, not even for a moment.
    private(path, crate::files::ensure_private_file(path).map(drop))?;
    // Left by an earlier version with the main file's old mode; SQLite reuses them as they are.
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let side = PathBuf::from(side);
        if side.exists() {
            private(&side, crate::files::restrict(&side))?;
        }
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT);
    connect(options, connections, migrator).await
}

/// Connects a pool of up to `connections` with `options` (for example a private in-memory
/// database in tests) and applies `migrator`.
pub async fn connect(
    options: SqliteConnectOptions,
    connections: u32,
    migrator: &Migrator,
) -> Result<SqlitePool, OpenError> {
    let pool = SqlitePoolOptions::new()
        .max_connections(connections)
        .min_connections(1)
        .acquire_timeout(BUSY_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(OpenError::Connect)?;
    migrator.run(&pool).await.map_err(OpenError::Migrate)?;
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use sqlx::{
        SqlSafeStr,
        migrate::{Migration, MigrationType},
    };

    use super::*;

    fn one_table() -> Migrator {
        Migrator::with_migrations(vec![Migration::new(
            1,
            "one table".into(),
            MigrationType::Simple,
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)".into_sql_str(),
            false,
        )])
    }

    #[tokio::test]
    async fn a_file_opens_in_wal_mode_migrated_and_reopens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested").join("test.db");
        let migrator = one_table();
        let pool = open_file(&path, 2, &migrator).await.expect("open");
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&pool)
            .await
            .expect("pragma");
        assert_eq!(mode, "wal");
        sqlx::query("INSERT INTO notes (text) VALUES ('kept')")
            .execute(&pool)
            .await
            .expect("insert");
        pool.close().await;

        // Migrations already applied are skipped; the data is still there.
        let pool = open_file(&path, 2, &migrator).await.expect("reopen");
        let text: String = sqlx::query_scalar("SELECT text FROM notes")
            .fetch_one(&pool)
            .await
            .expect("select");
        assert_eq!(text, "kept");
        pool.close().await;
    }

    /// The database, its WAL and shared-memory files and the folder made for them hold
    /// personal data: only their owner may read them, whatever the umask.
    #[cfg(unix)]
    #[tokio::test]
    async fn the_database_its_wal_and_shm_and_their_folder_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &Path| {
            std::fs::metadata(path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                .permissions()
                .mode()
                & 0o777
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let folder = dir.path().join("data");
        let path = folder.join("private.db");
        let pool = open_file(&path, 2, &one_table()).await.expect("open");
        sqlx::query("INSERT INTO notes (text) VALUES ('personal')")
            .execute(&pool)
            .await
            .expect("insert");
        assert_eq!(mode(&folder), 0o700, "folder");
        assert_eq!(mode(&path), 0o600, "database");
        for suffix in ["-wal", "-shm"] {
            let side = PathBuf::from(format!("{}{suffix}", path.display()));
            assert_eq!(
                mode(&side),
                0o600,
                "{suffix}: SQLite copies the main file's mode"
            );
        }
        pool.close().await;

        // A database an earlier version left world-readable is made owner-only when opened.
        let old = dir.path().join("old.db");
        let pool = open_file(&old, 1, &one_table()).await.expect("open");
        pool.close().await;
        for file in [old.clone(), PathBuf::from(format!("{}-wal", old.display()))] {
            if file.exists() {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))
                    .expect("chmod");
            }
        }
        let pool = open_file(&old, 1, &one_table()).await.expect("reopen");
        assert_eq!(mode(&old), 0o600);
        let wal = PathBuf::from(format!("{}-wal", old.display()));
        assert_eq!(mode(&wal), 0o600);
        pool.close().await;
    }

    #[tokio::test]
    async fn an_uncreatable_directory_is_named_in_the_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, b"not a directory").expect("write");
        let error = open_file(&blocker.join("sub").join("test.db"), 1, &one_table())
            .await
            .expect_err("a file where a directory should be");
        assert!(matches!(error, OpenError::CreateDir { .. }), "{error:?}");
        assert!(error.to_string().contains("blocker"), "{error}");
    }
}
