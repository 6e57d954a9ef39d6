//! `vigil-test-helper <command> [args]`: processes with precise shapes for the integration
//! tests, which assert what the agent reports about them.
//!
//! Commands:
//! - `threads N MS`: run N threads (the main one included) for MS milliseconds, exit 0.
//! - `exec-from-thread PROG [ARGS...]`: a non-leader thread calls execv(PROG, ARGS).
//! - `fork-no-exec MS`: fork; the child sleeps MS ms and exits 0 without exec.
//! - `memfd-exec SRC [ARGS...]`: copy SRC into a memfd and execute it (fexecve).
//! - `unlinked-exec SRC DIR [ARGS...]`: copy SRC into DIR, unlink it, execute it by fd.
//! - `spawn-loop N PROG [ARGS...]`: fork+exec+wait PROG N times.
//! - `sleep MS`: sleep, then exit 0.
//! - `ia32-open PATH [dirty]`: open PATH with the 32-bit `int 0x80` openat (ia32 number 295),
//!   as a 64-bit process can; prints the returned fd or -errno. `dirty`: garbage in the upper
//!   half of the path register (the kernel uses the lower 32 bits).
//! - `uring-open PATH [async]`: opens PATH read-only through io_uring (with `async`, forced to
//!   the kernel's io-wq workers by IOSQE_ASYNC); prints the result (fd or -errno).
//! - `write PATH`: opens PATH for appending and writes one line.
//! - `tcp-recv PORT`: connects to 127.0.0.1:PORT, reads until EOF, prints the byte count.
//! - `drop-euid UID [raise]`: setresuid(UID, UID, 0); with `raise`, then seteuid(0).
//! - `uprobe-call N TEXT`: calls `vigil_uprobe_target(N, TEXT, N * 1000)`, a function kept out
//!   of line under its own symbol name for uprobe tests; prints its result.

mod uring;

use std::ffi::CString;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::time::Duration;

fn cstrings(args: &[String]) -> Vec<CString> {
    args.iter()
        .map(|a| CString::new(a.as_bytes()).expect("NUL in argument"))
        .collect()
}

fn argv_ptrs(args: &[CString]) -> Vec<*const libc::c_char> {
    args.iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

fn die(what: &str) -> ! {
    eprintln!(
        "vigil-test-helper: {what}: {}",
        std::io::Error::last_os_error()
    );
    std::process::exit(111)
}

fn execveat_fd(fd: i32, args: &[String]) -> ! {
    let args = cstrings(args);
    let argv = argv_ptrs(&args);
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let empty = c"";
    // SAFETY: argv/envp are NULL-terminated arrays of valid C strings.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd,
            empty.as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
    }
    die("execveat")
}

fn copy_into(src: &str, dst: &mut std::fs::File) {
    let bytes = std::fs::read(src).unwrap_or_else(|_| die("read source"));
    dst.write_all(&bytes).unwrap_or_else(|_| die("write copy"));
}

/// openat(AT_FDCWD, path, O_RDONLY) through `int 0x80`. The path must live below 4 GiB:
/// 32-bit calls take 32-bit pointers.
fn ia32_open(path: &str, dirty: bool) {
    const IA32_OPENAT: u64 = 295;
    let bytes = CString::new(path.as_bytes()).expect("NUL in path");
    // SAFETY: a fresh anonymous mapping, written only within its 4096 bytes.
    let buf = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
            -1,
            0,
        )
    };
    if buf == libc::MAP_FAILED {
        die("mmap MAP_32BIT");
    }
    let src = bytes.as_bytes_with_nul();
    assert!(src.len() <= 4096);
    // SAFETY: buf is 4096 writable bytes.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), buf.cast::<u8>(), src.len()) };
    let mut ret = IA32_OPENAT;
    // `dirty`: garbage in the upper half of the path register, which the kernel's ia32
    // entry ignores (it takes 32 bits): an observer reading 64 bits would miss the open.
    let garbage: u64 = if dirty { 0xdead_beef_0000_0000 } else { 0 };
    // rbx cannot be an asm operand (LLVM reserves it): swap the first argument in and out.
    // SAFETY: int 0x80 reads ebx/ecx/edx and writes eax; r8-r11 may be cleared by the kernel.
    unsafe {
        std::arch::asm!(
            "xchg {dirfd}, rbx",
            "int 0x80",
            "xchg {dirfd}, rbx",
            dirfd = inout(reg) (libc::AT_FDCWD as i64) as u64 => _,
            inout("rax") ret,
            in("rcx") buf as u64 | garbage,
            in("rdx") libc::O_RDONLY as u64,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _,
        );
    }
    let fd = ret as u32 as i32;
    println!("{fd}");
    if fd >= 0 {
        // SAFETY: closing the descriptor just returned.
        unsafe { libc::close(fd) };
    } else {
        std::process::exit(1);
    }
}

