//! Loads the lifecycle sensor and prints decoded records for a few seconds (developer aid).
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use vigil_bpf::lifecycle::{LifecycleOptions, LifecycleSensor};
use vigil_bpf::records::{Record, decode, decode_path};

fn main() {
    vigil_bpf::preflight::check(None).expect("preflight");
    let t = std::time::Instant::now();
    let sensor = LifecycleSensor::load(&LifecycleOptions {
        ring_buffer_bytes: 8 << 20,
        process_table_entries: 32768,
        args_limit: 65536,
        env_limit: 0,
        btf: None,
        cgroup_rate: None,
        wake_on_exec: false,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "loaded in {:?}, {} attached",
        t.elapsed(),
        sensor.attached()
    );
    let (tx, rx) = std::sync::mpsc::sync_channel(1024);
    let stop = Arc::new(AtomicBool::new(false));
    let _h = vigil_bpf::ringbuf::spawn_reader(sensor.events().unwrap(), tx, stop).unwrap();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while std::time::Instant::now() < end {
        let batch: vigil_bpf::ringbuf::Batch = rx
            .recv_timeout(std::time::Duration::from_millis(100))
            .unwrap_or_default();
        for d in batch.iter() {
            match decode(d).unwrap() {
                Record::Exec(r) => println!(
                    "EXEC pid={} tid={} parent={}:{} flags={:#x} privs={} path={} cwd={} cg={} args={:?} uid={} euid={}",
                    r.msg.process.pid,
                    r.msg.tid,
                    r.msg.parent.pid,
                    r.msg.parent.ktime,
                    r.msg.flags,
                    r.msg.privs,
                    String::from_utf8_lossy(&decode_path(&r.path)),
                    String::from_utf8_lossy(&decode_path(&r.cwd)),
                    String::from_utf8_lossy(&r.cgroup),
                    r.args
                        .split(|b| *b == 0)
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect::<Vec<_>>(),
                    r.msg.creds.uid,
                    r.msg.creds.euid
                ),
                Record::Clone(c) => println!(
                    "CLONE pid={} ktime={} parent={}",
                    c.process.pid, c.process.ktime, c.parent.pid
                ),
                Record::Data(d) => println!("DATA tid={} id={} off={}", d.tid, d.id, d.off),
                Record::Throttle(t) => println!(
                    "THROTTLE cgroup={} id={}",
                    String::from_utf8_lossy(&t.cgroup),
                    t.cgroup_id
                ),
                Record::Ima(i) => println!("IMA tid={} hook={}", i.tid, i.hook_id),
                Record::Syscall(s) => {
                    println!("SYSCALL hook={} pid={}", s.msg.hook_id, s.msg.process.pid)
                }
                Record::Exit(e) => println!(
                    "EXIT pid={} ktime={} code={:#x} flags={}",
                    e.process.pid, e.process.ktime, e.exit_code, e.flags
                ),
            }
        }
    }
    println!("counters {:?}", sensor.counters().unwrap().read());
}
