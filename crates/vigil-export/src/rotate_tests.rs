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
