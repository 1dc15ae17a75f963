//! Unit tests of the sock_diag code: the address filter run as the kernel runs it, dumps of
//! real sockets (both families, mapped addresses, only the filtered ones), and the kernel's
//! error acknowledgements.

use super::*;
use std::net::{SocketAddr, TcpListener, TcpStream};

/// Runs bytecode the way the kernel does (`inet_diag_bc_run`) for a remote address, after
/// checking it the way the kernel does (`inet_diag_bc_audit`): jumps forward, to an op
/// boundary, the end (accept) or 4 past it (reject).
fn kernel_accepts(code: &[u8], family: u8, remote: &[u8]) -> bool {
    let total = code.len() as isize;
    // Audit: walk by `yes`; every `no` must land on a boundary the walk visits, or end/+4.
    let mut boundaries = vec![0isize];
    let mut at = 0isize;
    while at < total {
        let op = &code[at as usize..];
        let yes = isize::from(op[1]);
        assert!(
            yes >= 4 && yes % 4 == 0 && at + yes <= total + 4,
            "bad yes at {at}"
        );
        at += yes;
        boundaries.push(at);
    }
    assert_eq!(at, total, "the yes-walk ends exactly at the end");
    let mut at = 0isize;
    while at < total {
        let op = &code[at as usize..];
        let no = u16::from_ne_bytes([op[2], op[3]]) as isize;
        let target = at + no;
        assert!(
            target == total + 4 || boundaries.contains(&target),
            "no of op at {at} lands at {target}"
        );
        at += isize::from(op[1]);
    }
    // Run.
    let mut at = 0isize;
    while at < total {
        let op = &code[at as usize..];
        let matched = match op[0] {
            INET_DIAG_BC_JMP => false,
            INET_DIAG_BC_D_COND => {
                let address_len = usize::from(op[1]) - 12;
                let condition = &op[12..12 + address_len];
                // An IPv4 condition matches an IPv4-mapped IPv6 address.
                let mapped = op[4] == AF_INET
                    && family == AF_INET6
                    && remote[..12] == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]
                    && &remote[12..] == condition;
                mapped || (op[4] == family && remote == condition)
            }
            other => panic!("unexpected op {other}"),
        };
        let jump = if matched {
            isize::from(op[1])
        } else {
            u16::from_ne_bytes([op[2], op[3]]) as isize
        };
        at += jump;
    }
    at == total
}

#[test]
fn filter_accepts_exactly_the_listed_addresses_table() {
    let listed: Vec<IpAddr> = ["192.0.2.1", "192.0.2.7", "2001:db8::1", "198.51.100.9"]
        .iter()
        .map(|a| a.parse().expect("literal"))
        .collect();
    let program = destination_filter(&listed).expect("a program");
    let (v4, v6) = (program.as_slice(), program.as_slice());
    let mapped = |text: &str| {
        text.parse::<Ipv4Addr>()
            .expect("literal")
            .to_ipv6_mapped()
            .octets()
            .to_vec()
    };
    let cases: Vec<(&[u8], u8, Vec<u8>, bool)> = vec![
        (v4, AF_INET, vec![192, 0, 2, 1], true),
        (v4, AF_INET, vec![192, 0, 2, 7], true),
        (v4, AF_INET, vec![198, 51, 100, 9], true),
        (v4, AF_INET, vec![192, 0, 2, 2], false),
        (v4, AF_INET, vec![127, 0, 0, 1], false),
        (
            v6,
            AF_INET6,
            "2001:db8::1"
                .parse::<Ipv6Addr>()
                .expect("literal")
                .octets()
                .to_vec(),
            true,
        ),
        (
            v6,
            AF_INET6,
            "2001:db8::2"
                .parse::<Ipv6Addr>()
                .expect("literal")
                .octets()
                .to_vec(),
            false,
        ),
        (v6, AF_INET6, mapped("192.0.2.7"), true),
        (v6, AF_INET6, mapped("192.0.2.8"), false),
    ];
    for (code, family, remote, expected) in cases {
        assert_eq!(
            kernel_accepts(code, family, &remote),
            expected,
            "{family} {remote:?}"
        );
    }
    let only_v4: Vec<IpAddr> = vec![listed[0]];
    let single = destination_filter(&only_v4).expect("a program");
    assert!(kernel_accepts(&single, AF_INET, &[192, 0, 2, 1]));
    assert!(!kernel_accepts(&single, AF_INET, &[192, 0, 2, 2]));
    assert_eq!(destination_filter(&[]), None);
}

