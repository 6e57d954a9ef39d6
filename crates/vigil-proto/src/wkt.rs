//! Well-known types whose JSON form must match Go's `protojson` exactly.
//!
//! `pbjson_types::Timestamp` renders `+00:00`; Tetragon (Go protojson)
//! renders UTC with a `Z` suffix and 0, 3, 6 or 9 fractional digits.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, Utc};

/// `google.protobuf.Timestamp` with protojson-compatible serde.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Message)]
pub struct Timestamp {
    /// Seconds since the Unix epoch.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Non-negative nanoseconds within the second, `0..=999_999_999`.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl Timestamp {
    /// Builds a timestamp from seconds and nanoseconds since the epoch.
    pub const fn new(seconds: i64, nanos: i32) -> Self {
        Self { seconds, nanos }
    }

    /// RFC 3339 in UTC with a `Z` suffix and 0/3/6/9 fractional digits;
    /// `None` when out of chrono's range or `nanos` is invalid.
    pub fn to_rfc3339(&self) -> Option<String> {
        let nanos = u32::try_from(self.nanos)
            .ok()
            .filter(|n| *n < 1_000_000_000)?;
        let dt = DateTime::<Utc>::from_timestamp(self.seconds, nanos)?;
        Some(dt.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }

    /// Parses any RFC 3339 timestamp (any offset).
    pub fn parse_rfc3339(s: &str) -> Result<Self, chrono::ParseError> {
        let dt = DateTime::parse_from_rfc3339(s)?.with_timezone(&Utc);
        Ok(dt.into())
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(dt: DateTime<Utc>) -> Self {
        Self {
            seconds: dt.timestamp(),
            nanos: dt.timestamp_subsec_nanos() as i32,
        }
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Self {
                seconds: d.as_secs() as i64,
                nanos: d.subsec_nanos() as i32,
            },
            Err(e) => {
                let d = e.duration();
                let mut seconds = -(d.as_secs() as i64);
                let mut nanos = d.subsec_nanos() as i32;
                if nanos > 0 {
                    seconds -= 1;
                    nanos = 1_000_000_000 - nanos;
                }
                Self { seconds, nanos }
            }
        }
    }
}

impl TryFrom<Timestamp> for SystemTime {
    type Error = &'static str;
    fn try_from(t: Timestamp) -> Result<Self, Self::Error> {
        let nanos = u32::try_from(t.nanos).map_err(|_| "negative nanos")?;
        if t.seconds >= 0 {
            UNIX_EPOCH
                .checked_add(Duration::new(t.seconds as u64, nanos))
                .ok_or("timestamp out of range")
        } else {
            UNIX_EPOCH
                .checked_sub(Duration::from_secs(t.seconds.unsigned_abs()))
                .and_then(|s| s.checked_add(Duration::from_nanos(u64::from(nanos))))
                .ok_or("timestamp out of range")
        }
    }
}

impl From<pbjson_types::Timestamp> for Timestamp {
    fn from(t: pbjson_types::Timestamp) -> Self {
        Self {
            seconds: t.seconds,
            nanos: t.nanos,
        }
    }
}

impl From<Timestamp> for pbjson_types::Timestamp {
    fn from(t: Timestamp) -> Self {
        Self {
            seconds: t.seconds,
            nanos: t.nanos,
        }
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        match self.to_rfc3339() {
            Some(s) => ser.serialize_str(&s),
            None => Err(serde::ser::Error::custom("timestamp out of range")),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Timestamp, E> {
                Timestamp::parse_rfc3339(s).map_err(E::custom)
            }
        }
        de.deserialize_str(V)
    }
}
