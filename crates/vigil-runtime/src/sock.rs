//! Network objects of kernel-function hooks (sock, socket, skb, sockaddr): the selector
//! operators on them (SAddr/DAddr CIDR sets, port ranges, Protocol/Family/State) as kernel
//! filters, the names of their constants, and the decoding of the `vigil_sock_info` row the
//! kernel reports (bpf/include/vigil_kobj_net.h).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use vigil_bpf::abi::*;
use vigil_policy::types::Operator;

/// Address families, as Tetragon names them in events and selectors.
pub const FAMILIES: &[(&str, u32)] = &[
    ("AF_UNSPEC", 0),
    ("AF_UNIX", 1),
    ("AF_LOCAL", 1),
    ("AF_INET", 2),
    ("AF_INET6", 10),
    ("AF_NETLINK", 16),
    ("AF_PACKET", 17),
    ("AF_XDP", 44),
    ("AF_VSOCK", 40),
];

pub const PROTOCOLS: &[(&str, u32)] = &[
    ("IPPROTO_IP", 0),
    ("IPPROTO_ICMP", 1),
    ("IPPROTO_TCP", 6),
    ("IPPROTO_UDP", 17),
    ("IPPROTO_IPV6", 41),
    ("IPPROTO_ICMPV6", 58),
    ("IPPROTO_SCTP", 132),
    ("IPPROTO_UDPLITE", 136),
    ("IPPROTO_RAW", 255),
    ("IPPROTO_MPTCP", 262),
];

pub const STATES: &[(&str, u32)] = &[
    ("TCP_ESTABLISHED", 1),
    ("TCP_SYN_SENT", 2),
    ("TCP_SYN_RECV", 3),
    ("TCP_FIN_WAIT1", 4),
    ("TCP_FIN_WAIT2", 5),
    ("TCP_TIME_WAIT", 6),
    ("TCP_CLOSE", 7),
    ("TCP_CLOSE_WAIT", 8),
    ("TCP_LAST_ACK", 9),
    ("TCP_LISTEN", 10),
    ("TCP_CLOSING", 11),
    ("TCP_NEW_SYN_RECV", 12),
];

pub const TYPES: &[(&str, u32)] = &[
    ("SOCK_STREAM", 1),
    ("SOCK_DGRAM", 2),
    ("SOCK_RAW", 3),
    ("SOCK_RDM", 4),
    ("SOCK_SEQPACKET", 5),
    ("SOCK_DCCP", 6),
    ("SOCK_PACKET", 10),
];

/// The name of `value` in `table`, or the number when it has none.
pub fn name_of(table: &[(&str, u32)], value: u32) -> String {
    table
        .iter()
        .find(|(_, v)| *v == value)
        .map_or_else(|| value.to_string(), |(n, _)| n.to_string())
}

fn value_of(table: &[(&str, u32)], text: &str) -> Option<u32> {
    let text = text.trim();
    table
        .iter()
        .find(|(n, _)| *n == text)
        .map(|(_, v)| *v)
        .or_else(|| text.parse().ok())
}

/// Whether `kind` is a network object (its row is a `vigil_sock_info`).
pub fn is_net_kind(kind: u8) -> bool {
    (VIGIL_ARG_SOCK..=VIGIL_ARG_SOCKINFO).contains(&u32::from(kind))
}

