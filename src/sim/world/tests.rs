//! World tests driven on a `Store` directly (no sockets): seed invariants per scenario and
//! controller transitions on a simulated clock.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};

use super::objects::{self as o, ids, res};
use super::*;
use crate::sim::registry;

pub(super) struct TestWorld {
    pub w: World,
    pub _tmp: TempDir,
    pub repo: PathBuf,
}

pub(super) fn seeded(scenario: Scenario, seed: u64) -> TestWorld {
    let store = Store::default();
    let tmp = TempDir::new().expect("temp dir");
    let repo = tmp.path.join("repo.git");
    let mut w = World::new(store, scenario, seed);
    w.seed(&repo).expect("seed");
    w.events.enabled = true;
    w.timeline_origin = w.now;
    w.live = true;
    TestWorld { w, _tmp: tmp, repo }
}

impl TestWorld {
    /// Advances simulated time in small steps.
    pub fn run(&mut self, secs: f64) {
        let end = self.w.now + secs;
        while self.w.now < end {
            let t = self.w.now + 0.25;
            self.w.run_until_quiet(t);
        }
    }

    /// Runs until `cond` holds (at most `max` simulated seconds).
    pub fn run_until(&mut self, max: f64, mut cond: impl FnMut(&World) -> bool) -> bool {
        let end = self.w.now + max;
        while self.w.now < end {
            if cond(&self.w) {
                return true;
            }
            let t = self.w.now + 0.25;
            self.w.run_until_quiet(t);
        }
        cond(&self.w)
    }

    pub fn list(&self, id: &str) -> Vec<Arc<Value>> {
        self.w.store.list(res(id), None).0
    }

    pub fn get(&self, id: &str, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.w.store.get(res(id), ns, name).ok()
    }

    pub fn commit(&mut self, files: &[(&str, &str)], remove: &[&str], msg: &str) {
        let mut all: Vec<(String, Option<String>)> =
            files.iter().map(|(p, c)| (p.to_string(), Some(c.to_string()))).collect();
        all.extend(remove.iter().map(|p| (p.to_string(), None)));
        git::push_files(&self.repo, &all, msg).expect("commit and push");
        self.w.refresh_git_blocking().expect("read repo");
    }
}

fn node_ready(w: &World, node: &str) -> bool {
    w.store.get(res(ids::NODES), "", node).is_ok_and(|n| o::node_ready(&n))
}

fn app(w: &World, name: &str) -> Option<Arc<Value>> {
    w.store.get(res(ids::APPLICATIONS), "argocd", name).ok()
}

fn node_args(t: &TestWorld, node: &str) -> Vec<String> {
    let n = t.get(ids::NODES, "", node).expect("node");
    serde_json::from_str(o::s(&n, "/metadata/annotations/k3s.io~1node-args"))
        .expect("node-args is a JSON array of strings")
}

fn cilium_pods(t: &TestWorld) -> Vec<Arc<Value>> {
    t.list(ids::PODS)
        .into_iter()
        .filter(|p| o::labels(p).get("k8s-app").map(String::as_str) == Some("cilium"))
        .collect()
}

/// Invariants every seeded scenario must hold.
fn check_invariants(t: &TestWorld) {
    let nodes = t.list(ids::NODES);
    let pods = t.list(ids::PODS);
    assert!(pods.len() > 40, "homelab has its workloads: {}", pods.len());
    let uids: BTreeSet<String> = t.w.store.snapshot().iter().map(|(_, v)| o::uid(v).to_string()).collect();
    for (_, obj) in t.w.store.snapshot() {
        for r in obj.pointer("/metadata/ownerReferences").and_then(Value::as_array).cloned().unwrap_or_default() {
            if registry::by_kind(o::s(&r, "/apiVersion"), o::s(&r, "/kind")).is_some() {
                assert!(
                    uids.contains(o::s(&r, "/uid")),
                    "{} {} owner {} missing",
                    o::s(&obj, "/kind"),
                    o::name(&obj),
                    o::s(&r, "/name")
                );
            }
        }
    }
    for p in &pods {
        let node = o::s(p, "/spec/nodeName");
        let ip = o::s(p, "/status/podIP");
        if node.is_empty() || ip.is_empty() || o::bool_at(p, "/spec/hostNetwork") {
            continue;
        }
        let n = nodes.iter().find(|n| o::name(n) == node).expect("pod's node exists");
        let cidr = o::s(n, "/spec/podCIDR");
        let prefix = cidr.trim_end_matches("0/24");
        assert!(ip.starts_with(prefix), "pod {} ip {ip} outside {cidr}", o::name(p));
        assert!(o::controller_of(p).is_some() || o::name(p) == "netshoot", "{} has a controller", o::name(p));
    }
    for pdb in t.list(ids::PDBS) {
        let sel = pdb.pointer("/spec/selector").cloned().unwrap_or(json!({}));
        let n = pods
            .iter()
            .filter(|p| o::namespace(p) == o::namespace(&pdb) && o::selector_matches(&sel, &o::labels(p)))
            .count();
        assert!(n > 0, "PDB {} selects no pods", o::name(&pdb));
        assert!(pdb.pointer("/status/expectedPods").is_some());
    }
    for n in &nodes {
        let args = node_args(t, o::name(n));
        assert!(args[0] == "server" || args[0] == "agent");
        assert!(!args.iter().any(|a| a.contains('=')), "flags are split: {args:?}");
        assert_eq!(o::s(n, "/spec/providerID"), format!("k3s://{}", o::name(n)));
        assert_eq!(o::s(n, "/status/nodeInfo/kubeletVersion"), "v1.32.6+k3s1");
        assert!(o::s(n, "/metadata/annotations/flannel.alpha.coreos.com~1backend-type") == "vxlan");
    }
    // Every Service has a ClusterIP inside 10.43.0.0/16.
    for s in t.list(ids::SERVICES) {
        let ip = o::s(&s, "/spec/clusterIP");
        assert!(ip == "None" || ip.starts_with("10.43."), "{} {ip}", o::name(&s));
    }
    for a in t.list(ids::APPLICATIONS) {
        assert!(a.get("operation").is_none());
        assert_eq!(o::s(&a, "/status/sync/status"), "Synced", "{} {:#}", o::name(&a), a["status"]["conditions"]);
    }
}

