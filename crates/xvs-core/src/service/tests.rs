use super::*;

pub(crate) fn rs(id: u32, addr: &str, weight: u32) -> RealServer {
    RealServer {
        id: DestId(id),
        addr: addr.parse().unwrap(),
        port: Some(8080),
        weight,
        method: Method::Nat,
        backup: false,
        state: DestState::Up,
        max_conns: 0,
        next_hop: None,
    }
}

pub(crate) fn spec(name: &str, key: ServiceKey, servers: Vec<RealServer>) -> ServiceSpec {
    crate::lab::service(name, 1, key, servers)
}

fn tuple_key(addr: &str, port: u16) -> ServiceKey {
    ServiceKey::Tuple {
        protocol: 6,
        addr: addr.parse().unwrap(),
        port,
    }
}

fn vip(addr: &str) -> AddrBytes {
    to_bytes(addr.parse().unwrap())
}

#[test]
fn lookup_order_is_mark_then_exact_then_all_ports() {
    let t = ServiceTable::build(&[
        spec(
            "exact",
            tuple_key("198.18.1.1", 80),
            vec![rs(1, "198.19.0.2", 1)],
        ),
        spec(
            "all",
            tuple_key("198.18.1.1", 0),
            vec![rs(2, "198.19.0.3", 1)],
        ),
        spec(
            "mark",
            ServiceKey::Mark { mark: 7, v6: false },
            vec![rs(3, "198.19.0.4", 1)],
        ),
    ])
    .unwrap();
    let name = |s: Option<&Service>| s.map(|s| s.name.clone());
    assert_eq!(
        name(t.lookup(0, 6, &vip("198.18.1.1"), false, 80)),
        Some("exact".into())
    );
    assert_eq!(
        name(t.lookup(0, 6, &vip("198.18.1.1"), false, 443)),
        Some("all".into())
    );
    assert_eq!(
        name(t.lookup(7, 6, &vip("198.18.1.1"), false, 80)),
        Some("mark".into())
    );
    assert_eq!(
        name(t.lookup(8, 6, &vip("198.18.1.1"), false, 80)),
        Some("exact".into())
    );
    assert_eq!(name(t.lookup(7, 6, &vip("2001:db8::1"), true, 80)), None);
    assert_eq!(name(t.lookup(0, 17, &vip("198.18.1.1"), false, 80)), None);
    assert_eq!(
        t.dest(DestId(2)).map(|(s, d)| (s.name.as_str(), d.addr)),
        Some(("all", "198.19.0.3".parse().unwrap()))
    );
    assert!(t.dest(DestId(9)).is_none());
}

#[test]
fn eligibility_backups_and_sorry() {
    let mut servers = vec![
        rs(1, "198.19.0.2", 1),
        rs(2, "198.19.0.3", 0),
        rs(3, "198.19.0.9", 1),
    ];
    servers[2].backup = true;
    let mut s = spec("web", tuple_key("198.18.1.1", 80), servers.clone());
    let t = ServiceTable::build(&[s.clone()]).unwrap();
    let svc = &t.services()[0];
    assert_eq!(svc.active_set, ActiveSet::Primaries);
    assert_eq!(svc.active, vec![0]); // weight 0 = quiescent: no new flows
    s.servers[0].state = DestState::Down;
    let t = ServiceTable::build(&[s.clone()]).unwrap();
    assert_eq!(t.services()[0].active_set, ActiveSet::Backups);
    assert_eq!(t.services()[0].active, vec![2]);
    s.servers[2].state = DestState::Down;
    let t = ServiceTable::build(&[s.clone()]).unwrap();
    assert_eq!(t.services()[0].active_set, ActiveSet::Nothing);
    s.sorry = Some(rs(4, "198.19.0.99", 0));
    let t = ServiceTable::build(&[s.clone()]).unwrap();
    assert_eq!(t.services()[0].active_set, ActiveSet::Sorry);
    assert_eq!(t.services()[0].active, vec![3]);
    // Quorum lost overrides healthy primaries when a sorry server exists.
    s.servers[0].state = DestState::Up;
    s.quorum_lost = true;
    let t = ServiceTable::build(&[s]).unwrap();
    assert_eq!(t.services()[0].active_set, ActiveSet::Sorry);
}

