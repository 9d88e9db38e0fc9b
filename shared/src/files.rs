//! Files and folders that hold personal data or secrets (databases, the audit trail, signing
//! keys): created readable and writable by their owner only on Unix (0600 files, 0700 folders),
//! whatever the process's umask would give.
//!
//! A folder that already exists is left as it is (it may be the user's own, or `/tmp`), but one
//! that group or others may write to is warned about: whoever can write there can swap the
//! files. On other systems the folder and file are created with the system's defaults.

use std::{fs, io, path::Path};

/// Creates `dir` and its missing parents, each 0700 on Unix; an existing `dir` is kept and, when
/// group or others may write to it, warned about.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    #[cfg(not(unix))]
    fs::create_dir_all(dir)?;
    warn_if_open(dir);
    Ok(())
}

/// Creates `path` empty and owner-only if it does not exist; if it does, takes group and others'
/// access away from it (a file an earlier version created world-readable). Returns whether it
/// was created.
pub fn ensure_private_file(path: &Path) -> io::Result<bool> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            restrict(path)?;
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Takes group and others' access away from the existing file `path` (a no-op off Unix, and for
/// a file that is already owner-only).
pub fn restrict(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "the file was readable by others; making it owner-only (0600)"
            );
            fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o700))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Whether group or others may write to `dir` (always `false` off Unix).
pub fn writable_by_others(dir: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o022 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        false
    }
}

fn warn_if_open(dir: &Path) {
    if writable_by_others(dir) {
        tracing::warn!(
            dir = %dir.display(),
            "this folder holds private files but group or others may write to it; \
             make it owner-only (chmod 700)"
        );
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn folders_and_files_are_created_owner_only() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("a").join("b");
        create_private_dir(&dir).expect("create");
        assert_eq!(mode(&root.path().join("a")), 0o700);
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("x.db");
        assert!(ensure_private_file(&file).expect("create"));
        assert_eq!(mode(&file), 0o600);
        assert!(!ensure_private_file(&file).expect("exists"));
    }

    #[test]
    fn an_existing_open_file_is_restricted_and_an_open_folder_noticed() {
        let root = tempfile::tempdir().expect("tempdir");
        let file = root.path().join("old.db");
        fs::write(&file, b"").expect("write");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).expect("chmod");
        ensure_private_file(&file).expect("exists");
        assert_eq!(mode(&file), 0o600);

        let open = root.path().join("open");
        fs::create_dir(&open).expect("mkdir");
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(writable_by_others(&open));
        // Kept as it is: it may not be ours to change.
        create_private_dir(&open).expect("exists");
        assert_eq!(mode(&open), 0o777);
        assert!(!writable_by_others(root.path()));
    }
}