#[test]
fn fresh_seed_is_the_flannel_homelab() {
    let t = seeded(Scenario::builtin(BaseScenario::Fresh), 1);
    check_invariants(&t);
    assert!(cilium_pods(&t).is_empty());
    let args = node_args(&t, "homelab-cp1");
    assert_eq!(&args[..3], ["server", "--cluster-init", "true"]);
    assert!(!args.contains(&"--flannel-backend".to_string()));
    assert_eq!(node_args(&t, "homelab-w1"), ["agent"]);
    for n in ["homelab-cp1", "homelab-w1", "homelab-w2"] {
        assert!(node_ready(&t.w, n), "{n} Ready");
    }
    let ready = t.list(ids::PODS).iter().filter(|p| o::pod_ready(p)).count();
    assert_eq!(ready, t.list(ids::PODS).len(), "every pod Ready");
    for a in [
        "root",
        "metallb-app",
        "longhorn-app",
        "cert-manager-app",
        "haproxy-app",
        "jellyfin-app",
        "home-assistant-app",
        "blog-app",
    ] {
        let app = app(&t.w, a).unwrap_or_else(|| panic!("{a}"));
        assert_eq!(o::s(&app, "/status/health/status"), "Healthy", "{a}: {:#}", app["status"]);
        assert_eq!(o::s(&app, "/status/operationState/phase"), "Succeeded", "{a}");
    }
    assert!(app(&t.w, "cilium-app").is_none());
    assert!(t.get(ids::CRDS, "", "ciliumnodes.cilium.io").is_none());
    let lb = t.get(ids::SERVICES, "haproxy-ingress", "haproxy-ingress").expect("haproxy svc");
    assert_eq!(o::s(&lb, "/status/loadBalancer/ingress/0/ip"), "192.168.20.240");
    assert_eq!(o::s(&t.get(ids::SERVICES, "kube-system", "kube-dns").expect("dns"), "/spec/clusterIP"), "10.43.0.10");
}

#[test]
#[ignore = "prints a seeded world for manual inspection"]
fn dump_world() {
    let base = match std::env::var("SIM_BASE").as_deref() {
        Ok("cilium-installed") => BaseScenario::CiliumInstalled,
        Ok("migrated") => BaseScenario::Migrated,
        Ok("kpr") => BaseScenario::Kpr,
        _ => BaseScenario::Fresh,
    };
    let t = seeded(Scenario::builtin(base), 1);
    let what = std::env::var("SIM_DUMP").unwrap_or_default();
    for (k, v) in t.w.store.snapshot() {
        if what.is_empty() {
            println!("{} {}/{} {}", k.resource, k.namespace, k.name, o::s(&v, "/status/phase"));
        } else if format!("{}/{}/{}", k.resource, k.namespace, k.name).contains(&what) {
            println!("{}", serde_json::to_string_pretty(&*v).unwrap_or_default());
        }
    }
    println!("sim time {}", t.w.now);
}

fn commit_cilium(t: &mut TestWorld, values: &str) {
    let repo_url = t.w.scenario.git.repo_url.clone();
    let app =
        serde_saphyr::to_string(&cilium_app_manifest(&repo_url, "1.16.4", "platform/networking/cilium/values.yaml"))
            .expect("yaml");
    t.commit(
        &[("platform/gitops/argocd/apps/cilium-app.yaml", &app), ("platform/networking/cilium/values.yaml", values)],
        &[],
        "Add Cilium",
    );
}

fn has_taint(w: &World, node: &str, key: &str) -> bool {
    w.store
        .get(res(ids::NODES), "", node)
        .ok()
        .and_then(|n| n.pointer("/spec/taints").and_then(Value::as_array).cloned())
        .is_some_and(|ts| ts.iter().any(|t| o::s(t, "/key") == key))
}

#[test]
fn committing_cilium_brings_agents_up_node_by_node() {
    let mut t = seeded(Scenario::builtin(BaseScenario::Fresh), 2);
    commit_cilium(&mut t, STAGE1_VALUES);
    assert!(t.run_until(20.0, |w| app(w, "cilium-app").is_some()), "root created cilium-app from the new file");
    let nodes = ["homelab-cp1", "homelab-w1", "homelab-w2"];
    let mut ready_at: BTreeMap<String, f64> = BTreeMap::new();
    let mut tainted: BTreeSet<String> = BTreeSet::new();
    let done = t.run_until(120.0, |w| {
        let ready = cilium_ready_nodes(&w.store);
        for n in nodes {
            if ready.contains(n) {
                ready_at.entry(n.to_string()).or_insert(w.now);
            } else if has_taint(w, n, cilium::AGENT_NOT_READY_TAINT) {
                tainted.insert(n.to_string());
            }
        }
        ready.len() == 3
    });
    assert!(done, "all agents Ready");
    let times: BTreeSet<u64> = ready_at.values().map(|t| (*t * 4.0) as u64).collect();
    assert_eq!(times.len(), 3, "node by node: {ready_at:?}");
    assert!(!tainted.is_empty(), "not-ready taint seen while agents started");
    assert!(t.run_until(10.0, |w| nodes.iter().all(|n| !has_taint(w, n, cilium::AGENT_NOT_READY_TAINT))));
    assert_eq!(t.list(ids::CILIUMNODES).len(), 3);
    assert!(t.run_until(30.0, |w| app(w, "cilium-app").is_some_and(|a| o::s(&a, "/status/health/status")
        == "Healthy"
        && o::s(&a, "/status/sync/status") == "Synced")));
    let cm = t.get(ids::CONFIGMAPS, "kube-system", "cilium-config").expect("cilium-config");
    assert_eq!(o::s(&cm, "/data/routing-mode"), "native");
    assert_eq!(o::s(&cm, "/data/kube-proxy-replacement"), "false");
    let relay = t.get(ids::SERVICES, "kube-system", "hubble-relay").expect("relay svc");
    assert_eq!(relay["spec"]["ports"][0]["targetPort"], "grpc");
    // Embedded flannel still owns containerd's CNI dir: Cilium's conf lands where nobody reads it.
    let rt = t.w.nodes["homelab-w1"].runtime();
    assert_eq!(rt.containerd_cni_conf_dir, k3s::K3S_CNI_CONF_DIR);
    assert!(t.list(ids::CILIUMENDPOINTS).is_empty(), "no pod got a Cilium endpoint next to flannel");
    let topo = t.w.topology();
    assert_eq!(topo.cluster_name, "homelab");
    assert_eq!(topo.cilium_version, "1.16.4");
    // The relay's traffic follows the ConfigMap's routing mode (no overlay in native routing).
    assert_eq!(topo.routing, crate::sim::RoutingMode::Native);
    assert!(topo.nodes.iter().all(|n| n.cilium_ready && n.ready));
}