#[test]
fn build_rejects_bad_specs() {
    let dup = ServiceTable::build(&[
        spec("a", tuple_key("198.18.1.1", 80), vec![]),
        spec("b", tuple_key("198.18.1.1", 80), vec![]),
    ]);
    assert!(matches!(dup, Err(ServiceError::Duplicate(..))), "{dup:?}");
    let fam = ServiceTable::build(&[spec(
        "a",
        tuple_key("198.18.1.1", 80),
        vec![rs(1, "2001:db8::2", 1)],
    )]);
    assert!(matches!(fam, Err(ServiceError::Family { .. })));
    let w = ServiceTable::build(&[spec(
        "a",
        tuple_key("198.18.1.1", 80),
        vec![rs(1, "198.19.0.2", 70000)],
    )]);
    assert!(matches!(w, Err(ServiceError::Weight { weight: 70000, .. })));
    let mut p = spec("a", tuple_key("198.18.1.1", 80), vec![]);
    p.persistence = Some(Persistence {
        timeout_secs: 300,
        prefix: 33,
        expire_quiescent: false,
    });
    assert!(matches!(
        ServiceTable::build(&[p]),
        Err(ServiceError::Prefix { prefix: 33, .. })
    ));
    let ids = ServiceTable::build(&[
        spec(
            "a",
            tuple_key("198.18.1.1", 80),
            vec![rs(1, "198.19.0.2", 1)],
        ),
        spec(
            "b",
            tuple_key("198.18.1.1", 81),
            vec![rs(1, "198.19.0.3", 1)],
        ),
    ]);
    assert!(matches!(ids, Err(ServiceError::DuplicateDest(DestId(1)))));
}

#[test]
fn quorum_hysteresis() {
    assert!(!quorum_lost(false, 0, 0, 0));
    assert!(!quorum_lost(false, 2, 3, 1)); // 2 >= 3-1: still held
    assert!(quorum_lost(false, 1, 3, 1));
    assert!(quorum_lost(true, 3, 3, 1)); // must reach 3+1 to regain
    assert!(!quorum_lost(true, 4, 3, 1));
}

#[test]
fn template_usability_follows_ipvs() {
    let mut servers = vec![rs(1, "198.19.0.2", 1), rs(2, "198.19.0.3", 0)];
    servers.push(RealServer {
        backup: true,
        ..rs(3, "198.19.0.4", 1)
    });
    let mut s = spec("web", tuple_key("198.18.1.1", 80), servers);
    s.persistence = Some(Persistence {
        timeout_secs: 300,
        prefix: 24,
        expire_quiescent: false,
    });
    let t = ServiceTable::build(&[s.clone()]).unwrap();
    let svc = &t.services()[0];
    assert!(svc.template_usable(&svc.dests[0]));
    assert!(
        svc.template_usable(&svc.dests[1]),
        "quiescent keeps its clients"
    );
    assert!(!svc.template_usable(&svc.dests[2]), "backup not active");
    s.persistence = Some(Persistence {
        timeout_secs: 300,
        prefix: 24,
        expire_quiescent: true,
    });
    s.servers[0].state = DestState::Drained;
    let t = ServiceTable::build(&[s]).unwrap();
    let svc = &t.services()[0];
    assert!(!svc.template_usable(&svc.dests[0]), "drained");
    assert!(!svc.template_usable(&svc.dests[1]), "expire_quiescent");
}

#[test]
fn a_rebuilt_table_continues_the_rr_rotation() {
    let specs = [spec(
        "web",
        tuple_key("198.18.1.1", 80),
        vec![
            rs(1, "198.19.0.2", 1),
            rs(2, "198.19.0.3", 1),
            rs(3, "198.19.0.4", 1),
        ],
    )];
    let flow = crate::sched::Flow {
        src: "198.18.0.10".parse().unwrap(),
        src_port: 1000,
        dst: "198.18.1.1".parse().unwrap(),
        dst_port: 80,
        protocol: 6,
    };
    let pick = |t: &ServiceTable| t.services()[0].scheduler.select(&flow, &crate::sched::Idle);
    let old = ServiceTable::build(&specs).unwrap();
    assert_eq!((pick(&old), pick(&old)), (Some(0), Some(1)));
    let fresh = ServiceTable::build(&specs).unwrap();
    assert_eq!(
        pick(&fresh),
        Some(0),
        "a fresh table starts at the first server"
    );
    let rebuilt = ServiceTable::build(&specs).unwrap();
    rebuilt.carry_over(&old);
    assert_eq!(
        pick(&rebuilt),
        Some(2),
        "the rebuilt table goes on where the old one was"
    );
}
