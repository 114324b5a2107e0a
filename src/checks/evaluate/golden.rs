//! The `cutover preflight` text report of a fixed cluster, byte for byte, against
//! `tests/golden/preflight/fresh.txt` (`UPDATE_GOLDEN=1` rewrites it, as for the render goldens).
//! The cluster is today's homelab (`fixtures::fresh`) with the pods that make each drain outcome:
//! a bare `default/netshoot` (the drain refuses), an emptyDir pod, DaemonSet pods; one refused and
//! one failed access review, and an unreadable ClusterIssuer list (unknown).

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, Pod, PodSpec, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::evaluate;
use super::fixtures::*;
use crate::checks::format_table;
use crate::checks::snapshot::{AccessDecision, AccessReview, ClusterSnapshot, FetchError, FetchErrorKind};
use crate::settings::Settings;

fn pod(ns: &str, name: &str, node: &str, owner: Option<(&str, &str)>, empty_dir: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            owner_references: owner.map(|(kind, name)| {
                vec![OwnerReference {
                    kind: kind.into(),
                    name: name.into(),
                    controller: Some(true),
                    ..Default::default()
                }]
            }),
            ..meta(Some(ns), name)
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            volumes: empty_dir.then(|| {
                vec![Volume {
                    name: "scratch".into(),
                    empty_dir: Some(EmptyDirVolumeSource::default()),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
        status: None,
    }
}

fn review(verb: &str, resource: &str, sub: &str, purpose: &str, result: Result<bool, FetchError>) -> AccessReview {
    AccessReview {
        verb: verb.into(),
        group: String::new(),
        resource: resource.into(),
        subresource: sub.into(),
        namespace: None,
        purpose: purpose.into(),
        result: result.map(|allowed| AccessDecision { allowed, reason: String::new() }),
    }
}

fn snapshot() -> ClusterSnapshot {
    let mut s = fresh();
    let ds = Some(("DaemonSet", "speaker"));
    s.pods = Ok(vec![
        pod("metallb-system", "speaker-cp1", "cp-1", ds, false),
        pod("metallb-system", "speaker-w1", "worker-1", ds, false),
        pod("metallb-system", "speaker-w2", "worker-2", ds, false),
        pod("argocd", "argocd-server-6f7d9-x2x4q", "cp-1", Some(("ReplicaSet", "argocd-server-6f7d9")), false),
        pod("blog", "ghost-7c9b5-kq2mz", "worker-1", Some(("ReplicaSet", "ghost-7c9b5")), false),
        pod("monitoring", "grafana-5d4f8-l9x7t", "worker-2", Some(("ReplicaSet", "grafana-5d4f8")), true),
        // Started with `kubectl run` for a network test and forgotten: the drain refuses.
        pod("default", "netshoot", "worker-1", None, false),
    ]);
    s.cluster_issuers = Err(FetchError::new(
        "clusterissuers.cert-manager.io",
        FetchErrorKind::Forbidden,
        "clusterissuers.cert-manager.io is forbidden: User \"system:serviceaccount:ops:cutover\" cannot list \
         resource \"clusterissuers\" in API group \"cert-manager.io\" at the cluster scope",
    ));
    s.access = vec![
        review("patch", "nodes", "", "cordon and uncordon nodes", Ok(true)),
        review("create", "pods", "eviction", "drain nodes", Ok(false)),
        review(
            "create",
            "pods",
            "portforward",
            "port-forward to hubble-relay",
            Err(FetchError::new("selfsubjectaccessreviews.authorization.k8s.io", FetchErrorKind::Other, "timeout")),
        ),
    ];
    s
}

#[test]
fn preflight_text_of_a_fixed_cluster() {
    let text = format_table(&evaluate(&snapshot(), &Settings::default()));
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/preflight/fresh.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, &text).expect("write golden");
    }
    let want = std::fs::read_to_string(&path).expect("golden file (UPDATE_GOLDEN=1 writes it)");
    assert!(want == text, "golden {} differs (UPDATE_GOLDEN=1 to accept):\n{text}", path.display());

    // What the golden is for: nothing cut, the drain refusal named, worst first.
    assert!(!text.contains('…'), "{text}");
    assert!(text.contains("default/netshoot"), "{text}");
    // Row lines start with the status; evidence and action lines with spaces.
    let status_order: Vec<&str> =
        text.lines().skip(1).filter(|l| !l.starts_with(' ')).filter_map(|l| l.split_whitespace().next()).collect();
    let rank = |s: &str| ["fail", "unknown", "warn", "pass"].iter().position(|x| *x == s);
    let ranks: Vec<usize> = status_order.iter().filter_map(|s| rank(s)).collect();
    assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "not worst first: {status_order:?}");
    assert!(ranks.first() == Some(&0) && ranks.last() == Some(&3), "{status_order:?}");
}
