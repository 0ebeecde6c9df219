//! Every example in `configs/*.yaml` parses, validates and builds a core
//! `ServiceTable`; a few facts of each named example are checked.

use std::path::PathBuf;

use xvs_core::classify::Action;
use xvs_core::sched::SchedKind;
use xvs_core::service::{Method, ServiceKey, ServiceTable};

fn configs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

#[test]
fn every_example_config_parses_and_builds() {
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(configs_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let config = xvs_config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            let specs = config.service_specs();
            ServiceTable::build(&specs).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seen.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    seen.sort();
    for name in [
        "dr-web.yaml",
        "mark-80-443.yaml",
        "nat-web.yaml",
        "udp-dns.yaml",
    ] {
        assert!(
            seen.iter().any(|s| s == name),
            "{name} missing from {seen:?}"
        );
    }
}

fn load(name: &str) -> xvs_config::Config {
    xvs_config::load(&configs_dir().join(name)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn nat_web() {
    let c = load("nat-web.yaml");
    let s = &c.services[0];
    assert_eq!(s.sched.kind, SchedKind::Rr);
    assert_eq!(s.real_servers.len(), 2);
    assert!(
        s.real_servers
            .iter()
            .all(|r| r.method == Method::Nat && r.port == Some(8080))
    );
}

#[test]
fn dr_web() {
    let c = load("dr-web.yaml");
    let s = &c.services[0];
    assert!(
        s.real_servers
            .iter()
            .all(|r| r.method == Method::Dr && r.port.is_none())
    );
    assert!(s.sorry_server.is_some());
}

#[test]
fn mark_80_443() {
    let c = load("mark-80-443.yaml");
    assert!(c.rules.iter().any(|r| r.action == Action::Mark(7)));
    let s = &c.services[0];
    assert_eq!(s.key, ServiceKey::Mark { mark: 7, v6: false });
    assert_eq!(s.persistence.unwrap().prefix, 24);
}

#[test]
fn udp_dns() {
    let c = load("udp-dns.yaml");
    assert!(c.services.iter().all(|s| matches!(
        s.key,
        ServiceKey::Tuple {
            protocol: 17,
            port: 53,
            ..
        }
    )));
}
