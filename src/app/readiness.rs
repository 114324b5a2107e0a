//! "Is Cilium ready everywhere?" — derived from the state, used by `cutover status` (and
//! available to the panes). Pure: the same state gives the same report.

use serde::Serialize;

use super::migration::{NodeMigration, NodeVerdict};
use super::state::{AppState, SourceState};
use crate::cluster::watch::SourceId;
use crate::hubble::proto::relay::NodeState;

/// One readiness item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// What was checked, e.g. `node homelab-w1: cilium agent`.
    pub what: String,
    /// `ready`, `not-ready` or `unknown` (could not be read).
    pub status: &'static str,
    pub detail: String,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub context: String,
    pub stage: String,
    pub ready: bool,
    pub items: Vec<Item>,
}

fn item(what: impl Into<String>, ok: Option<bool>, detail: impl Into<String>) -> Item {
    Item {
        what: what.into(),
        status: match ok {
            Some(true) => "ready",
            Some(false) => "not-ready",
            None => "unknown",
        },
        detail: detail.into(),
    }
}

/// Evaluates readiness. `relay_checked`: whether the relay was asked at all.
pub fn evaluate(state: &AppState, relay_checked: bool) -> Report {
    let mut items = Vec::new();
    for (id, src) in &state.sources {
        // PDBs matter for drains, not for readiness. Node events only sharpen the restart
        // evidence (without them the Ready transition is used, and said so per node).
        if matches!(*id, SourceId::Pdbs | SourceId::NodeEvents) {
            continue;
        }
        if let SourceState::Failing { problem, .. } = &src.state {
            // A CRD that is not installed is an answer, not a failure to read.
            if !matches!(problem, crate::cluster::watch::SourceProblem::NotInstalled(_)) {
                items.push(item(format!("read {id}"), None, problem.message().to_string()));
            }
        }
    }
    let nodes_known = matches!(state.sources.get(&SourceId::Nodes).map(|s| &s.state), Some(SourceState::Live { .. }));
    if nodes_known && state.nodes.is_empty() {
        items.push(item("nodes", Some(false), "the cluster reports no nodes"));
    }
    match &state.cilium_ds {
        Some(ds) => items.push(item(
            "daemonset/cilium",
            Some(ds.desired > 0 && ds.ready == ds.desired && ds.updated == ds.desired),
            format!("desired {} ready {} up-to-date {} available {}", ds.desired, ds.ready, ds.updated, ds.available),
        )),
        None => items.push(item("daemonset/cilium", Some(false), "not found in the Cilium namespace")),
    }
    match &state.operator {
        Some(d) => items.push(item(
            "deployment/cilium-operator",
            Some(d.ready >= d.desired && d.desired > 0),
            format!("desired {} ready {} available {}", d.desired, d.ready, d.available),
        )),
        None => items.push(item("deployment/cilium-operator", Some(false), "not found")),
    }
    let migration: std::collections::BTreeMap<String, NodeVerdict> =
        state.migration().into_iter().map(|v| (v.node.clone(), v)).collect();
    for n in state.nodes.values() {
        let name = &n.name;
        items.push(item(
            format!("node {name}: Ready"),
            n.ready,
            if n.ready == Some(true) { String::new() } else { n.ready_message.clone() },
        ));
        if let Some(v) = migration.get(name) {
            let ok = match v.state {
                NodeMigration::Unknown(_) => None,
                NodeMigration::Switched => Some(true),
                _ => Some(false),
            };
            let detail =
                if v.state.is_switched() { v.evidence.clone() } else { format!("{} — {}", v.reason, v.evidence) };
            items.push(item(format!("node {name}: CNI"), ok, detail));
        }
        let agent = state.cilium_agent(name);
        items.push(item(
            format!("node {name}: cilium agent"),
            Some(agent.is_some_and(|p| p.ready)),
            agent.map_or_else(
                || "no cilium pod on this node".to_string(),
                |p| {
                    format!(
                        "{} {} restarts {}{}",
                        p.name,
                        p.phase,
                        p.restarts,
                        if p.waiting_reason.is_empty() { String::new() } else { format!(" ({})", p.waiting_reason) }
                    )
                },
            ),
        ));
        if n.agent_not_ready_taint {
            items.push(item(format!("node {name}: taint"), Some(false), "node.cilium.io/agent-not-ready is still set"));
        }
        let cn_known =
            matches!(state.sources.get(&SourceId::CiliumNodes).map(|s| &s.state), Some(SourceState::Live { .. }));
        items.push(item(
            format!("node {name}: CiliumNode"),
            cn_known.then_some(state.cilium_nodes.contains(name)),
            if cn_known { String::new() } else { "CiliumNode CRD not readable".into() },
        ));
        if relay_checked {
            let st = state.relay.nodes.get(name);
            items.push(item(
                format!("node {name}: hubble"),
                state.relay.connected_since.map(|_| st == Some(&NodeState::NodeConnected)),
                match (state.relay.connected_since, st) {
                    (None, _) => "relay not reachable".to_string(),
                    (_, None) => "relay does not know this node".to_string(),
                    (_, Some(s)) => s.as_str_name().to_string(),
                },
            ));
        }
    }
    match state.apps.get(&state.cilium_app) {
        Some(app) => items.push(item(
            format!("application/{}", app.name),
            Some(app.sync == "Synced" && app.health == "Healthy" && app.conditions.is_empty()),
            format!(
                "sync {} health {}{}",
                if app.sync.is_empty() { "?" } else { &app.sync },
                if app.health.is_empty() { "?" } else { &app.health },
                app.conditions.first().map(|(t, m)| format!(" — {t}: {m}")).unwrap_or_default()
            ),
        )),
        None => items.push(item(format!("application/{}", state.cilium_app), Some(false), "no such Application")),
    }
    let ready = items.iter().all(|i| i.status == "ready");
    Report { context: state.context.clone(), stage: state.derive_stage(), ready, items }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::model::{EndpointSummary, K3sArgs, NodeSummary, PodRole, PodSummary, WorkloadSummary};
    use crate::app::state::Mode;
    use crate::cluster::watch::{Change, KubeEvent, SourceProblem};

    #[test]
    fn not_ready_until_every_node_has_an_agent() {
        let mut s = AppState::new(jiff::Timestamp::UNIX_EPOCH, Mode::ReadOnly, 1);
        s.on_kube(KubeEvent::Nodes(Change::Apply(NodeSummary {
            name: "a".into(),
            ready: Some(true),
            server: true,
            k3s_args: Some(K3sArgs {
                role: "server".into(),
                flannel_backend: Some("none".into()),
                disable_network_policy: true,
                ..Default::default()
            }),
            ..Default::default()
        })));
        s.on_kube(KubeEvent::CiliumNodes(Change::Apply("a".into())));
        s.on_kube(KubeEvent::CiliumEndpoints(Change::InitDone));
        let ws = WorkloadSummary { name: "x".into(), desired: 1, ready: 1, available: 1, updated: 1 };
        s.on_kube(KubeEvent::CiliumDaemonSet(Change::Apply(ws.clone())));
        s.on_kube(KubeEvent::CiliumOperator(Change::Apply(ws)));
        s.on_kube(KubeEvent::Applications(Change::Apply(crate::app::model::AppSummary {
            name: "cilium-app".into(),
            sync: "Synced".into(),
            health: "Healthy".into(),
            ..Default::default()
        })));
        let r = evaluate(&s, false);
        assert!(!r.ready);
        assert!(r.items.iter().any(|i| i.what == "node a: cilium agent" && i.status == "not-ready"));
        s.on_kube(KubeEvent::Pods(Change::Apply(PodSummary {
            name: "cilium-1".into(),
            node: "a".into(),
            ready: true,
            role: PodRole::CiliumAgent,
            host_network: true,
            ..Default::default()
        })));
        assert!(evaluate(&s, false).ready, "{:?}", evaluate(&s, false).items);
        // A workload still on its flannel address: the node has not switched.
        let web = PodSummary {
            namespace: "web".into(),
            name: "web-1".into(),
            node: "a".into(),
            phase: "Running".into(),
            ip: "10.42.0.9".into(),
            ..Default::default()
        };
        s.on_kube(KubeEvent::Pods(Change::Apply(web.clone())));
        let r = evaluate(&s, false);
        assert!(!r.ready);
        let cni = r.items.iter().find(|i| i.what == "node a: CNI").cloned();
        assert!(
            cni.as_ref().is_some_and(|i| i.status == "not-ready" && i.detail.starts_with("0/1 pods managed")),
            "{cni:?}"
        );
        assert!(r.stage.starts_with("1 · 0/1 nodes switched"), "{}", r.stage);
        s.on_kube(KubeEvent::CiliumEndpoints(Change::Apply(EndpointSummary {
            namespace: "web".into(),
            name: "web-1".into(),
            ip: "10.42.0.9".into(),
        })));
        let r = evaluate(&s, false);
        assert!(r.ready, "{:?}", r.items);
        assert_eq!(r.stage, "1 · Cilium is the CNI");
        s.on_kube(KubeEvent::Problem(SourceId::Pods, SourceProblem::Forbidden("no".into())));
        assert!(!evaluate(&s, false).ready, "an unreadable source is not 'ready'");
    }
}