/// A CIDR (`10.0.0.0/8`, `::1/128`, or one address) as a key of the shared prefix trie:
/// data = [4 or 6] + the address, prefixlen = set id + family byte + the CIDR's bits.
pub fn cidr_key(set_id: u32, text: &str) -> Option<vigil_str_key> {
    let (ip, bits) = match text.trim().split_once('/') {
        Some((ip, bits)) => (ip.parse::<IpAddr>().ok()?, Some(bits.parse::<u32>().ok()?)),
        None => (text.trim().parse::<IpAddr>().ok()?, None),
    };
    let mut key = vigil_str_key {
        prefixlen: 0,
        set_id,
        data: [0; VIGIL_STR_MATCH as usize],
    };
    let (tag, bytes, max): (u8, Vec<u8>, u32) = match ip {
        IpAddr::V4(a) => (4, a.octets().to_vec(), 32),
        IpAddr::V6(a) => (6, a.octets().to_vec(), 128),
    };
    let mut bits = bits.unwrap_or(max);
    if bits > max {
        return None;
    }
    // The kernel compares an IPv4-mapped IPv6 address (::ffff:a.b.c.d) as the IPv4 address
    // it carries (vigil_engine_sock.h), so a mapped CIDR is that IPv4 CIDR.
    let (tag, bytes) = match ip {
        IpAddr::V6(a) if bits >= 96 && a.to_ipv4_mapped().is_some() => {
            bits -= 96;
            (4, a.octets()[12..].to_vec())
        }
        _ => (tag, bytes),
    };
    key.data[0] = tag;
    key.data[1..=bytes.len()].copy_from_slice(&bytes);
    key.prefixlen = 32 + 8 + bits;
    Some(key)
}

/// A port or range (`80`, `1000:2000`) packed as the kernel reads it: lo | hi << 32.
fn port_range(text: &str) -> Option<i64> {
    let one = |t: &str| t.trim().parse::<u16>().ok();
    let (lo, hi) = match text.split_once(':') {
        Some((lo, hi)) => (one(lo)?, one(hi)?),
        None => (one(text)?, one(text)?),
    };
    (lo <= hi).then_some(i64::from(lo) | (i64::from(hi) << 32))
}

/// The kernel filter of a network operator, its CIDRs appended to `cidrs` under `set_id`.
/// `kind` is the argument's kind: a sockaddr carries one address, matched by the S-ops
/// (Tetragon's rule).
pub fn sock_filter(
    op: Operator,
    values: &[String],
    kind: u8,
    set_id: u32,
    cidrs: &mut Vec<vigil_str_key>,
) -> Result<vigil_arg_filter, String> {
    use Operator::*;
    let mut f = vigil_arg_filter {
        set_id,
        ..Default::default()
    };
    let sockaddr = u32::from(kind) == VIGIL_ARG_NET_SOCKADDR;
    let skb = u32::from(kind) == VIGIL_ARG_SKB;
    let code = match op {
        SAddr => VIGIL_OP_SADDR,
        NotSAddr => VIGIL_OP_NOT_SADDR,
        DAddr if !sockaddr => VIGIL_OP_DADDR,
        NotDAddr if !sockaddr => VIGIL_OP_NOT_DADDR,
        SPort => VIGIL_OP_SPORT,
        NotSPort => VIGIL_OP_NOT_SPORT,
        DPort if !sockaddr => VIGIL_OP_DPORT,
        NotDPort if !sockaddr => VIGIL_OP_NOT_DPORT,
        SPortPriv => VIGIL_OP_SPORT_PRIV,
        NotSPortPriv => VIGIL_OP_NOT_SPORT_PRIV,
        DPortPriv if !sockaddr => VIGIL_OP_DPORT_PRIV,
        NotDPortPriv if !sockaddr => VIGIL_OP_NOT_DPORT_PRIV,
        Protocol if !sockaddr => VIGIL_OP_PROTOCOL,
        Family if !skb => VIGIL_OP_FAMILY,
        State if !sockaddr && !skb => VIGIL_OP_STATE,
        other => {
            return Err(format!(
                "operator {other} does not apply to this network argument (sockaddr: SAddr, \
                 SPort, SPortPriv, Family and their Not forms; skb: no Family/State)"
            ));
        }
    };
    f.op = code as u8;
    match code {
        VIGIL_OP_SADDR | VIGIL_OP_NOT_SADDR | VIGIL_OP_DADDR | VIGIL_OP_NOT_DADDR => {
            if values.is_empty() {
                return Err(format!("operator {op} needs at least one address or CIDR"));
            }
            for v in values {
                cidrs.push(
                    cidr_key(set_id, v)
                        .ok_or_else(|| format!("{v:?} is not an IPv4/IPv6 address or CIDR"))?,
                );
            }
        }
        VIGIL_OP_SPORT_PRIV
        | VIGIL_OP_NOT_SPORT_PRIV
        | VIGIL_OP_DPORT_PRIV
        | VIGIL_OP_NOT_DPORT_PRIV => {}
        _ => {
            if values.is_empty() || values.len() > VIGIL_MAX_INT_VALUES as usize {
                return Err(format!(
                    "operator {op} takes 1 to {VIGIL_MAX_INT_VALUES} values here, not {}",
                    values.len()
                ));
            }
            for (i, v) in values.iter().enumerate() {
                f.values[i] = match code {
                    VIGIL_OP_SPORT | VIGIL_OP_NOT_SPORT | VIGIL_OP_DPORT | VIGIL_OP_NOT_DPORT => {
                        port_range(v).ok_or_else(|| format!("{v:?} is not a port or port range"))?
                    }
                    _ => {
                        let table = match code {
                            VIGIL_OP_PROTOCOL => PROTOCOLS,
                            VIGIL_OP_FAMILY => FAMILIES,
                            _ => STATES,
                        };
                        i64::from(
                            value_of(table, v)
                                .ok_or_else(|| format!("{v:?} is not a valid {op} value"))?,
                        )
                    }
                };
            }
            f.nvalues = values.len() as u8;
        }
    }
    Ok(f)
}

