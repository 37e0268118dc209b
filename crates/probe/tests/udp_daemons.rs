//! The UDP payloads of `harbormaster_wire::payload` against real daemons
//! from Debian (installed by scripts/deps.sh) running in the target
//! namespace: dnsmasq (a forwarding resolver, a refusing one, and the root
//! authority behind the first, so nothing leaves the namespaces), chronyd,
//! ntpsec's ntpd, snmpd, memcached, miniupnpd, avahi-daemon, rpcbind,
//! tftpd-hpa, OpenVPN, Kamailio, OpenIPMI's ipmi_sim and libcoap's
//! coap-server.
//!
//! Each test sends the payload from the scanner namespace with a plain UDP
//! socket (at most three tries, bounded waits), keeps only replies from the
//! target address and port that parse with the right cookie (duplicates
//! dropped), and checks the protocol evidence and the measured
//! amplification. Needs root; without it each test prints why it was skipped.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use harbormaster_testnet::{TARGET_IP, TargetSpec, TestNet, testnet_or_skip};
use harbormaster_wire::payload::{
    self, Amplification, Evidence, PayloadError, PayloadSpec, dns::DnsVerdict,
};

/// The replies one request drew.
#[derive(Debug, Default)]
struct Exchange {
    /// Evidence from each distinct valid reply, in arrival order.
    evidence: Vec<Evidence>,
    /// The valid replies' bytes (for re-parsing with a wrong cookie).
    replies: Vec<Vec<u8>>,
    /// Requests and valid replies, measured.
    amp: Amplification,
    /// Datagrams from the target that did not parse (wrong cookie, garbage).
    rejected: usize,
    /// Datagrams seen twice.
    duplicates: usize,
    /// Requests sent (1 to 3).
    tries: u32,
    /// The cookie of the last request (the one the replies answer).
    cookie: u32,
}

/// A cookie that differs between runs.
fn cookie() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.subsec_nanos() ^ (t.as_secs() as u32).rotate_left(13)) | 1
}

/// Sends `spec`'s request from the scanner namespace to `target`, up to
/// three times while nothing valid arrives, and collects the replies: one
/// for a single-reply protocol, all that arrive until the target is quiet
/// for `quiet` (at least 1.2 s; each try waits at most 3 s or `quiet` + 1 s)
/// for a multi-reply one. Try `i` carries
/// cookie `cookie + i`, so a late answer to an earlier try is rejected
/// rather than counted; the amplification is that of the answered try.
fn exchange(
    net: &TestNet,
    target: SocketAddrV4,
    spec: &'static PayloadSpec,
    cookie: u32,
    quiet: Duration,
) -> Exchange {
    net.in_scanner(|| {
        let sock = UdpSocket::bind((harbormaster_testnet::SCANNER_IP, 0)).expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut ex = Exchange::default();
        let mut seen = HashSet::new();
        let mut buf = vec![0u8; 65536];
        for attempt in 0..3u32 {
            let c = cookie.wrapping_add(attempt);
            let request = spec.request(c);
            ex.tries += 1;
            ex.cookie = c;
            ex.amp = Amplification::default();
            sock.send_to(&request, target).expect("send");
            ex.amp.sent(request.len());
            let deadline =
                Instant::now() + Duration::from_secs(3).max(quiet + Duration::from_secs(1));
            let mut last = Instant::now();
            let quiet = quiet.max(Duration::from_millis(1200));
            while Instant::now() < deadline && last.elapsed() < quiet {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                // TFTP answers from a new port; everything else from the one we sent to.
                let expected = if spec.reply_from_other_port {
                    from.ip() == std::net::IpAddr::V4(*target.ip())
                } else {
                    from == SocketAddr::V4(target)
                };
                if !expected {
                    continue;
                }
                let d = &buf[..n];
                if !seen.insert(d.to_vec()) {
                    // A byte-identical datagram: a server's retransmission
                    // (there is no duplicating network here). Its bytes did
                    // reach us, so they count towards the amplification; as
                    // evidence it is dropped.
                    ex.duplicates += 1;
                    if spec.parse(d, c).is_ok() {
                        ex.amp.received(n);
                    }
                    continue;
                }
                match spec.parse(d, c) {
                    Ok(ev) => {
                        ex.amp.received(n);
                        ex.evidence.push(ev);
                        ex.replies.push(d.to_vec());
                        last = Instant::now();
                        if !spec.multi_reply {
                            break;
                        }
                    }
                    Err(_) => ex.rejected += 1,
                }
            }
            if !ex.evidence.is_empty() {
                break;
            }
        }
        eprintln!(
            "{} at {target}: {} on try {} (rejected {}, duplicates {})",
            spec.protocol, ex.amp, ex.tries, ex.rejected, ex.duplicates
        );
        ex
    })
}

