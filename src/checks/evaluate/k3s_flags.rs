//! The k3s server flags that decide the cutover, read from the servers' `k3s.io/node-args`:
//! embedded flannel, embedded kube-proxy, the network-policy controller, flannel's node
//! annotations, and whether the critical flags agree on every server (`k3s-*` checks). The
//! parsing of node-args itself is in `checks::k3s`.

use std::collections::BTreeSet;

use super::servers::ServerView;
use super::{Check, Status, check, cilium_daemonset, ns_name, unread};
use crate::checks::k3s::{self, NodeArgs, node_name};
use crate::checks::snapshot::ClusterSnapshot;

/// A flag's effective value, as text.
type FlagValue = fn(&NodeArgs) -> String;

pub(super) fn k3s_flannel(snap: &ClusterSnapshot, servers: &ServerView) -> Check {
    let (id, title) = ("k3s-flannel", "Embedded flannel (k3s server flag flannel-backend)");
    if let Some(c) = servers.unusable(id, title) {
        return c;
    }
    let (mut evidence, distinct) = servers.values(|a| match a.value("flannel-backend") {
        Some(b) => format!("--flannel-backend {b}"),
        None => "no --flannel-backend → embedded flannel runs (vxlan)".into(),
    });
    evidence.push(format!(
        "read from the servers' {} annotation: flannel runs inside the k3s process, so there is no flannel Pod or \
         DaemonSet to look for",
        k3s::NODE_ARGS
    ));
    let (_, notes) = servers.parsed();
    evidence.extend(notes);
    let on: BTreeSet<bool> = servers.parsed().0.iter().map(|(_, a)| a.flannel_enabled()).collect();
    if distinct.len() > 1 || on.len() > 1 {
        return check(
            id,
            title,
            Status::Fail,
            evidence,
            "make flannel-backend the same on every server (k3s refuses to start a server whose critical flags differ)",
        );
    }
    if on.contains(&false) {
        return check(id, title, Status::Pass, evidence, "");
    }
    if let Some(ds) = cilium_daemonset(snap) {
        evidence.push(format!("Cilium DaemonSet {} exists while embedded flannel is on", ns_name(&ds.metadata)));
        return check(
            id,
            title,
            Status::Fail,
            evidence,
            "Cilium cannot share the nodes with embedded flannel on the same pod CIDR: set flannel-backend: none on \
             every server and restart the servers first",
        );
    }
    check(
        id,
        title,
        Status::Warn,
        evidence,
        "Stage 1 needs flannel-backend: none (and disable-network-policy: true) on every server, restarting \
         servers first: `cutover render --stage 1` writes the k3s drop-in",
    )
}

pub(super) fn k3s_kube_proxy(snap: &ClusterSnapshot, servers: &ServerView) -> Check {
    let (id, title) = ("k3s-kube-proxy", "Embedded kube-proxy (k3s server flag disable-kube-proxy)");
    if let Some(c) = servers.unusable(id, title) {
        return c;
    }
    let (mut evidence, _) = servers.values(|a| {
        if a.bool("disable-kube-proxy") {
            "--disable-kube-proxy → no kube-proxy".into()
        } else {
            "no --disable-kube-proxy → embedded kube-proxy runs".into()
        }
    });
    evidence.push(
        "k3s runs kube-proxy inside the k3s process on every node: there is no kube-proxy DaemonSet or Pod, so \
         `kubectl -n kube-system get ds kube-proxy` answers NotFound even while kube-proxy is active; the servers' \
         k3s.io/node-args are the evidence"
            .into(),
    );
    if let Ok(ds) = &snap.daemonsets
        && let Some(kp) = ds.iter().find(|d| d.metadata.name.as_deref() == Some("kube-proxy"))
    {
        evidence.push(format!("a kube-proxy DaemonSet {} exists too (not k3s' embedded one)", ns_name(&kp.metadata)));
    }
    let disabled: BTreeSet<bool> = servers.parsed().0.iter().map(|(_, a)| a.bool("disable-kube-proxy")).collect();
    if disabled.len() > 1 {
        return check(
            id,
            title,
            Status::Warn,
            evidence,
            "servers disagree on disable-kube-proxy (not a critical flag, but agents follow whichever server they \
             ask at start): make it the same everywhere",
        );
    }
    if disabled.contains(&true) {
        return match cilium_daemonset(snap) {
            Some(_) => {
                check(id, title, Status::Pass, evidence, "Cilium must run with kubeProxyReplacement \"true\" (Stage 2)")
            }
            None => check(
                id,
                title,
                Status::Fail,
                evidence,
                "kube-proxy is off and Cilium is not installed: Services have no proxy; remove disable-kube-proxy or \
                 install Cilium with kubeProxyReplacement \"true\"",
            ),
        };
    }
    check(id, title, Status::Pass, evidence, "")
}

