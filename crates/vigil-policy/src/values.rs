//! Checks of single selector values: numbers, ranges, ports, addresses, named constants.

use std::net::IpAddr;

use crate::decode::parse_int;
use crate::types::{FILE_TYPES, Operator, TypeClass};

/// Seconds of a `rateLimit` (`30`, `5m`, `1h`).
pub fn parse_rate_limit(text: &str) -> Option<u64> {
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits.parse().ok()?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return None,
    };
    n.checked_mul(factor)
}

fn int_range(text: &str) -> Option<(i64, i64)> {
    let (lo, hi) = text.split_once(':')?;
    let (lo, hi) = (parse_int(lo)?, parse_int(hi)?);
    (lo <= hi).then_some((lo, hi))
}

fn port(text: &str) -> bool {
    let one = |t: &str| parse_int(t).is_some_and(|p| (0..=65535).contains(&p));
    match text.split_once(':') {
        Some((lo, hi)) => one(lo) && one(hi) && parse_int(lo) <= parse_int(hi),
        None => one(text),
    }
}

fn address(text: &str) -> bool {
    match text.split_once('/') {
        Some((ip, bits)) => match (ip.parse::<IpAddr>(), bits.parse::<u8>()) {
            (Ok(IpAddr::V4(_)), Ok(b)) => b <= 32,
            (Ok(IpAddr::V6(_)), Ok(b)) => b <= 128,
            _ => false,
        },
        None => text.parse::<IpAddr>().is_ok(),
    }
}

/// Checks one filter value; the error text starts with "list" for unresolved lists.
pub(crate) fn check_value(
    op: Operator,
    class: TypeClass,
    value: &str,
    list_exists: impl Fn(&str) -> bool,
) -> Result<(), String> {
    use Operator::*;
    // `${NAME}` is a deployment-template placeholder (Tetragon's quickstart policies are
    // run through envsubst); it is filled in before loading, so it is not judged here.
    if value.starts_with("${") && value.ends_with('}') {
        return Ok(());
    }
    let named = |prefix: &str, names: &[&str]| {
        parse_int(value).is_some() || (value.starts_with(prefix) && names.contains(&value))
    };
    let ok = match op {
        Equal | NotEqual | GreaterThan | LessThan | Mask
            if matches!(
                class,
                TypeClass::Integer | TypeClass::CapabilitySet | TypeClass::SyscallId
            ) =>
        {
            parse_int(value).is_some()
        }
        InRange | NotInRange => int_range(value).is_some(),
        InMap | NotInMap => {
            if let Some(name) = value.strip_prefix("list:") {
                if !list_exists(name) {
                    return Err(format!("list `{name}` is not defined in spec.lists"));
                }
                true
            } else {
                parse_int(value).is_some() || int_range(value).is_some()
            }
        }
        SPort | NotSPort | DPort | NotDPort => port(value),
        SAddr | NotSAddr | DAddr | NotDAddr => address(value),
        Protocol => named(
            "IPPROTO_",
            &[
                "IPPROTO_IP",
                "IPPROTO_ICMP",
                "IPPROTO_TCP",
                "IPPROTO_UDP",
                "IPPROTO_IPV6",
                "IPPROTO_ICMPV6",
                "IPPROTO_SCTP",
                "IPPROTO_RAW",
                "IPPROTO_UDPLITE",
                "IPPROTO_MPTCP",
            ],
        ),
        Family => named(
            "AF_",
            &[
                "AF_UNSPEC",
                "AF_UNIX",
                "AF_LOCAL",
                "AF_INET",
                "AF_INET6",
                "AF_NETLINK",
                "AF_PACKET",
                "AF_VSOCK",
                "AF_XDP",
            ],
        ),
        State => named(
            "TCP_",
            &[
                "TCP_ESTABLISHED",
                "TCP_SYN_SENT",
                "TCP_SYN_RECV",
                "TCP_FIN_WAIT1",
                "TCP_FIN_WAIT2",
                "TCP_TIME_WAIT",
                "TCP_CLOSE",
                "TCP_CLOSE_WAIT",
                "TCP_LAST_ACK",
                "TCP_LISTEN",
                "TCP_CLOSING",
                "TCP_NEW_SYN_RECV",
            ],
        ),
        FileType | NotFileType => FILE_TYPES.contains(&value.to_ascii_lowercase().as_str()),
        CelExpr => !value.trim().is_empty(),
        SameFile => value.starts_with('/'),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("`{value}` is not a valid value for operator {op}"))
    }
}
