//! The policy runtime's pure half: a compiled [`Plan`](vigil_policy::Plan) becomes the
//! kernel tables of the syscall-hook programs ([`tables`]), plus the per-hook metadata the
//! event pipeline needs to print `process_kprobe` events ([`HookInfo`]).

pub mod all_syscalls;
pub mod elf;
pub mod exec_hash;
pub mod hooks;
pub mod ksyms;
pub mod mapped_file;
pub mod sock;
pub mod symbolize;
pub mod tables;
pub mod tracefs;
pub mod usdt;

pub use tables::{HookArg, HookEvent, HookInfo, PolicyTables, Unsupported, UserAction, build};