pub(super) fn k3s_network_policy(servers: &ServerView) -> Check {
    let (id, title) = ("k3s-network-policy", "Embedded network-policy controller (disable-network-policy)");
    if let Some(c) = servers.unusable(id, title) {
        return c;
    }
    let (evidence, _) = servers.values(|a| {
        if a.bool("disable-network-policy") {
            "--disable-network-policy".into()
        } else {
            "no --disable-network-policy → kube-router network policy runs".into()
        }
    });
    let disabled: BTreeSet<bool> = servers.parsed().0.iter().map(|(_, a)| a.bool("disable-network-policy")).collect();
    if disabled.len() > 1 {
        return check(
            id,
            title,
            Status::Fail,
            evidence,
            "make disable-network-policy the same on every server (critical flag)",
        );
    }
    if disabled.contains(&true) {
        return check(id, title, Status::Pass, evidence, "");
    }
    check(
        id,
        title,
        Status::Warn,
        evidence,
        "Stage 1 needs disable-network-policy: true on every server, together with flannel-backend: none",
    )
}

pub(super) fn flannel_annotations(snap: &ClusterSnapshot, servers: &ServerView) -> Check {
    let (id, title) = ("k3s-flannel-annotations", "flannel.alpha.coreos.com annotations");
    let nodes = match &snap.nodes {
        Ok(n) => n,
        Err(e) => return unread(id, title, e),
    };
    let mut evidence = Vec::new();
    for n in nodes {
        let a = k3s::flannel_annotations(n);
        if !a.is_empty() {
            let backend = a.get("backend-type").map_or("?", String::as_str);
            let ip = a.get("public-ip").map_or("?", String::as_str);
            evidence.push(format!("{}: backend-type {backend}, public-ip {ip}", node_name(n)));
        }
    }
    if evidence.is_empty() {
        return check(id, title, Status::Pass, vec!["no node carries flannel annotations".into()], "");
    }
    let (parsed, _) = servers.parsed();
    let flannel_on: BTreeSet<bool> = parsed.iter().map(|(_, a)| a.flannel_enabled()).collect();
    if flannel_on == BTreeSet::from([false]) {
        evidence.push(
            "STALE: the servers run with flannel-backend none and flannel never removes its annotations; they do not \
             mean flannel is running"
                .into(),
        );
        check(id, title, Status::Pass, evidence, "nothing to do (they may be removed by hand)")
    } else if flannel_on == BTreeSet::from([true]) {
        evidence.push("consistent with embedded flannel running (see k3s-flannel)".into());
        check(id, title, Status::Pass, evidence, "")
    } else {
        evidence
            .push("cannot tell from node-args whether flannel still runs: the annotations alone prove nothing".into());
        check(id, title, Status::Warn, evidence, "check the servers' k3s.io/node-args")
    }
}