/// A real reply re-parsed with another cookie must be refused as a
/// mismatch (protocols with a cookie field).
fn wrong_cookie_refused(spec: &PayloadSpec, reply: &[u8], cookie: u32) {
    let other = cookie ^ 0x0000_0001 ^ 0x0000_0100;
    assert!(
        matches!(
            spec.parse(reply, other),
            Err(PayloadError::CookieMismatch { .. })
        ),
        "{}: a real reply parsed with the wrong cookie: {:?}",
        spec.protocol,
        spec.parse(reply, other)
    );
}

fn spec_for(port: u16) -> &'static PayloadSpec {
    payload::payload_for(port).expect("a payload for the port")
}

fn net_with_second_address() -> TargetSpec {
    TargetSpec {
        extra_addresses: 1,
        ..TargetSpec::default()
    }
}

fn dns_evidence(ex: &Exchange) -> &payload::dns::DnsEvidence {
    match ex.evidence.first() {
        Some(Evidence::Dns(d)) => d,
        other => panic!("no DNS answer: {other:?}"),
    }
}

#[test]
fn dns_recursing_refusing_and_authoritative_dnsmasq() {
    let net = testnet_or_skip!(&net_with_second_address());
    let refuser_ip = Ipv4Addr::new(198, 18, 0, 3);
    // The root authority (AA, no recursion), then a resolver that forwards
    // everything to it (RA), then one with no upstream at all (REFUSED).
    let _authority = net
        .start_dnsmasq(
            TARGET_IP,
            5300,
            "auth-server=ns1.hm.test,veth1\nauth-zone=.\n",
        )
        .expect("authority");
    let _resolver = net
        .start_dnsmasq(TARGET_IP, 53, "server=198.18.0.2#5300\n")
        .expect("resolver");
    let _refuser = net.start_dnsmasq(refuser_ip, 53, "").expect("refuser");
    let dns = spec_for(53);
    let c = cookie();

    let rec = exchange(
        &net,
        SocketAddrV4::new(TARGET_IP, 53),
        dns,
        c,
        Duration::ZERO,
    );
    let d = dns_evidence(&rec);
    assert_eq!(d.verdict, DnsVerdict::Recursed, "{d:?}");
    assert!(d.recursion_available && d.recursion_desired && d.rcode == 0);
    assert!(d.names.iter().any(|n| n == "ns1.hm.test"), "{d:?}");
    wrong_cookie_refused(dns, &rec.replies[0], rec.cookie);
    assert!(rec.amp.factor() > 1.0, "{}", rec.amp);

    let refused = exchange(
        &net,
        SocketAddrV4::new(refuser_ip, 53),
        dns,
        c,
        Duration::ZERO,
    );
    let d = dns_evidence(&refused);
    assert_eq!(
        (d.verdict, d.rcode, d.answers),
        (DnsVerdict::Refused, 5, 0),
        "{d:?}"
    );

    let auth = exchange(
        &net,
        SocketAddrV4::new(TARGET_IP, 5300),
        dns,
        c,
        Duration::ZERO,
    );
    let d = dns_evidence(&auth);
    assert_eq!(d.verdict, DnsVerdict::Authoritative, "{d:?}");
    assert!(d.authoritative && !d.recursion_available);
    assert_eq!(d.names, ["ns1.hm.test"]);
    for ex in [&rec, &refused, &auth] {
        assert_eq!(ex.amp.reply_packets, 1);
        assert_eq!(ex.amp.reply_bytes, ex.replies[0].len() as u64);
    }
}

