//! Tetragon-compatible API types for vigil.
//!
//! The protobuf package `tetragon` (files under `proto/tetragon/`) mirrors
//! Cilium Tetragon's `api/v1/tetragon` message, field and enum names and
//! numbers, plus vigil extensions numbered from 50000. Every message and
//! enum implements `serde` with Go-protojson semantics as used by Tetragon's
//! JSON export: proto (snake_case) field names, default scalars omitted,
//! 64-bit integers as strings, enums by name, bytes as base64, wrapper
//! types as plain values, timestamps as RFC 3339 UTC with a `Z` suffix.
//! Unknown JSON fields are rejected.
//!
//! gRPC: [`tetragon::fine_guidance_sensors_server`] and
//! [`tetragon::fine_guidance_sensors_client`].

pub mod wkt;

/// Generated code for protobuf package `tetragon`.
#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    rust_2018_idioms,
    unused_qualifications
)]
pub mod tetragon {
    include!(concat!(env!("OUT_DIR"), "/tetragon.rs"));
    include!(concat!(env!("OUT_DIR"), "/tetragon.serde.rs"));
}

/// vigil's own services (package `vigil.*`, `proto/vigil/`): extensions beside the Tetragon
/// API, which they leave unchanged.
pub mod vigil {
    pub mod history {
        /// `vigil.history.v1.History`: the flight recorder's queries.
        #[allow(
            clippy::all,
            clippy::pedantic,
            missing_docs,
            rust_2018_idioms,
            unused_qualifications
        )]
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/vigil/vigil.history.v1.rs"));
        }
    }
}

/// Re-export of the well-known types used in the API (wrappers, Duration,
/// FieldMask, Any); `Timestamp` is [`wkt::Timestamp`].
pub use pbjson_types;

/// Serialized `FileDescriptorSet` of all `tetragon` protos (for gRPC
/// reflection or dynamic decoding).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tetragon_descriptor.bin"));