#[test]
fn plan_values_fail_to_render() {
    let mut t = seeded(Scenario::builtin(BaseScenario::Fresh), 3);
    let plan = include_str!("../../../tests/fixtures/plan-values.yaml");
    commit_cilium(&mut t, plan);
    assert!(t.run_until(30.0, |w| app(w, "cilium-app").is_some_and(|a| o::s(&a, "/status/sync/status") == "Unknown")));
    let a = app(&t.w, "cilium-app").expect("app");
    let cond = &a["status"]["conditions"][0];
    assert_eq!(cond["type"], "ComparisonError");
    assert!(o::s(cond, "/message").contains("helm template"), "{cond}");
    t.run(10.0);
    assert!(t.get(ids::DAEMONSETS, "kube-system", "cilium").is_none(), "nothing applied");
}

#[test]
fn flannel_none_without_cilium_takes_the_node_down() {
    let mut t = seeded(Scenario::builtin(BaseScenario::Fresh), 4);
    let before_agent = node_args(&t, "homelab-w1");
    let pod_on_cp1 = t
        .list(ids::PODS)
        .into_iter()
        .find(|p| o::s(p, "/spec/nodeName") == "homelab-cp1" && !o::bool_at(p, "/spec/hostNetwork"))
        .expect("a pod network pod on cp1");
    let cfg =
        format!("{}flannel-backend: none\ndisable-network-policy: true\n", t.w.nodes["homelab-cp1"].file.to_yaml());
    t.w.apply_node_op("homelab-cp1", &NodeOp::WriteK3sConfig { config: cfg }).expect("write");
    let line = t.w.apply_node_op("homelab-cp1", &NodeOp::RestartK3s).expect("restart");
    assert!(line.contains("flannel none"), "{line}");
    assert!(
        t.w.outbox.iter().any(|f| matches!(f, Fault::ApiDown { .. })),
        "the only server restarting takes the API away"
    );
    let args = node_args(&t, "homelab-cp1");
    let i = args.iter().position(|a| a == "--flannel-backend").expect("flag present");
    assert_eq!(args[i + 1], "none");
    t.run(30.0);
    let n = t.get(ids::NODES, "", "homelab-cp1").expect("node");
    let ready = o::condition(&n, "/status/conditions", "Ready").expect("Ready");
    assert_eq!(ready["status"], "False");
    assert!(o::s(ready, "/message").contains("cni plugin not initialized"), "{ready}");
    assert!(node_ready(&t.w, "homelab-w1"), "agents keep running with their flannel");
    assert_eq!(node_args(&t, "homelab-w1"), before_agent, "agent node-args unchanged");
    // Pods created under flannel keep running with their IP; containers restarted once.
    let p = t.get(ids::PODS, o::namespace(&pod_on_cp1), o::name(&pod_on_cp1)).expect("pod still there");
    assert_eq!(o::s(&p, "/status/podIP"), o::s(&pod_on_cp1, "/status/podIP"));
    assert_eq!(p["status"]["containerStatuses"][0]["restartCount"], 1);
    // A new pod there cannot get a network.
    let mut pod = json!({"metadata": {"name": "probe", "namespace": "default"}, "spec": {"nodeName": "homelab-cp1", "containers": [{"name": "c", "image": "busybox"}]}});
    t.w.pod_defaults(&mut pod["spec"], false);
    t.w.store.create(res(ids::PODS), "default", pod).expect("create");
    t.run(10.0);
    let probe = t.get(ids::PODS, "default", "probe").expect("probe");
    assert_eq!(o::s(&probe, "/status/phase"), "Pending");
    assert_eq!(o::s(&probe, "/status/containerStatuses/0/state/waiting/reason"), "ContainerCreating");
    let evs = t.list(ids::EVENTS);
    assert!(evs.iter().any(|e| o::s(e, "/reason") == "NetworkNotReady" && o::s(e, "/involvedObject/name") == "probe"));
    assert!(evs.iter().any(|e| o::s(e, "/reason") == "Starting" && o::s(e, "/involvedObject/name") == "homelab-cp1"));
    let rt = t.w.nodes["homelab-cp1"].runtime();
    assert!(rt.flannel_leftovers && !rt.flannel_running);
}

