//! The process side of vigil's data path: what a process is ([`model`]), how it is named
//! ([`exec_id`]), the user-space process cache ([`cache`]), the start-up scan of processes
//! already running ([`procfs`]), and the text rules Tetragon's JSON uses ([`text`]).

pub mod cache;
pub mod clock;
pub mod container;
pub mod exec_id;
pub mod model;
pub mod procfs;
pub mod text;
