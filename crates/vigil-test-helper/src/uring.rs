//! One `openat` through io_uring with raw syscalls (no liburing in the guest): inline, or
//! forced to the kernel's async workers with `IOSQE_ASYNC`.

use std::ffi::CString;

const IORING_OFF_SQ_RING: i64 = 0;
const IORING_OFF_CQ_RING: i64 = 0x800_0000;
const IORING_OFF_SQES: i64 = 0x1000_0000;
const IORING_OP_OPENAT: u8 = 18;
const IOSQE_ASYNC: u8 = 1 << 4;
const IORING_ENTER_GETEVENTS: u32 = 1;

#[repr(C)]
#[derive(Default)]
struct SqOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    flags: u32,
    dropped: u32,
    array: u32,
    resv1: u32,
    user_addr: u64,
}

#[repr(C)]
#[derive(Default)]
struct CqOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    overflow: u32,
    cqes: u32,
    flags: u32,
    resv1: u32,
    user_addr: u64,
}

#[repr(C)]
#[derive(Default)]
struct Params {
    sq_entries: u32,
    cq_entries: u32,
    flags: u32,
    sq_thread_cpu: u32,
    sq_thread_idle: u32,
    features: u32,
    wq_fd: u32,
    resv: [u32; 3],
    sq_off: SqOffsets,
    cq_off: CqOffsets,
}

fn map(fd: i32, len: usize, offset: i64) -> *mut u8 {
    // SAFETY: a shared mapping of the ring fd at the offset the kernel defines for it.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd,
            offset,
        )
    };
    if p == libc::MAP_FAILED {
        crate::die("mmap io_uring");
    }
    p.cast()
}

/// Opens `path` read-only through io_uring; returns the CQE result (fd or -errno).
pub fn open(path: &str, force_async: bool) -> i32 {
    let mut p = Params::default();
    // SAFETY: io_uring_setup fills `p`, which outlives the call.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, &mut p as *mut Params) };
    if fd < 0 {
        crate::die("io_uring_setup");
    }
    let fd = fd as i32;
    let sq = map(
        fd,
        p.sq_off.array as usize + p.sq_entries as usize * 4,
        IORING_OFF_SQ_RING,
    );
    let cq = map(
        fd,
        p.cq_off.cqes as usize + p.cq_entries as usize * 16,
        IORING_OFF_CQ_RING,
    );
    let sqes = map(fd, p.sq_entries as usize * 64, IORING_OFF_SQES);
    let cpath = CString::new(path).expect("path");
    // SAFETY: offsets and sizes come from the kernel's io_uring_params for these mappings;
    // the ring indices are read and written with the atomics the io_uring ABI asks for.
    unsafe {
        let at = |base: *mut u8, off: u32| base.add(off as usize);
        let tail = &*(at(sq, p.sq_off.tail) as *const std::sync::atomic::AtomicU32);
        let mask = *(at(sq, p.sq_off.ring_mask) as *const u32);
        let t = tail.load(std::sync::atomic::Ordering::Acquire);
        let idx = t & mask;
        let sqe = sqes.add(idx as usize * 64);
        std::ptr::write_bytes(sqe, 0, 64);
        *sqe = IORING_OP_OPENAT;
        *sqe.add(1) = if force_async { IOSQE_ASYNC } else { 0 };
        *(sqe.add(4) as *mut i32) = libc::AT_FDCWD;
        *(sqe.add(16) as *mut u64) = cpath.as_ptr() as u64;
        *(sqe.add(28) as *mut u32) = libc::O_RDONLY as u32;
        *(sqe.add(32) as *mut u64) = 7;
        *(at(sq, p.sq_off.array) as *mut u32).add(idx as usize) = idx;
        tail.store(t + 1, std::sync::atomic::Ordering::Release);
        let n = libc::syscall(
            libc::SYS_io_uring_enter,
            fd,
            1u32,
            1u32,
            IORING_ENTER_GETEVENTS,
            std::ptr::null::<u8>(),
            0usize,
        );
        if n < 0 {
            crate::die("io_uring_enter");
        }
        let head = &*(at(cq, p.cq_off.head) as *const std::sync::atomic::AtomicU32);
        let cq_mask = *(at(cq, p.cq_off.ring_mask) as *const u32);
        let h = head.load(std::sync::atomic::Ordering::Acquire);
        let cqe = at(cq, p.cq_off.cqes).add((h & cq_mask) as usize * 16);
        let res = *(cqe.add(8) as *const i32);
        head.store(h + 1, std::sync::atomic::Ordering::Release);
        res
    }
}