#[test]
fn mismatched_critical_flags_keep_a_server_down() {
    let mut t = seeded(Scenario::load("ha-servers").expect("scenario"), 5);
    let cfg2 =
        format!("{}flannel-backend: none\ndisable-network-policy: true\n", t.w.nodes["homelab-cp2"].file.to_yaml());
    t.w.apply_node_op("homelab-cp2", &NodeOp::WriteK3sConfig { config: cfg2 }).expect("write");
    let err = t.w.apply_node_op("homelab-cp2", &NodeOp::RestartK3s).expect_err("k3s refuses to start");
    assert!(err.contains("critical configuration value mismatch between servers"), "{err}");
    assert!(err.contains("flannel-backend"), "{err}");
    assert!(t.w.outbox.is_empty(), "other servers keep the API up");
    t.run(timing::NODE_MONITOR_GRACE + 5.0);
    let n = t.get(ids::NODES, "", "homelab-cp2").expect("node");
    assert_eq!(o::condition_status(&n, "/status/conditions", "Ready"), "Unknown");
    assert_eq!(t.w.nodes["homelab-cp2"].runtime().state, "failed");
    assert!(t.list(ids::EVENTS).iter().any(|e| o::s(e, "/message").contains("critical configuration value mismatch")));
    // Old args still on the Node: the failed start never registered.
    assert!(!node_args(&t, "homelab-cp2").contains(&"none".to_string()));
    // Fix: the server it joins through gets the flags first; systemd's retry then succeeds.
    let cfg1 =
        format!("{}flannel-backend: none\ndisable-network-policy: true\n", t.w.nodes["homelab-cp1"].file.to_yaml());
    t.w.apply_node_op("homelab-cp1", &NodeOp::WriteK3sConfig { config: cfg1 }).expect("write");
    t.w.apply_node_op("homelab-cp1", &NodeOp::RestartK3s).expect("cp1 restarts");
    assert!(t.run_until(timing::SYSTEMD_RESTART * 3.0, |w| w.nodes["homelab-cp2"].runtime().state != "failed"));
    assert!(node_args(&t, "homelab-cp2").contains(&"none".to_string()));
}

#[test]
fn reboot_clears_leftovers_and_gives_new_sandboxes() {
    let mut t = seeded(Scenario::builtin(BaseScenario::CiliumInstalled), 6);
    let rt = t.w.nodes["homelab-w1"].runtime();
    assert!(rt.flannel_leftovers && !rt.flannel_running && rt.kube_proxy_running);
    let pods_before: BTreeMap<String, String> = t
        .list(ids::PODS)
        .iter()
        .filter(|p| o::s(p, "/spec/nodeName") == "homelab-w1" && !o::bool_at(p, "/spec/hostNetwork"))
        .map(|p| (o::uid(p).to_string(), o::s(p, "/status/podIP").to_string()))
        .collect();
    assert!(!pods_before.is_empty());
    let boot =
        t.get(ids::NODES, "", "homelab-w1").map(|n| o::s(&n, "/status/nodeInfo/bootID").to_string()).expect("node");
    t.w.apply_node_op("homelab-w1", &NodeOp::Reboot).expect("reboot");
    assert_eq!(t.w.nodes["homelab-w1"].runtime().state, "rebooting");
    assert!(t.run_until(120.0, |w| w.nodes["homelab-w1"].runtime().state == "up" && node_ready(w, "homelab-w1")));
    let rt = t.w.nodes["homelab-w1"].runtime();
    assert!(!rt.flannel_leftovers && !rt.kube_proxy_leftovers);
    assert_ne!(
        t.get(ids::NODES, "", "homelab-w1").map(|n| o::s(&n, "/status/nodeInfo/bootID").to_string()).expect("node"),
        boot
    );
    assert!(t.run_until(60.0, |w| {
        w.store
            .list(res(ids::PODS), None)
            .0
            .iter()
            .filter(|p| pods_before.contains_key(o::uid(p)))
            .all(|p| o::pod_ready(p))
    }));
    // Same pods, new sandboxes: Cilium gave them endpoints now.
    t.run(2.0);
    let ceps: BTreeSet<String> = t.list(ids::CILIUMENDPOINTS).iter().map(|c| o::name(c).to_string()).collect();
    for p in t.list(ids::PODS).iter().filter(|p| pods_before.contains_key(o::uid(p))) {
        assert!(ceps.contains(o::name(p)), "{} has a CiliumEndpoint", o::name(p));
        assert!(p["status"]["containerStatuses"][0]["restartCount"].as_u64().unwrap_or(0) >= 1);
    }
    assert!(t.list(ids::EVENTS).iter().any(|e| o::s(e, "/reason") == "Rebooted"));
}