/// The uprobe tests' target: a real call with known arguments (rdi, rsi, rdx). `no_mangle`
/// keeps its symbol name in .symtab; `inline(never)` keeps it a function.
#[unsafe(no_mangle)]
#[inline(never)]
extern "C" fn vigil_uprobe_target(n: i32, text: *const libc::c_char, big: i64) -> i64 {
    // SAFETY: callers pass a NUL-terminated string.
    let len = unsafe { libc::strlen(text) } as i64;
    std::hint::black_box(i64::from(n) + len + big)
}

/// capget/capset (no libc wrapper): clears one capability from the effective and permitted
/// sets of this process.
fn drop_capability(bit: u32) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut h = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut d = [Data::default(); 2];
    // SAFETY: header and two data structs as the version 3 ABI expects.
    if unsafe { libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()) } != 0 {
        die("capget");
    }
    let (word, mask) = ((bit / 32) as usize, !(1u32 << (bit % 32)));
    d[word].effective &= mask;
    d[word].permitted &= mask;
    // SAFETY: as above.
    if unsafe { libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()) } != 0 {
        die("capset");
    }
}

/// The userStackTrace tests' caller: an openat made by this function's own `syscall`
/// instruction, so that the innermost user frame is here whatever the unwinder can do.
#[unsafe(no_mangle)]
#[inline(never)]
extern "C" fn vigil_stack_open(path: *const libc::c_char) -> i64 {
    let ret: i64;
    // SAFETY: openat(AT_FDCWD, path, O_RDONLY) with a NUL-terminated path.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") libc::SYS_openat => ret,
            in("rdi") libc::AT_FDCWD as i64,
            in("rsi") path,
            in("rdx") libc::O_RDONLY as i64,
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize| -> u64 { args.get(i).and_then(|s| s.parse().ok()).unwrap_or(0) };
    match args.first().map(String::as_str) {
        Some("threads") => {
            let (n, ms) = (num(1).max(1), num(2));
            let handles: Vec<_> = (1..n)
                .map(|_| std::thread::spawn(move || std::thread::sleep(Duration::from_millis(ms))))
                .collect();
            std::thread::sleep(Duration::from_millis(ms));
            for h in handles {
                h.join().unwrap();
            }
        }
        Some("exec-from-thread") => {
            let rest = args[1..].to_vec();
            let t = std::thread::spawn(move || {
                let c = cstrings(&rest);
                let argv = argv_ptrs(&c);
                // SAFETY: NULL-terminated argv of valid C strings.
                unsafe { libc::execv(c[0].as_ptr(), argv.as_ptr()) };
                die("execv from thread")
            });
            t.join().unwrap();
        }
        Some("fork-no-exec") => {
            let ms = num(1);
            // SAFETY: the child only sleeps and exits.
            match unsafe { libc::fork() } {
                0 => {
                    std::thread::sleep(Duration::from_millis(ms));
                    // SAFETY: immediate exit of the forked child.
                    unsafe { libc::_exit(0) }
                }
                pid if pid > 0 => {
                    let mut status = 0;
                    // SAFETY: valid pid and status pointer.
                    unsafe { libc::waitpid(pid, &mut status, 0) };
                }
                _ => die("fork"),
            }
        }
        Some("memfd-exec") => {
            // SAFETY: valid C string name.
            let fd = unsafe { libc::memfd_create(c"vigil-test".as_ptr(), 0) };
            if fd < 0 {
                die("memfd_create");
            }
            // SAFETY: fd was just created and is owned here.
            let mut file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            copy_into(&args[1], &mut file);
            execveat_fd(file.as_raw_fd(), &args[1..]);
        }
        Some("unlinked-exec") => {
            let path = format!("{}/vigil-unlinked-{}", args[2], std::process::id());
            {
                let mut f = std::fs::File::create(&path).unwrap_or_else(|_| die("create copy"));
                copy_into(&args[1], &mut f);
                let mut perms = f.metadata().unwrap().permissions();
                std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
                f.set_permissions(perms).unwrap();
            }
            let f = std::fs::File::open(&path).unwrap_or_else(|_| die("reopen copy"));
            std::fs::remove_file(&path).unwrap_or_else(|_| die("unlink copy"));
            let mut exec_args = vec![args[1].clone()];
            exec_args.extend_from_slice(&args[3..]);
            execveat_fd(f.as_raw_fd(), &exec_args);
        }
        Some("spawn-loop") => {
            let n = num(1);
            for _ in 0..n {
                let status = std::process::Command::new(&args[2])
                    .args(&args[3..])
                    .status();
                if status.is_err() {
                    die("spawn");
                }
            }
        }
        Some("sleep") => std::thread::sleep(Duration::from_millis(num(1))),
        Some("ia32-open") => ia32_open(&args[1], args.get(2).is_some_and(|a| a == "dirty")),
        Some("uprobe-call") => {
            let n = num(1) as i32;
            let text = CString::new(args.get(2).cloned().unwrap_or_default()).expect("text");
            let f: extern "C" fn(i32, *const libc::c_char, i64) -> i64 =
                std::hint::black_box(vigil_uprobe_target);
            println!("{}", f(n, text.as_ptr(), i64::from(n) * 1000));
        }
        Some("stack-open") => {
            // openat of `args[1]` from vigil_stack_open, then a pause of `args[2]` ms so that
            // the agent can read this process's maps.
            let path = CString::new(args[1].clone()).expect("path");
            let fd = vigil_stack_open(path.as_ptr());
            if fd >= 0 {
                // SAFETY: closing the descriptor just returned.
                unsafe { libc::close(fd as i32) };
            }
            std::thread::sleep(Duration::from_millis(num(2)));
        }
        Some("drop-cap-open") => {
            // Drops capability `args[1]` (a bit number; negative: none) from the effective and
            // permitted sets after exec, then opens `args[2]` `args[3]` times.
            if let Ok(bit) = args[1].parse::<u32>() {
                drop_capability(bit);
            }
            for _ in 0..num(3).max(1) {
                let _ = std::fs::File::open(&args[2]);
            }
        }
        Some("mkdir-bad-pointer") => {
            // A mkdirat whose path lies in no mapping: the kernel returns EFAULT and a probe
            // cannot read the string either (the engine's fail-closed case).
            // SAFETY: the kernel validates the pointer; nothing is dereferenced here.
            let rc = unsafe { libc::mkdirat(libc::AT_FDCWD, 8 as *const libc::c_char, 0o700) };
            println!("{rc}");
        }
        Some("write") => {
            // Opens PATH for appending and writes one line with write(2).
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&args[1])
                .unwrap_or_else(|_| die("open"));
            f.write_all(b"y\n").unwrap_or_else(|_| die("write"));
        }
        Some("fifo-park") => {
            // N threads (small stacks) each blocked in open(2) of FIFO PATH for reading, as
            // an unprivileged user can: a kernel table keyed by thread fills. Prints "parked"
            // when all are started; they return when a writer opens the FIFO.
            let n = num(1) as usize;
            let path = std::ffi::CString::new(args[2].as_str()).unwrap_or_else(|_| die("path"));
            let path = std::sync::Arc::new(path);
            let mut handles = Vec::with_capacity(n);
            for _ in 0..n {
                let p = std::sync::Arc::clone(&path);
                let h = std::thread::Builder::new()
                    .stack_size(64 * 1024)
                    .spawn(move || {
                        // SAFETY: open(2) of a NUL-terminated path; the fd is closed below.
                        let fd = unsafe { libc::open(p.as_ptr(), libc::O_RDONLY) };
                        if fd >= 0 {
                            // SAFETY: our own fd.
                            unsafe { libc::close(fd) };
                        }
                    })
                    .unwrap_or_else(|_| die("spawn"));
                handles.push(h);
            }
            println!("parked");
            std::io::stdout().flush().unwrap_or_else(|_| die("flush"));
            for h in handles {
                let _ = h.join();
            }
        }
        Some("tcp-recv") => {
            // Connects to 127.0.0.1:PORT and reads until the peer closes; prints the count.
            use std::io::Read;
            let mut s = std::net::TcpStream::connect(("127.0.0.1", num(1) as u16))
                .unwrap_or_else(|_| die("connect"));
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).unwrap_or_else(|_| die("read"));
            println!("{}", buf.len());
        }
        Some("uring-open") => {
            let res = uring::open(&args[1], args.get(2).is_some_and(|a| a == "async"));
            println!("{res}");
        }
        Some("drop-euid") => {
            // Root to uid `args[1]` (saved uid kept 0), then, with `raise`, back to euid 0:
            // the raise is a commit_creds from a non-root euid to root.
            let uid = num(1) as libc::uid_t;
            // SAFETY: plain credential syscalls on this single-threaded process.
            if unsafe { libc::setresuid(uid, uid, 0) } != 0 {
                die("setresuid");
            }
            println!("dropped");
            if args.get(2).is_some_and(|a| a == "raise") {
                // SAFETY: as above.
                if unsafe { libc::seteuid(0) } != 0 {
                    die("seteuid");
                }
                println!("raised");
            }
        }
        _ => {
            eprintln!(
                "usage: vigil-test-helper <threads|exec-from-thread|fork-no-exec|memfd-exec|unlinked-exec|spawn-loop|sleep|ia32-open|uprobe-call|drop-cap-open|stack-open|drop-euid|uring-open|tcp-recv|write|fifo-park> ..."
            );
            std::process::exit(2);
        }
    }
}
