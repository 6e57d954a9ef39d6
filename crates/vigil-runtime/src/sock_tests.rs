use super::*;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn cidr_keys_carry_family_and_bits() {
    let k = cidr_key(7, "127.0.0.0/8").unwrap();
    assert_eq!(k.set_id, 7);
    assert_eq!(k.prefixlen, 32 + 8 + 8);
    assert_eq!(&k.data[..5], &[4, 127, 0, 0, 0]);
    let one = cidr_key(1, "10.1.2.3").unwrap();
    assert_eq!(one.prefixlen, 32 + 8 + 32);
    let v6 = cidr_key(1, "::1/128").unwrap();
    assert_eq!(v6.data[0], 6);
    assert_eq!(v6.data[16], 1);
    assert_eq!(v6.prefixlen, 32 + 8 + 128);
    assert!(cidr_key(1, "10.0.0.0/33").is_none());
    assert!(cidr_key(1, "${PODCIDR}").is_none());
}

#[test]
fn v4_mapped_cidrs_are_their_ipv4_cidrs() {
    // The kernel looks ::ffff:a.b.c.d up as a.b.c.d: a policy naming the mapped form must
    // land on the same key.
    let mapped = cidr_key(2, "::ffff:127.0.0.2").unwrap();
    let plain = cidr_key(2, "127.0.0.2").unwrap();
    assert_eq!(
        (mapped.prefixlen, &mapped.data[..5]),
        (plain.prefixlen, &plain.data[..5])
    );
    let all_v4 = cidr_key(2, "::ffff:0:0/96").unwrap();
    assert_eq!((all_v4.prefixlen, all_v4.data[0]), (32 + 8, 4));
    let net = cidr_key(2, "::ffff:10.0.0.0/104").unwrap();
    assert_eq!(
        (net.prefixlen, &net.data[..2]),
        (32 + 8 + 8, &[4u8, 10][..])
    );
    // Shorter than /96 it is an IPv6 CIDR.
    assert_eq!(cidr_key(2, "::ffff:0:0/80").unwrap().data[0], 6);
}

#[test]
fn daddr_filter_collects_its_cidrs() {
    let mut cidrs = Vec::new();
    let f = sock_filter(
        Operator::DAddr,
        &s(&["127.0.0.0/8", "::1"]),
        VIGIL_ARG_SOCK as u8,
        3,
        &mut cidrs,
    )
    .unwrap();
    assert_eq!(u32::from(f.op), VIGIL_OP_DADDR);
    assert_eq!(f.set_id, 3);
    assert_eq!(cidrs.len(), 2);
    assert!(cidrs.iter().all(|k| k.set_id == 3));
}

#[test]
fn ports_pack_ranges_and_names_become_numbers() {
    let mut cidrs = Vec::new();
    let f = sock_filter(
        Operator::DPort,
        &s(&["80", "1000:2000"]),
        VIGIL_ARG_SOCK as u8,
        0,
        &mut cidrs,
    )
    .unwrap();
    assert_eq!(f.nvalues, 2);
    assert_eq!(f.values[0], 80 | (80 << 32));
    assert_eq!(f.values[1], 1000 | (2000 << 32));
    let p = sock_filter(
        Operator::Protocol,
        &s(&["IPPROTO_TCP", "17"]),
        VIGIL_ARG_SOCK as u8,
        0,
        &mut cidrs,
    )
    .unwrap();
    assert_eq!(&p.values[..2], &[6, 17]);
    let st = sock_filter(
        Operator::State,
        &s(&["TCP_SYN_SENT"]),
        VIGIL_ARG_SOCK as u8,
        0,
        &mut cidrs,
    )
    .unwrap();
    assert_eq!(st.values[0], 2);
    assert!(cidrs.is_empty());
}

#[test]
fn bad_values_and_misplaced_operators_are_named() {
    let mut c = Vec::new();
    let sock = VIGIL_ARG_SOCK as u8;
    let e = sock_filter(Operator::DPort, &s(&["70000"]), sock, 0, &mut c).unwrap_err();
    assert!(e.contains("\"70000\" is not a port"), "{e}");
    let e = sock_filter(Operator::DAddr, &s(&["10.0.0.0/40"]), sock, 0, &mut c).unwrap_err();
    assert!(e.contains("not an IPv4/IPv6 address or CIDR"), "{e}");
    let e = sock_filter(
        Operator::DAddr,
        &s(&["1.2.3.4"]),
        VIGIL_ARG_NET_SOCKADDR as u8,
        0,
        &mut c,
    )
    .unwrap_err();
    assert!(e.contains("operator DAddr does not apply"), "{e}");
    let e = sock_filter(Operator::State, &s(&["TCP_BOGUS"]), sock, 0, &mut c).unwrap_err();
    assert!(e.contains("TCP_BOGUS"), "{e}");
    let e = sock_filter(
        Operator::DPort,
        &s(&["1", "2", "3", "4", "5"]),
        sock,
        0,
        &mut c,
    )
    .unwrap_err();
    assert!(e.contains("1 to 4 values"), "{e}");
}

#[test]
fn a_row_decodes_to_its_fields() {
    let mut row = vec![0u8; std::mem::size_of::<vigil_sock_info>()];
    let put16 =
        |row: &mut Vec<u8>, o: usize, v: u16| row[o..o + 2].copy_from_slice(&v.to_ne_bytes());
    put16(&mut row, std::mem::offset_of!(vigil_sock_info, family), 2);
    put16(&mut row, std::mem::offset_of!(vigil_sock_info, dport), 8080);
    row[std::mem::offset_of!(vigil_sock_info, state)] = 2;
    let d = std::mem::offset_of!(vigil_sock_info, daddr);
    row[d..d + 4].copy_from_slice(&[127, 0, 0, 2]);
    let info = decode(&row).unwrap();
    assert_eq!(info.family, 2);
    assert_eq!(info.dport, 8080);
    assert_eq!(name_of(STATES, u32::from(info.state)), "TCP_SYN_SENT");
    assert_eq!(addr_text(info.family, &info.daddr), "127.0.0.2");
    assert!(decode(&row[..10]).is_none());
    assert_eq!(name_of(FAMILIES, 99), "99");
}