#[test]
fn ntp_chronyd_answers_clients_not_control_queries() {
    let net = testnet_or_skip!(&TargetSpec::default());
    let _chronyd = net.start_chronyd(TARGET_IP).expect("chronyd");
    let to = SocketAddrV4::new(TARGET_IP, 123);
    let c = cookie();
    let specs = payload::payloads_for(123);
    let client = exchange(&net, to, &specs[0], c, Duration::ZERO);
    match client.evidence.first() {
        Some(Evidence::Ntp(n)) => {
            assert_eq!((n.mode, n.version, n.stratum), (4, 4, 8), "{n:?}");
            assert_eq!(n.kiss_code, None);
        }
        other => panic!("no NTP answer: {other:?}"),
    }
    wrong_cookie_refused(&specs[0], &client.replies[0], client.cookie);
    assert_eq!(
        (client.amp.reply_packets, client.amp.reply_bytes),
        (1, 48),
        "{}",
        client.amp
    );
    // Chrony implements neither mode 6 nor mode 7: the same port that just
    // answered stays silent to both (three tries each).
    for spec in &specs[1..] {
        let ex = exchange(&net, to, spec, c, Duration::ZERO);
        assert!(
            ex.evidence.is_empty() && ex.rejected == 0,
            "{}: {:?}",
            spec.protocol,
            ex.evidence
        );
        assert_eq!((ex.tries, ex.amp.reply_packets), (3, 0));
    }
}

#[test]
fn ntp_ntpsec_answers_mode_6_not_mode_7() {
    let net = testnet_or_skip!(&TargetSpec::default());
    let _ntpd = net.start_ntpsec(TARGET_IP).expect("ntpsec");
    let to = SocketAddrV4::new(TARGET_IP, 123);
    let specs = payload::payloads_for(123);
    // No time sources: it answers clients as unsynchronised (stratum 16
    // or, while it starts, a kiss-o'-death with stratum 0).
    let client = exchange(&net, to, &specs[0], cookie(), Duration::ZERO);
    match client.evidence.first() {
        Some(Evidence::Ntp(n)) => {
            assert_eq!((n.mode, n.leap), (4, 3), "{n:?}");
            assert!(n.stratum == 16 || n.stratum == 0, "{n:?}");
        }
        other => panic!("no NTP answer: {other:?}"),
    }
    let control = exchange(&net, to, &specs[1], cookie(), Duration::from_millis(300));
    match control.evidence.first() {
        Some(Evidence::NtpQuery(q)) => {
            assert_eq!(q.mode, 6);
            assert!(!q.error, "{q:?}");
            let version = q.version.as_deref().unwrap_or_default();
            assert!(version.contains("ntpsec-1."), "version {version:?}");
            assert!(
                q.system.as_deref().unwrap_or_default().starts_with("Linux"),
                "{q:?}"
            );
        }
        other => panic!("no mode-6 answer: {other:?}"),
    }
    wrong_cookie_refused(&specs[1], &control.replies[0], control.cookie);
    assert!(control.amp.factor() > 10.0, "{}", control.amp);
    // ntpsec removed mode 7 altogether.
    let private = exchange(&net, to, &specs[2], cookie(), Duration::ZERO);
    assert!(
        private.evidence.is_empty() && private.rejected == 0,
        "{:?}",
        private.evidence
    );
    assert_eq!(private.tries, 3);
}

