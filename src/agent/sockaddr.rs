//! A sockaddr argument as the engine posts it (`struct vigil_sockaddr`: family, port in host
//! order, address) -> Tetragon's `sockaddr_arg` {family, addr, port}.

use std::net::{Ipv4Addr, Ipv6Addr};

use vigil_proto::tetragon;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

pub fn sockaddr_arg(row: &[u8]) -> tetragon::KprobeSockaddr {
    let mut b = [0u8; 20];
    let n = row.len().min(b.len());
    b[..n].copy_from_slice(&row[..n]);
    let family = u16::from_ne_bytes([b[0], b[1]]);
    let port = u16::from_ne_bytes([b[2], b[3]]);
    let addr = &b[4..20];
    let (addr, port) = match family {
        AF_INET => (
            Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]).to_string(),
            port,
        ),
        AF_INET6 => (
            Ipv6Addr::from(<[u8; 16]>::try_from(addr).unwrap_or_default()).to_string(),
            port,
        ),
        _ => (String::new(), 0),
    };
    tetragon::KprobeSockaddr {
        family: vigil_runtime::tables::family_name(family),
        addr,
        port: u32::from(port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(family: u16, port: u16, addr: &[u8]) -> Vec<u8> {
        let mut r = family.to_ne_bytes().to_vec();
        r.extend(port.to_ne_bytes());
        let mut a = addr.to_vec();
        a.resize(16, 0);
        r.extend(a);
        r
    }

    #[test]
    fn inet_and_inet6_read_as_tetragon_prints_them() {
        let v4 = sockaddr_arg(&row(2, 8080, &[127, 0, 0, 1]));
        assert_eq!(
            (v4.family.as_str(), v4.addr.as_str(), v4.port),
            ("AF_INET", "127.0.0.1", 8080)
        );
        let mut one = [0u8; 16];
        one[15] = 1;
        let v6 = sockaddr_arg(&row(10, 443, &one));
        assert_eq!(
            (v6.family.as_str(), v6.addr.as_str(), v6.port),
            ("AF_INET6", "::1", 443)
        );
        let unix = sockaddr_arg(&row(1, 0, &[]));
        assert_eq!((unix.family.as_str(), unix.addr.as_str()), ("AF_UNIX", ""));
    }
}