pub(super) fn server_flags(servers: &ServerView) -> Check {
    let (id, title) = ("k3s-server-flags", "k3s flags identical on every server");
    if let Some(c) = servers.unusable(id, title) {
        return c;
    }
    let (parsed, notes) = servers.parsed();
    if parsed.len() < 2 {
        let mut ev = vec![format!("{} server(s) with readable node-args: nothing to compare", parsed.len())];
        ev.extend(notes);
        return check(id, title, Status::Pass, ev, "");
    }
    // Critical: a restarting server whose value differs refuses to start.
    let critical: [(&str, FlagValue); 4] = [
        ("flannel-backend", |a| a.flannel_backend()),
        ("disable-network-policy", |a| a.bool("disable-network-policy").to_string()),
        ("cluster-cidr", |a| a.value("cluster-cidr").unwrap_or("10.42.0.0/16").to_string()),
        ("service-cidr", |a| a.value("service-cidr").unwrap_or("10.43.0.0/16").to_string()),
    ];
    let mut evidence = Vec::new();
    let mut status = Status::Pass;
    for (flag, f) in critical {
        let vals: BTreeSet<String> = parsed.iter().map(|(_, a)| f(a)).collect();
        if vals.len() > 1 {
            status = Status::Fail;
            let per: Vec<String> = parsed.iter().map(|(n, a)| format!("{n}={}", f(a))).collect();
            evidence.push(format!("CRITICAL mismatch {flag}: {}", per.join(", ")));
        } else {
            evidence.push(format!(
                "{flag}: {} on all {} servers",
                vals.into_iter().next().unwrap_or_default(),
                parsed.len()
            ));
        }
    }
    let kp: BTreeSet<bool> = parsed.iter().map(|(_, a)| a.bool("disable-kube-proxy")).collect();
    if kp.len() > 1 {
        if status == Status::Pass {
            status = Status::Warn;
        }
        evidence.push("disable-kube-proxy differs between servers (not a critical flag)".into());
    }
    evidence.extend(notes);
    let action = match status {
        Status::Fail => {
            "write the same k3s config on every server before restarting any of them (critical configuration value mismatch)"
        }
        Status::Warn => "make disable-kube-proxy the same on every server",
        _ => "",
    };
    check(id, title, status, evidence, action)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::evaluate::evaluate;
    use crate::checks::evaluate::fixtures::*;
    use crate::settings::Settings;
    use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn half_migrated_servers_disagree() {
        let mut snap = fresh();
        snap.nodes = Ok(vec![
            node(
                "cp-1",
                true,
                &["--cluster-init", "--flannel-backend", "none", "--disable-network-policy"],
                "10.42.0.0/24",
                true,
            ),
            node("cp-2", true, &["--server", "https://192.168.1.10:6443"], "10.42.1.0/24", true),
            node("worker-1", false, &[], "10.42.2.0/24", true),
        ]);
        let checks = evaluate(&snap, &Settings::default());
        let flags = by_id(&checks, "k3s-server-flags");
        assert_eq!(flags.status, Status::Fail, "{flags:?}");
        assert!(ev(flags).contains("CRITICAL mismatch flannel-backend: cp-1=none, cp-2=vxlan"), "{flags:?}");
        assert!(ev(flags).contains("CRITICAL mismatch disable-network-policy"));
        assert_eq!(by_id(&checks, "k3s-flannel").status, Status::Fail);
        assert_eq!(by_id(&checks, "k3s-network-policy").status, Status::Fail);
        assert_eq!(by_id(&checks, "k3s-flannel-annotations").status, Status::Warn);
        assert_eq!(crate::checks::exit_code(&checks), 1);
    }

    #[test]
    fn migrated_cluster_reports_stale_annotations() {
        let mut snap = fresh();
        let args = ["--flannel-backend", "none", "--disable-network-policy", "--disable-kube-proxy", "true"];
        snap.nodes = Ok(vec![
            node("cp-1", true, &args, "10.42.0.0/24", true),
            node("worker-1", false, &[], "10.42.1.0/24", true),
        ]);
        if let Ok(d) = &mut snap.daemonsets {
            d.push(DaemonSet {
                metadata: ObjectMeta {
                    labels: Some([("k8s-app".to_string(), "cilium".to_string())].into()),
                    ..meta(Some("kube-system"), "cilium")
                },
                spec: None,
                status: Some(DaemonSetStatus { number_ready: 2, desired_number_scheduled: 2, ..Default::default() }),
            });
        }
        let checks = evaluate(&snap, &Settings::default());
        assert_eq!(by_id(&checks, "k3s-flannel").status, Status::Pass);
        let ann = by_id(&checks, "k3s-flannel-annotations");
        assert_eq!(ann.status, Status::Pass);
        assert!(ev(ann).contains("STALE") && ev(ann).contains("do not mean flannel is running"), "{ann:?}");
        let kp = by_id(&checks, "k3s-kube-proxy");
        assert_eq!(kp.status, Status::Pass);
        assert!(kp.action.contains("kubeProxyReplacement"));
        let cni = by_id(&checks, "cni-daemonsets");
        assert_eq!(cni.status, Status::Pass);
        assert!(ev(cni).contains("kube-system/cilium (cilium): 2/2 ready"));
    }

    #[test]
    fn kube_proxy_off_without_cilium_fails() {
        let mut snap = fresh();
        snap.nodes = Ok(vec![node("cp-1", true, &["--disable-kube-proxy"], "10.42.0.0/24", false)]);
        assert_eq!(by_id(&evaluate(&snap, &Settings::default()), "k3s-kube-proxy").status, Status::Fail);
    }

    #[test]
    fn flannel_on_with_cilium_installed_fails() {
        let mut snap = fresh();
        if let Ok(d) = &mut snap.daemonsets {
            d.push(ds("kube-system", "cilium", 3, 3));
        }
        assert_eq!(by_id(&evaluate(&snap, &Settings::default()), "k3s-flannel").status, Status::Fail);
    }
}