#[test]
#[ignore = "timing probe, prints the cost of one controller step"]
fn step_cost() {
    let mut t = seeded(Scenario::builtin(BaseScenario::CiliumInstalled), 1);
    let n = 200;
    let start = std::time::Instant::now();
    for _ in 0..n {
        let now = t.w.now + 0.25;
        t.w.step(now);
    }
    println!("objects {} step {:?}", t.w.store.snapshot().len(), start.elapsed() / n);
    type Part = (&'static str, fn(&mut World));
    let parts: [Part; 12] = [
        ("k3s", |w| w.k3s_tick()),
        ("cilium", |w| w.cilium_tick()),
        ("gc", |w| w.gc_tick()),
        ("workloads", |w| w.workloads_tick()),
        ("taints", |w| w.taint_eviction_tick()),
        ("sched", |w| w.schedule_tick()),
        ("kubelet", |w| w.kubelet_tick()),
        ("services", |w| w.services_tick()),
        ("pdb", |w| w.pdb_tick()),
        ("argo", |w| w.argo_tick()),
        ("topology", |w| {
            let _ = w.topology();
        }),
        ("snapshot", |w| {
            let _ = w.store.snapshot();
        }),
    ];
    for (name, f) in parts {
        let start = std::time::Instant::now();
        for _ in 0..50 {
            f(&mut t.w);
        }
        println!("{name:10} {:?}", start.elapsed() / 50);
    }
}

fn mutate_app(t: &TestWorld, name: &str, f: impl FnOnce(&mut Value)) {
    t.w.store
        .mutate(res(ids::APPLICATIONS), "argocd", name, |a| {
            f(a);
            Ok(())
        })
        .expect("app exists");
}

#[test]
fn argo_operation_refresh_and_self_heal() {
    let mut t = seeded(Scenario::builtin(BaseScenario::Fresh), 8);
    let before = app(&t.w, "blog-app").expect("app");
    let history = before["status"]["history"].as_array().map(Vec::len).unwrap_or(0);
    mutate_app(&t, "blog-app", |a| {
        a["operation"] = json!({"initiatedBy": {"username": "cockpit"}, "sync": {"syncStrategy": {"hook": {}}}});
        a["metadata"]["annotations"] = json!({"argocd.argoproj.io/refresh": "hard"});
    });
    t.run(0.25);
    let a = app(&t.w, "blog-app").expect("app");
    assert!(a.get("operation").is_none(), "controller consumed the operation");
    assert_eq!(o::s(&a, "/status/operationState/phase"), "Running");
    assert_eq!(o::s(&a, "/status/operationState/operation/initiatedBy/username"), "cockpit");
    assert!(o::s(&a, "/metadata/annotations/argocd.argoproj.io~1refresh").is_empty(), "refresh annotation removed");
    assert!(t.run_until(10.0, |w| {
        app(w, "blog-app").is_some_and(|a| o::s(&a, "/status/operationState/phase") == "Succeeded")
    }));
    let a = app(&t.w, "blog-app").expect("app");
    assert_eq!(o::s(&a, "/status/operationState/message"), "successfully synced (all tasks run)");
    assert!(
        a["status"]["operationState"]["syncResult"]["resources"]
            .as_array()
            .is_some_and(|r| r.iter().all(|x| o::s(x, "/message").ends_with("unchanged")))
    );
    assert!(a.pointer("/status/operationState/finishedAt").is_some());
    assert_eq!(a["status"]["history"].as_array().map(Vec::len).unwrap_or(0), history + 1);

    // Drift: selfHeal puts a deleted Service back.
    t.w.store.delete(res(ids::SERVICES), "blog", "blog", None).expect("delete");
    t.run(0.5);
    assert_eq!(o::s(&app(&t.w, "blog-app").expect("app"), "/status/sync/status"), "OutOfSync");
    assert!(
        t.run_until(20.0, |w| w.store.get(res(ids::SERVICES), "blog", "blog").is_ok()),
        "selfHeal re-created the Service"
    );

    // Turning off auto-sync on a child is reverted by the root (app-of-apps caveat)…
    mutate_app(&t, "blog-app", |a| a["spec"]["syncPolicy"]["automated"] = Value::Null);
    assert!(t.run_until(20.0, |w| {
        app(w, "blog-app").is_some_and(|a| a.pointer("/spec/syncPolicy/automated").is_some_and(Value::is_object))
    }));
    // …unless the root is frozen first. Then drift stays OutOfSync.
    mutate_app(&t, "root", |a| a["spec"]["syncPolicy"]["automated"] = Value::Null);
    mutate_app(&t, "blog-app", |a| a["spec"]["syncPolicy"]["automated"] = Value::Null);
    t.run(2.0);
    t.w.store.delete(res(ids::SERVICES), "blog", "blog", None).expect("delete");
    t.run(15.0);
    assert!(t.w.store.get(res(ids::SERVICES), "blog", "blog").is_err(), "no auto-sync without syncPolicy.automated");
    assert_eq!(o::s(&app(&t.w, "blog-app").expect("app"), "/status/sync/status"), "OutOfSync");
    assert_eq!(
        o::s(&app(&t.w, "root").expect("root"), "/status/sync/status"),
        "OutOfSync",
        "root sees the child differs from git"
    );
}

#[test]
fn removing_cilium_app_from_git_prunes_cilium() {
    let mut t = seeded(Scenario::builtin(BaseScenario::Migrated), 9);
    assert_eq!(cilium_pods(&t).len(), 3);
    t.commit(&[], &["platform/gitops/argocd/apps/cilium-app.yaml"], "Remove cilium");
    assert!(t.run_until(30.0, |w| app(w, "cilium-app").is_none()), "root pruned the child, its finalizer ran");
    assert!(t.get(ids::DAEMONSETS, "kube-system", "cilium").is_none());
    assert!(t.run_until(30.0, |_| true));
    t.run(10.0);
    assert!(cilium_pods(&t).is_empty(), "agents gone");
    // Existing pods keep their sandboxes; a new pod cannot get a network.
    let mut pod = json!({"metadata": {"name": "probe", "namespace": "default"}, "spec": {"nodeName": "homelab-w1", "containers": [{"name": "c", "image": "busybox"}]}});
    t.w.pod_defaults(&mut pod["spec"], false);
    t.w.store.create(res(ids::PODS), "default", pod).expect("create");
    t.run(5.0);
    let probe = t.get(ids::PODS, "default", "probe").expect("probe");
    assert_eq!(o::s(&probe, "/status/phase"), "Pending");
    assert!(t.list(ids::EVENTS).iter().any(|e| o::s(e, "/involvedObject/name") == "probe"
        && o::s(e, "/message").contains("unable to connect to Cilium daemon")));
    let topo = t.w.topology();
    assert!(topo.nodes.iter().all(|n| !n.cilium_ready));
}

#[test]
fn agent_crash_findings_crash_loop_until_fixed() {
    let mut t = seeded(Scenario::builtin(BaseScenario::CiliumInstalled), 10);
    let msg = "BPF masquerade requires NodePort (--enable-node-port=\"true\"); the agent exits at start";
    t.w.cilium.lint_crash = Some(msg.into());
    let agent = cilium_pods(&t).into_iter().find(|p| o::s(p, "/spec/nodeName") == "homelab-w2").expect("agent");
    t.w.store.delete(res(ids::PODS), "kube-system", o::name(&agent), None).expect("delete");
    let crashing = |w: &World| {
        w.store.list(res(ids::PODS), Some("kube-system")).0.into_iter().find(|p| {
            o::s(p, "/spec/nodeName") == "homelab-w2"
                && o::s(p, "/status/containerStatuses/0/state/waiting/reason") == "CrashLoopBackOff"
        })
    };
    assert!(t.run_until(30.0, |w| crashing(w).is_some()));
    let p = crashing(&t.w).expect("crashing pod");
    assert_eq!(o::s(&p, "/status/containerStatuses/0/lastState/terminated/message"), msg);
    assert!(
        o::s(&p, "/status/containerStatuses/0/state/waiting/message")
            .starts_with("back-off 10s restarting failed container=cilium-agent")
    );
    assert!(
        t.run_until(10.0, |w| app(w, "cilium-app").is_some_and(|a| o::s(&a, "/status/health/status") == "Degraded"))
    );
    assert!(has_taint(&t.w, "homelab-w2", cilium::AGENT_NOT_READY_TAINT));
    // A fixed config is read at the next restart.
    t.w.cilium.lint_crash = None;
    assert!(t.run_until(60.0, |w| cilium_ready_nodes(&w.store).contains("homelab-w2")));
    let p = t
        .list(ids::PODS)
        .into_iter()
        .find(|p| {
            o::s(p, "/spec/nodeName") == "homelab-w2"
                && o::labels(p).get("k8s-app").map(String::as_str) == Some("cilium")
        })
        .expect("agent");
    assert!(p["status"]["containerStatuses"][0]["restartCount"].as_u64().unwrap_or(0) >= 1);
}

#[test]
fn pdbs_longhorn_and_drain() {
    let mut t = seeded(Scenario::builtin(BaseScenario::Fresh), 11);
    let blog = t.get(ids::PDBS, "blog", "blog").expect("pdb");
    assert_eq!(blog["status"]["currentHealthy"], 2);
    assert_eq!(blog["status"]["desiredHealthy"], 1);
    assert_eq!(blog["status"]["disruptionsAllowed"], 1);
    assert_eq!(blog["status"]["expectedPods"], 2);
    t.w.faults.apply(&Fault::PdbBlocking { namespace: "blog".into(), name: "blog".into() }, 1.0);
    t.run(0.5);
    assert_eq!(t.get(ids::PDBS, "blog", "blog").expect("pdb")["status"]["disruptionsAllowed"], 0);
    // Longhorn's instance-manager PDB on a node goes away once the node is cordoned.
    let im = pdb::im_name("homelab-w1");
    assert_eq!(t.get(ids::PDBS, "longhorn-system", &im).expect("im pdb")["status"]["disruptionsAllowed"], 0);
    t.w.store
        .mutate(res(ids::NODES), "", "homelab-w1", |n| {
            n["spec"]["unschedulable"] = json!(true);
            Ok(())
        })
        .expect("cordon");
    assert!(t.run_until(5.0, |w| w.store.get(res(ids::PDBS), "longhorn-system", &im).is_err()));
    assert!(has_taint(&t.w, "homelab-w1", "node.kubernetes.io/unschedulable"));
    // Evict (delete) the ReplicaSet pods of w1: replacements land elsewhere.
    let victims: Vec<Arc<Value>> = t
        .list(ids::PODS)
        .into_iter()
        .filter(|p| {
            o::s(p, "/spec/nodeName") == "homelab-w1" && o::controller_of(p).is_some_and(|c| c.kind == "ReplicaSet")
        })
        .collect();
    assert!(!victims.is_empty());
    for v in &victims {
        t.w.store.delete(res(ids::PODS), o::namespace(v), o::name(v), None).expect("evict");
    }
    assert!(
        t.run_until(30.0, |w| {
            let pods = w.store.list(res(ids::PODS), None).0;
            victims.iter().all(|v| !pods.iter().any(|p| o::uid(p) == o::uid(v)))
        }),
        "evicted pods terminate"
    );
    t.run(10.0);
    for p in t.list(ids::PODS).iter().filter(|p| o::controller_of(p).is_some_and(|c| c.kind == "ReplicaSet")) {
        assert_ne!(o::s(p, "/spec/nodeName"), "homelab-w1", "{} scheduled onto a cordoned node", o::name(p));
        assert!(o::pod_ready(p), "{} Ready", o::name(p));
    }
    t.w.store
        .mutate(res(ids::NODES), "", "homelab-w1", |n| {
            n["spec"]["unschedulable"] = json!(false);
            Ok(())
        })
        .expect("uncordon");
    assert!(t.run_until(5.0, |w| w.store.get(res(ids::PDBS), "longhorn-system", &im).is_ok()));
    assert!(!has_taint(&t.w, "homelab-w1", "node.kubernetes.io/unschedulable"));
}

#[test]
fn operator_anti_affinity_leaves_extra_replicas_pending() {
    let mut t = seeded(Scenario::builtin(BaseScenario::CiliumInstalled), 12);
    // The operator tolerates every taint (cordon included): only anti-affinity limits it.
    let values = STAGE1_VALUES.replace("operator:\n  replicas: 2", "operator:\n  replicas: 4");
    t.commit(&[("platform/networking/cilium/values.yaml", &values)], &[], "Four operators");
    let pending = |w: &World| {
        w.store.list(res(ids::PODS), Some("kube-system")).0.into_iter().find(|p| {
            o::labels(p).get("io.cilium/app").map(String::as_str) == Some("operator")
                && o::s(p, "/spec/nodeName").is_empty()
        })
    };
    assert!(t.run_until(30.0, |w| pending(w).is_some_and(|p| o::condition_status(
        &p,
        "/status/conditions",
        "PodScheduled"
    ) == "False")));
    let p = pending(&t.w).expect("pending");
    let msg = o::s(o::condition(&p, "/status/conditions", "PodScheduled").expect("cond"), "/message").to_string();
    assert!(msg.starts_with("0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules"), "{msg}");
    assert_eq!(o::s(&p, "/status/phase"), "Pending");
    assert!(
        t.run_until(10.0, |w| app(w, "cilium-app").is_some_and(|a| o::s(&a, "/status/health/status") == "Progressing"))
    );
    assert!(t.list(ids::EVENTS).iter().any(|e| o::s(e, "/reason") == "FailedScheduling"));
}

fn fingerprint(t: &TestWorld) -> Vec<String> {
    t.w.store
        .snapshot()
        .iter()
        .filter(|(k, _)| k.resource != ids::EVENTS && k.resource != ids::LEASES)
        .map(|(k, v)| {
            format!(
                "{} {}/{} {} {} {}",
                k.resource,
                k.namespace,
                k.name,
                o::uid(v),
                o::s(v, "/status/podIP"),
                o::s(v, "/spec/clusterIP")
            )
        })
        .collect()
}

#[test]
fn same_seed_same_world() {
    let a = seeded(Scenario::builtin(BaseScenario::CiliumInstalled), 42);
    let b = seeded(Scenario::builtin(BaseScenario::CiliumInstalled), 42);
    assert_eq!(fingerprint(&a), fingerprint(&b));
    let c = seeded(Scenario::builtin(BaseScenario::CiliumInstalled), 43);
    assert_ne!(fingerprint(&a), fingerprint(&c), "another seed gives other IPs");
    assert_eq!(git::head(&a.repo, "main").ok(), git::head(&b.repo, "main").ok(), "same commits");
}

#[test]
fn migrated_and_kpr_worlds() {
    let t = seeded(Scenario::builtin(BaseScenario::Migrated), 13);
    check_invariants(&t);
    let ceps: BTreeSet<String> =
        t.list(ids::CILIUMENDPOINTS).iter().map(|c| format!("{}/{}", o::namespace(c), o::name(c))).collect();
    for p in t.list(ids::PODS).iter().filter(|p| !o::bool_at(p, "/spec/hostNetwork")) {
        assert!(ceps.contains(&format!("{}/{}", o::namespace(p), o::name(p))), "{} is a Cilium endpoint", o::name(p));
    }
    for r in t.w.nodes.values().map(k3s::K3sNode::runtime) {
        assert!(!r.flannel_running && !r.flannel_leftovers && r.kube_proxy_running, "{r:?}");
    }
    let topo = t.w.topology();
    for p in topo.pods.iter().filter(|p| !p.host_network) {
        assert!(p.identity >= 256 && p.endpoint_id > 0, "{p:?}");
    }
    assert!(topo.services.iter().any(|s| s.name == "hubble-relay" && s.ports.contains(&(80, "TCP".into()))));

    let k = seeded(Scenario::builtin(BaseScenario::Kpr), 13);
    check_invariants(&k);
    let args = node_args(&k, "homelab-cp1");
    let i = args.iter().position(|a| a == "--disable-kube-proxy").expect("flag");
    assert_eq!(args[i + 1], "true");
    assert_eq!(
        o::s(&k.get(ids::CONFIGMAPS, "kube-system", "cilium-config").expect("cm"), "/data/kube-proxy-replacement"),
        "true"
    );
    assert_eq!(cilium_ready_nodes(&k.w.store).len(), 3);
    assert!(k.w.nodes.values().all(|n| !n.runtime().kube_proxy_running));
}

#[test]
fn kpr_without_service_host_crashes_agents_on_nodes_without_kube_proxy() {
    let mut t = seeded(Scenario::builtin(BaseScenario::Kpr), 14);
    let values = stage2_values().replace("k8sServiceHost: 127.0.0.1\nk8sServicePort: 6444\n", "");
    t.commit(&[("platform/networking/cilium/values.yaml", &values)], &[], "Drop k8sServiceHost");
    // The DaemonSet template changes (env), so agents roll and the new ones cannot reach the API.
    assert!(t.run_until(60.0, |w| {
        w.store.list(res(ids::PODS), Some("kube-system")).0.iter().any(|p| {
            o::s(p, "/status/containerStatuses/0/lastState/terminated/message")
                .contains("Unable to contact k8s api-server")
        })
    }));
}

#[test]
fn node_not_ready_fault_freezes_the_node() {
    let mut t = seeded(Scenario::builtin(BaseScenario::Fresh), 15);
    t.w.faults.apply(&Fault::NodeNotReady { node: "homelab-w2".into() }, 1.0);
    t.run(1.0);
    let n = t.get(ids::NODES, "", "homelab-w2").expect("node");
    let ready = o::condition(&n, "/status/conditions", "Ready").expect("Ready");
    assert_eq!(ready["status"], "Unknown");
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert!(has_taint(&t.w, "homelab-w2", "node.kubernetes.io/unreachable"));
    // Pods there are marked not Ready by the node controller but keep running.
    let on_w2: Vec<Arc<Value>> =
        t.list(ids::PODS).into_iter().filter(|p| o::s(p, "/spec/nodeName") == "homelab-w2").collect();
    assert!(on_w2.iter().all(|p| !o::pod_ready(p) && o::s(p, "/status/phase") == "Running"));
}

#[test]
fn scenario_file_faults_fire_on_time() {
    let mut t = seeded(Scenario::load("flaky-homelab").expect("scenario"), 16);
    t.run(1.0);
    assert_eq!(t.get(ids::PDBS, "blog", "blog").expect("pdb")["status"]["disruptionsAllowed"], 0, "pdb-blocking at 0");
    assert!(
        t.w.outbox.iter().any(|f| matches!(f, Fault::PdbBlocking { .. })),
        "scenario faults reach the shared state"
    );
    assert!(node_ready(&t.w, "homelab-w2"));
    assert!(t.run_until(40.0, |w| !node_ready(w, "homelab-w2")), "node-not-ready at 30 s");
    // A stuck pod never finishes terminating.
    t.w.store.delete(res(ids::PODS), "default", "netshoot", None).expect("delete");
    t.run(10.0);
    assert!(t.get(ids::PODS, "default", "netshoot").is_some_and(|p| o::is_terminating(&p)));
}

#[test]
fn helm_made_hubble_certs_churn_on_hard_refresh() {
    let mut t = seeded(Scenario::builtin(BaseScenario::CiliumInstalled), 17);
    let values = STAGE1_VALUES.replace("  tls:\n    auto:\n      method: cronJob\n", "");
    t.commit(&[("platform/networking/cilium/values.yaml", &values)], &[], "Hubble TLS by Helm");
    assert!(t.run_until(30.0, |w| w.store.get(res("secrets"), "kube-system", "hubble-server-certs").is_ok()));
    assert!(t.run_until(30.0, |w| app(w, "cilium-app").is_some_and(|a| o::s(&a, "/status/sync/status") == "Synced")));
    let before = t.get("secrets", "kube-system", "hubble-server-certs").expect("secret")["data"].clone();
    mutate_app(&t, "cilium-app", |a| a["metadata"]["annotations"]["argocd.argoproj.io/refresh"] = json!("hard"));
    assert!(t.run_until(5.0, |w| app(w, "cilium-app").is_some_and(|a| o::s(&a, "/status/sync/status") == "OutOfSync")));
    let a = app(&t.w, "cilium-app").expect("app");
    let drifted: Vec<&str> = a["status"]["resources"]
        .as_array()
        .map(|r| r.iter().filter(|x| o::s(x, "/status") == "OutOfSync").map(|x| o::s(x, "/name")).collect())
        .unwrap_or_default();
    assert!(drifted.contains(&"hubble-server-certs"), "{drifted:?}");
    // selfHeal applies the new certs.
    assert!(t.run_until(30.0, |w| {
        w.store.get(res("secrets"), "kube-system", "hubble-server-certs").is_ok_and(|s| s["data"] != before)
    }));
}

#[test]
fn stage1_cutover_end_to_end() {
    let mut t = seeded(Scenario::builtin(BaseScenario::Fresh), 18);
    // 1. Servers first: flannel off, network policy off; the server is NotReady without a CNI.
    let cfg =
        format!("{}flannel-backend: none\ndisable-network-policy: true\n", t.w.nodes["homelab-cp1"].file.to_yaml());
    t.w.apply_node_op("homelab-cp1", &NodeOp::WriteK3sConfig { config: cfg }).expect("write");
    t.w.apply_node_op("homelab-cp1", &NodeOp::RestartK3s).expect("restart");
    t.run(10.0);
    assert!(!node_ready(&t.w, "homelab-cp1"));
    // 2. Cilium through Git; the server comes back once its agent is Ready.
    commit_cilium(&mut t, STAGE1_VALUES);
    assert!(t.run_until(120.0, |w| node_ready(w, "homelab-cp1")), "cp1 Ready with Cilium");
    assert_eq!(t.w.nodes["homelab-cp1"].runtime().cni_conf_files, ["/etc/cni/net.d/05-cilium.conflist"]);
    // 3. Agents: a plain restart picks up the server's settings (their own args do not change).
    for n in ["homelab-w1", "homelab-w2"] {
        t.w.apply_node_op(n, &NodeOp::RestartK3s).expect("restart agent");
        assert!(t.w.nodes[n].runtime().flannel_backend.is_none());
        assert_eq!(node_args(&t, n), ["agent"]);
    }
    assert!(t.run_until(120.0, |w| ["homelab-cp1", "homelab-w1", "homelab-w2"].iter().all(|n| node_ready(w, n))
        && cilium_ready_nodes(&w.store).len() == 3));
    // 4. Reboot a worker: its pods come back as Cilium endpoints, leftovers gone.
    t.w.apply_node_op("homelab-w1", &NodeOp::Reboot).expect("reboot");
    assert!(t.run_until(150.0, |w| {
        let pods = w.store.list(res(ids::PODS), None).0;
        let ceps: BTreeSet<String> =
            w.store.list(res(ids::CILIUMENDPOINTS), None).0.iter().map(|c| o::name(c).to_string()).collect();
        let on_w1: Vec<_> = pods
            .iter()
            .filter(|p| o::s(p, "/spec/nodeName") == "homelab-w1" && !o::bool_at(p, "/spec/hostNetwork"))
            .collect();
        !on_w1.is_empty() && on_w1.iter().all(|p| o::pod_ready(p) && ceps.contains(o::name(p)))
    }));
    assert!(!t.w.nodes["homelab-w1"].runtime().flannel_leftovers);
    let topo = t.w.topology();
    assert!(topo.pods.iter().filter(|p| p.node == "homelab-w1" && !p.host_network).all(|p| p.endpoint_id > 0));
}

#[test]
fn broken_plan_values_scenario_leaves_nodes_without_a_cni() {
    let mut t = seeded(Scenario::load("broken-plan-values").expect("scenario"), 19);
    t.run(5.0);
    let a = app(&t.w, "cilium-app").expect("app");
    assert_eq!(o::s(&a, "/status/sync/status"), "Unknown");
    assert_eq!(o::s(&a, "/status/conditions/0/type"), "ComparisonError");
    assert!(t.get(ids::DAEMONSETS, "kube-system", "cilium").is_none());
    for n in ["homelab-cp1", "homelab-w1", "homelab-w2"] {
        assert!(!node_ready(&t.w, n), "{n} has no CNI");
    }
}