#[test]
fn snmp_public_sys_descr_from_snmpd() {
    let net = testnet_or_skip!(&TargetSpec::default());
    let _snmpd = net.start_snmpd(TARGET_IP).expect("snmpd");
    let snmp = spec_for(161);
    let c = cookie();
    let ex = exchange(
        &net,
        SocketAddrV4::new(TARGET_IP, 161),
        snmp,
        c,
        Duration::ZERO,
    );
    match ex.evidence.first() {
        Some(Evidence::Snmp(s)) => {
            assert_eq!(
                (s.version, s.error_status, s.community.as_str()),
                (1, 0, "public")
            );
            assert!(s.oid_is_sys_descr, "{s:?}");
            let descr = s.sys_descr.as_deref().unwrap_or_default();
            assert!(descr.starts_with("Linux "), "sysDescr {descr:?}");
        }
        other => panic!("no SNMP answer: {other:?}"),
    }
    wrong_cookie_refused(snmp, &ex.replies[0], ex.cookie);
    assert!(ex.amp.factor() > 1.0, "{}", ex.amp);
}

#[test]
fn memcached_udp_stats_and_version() {
    let net = testnet_or_skip!(&TargetSpec::default());
    let _memcached = net.start_memcached(TARGET_IP).expect("memcached");
    let mc = spec_for(11211);
    let c = cookie();
    let ex = exchange(
        &net,
        SocketAddrV4::new(TARGET_IP, 11211),
        mc,
        c,
        Duration::from_millis(300),
    );
    let frames: Vec<&payload::memcached::MemcachedEvidence> = ex
        .evidence
        .iter()
        .map(|e| match e {
            Evidence::Memcached(m) => m,
            other => panic!("{other:?}"),
        })
        .collect();
    // Every datagram of the reply arrived, once each.
    let total = frames[0].total;
    let mut seqs: Vec<u16> = frames.iter().map(|f| f.sequence).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..total).collect::<Vec<u16>>());
    assert!(
        frames
            .iter()
            .all(|f| f.request_id == ex.cookie as u16 && f.total == total)
    );
    let version = frames
        .iter()
        .find_map(|f| f.version.clone())
        .expect("STAT version");
    wrong_cookie_refused(mc, &ex.replies[0], ex.cookie);
    assert!(ex.amp.factor() > 20.0, "{}", ex.amp);

    // `version` answers with the same version in one datagram.
    let out = net.in_scanner(|| {
        let sock = UdpSocket::bind((harbormaster_testnet::SCANNER_IP, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut req = [0u8; 32];
        let n = payload::memcached::write_version(c, &mut req).unwrap();
        let mut buf = [0u8; 2048];
        for _ in 0..3 {
            sock.send_to(&req[..n], (TARGET_IP, 11211)).unwrap();
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                return buf[..n].to_vec();
            }
        }
        panic!("no reply to version");
    });
    match mc.parse(&out, c) {
        Ok(Evidence::Memcached(m)) => assert_eq!(m.version.as_deref(), Some(version.as_str())),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ssdp_search_responses_from_miniupnpd() {
    let net = testnet_or_skip!(&TargetSpec::default());
    let uuid = "3f0e5c2a-6b1d-4c8e-9a47-0d2b7e1f5a10";
    let _miniupnpd = net.start_miniupnpd(uuid).expect("miniupnpd");
    let ssdp = spec_for(1900);
    let ex = exchange(
        &net,
        SocketAddrV4::new(TARGET_IP, 1900),
        ssdp,
        0,
        Duration::from_millis(1500),
    );
    assert!(ex.evidence.len() >= 3, "{:?}", ex.evidence);
    for e in &ex.evidence {
        let Evidence::Ssdp(s) = e else {
            panic!("{e:?}")
        };
        assert_eq!(
            s.location.as_deref(),
            Some("http://198.18.0.2:5000/rootDesc.xml"),
            "{s:?}"
        );
        assert!(
            s.server
                .as_deref()
                .unwrap_or_default()
                .contains("MiniUPnPd/"),
            "{s:?}"
        );
        assert!(
            s.usn
                .as_deref()
                .unwrap_or_default()
                .starts_with("uuid:3f0e5c2a-6b1d-4c8e-9a47-0d2b7e1f5a1")
        );
    }
    assert!(
        ex.evidence
            .iter()
            .any(|e| matches!(e, Evidence::Ssdp(s) if s.st.as_deref() == Some("upnp:rootdevice")))
    );
    assert_eq!(ex.amp.reply_packets as usize, ex.evidence.len());
    assert!(ex.amp.factor() > 10.0, "{}", ex.amp);
}

#[test]
fn mdns_service_enumeration_from_avahi() {
    let net = testnet_or_skip!(&TargetSpec::default());
    let _avahi = net.start_avahi("hmtarget").expect("avahi");
    let mdns = spec_for(5353);
    let c = cookie();
    // Right after start avahi (like dnsmasq) may leave the first query
    // unanswered even once it reports startup complete; the bounded retries
    // cover that, and the amplification is that of the answered try.
    let ex = exchange(
        &net,
        SocketAddrV4::new(TARGET_IP, 5353),
        mdns,
        c,
        Duration::ZERO,
    );
    match ex.evidence.first() {
        Some(Evidence::Mdns(m)) => {
            assert!(
                m.services.iter().any(|s| s == "_workstation._tcp.local"),
                "{m:?}"
            );
            assert_eq!(m.id, ex.cookie as u16);
        }
        other => panic!("no mDNS answer: {other:?}"),
    }
    wrong_cookie_refused(mdns, &ex.replies[0], ex.cookie);
    assert!(ex.amp.factor() > 1.0, "{}", ex.amp);
}

#[test]
fn coap_well_known_core_from_libcoap() {
    let net = testnet_or_skip!(&TargetSpec::default());
    let _coap = net.start_coap_server(TARGET_IP).expect("coap-server");
    let coap = spec_for(5683);
    let c = cookie();
    let ex = exchange(
        &net,
        SocketAddrV4::new(TARGET_IP, 5683),
        coap,
        c,
        Duration::ZERO,
    );
    match ex.evidence.first() {
        Some(Evidence::Coap(e)) => {
            assert_eq!(
                (e.message_type, e.code_class, e.code_detail),
                (2, 2, 5),
                "{e:?}"
            );
            assert_eq!(e.message_id, ex.cookie as u16);
            assert_eq!(e.content_format, Some(40), "application/link-format");
            assert!(e.payload_sample.contains("</time>"), "{e:?}");
        }
        other => panic!("no CoAP answer: {other:?}"),
    }
    wrong_cookie_refused(coap, &ex.replies[0], ex.cookie);
    assert!(ex.amp.factor() > 1.0, "{}", ex.amp);
}

#[test]
fn portmapper_dump_from_rpcbind() {
    let net = testnet_or_skip!(&TargetSpec::default());
    let _rpcbind = net.start_rpcbind().expect("rpcbind");
    let pm = spec_for(111);
    let ex = exchange(
        &net,
        SocketAddrV4::new(TARGET_IP, 111),
        pm,
        cookie(),
        Duration::ZERO,
    );
    match ex.evidence.first() {
        Some(Evidence::Rpc(r)) => {
            assert!(r.accepted && r.status == 0, "{r:?}");
            // rpcbind registers itself: program 100000 on port 111, over
            // UDP and TCP.
            for proto in [6, 17] {
                assert!(
                    r.mappings
                        .iter()
                        .any(|m| m.program == 100_000 && m.protocol == proto && m.port == 111),
                    "{r:?}"
                );
            }
        }
        other => panic!("no portmapper answer: {other:?}"),
    }
    wrong_cookie_refused(pm, &ex.replies[0], ex.cookie);
    assert!(ex.amp.factor() > 2.0, "{}", ex.amp);
}

#[test]
fn tftp_file_not_found_from_tftpd_hpa() {
    let net = testnet_or_skip!(&TargetSpec::default());
    let _tftpd = net.start_tftpd(TARGET_IP).expect("tftpd");
    let tftp = spec_for(69);
    let ex = exchange(
        &net,
        SocketAddrV4::new(TARGET_IP, 69),
        tftp,
        0,
        Duration::ZERO,
    );
    match ex.evidence.first() {
        Some(Evidence::Tftp(t)) => {
            assert_eq!((t.opcode, t.error_code), (5, Some(1)), "{t:?}");
            assert_eq!(t.message.as_deref(), Some("File not found"));
        }
        other => panic!("no TFTP answer: {other:?}"),
    }
    assert_eq!(ex.amp.reply_packets, 1);
}

#[test]
fn openvpn_hard_reset_answered_and_resent() {
    let net = testnet_or_skip!(&TargetSpec::default());
    let _openvpn = net.start_openvpn(TARGET_IP).expect("openvpn");
    let ovpn = spec_for(1194);
    // Its reliability layer resends the reset after about 2 s: wait 2.5 s
    // after each datagram to see the first resend.
    let ex = exchange(
        &net,
        SocketAddrV4::new(TARGET_IP, 1194),
        ovpn,
        cookie(),
        Duration::from_millis(2500),
    );
    match ex.evidence.first() {
        Some(Evidence::OpenVpn(o)) => {
            assert_eq!(
                (o.opcode, o.key_id, o.acked, o.packet_id),
                (8, 0, 1, Some(0)),
                "{o:?}"
            );
        }
        other => panic!("no OpenVPN answer: {other:?}"),
    }
    wrong_cookie_refused(ovpn, &ex.replies[0], ex.cookie);
    assert_eq!(ex.evidence.len(), 1, "one distinct reset");
    assert!(ex.duplicates >= 1, "the reset is resent: {}", ex.amp);
    assert!(
        ex.amp.reply_packets >= 2 && ex.amp.factor() > 3.0,
        "{}",
        ex.amp
    );
}

#[test]
fn sip_options_answered_by_kamailio() {
    let net = testnet_or_skip!(&TargetSpec::default());
    let _kamailio = net.start_kamailio(TARGET_IP).expect("kamailio");
    let sip = spec_for(5060);
    let ex = exchange(
        &net,
        SocketAddrV4::new(TARGET_IP, 5060),
        sip,
        cookie(),
        Duration::ZERO,
    );
    match ex.evidence.first() {
        Some(Evidence::Sip(s)) => {
            assert_eq!(s.status, 200, "{s:?}");
            assert!(
                s.server
                    .as_deref()
                    .unwrap_or_default()
                    .starts_with("kamailio ("),
                "{s:?}"
            );
        }
        other => panic!("no SIP answer: {other:?}"),
    }
    wrong_cookie_refused(sip, &ex.replies[0], ex.cookie);
    assert!(ex.amp.factor() > 1.0, "{}", ex.amp);
}

#[test]
fn ipmi_auth_capabilities_from_ipmi_sim() {
    let net = testnet_or_skip!(&TargetSpec::default());
    let _bmc = net.start_ipmi_sim(TARGET_IP).expect("ipmi_sim");
    let ipmi = spec_for(623);
    let ex = exchange(
        &net,
        SocketAddrV4::new(TARGET_IP, 623),
        ipmi,
        cookie(),
        Duration::ZERO,
    );
    match ex.evidence.first() {
        Some(Evidence::Ipmi(i)) => {
            assert_eq!(i.completion, 0, "{i:?}");
            // What the simulator was configured with: every v1.5 type, a
            // null user, IPMI 2.0.
            assert!(
                i.auth_none && i.auth_md5 && i.auth_password && i.ipmi_v2,
                "{i:?}"
            );
            assert!(i.null_usernames, "{i:?}");
        }
        other => panic!("no IPMI answer: {other:?}"),
    }
    wrong_cookie_refused(ipmi, &ex.replies[0], ex.cookie);
    assert!(ex.amp.factor() > 1.0, "{}", ex.amp);
}