/// The `vigil_sock_info` row of an event, or None when the bytes are too short.
pub fn decode(bytes: &[u8]) -> Option<vigil_sock_info> {
    if bytes.len() < std::mem::size_of::<vigil_sock_info>() {
        return None;
    }
    let u16_at = |o: usize| u16::from_ne_bytes([bytes[o], bytes[o + 1]]);
    let u32_at = |o: usize| u32::from_ne_bytes(bytes[o..o + 4].try_into().unwrap_or_default());
    let mut info = vigil_sock_info {
        family: u16_at(std::mem::offset_of!(vigil_sock_info, family)),
        type_: u16_at(std::mem::offset_of!(vigil_sock_info, type_)),
        protocol: u16_at(std::mem::offset_of!(vigil_sock_info, protocol)),
        state: bytes[std::mem::offset_of!(vigil_sock_info, state)],
        sport: u16_at(std::mem::offset_of!(vigil_sock_info, sport)),
        dport: u16_at(std::mem::offset_of!(vigil_sock_info, dport)),
        mark: u32_at(std::mem::offset_of!(vigil_sock_info, mark)),
        priority: u32_at(std::mem::offset_of!(vigil_sock_info, priority)),
        hash: u32_at(std::mem::offset_of!(vigil_sock_info, hash)),
        len: u32_at(std::mem::offset_of!(vigil_sock_info, len)),
        ..Default::default()
    };
    let c = std::mem::offset_of!(vigil_sock_info, cookie);
    info.cookie = u64::from_ne_bytes(bytes[c..c + 8].try_into().unwrap_or_default());
    let s = std::mem::offset_of!(vigil_sock_info, saddr);
    info.saddr.copy_from_slice(&bytes[s..s + 16]);
    let d = std::mem::offset_of!(vigil_sock_info, daddr);
    info.daddr.copy_from_slice(&bytes[d..d + 16]);
    Some(info)
}

/// An address of the row as text ("" for a family without IP addresses).
pub fn addr_text(family: u16, addr: &[u8; 16]) -> String {
    match u32::from(family) {
        2 => Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]).to_string(),
        10 => Ipv6Addr::from(*addr).to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
#[path = "sock_tests.rs"]
mod tests;
