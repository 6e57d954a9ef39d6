use std::io::Read;
use std::os::unix::fs::PermissionsExt;

use super::*;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vigil-rotate-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn timestamp_format_is_lumberjacks() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_714_557_600_123);
    assert_eq!(backup_timestamp(t), "2024-05-01T10-00-00.123");
    assert_eq!(
        backup_timestamp(SystemTime::UNIX_EPOCH),
        "1970-01-01T00-00-00.000"
    );
}

#[test]
fn rotates_by_size_keeps_backups_compresses_and_sets_mode() {
    let d = dir("size");
    let path = d.join("events.json");
    let mut f = LogFile::open(
        &path,
        Rotation {
            max_size: 1000,
            max_backups: 2,
            compress: true,
            perm: 0o640,
            interval: None,
        },
    )
    .unwrap();
    let line = format!("{{\"pad\":\"{}\"}}\n", "x".repeat(89)); // 100 bytes
    for _ in 0..45 {
        f.write_line(line.as_bytes()).unwrap();
        f.flush().unwrap();
    }
    f.wait_housekeeping();
    let b = backups(&path);
    assert_eq!(b.len(), 2, "{b:?}");
    for p in &b {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("events-") && name.ends_with(".json.gz"),
            "{name}"
        );
        let mut text = String::new();
        flate2::read::GzDecoder::new(File::open(p).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text.len(), 1000, "whole lines up to the limit");
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap().len(), 500);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn rotates_by_interval_only_when_not_empty() {
    let d = dir("interval");
    let path = d.join("out.log");
    let mut f = LogFile::open(
        &path,
        Rotation {
            interval: Some(Duration::from_millis(50)),
            ..Rotation::default()
        },
    )
    .unwrap();
    f.write_line(b"{}\n").unwrap();
    std::thread::sleep(Duration::from_millis(60));
    f.tick(Instant::now()).unwrap();
    std::thread::sleep(Duration::from_millis(60));
    f.tick(Instant::now()).unwrap();
    f.wait_housekeeping();
    let b = backups(&path);
    assert_eq!(b.len(), 1, "{b:?}");
    assert!(
        b[0].file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("out-")
    );
    assert_eq!(std::fs::read_to_string(&b[0]).unwrap(), "{}\n");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn failed_write_drops_whole_lines_and_recovers() {
    let mut f = LogFile::open(Path::new("/dev/full"), Rotation::default()).unwrap();
    f.write_line(b"{}\n").unwrap();
    f.write_line(b"{}\n").unwrap();
    let e = f.flush().unwrap_err();
    assert_eq!(e.lines, 2);
    assert_eq!(e.error.raw_os_error(), Some(libc::ENOSPC));
    // The next flush tries again (and fails again on /dev/full), without panicking.
    f.write_line(b"{}\n").unwrap();
    assert_eq!(f.flush().unwrap_err().lines, 1);
}

#[test]
fn a_symlink_at_the_path_is_refused_naming_it() {
    let d = dir("symlink");
    let victim = d.join("shadow");
    std::fs::write(&victim, "root:x:0\n").unwrap();
    let path = d.join("events.json");
    std::os::unix::fs::symlink(&victim, &path).unwrap();
    let e = LogFile::open(&path, Rotation::default()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("symbolic link"),
        "{msg}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root:x:0\n");
    assert_eq!(
        std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777,
        0o644
    );

    // Swapped in for the file before a rotation (compressed): the link itself is rotated,
    // the target is neither written nor copied into the backup.
    let path = d.join("out.json");
    let mut f = LogFile::open(
        &path,
        Rotation {
            compress: true,
            ..Rotation::default()
        },
    )
    .unwrap();
    f.write_line(b"{\"a\":1}\n").unwrap();
    f.flush().unwrap();
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&victim, &path).unwrap();
    f.rotate();
    f.write_line(b"{\"b\":2}\n").unwrap();
    f.flush().unwrap();
    f.wait_housekeeping();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root:x:0\n");
    assert!(
        std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_file()
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"b\":2}\n");
    for b in backups(&path) {
        let mut text = String::new();
        let _ = File::open(&b).map(|f| flate2::read::GzDecoder::new(f).read_to_string(&mut text));
        assert!(!text.contains("root:x"), "{}: {text}", b.display());
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn an_existing_file_gets_the_configured_mode_and_so_do_rotated_ones() {
    let d = dir("mode");
    let path = d.join("events.json");
    std::fs::write(&path, "{}\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let cfg = Rotation {
        max_size: 100,
        max_backups: 0,
        perm: 0o600,
        ..Rotation::default()
    };
    let mut f = LogFile::open(&path, cfg).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&path), 0o600);
    // Someone loosens it; the next rotation's file is 0600 again, as is the backup.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let line = format!("{{\"pad\":\"{}\"}}\n", "x".repeat(40));
    for _ in 0..4 {
        f.write_line(line.as_bytes()).unwrap();
        f.flush().unwrap();
    }
    f.wait_housekeeping();
    assert!(!backups(&path).is_empty());
    assert_eq!(mode(&path), 0o600);
    // A file recreated loosely at the path before a reopen is tightened as well.
    f.rotate();
    f.wait_housekeeping();
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, "").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    f.rotate();
    assert_eq!(mode(&path), 0o600);
    std::fs::remove_dir_all(&d).unwrap();
}
