//! The history directory: created 0700, refused when it could be someone else's.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use crate::HistoryError;

/// Creates `dir` (0700) or checks the existing one: a real directory (not a symlink) owned
/// by the agent's user, set to 0700. Whoever else could write there could swap a slice for
/// a link, or read what the recorder keeps.
pub fn prepare_dir(dir: &Path) -> Result<(), HistoryError> {
    let fail = |reason: String| HistoryError::Dir {
        path: dir.to_path_buf(),
        reason,
    };
    let io = |source| HistoryError::Io {
        path: dir.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        Err(e) => return Err(io(e)),
        Ok(m) if m.file_type().is_symlink() => {
            return Err(fail("is a symbolic link; give the real directory".into()));
        }
        Ok(m) if !m.is_dir() => return Err(fail("is not a directory".into())),
        Ok(m) => {
            // SAFETY: geteuid has no preconditions.
            let me = unsafe { libc::geteuid() };
            if m.uid() != me {
                return Err(fail(format!(
                    "is owned by uid {}, not by the agent's uid {me}",
                    m.uid()
                )));
            }
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_directory_is_created_private() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("a/history");
        prepare_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn a_symlink_or_a_file_is_refused_by_name() {
        let base = tempfile::tempdir().unwrap();
        let real = base.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = prepare_dir(&link).unwrap_err().to_string();
        assert!(e.contains("link") && e.contains("symbolic link"), "{e}");
        let file = base.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let e = prepare_dir(&file).unwrap_err().to_string();
        assert!(e.contains("not a directory"), "{e}");
    }
}