#[test]
fn the_kernel_sends_only_sockets_to_the_filtered_addresses() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let server = listener.local_addr().expect("address");
    let client = TcpStream::connect(server).expect("connect");
    let (_accepted, _) = listener.accept().expect("accept");
    let local_port = client.local_addr().expect("address").port();
    let mut diag = SockDiag::open().expect("sock_diag");
    let states = 1 << TCP_ESTABLISHED;
    let find = |diag: &mut SockDiag, filter: Option<Vec<u8>>| {
        let mut found = Vec::new();
        diag.dump_tcp(states, filter.as_deref(), |socket| {
            if socket.local_port == local_port {
                found.push(*socket);
            }
        })
        .expect("dump");
        found
    };
    let loopback: Vec<IpAddr> = vec![server.ip()];
    let seen = find(&mut diag, destination_filter(&loopback));
    assert_eq!(seen.len(), 1, "{seen:?}");
    let socket = seen[0];
    assert_eq!(
        SocketAddr::new(socket.remote, socket.remote_port),
        server,
        "the remote end is the listener"
    );
    assert_eq!(socket.state, TCP_ESTABLISHED);
    assert!(socket.rtt.is_some(), "tcp_info came with it");
    assert_ne!(socket.cookie, 0);
    let elsewhere: Vec<IpAddr> = vec!["127.0.0.9".parse().expect("literal")];
    assert!(find(&mut diag, destination_filter(&elsewhere)).is_empty());
}

#[test]
fn one_dump_finds_both_families_and_mapped_addresses() {
    let v4 = TcpListener::bind("127.0.0.1:0").expect("listen");
    let v6 = TcpListener::bind("[::1]:0").expect("listen on ::1");
    let v4_address = v4.local_addr().expect("address");
    let v6_address = v6.local_addr().expect("address");
    let plain = TcpStream::connect(v4_address).expect("connect");
    let mapped_target: SocketAddr = format!("[::ffff:127.0.0.1]:{}", v4_address.port())
        .parse()
        .expect("literal");
    // An IPv6 socket reaching an IPv4 address, as dual-stack programs connect.
    let mapped = TcpStream::connect(mapped_target).expect("connect through a mapped address");
    let over_v6 = TcpStream::connect(v6_address).expect("connect");
    let ports = [&plain, &mapped, &over_v6].map(|s| s.local_addr().expect("address").port());
    let wanted: Vec<IpAddr> = vec![v4_address.ip(), v6_address.ip()];
    let filter = destination_filter(&wanted).expect("a program");
    let mut diag = SockDiag::open().expect("sock_diag");
    let mut found = Vec::new();
    diag.dump_tcp(1 << TCP_ESTABLISHED, Some(&filter), |socket| {
        if ports.contains(&socket.local_port) {
            found.push((socket.local_port, socket.remote));
        }
    })
    .expect("dump");
    found.sort();
    let mut expected = vec![
        (ports[0], v4_address.ip()),
        (ports[1], v4_address.ip()),
        (ports[2], v6_address.ip()),
    ];
    expected.sort();
    assert_eq!(
        found, expected,
        "one walk, both families, the mapped one as IPv4"
    );
}

#[test]
fn acknowledgements_carry_the_kernel_error() {
    let mut message = Vec::new();
    message.extend_from_slice(&36u32.to_ne_bytes());
    message.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
    message.extend_from_slice(&0u16.to_ne_bytes());
    message.extend_from_slice(&7u32.to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes());
    message.extend_from_slice(&(-1i32).to_ne_bytes());
    message.extend_from_slice(&[0; 16]);
    let error = acknowledgement(&message, 7)
        .expect("an answer")
        .expect_err("EPERM");
    assert_eq!(error.raw_os_error(), Some(1));
    assert!(acknowledgement(&message, 8).is_none(), "another request's");
}
