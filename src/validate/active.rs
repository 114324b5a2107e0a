//! One run of the active checks: create the probe servers and Service, wait for them, create the
//! client Jobs while reading the Hubble flow stream, wait for the Jobs, read each client's log
//! (bounded), and always delete everything the run created — also after a failure or a cancel.
//!
//! Every creation and deletion is an [`Operation`] sent through a [`Door`] (the runner: journaled,
//! under the cluster lock, refused in read-only mode); everything else here only reads, through
//! the read-only client.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Node, PersistentVolumeClaim, Pod, Service};
use kube::api::{Api, ListParams, LogParams};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::probes::{
    self, ClientOutcome, ProbeConfig, ProbeKind, ProbeNode, StepOutcome, Targets, VolumeRole, VolumeStep,
};
use super::{ACTIVE_CHECKS, CheckResult, Selection, State, SubResult};
use crate::app::action::Operation;
use crate::hubble::client::RelayTarget;
use crate::runbook::executor::ExecError;

/// Where operations go: the runner (CLI), or the executor inside a runbook step.
pub trait Door {
    fn run(&mut self, op: Operation) -> impl Future<Output = Result<String, ExecError>> + Send;
}

/// What an active run found and did.
#[derive(Debug, Clone)]
pub struct ActiveOutcome {
    pub checks: Vec<CheckResult>,
    /// How the cleanup went (`Err`: what may be left; the next run finds it by label).
    pub cleanup: Result<String, String>,
}

fn title(id: &str) -> &'static str {
    ACTIVE_CHECKS.iter().find(|(i, _)| *i == id).map_or("", |(_, t)| t)
}

/// The ids of the active checks this run can run (all of them).
pub fn runnable(selection: &Selection) -> Vec<&'static str> {
    ProbeKind::ALL
        .iter()
        .map(|k| k.check_id())
        .chain(["probe-hubble-flows", "probe-longhorn-volume"])
        .filter(|id| selection.includes(id))
        .collect()
}

/// Every selected active check with one subject `cluster` in `state` saying why.
fn all_with(selection: &Selection, state: State, why: &str, took: Duration) -> Vec<CheckResult> {
    runnable(selection).into_iter().map(|id| single(id, "cluster", state, why.to_string(), took, vec![])).collect()
}

/// Check `id` with one subject in `state`, saying why.
fn single(id: &str, subject: &str, state: State, why: String, took: Duration, notes: Vec<String>) -> CheckResult {
    CheckResult::from_parts(
        id,
        title(id),
        vec![SubResult { subject: subject.into(), state, evidence: vec![why], duration: took }],
        notes,
    )
}

struct Ingress {
    node_port: Option<i32>,
    lb: Option<(String, i32)>,
}

fn node_ip(n: &Node) -> String {
    n.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
        .map(|a| a.address.clone())
        .unwrap_or_default()
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn job_done(j: &Job) -> Option<bool> {
    let conds = j.status.as_ref().and_then(|s| s.conditions.as_ref())?;
    if conds.iter().any(|c| c.type_ == "Complete" && c.status == "True") {
        Some(true)
    } else if conds.iter().any(|c| c.type_ == "Failed" && c.status == "True") {
        Some(false)
    } else {
        None
    }
}

fn kube_msg(e: &kube::Error) -> String {
    crate::cluster::client::redact(&e.to_string())
}

/// Sleeps a poll interval; false when cancelled or past the deadline.
async fn pause(cancel: &CancellationToken, deadline: Instant) -> bool {
    if Instant::now() >= deadline {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(250)) => Instant::now() < deadline,
        _ = cancel.cancelled() => false,
    }
}

/// Runs the selected active checks (see the module docs). `say` gets progress lines.
#[allow(clippy::too_many_arguments)]
pub async fn run_active<D: Door>(
    read: &kube::Client,
    door: &mut D,
    relay: &RelayTarget,
    cfg: &ProbeConfig,
    selection: &Selection,
    run: &str,
    say: &(dyn Fn(String) + Sync),
    cancel: &CancellationToken,
) -> ActiveOutcome {
    let started = Instant::now();
    let checks = match probe(read, door, relay, cfg, selection, run, say, cancel).await {
        Ok(c) => c,
        Err(why) => all_with(selection, State::Unknown, &why, started.elapsed()),
    };
    say(format!("removing the probes of run {run}"));
    let cleanup = door
        .run(Operation::ProbeDelete { run: Some(run.to_string()), why: "end of the validation run".into() })
        .await
        .map_err(|e| format!("{e}; the next `cutover validate --yes` removes what is left"));
    ActiveOutcome { checks, cleanup }
}

#[allow(clippy::too_many_arguments)]
async fn probe<D: Door>(
    read: &kube::Client,
    door: &mut D,
    relay: &RelayTarget,
    cfg: &ProbeConfig,
    selection: &Selection,
    run: &str,
    say: &(dyn Fn(String) + Sync),
    cancel: &CancellationToken,
) -> Result<Vec<CheckResult>, String> {
    let list_timeout = Duration::from_secs(30);
    let nodes = tokio::time::timeout(list_timeout, Api::<Node>::all(read.clone()).list(&ListParams::default()))
        .await
        .map_err(|_| "cannot list nodes: no answer within 30s".to_string())?
        .map_err(|e| format!("cannot list nodes: {}", kube_msg(&e)))?
        .items;
    let mut notes = Vec::new();
    let mut probe_nodes = Vec::new();
    for n in &nodes {
        let name = n.metadata.name.clone().unwrap_or_default();
        if node_ready(n) {
            probe_nodes.push(ProbeNode { name, internal_ip: node_ip(n) });
        } else {
            notes.push(format!("node {name} is not Ready: no probe runs there"));
        }
    }
    probe_nodes.sort_by(|a, b| a.name.cmp(&b.name));
    if probe_nodes.is_empty() {
        return Err("no Ready node to run probes on".into());
    }
    let mut checks = Vec::new();
    let wants_network =
        ProbeKind::ALL.iter().any(|k| selection.includes(k.check_id())) || selection.includes("probe-hubble-flows");
    if wants_network {
        checks = network(read, door, relay, cfg, selection, run, say, cancel, &probe_nodes, notes.clone()).await?;
    }
    if selection.includes("probe-longhorn-volume") {
        checks.push(volume(read, door, cfg, run, say, cancel, &probe_nodes, notes).await?);
    }
    Ok(checks)
}

/// The network probes: servers, the probe Service, the client Jobs, their logs and the flows.
#[allow(clippy::too_many_arguments)]
async fn network<D: Door>(
    read: &kube::Client,
    door: &mut D,
    relay: &RelayTarget,
    cfg: &ProbeConfig,
    selection: &Selection,
    run: &str,
    say: &(dyn Fn(String) + Sync),
    cancel: &CancellationToken,
    probe_nodes: &[ProbeNode],
    mut notes: Vec<String>,
) -> Result<Vec<CheckResult>, String> {
    let t0 = Instant::now();
    let list_timeout = Duration::from_secs(30);
    // The ingress Service: its NodePort and MetalLB IP.
    let (ing_ns, ing_name) = cfg.ingress_service.split_once('/').unwrap_or(("", &cfg.ingress_service));
    let ingress = match Api::<Service>::namespaced(read.clone(), ing_ns).get_opt(ing_name).await {
        Ok(Some(s)) => {
            let port = s
                .spec
                .as_ref()
                .and_then(|sp| sp.ports.as_ref())
                .and_then(|ps| ps.iter().find(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP").cloned());
            let lb_ip = s
                .status
                .as_ref()
                .and_then(|st| st.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .and_then(|i| i.first())
                .and_then(|i| i.ip.clone().or_else(|| i.hostname.clone()));
            Some(Ingress {
                node_port: port.as_ref().and_then(|p| p.node_port),
                lb: lb_ip.zip(port.as_ref().map(|p| p.port)),
            })
        }
        Ok(None) => None,
        Err(e) => return Err(format!("cannot read Service {}: {}", cfg.ingress_service, kube_msg(&e))),
    };

    // Servers and the probe Service.
    say(format!("run {run}: creating {} probe server pod(s) and a Service in {}", probe_nodes.len(), cfg.namespace));
    door.run(Operation::ProbeCreate {
        run: run.into(),
        namespace: cfg.namespace.clone(),
        what: "server pods and Service".into(),
        objects: probes::server_objects(cfg, run, probe_nodes),
    })
    .await
    .map_err(|e| format!("creating the probe servers: {e}"))?;
    let pods_api = Api::<Pod>::namespaced(read.clone(), &cfg.namespace);
    let server_sel =
        ListParams::default().labels(&format!("{},{}=server", probes::selector(Some(run)), probes::ROLE_LABEL));
    let deadline = Instant::now() + cfg.timeout;
    let servers: BTreeMap<String, String> = loop {
        let pods =
            pods_api.list(&server_sel).await.map_err(|e| format!("cannot list the probe servers: {}", kube_msg(&e)))?;
        let ready: BTreeMap<String, String> = pods
            .items
            .iter()
            .filter(|p| pod_ready(p))
            .filter_map(|p| {
                let node = p.spec.as_ref()?.node_name.clone()?;
                let ip = p.status.as_ref()?.pod_ip.clone()?;
                Some((node, ip))
            })
            .collect();
        if ready.len() == probe_nodes.len() {
            break ready;
        }
        if !pause(cancel, deadline).await {
            if cancel.is_cancelled() {
                return Err("cancelled while the probe servers started".into());
            }
            let missing: Vec<&str> =
                probe_nodes.iter().map(|n| n.name.as_str()).filter(|n| !ready.contains_key(*n)).collect();
            if ready.is_empty() {
                return Err(format!(
                    "no probe server became Ready within {}s (image {}, namespace {})",
                    cfg.timeout.as_secs(),
                    cfg.image,
                    cfg.namespace
                ));
            }
            notes.push(format!("probe server not Ready within {}s on: {}", cfg.timeout.as_secs(), missing.join(", ")));
            break ready;
        }
    };
    let svc = Api::<Service>::namespaced(read.clone(), &cfg.namespace)
        .get_opt(&probes::service_name(run))
        .await
        .map_err(|e| format!("cannot read the probe Service: {}", kube_msg(&e)))?;
    let cluster_ip = svc.and_then(|s| s.spec?.cluster_ip).filter(|ip| !ip.is_empty() && ip != "None");
    let mut targets = Targets {
        servers: servers.clone(),
        service: cluster_ip.map(|ip| format!("{ip}:{}", probes::SERVER_PORT)).unwrap_or_default(),
        ..Default::default()
    };
    if let Some(np) = ingress.as_ref().and_then(|i| i.node_port) {
        targets.node_ports = probe_nodes
            .iter()
            .filter(|n| !n.internal_ip.is_empty())
            .map(|n| (n.name.clone(), format!("{}:{np}", n.internal_ip)))
            .collect();
    }
    if let Some((ip, port)) = ingress.as_ref().and_then(|i| i.lb.clone()) {
        targets.load_balancer = format!("{ip}:{port}");
    }

    // Flows while the clients run.
    let stop_flows = CancellationToken::new();
    let flows = selection.includes("probe-hubble-flows").then(|| {
        let relay = relay.clone();
        let stop = stop_flows.clone();
        let max = cfg.timeout + Duration::from_secs(5);
        let run = run.to_string();
        tokio::spawn(async move {
            super::observe::read_flows_until(&relay, max, &stop, |f| probes::is_probe_flow(f, &run)).await
        })
    });
    // Give the stream a moment to start before the traffic does.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let clients_at = Instant::now();
    say(format!("run {run}: creating {} probe client Job(s)", probe_nodes.len()));
    let created = door
        .run(Operation::ProbeCreate {
            run: run.into(),
            namespace: cfg.namespace.clone(),
            what: "client Jobs".into(),
            objects: probes::client_objects(cfg, run, probe_nodes, &targets),
        })
        .await;
    if let Err(e) = created {
        stop_flows.cancel();
        return Err(format!("creating the probe clients: {e}"));
    }
    let jobs_api = Api::<Job>::namespaced(read.clone(), &cfg.namespace);
    let client_sel =
        ListParams::default().labels(&format!("{},{}=client", probes::selector(Some(run)), probes::ROLE_LABEL));
    let deadline = Instant::now() + cfg.timeout;
    let mut finished: BTreeMap<String, (bool, Duration)> = BTreeMap::new();
    loop {
        let jobs =
            jobs_api.list(&client_sel).await.map_err(|e| format!("cannot list the probe Jobs: {}", kube_msg(&e)))?;
        for j in &jobs.items {
            let node = j.metadata.labels.as_ref().and_then(|l| l.get(probes::NODE_LABEL)).cloned().unwrap_or_default();
            if let Some(ok) = job_done(j) {
                finished.entry(node).or_insert((ok, clients_at.elapsed()));
            }
        }
        if finished.len() >= probe_nodes.len() {
            break;
        }
        if !pause(cancel, deadline).await {
            break;
        }
    }
    // The last packets reach the relay a moment after the Jobs end.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_flows.cancel();
    if cancel.is_cancelled() {
        return Err("cancelled while the probes ran".into());
    }
    let flow_window = match flows {
        Some(task) => Some(task.await.map_err(|e| format!("flow reader: {e}")).and_then(|r| r)),
        None => None,
    };

    // The clients' logs.
    let pods =
        pods_api.list(&client_sel).await.map_err(|e| format!("cannot list the probe clients: {}", kube_msg(&e)))?;
    let mut outcomes = Vec::new();
    for n in probe_nodes {
        let pod =
            pods.items.iter().find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(n.name.as_str()));
        let (done, took) = finished.get(&n.name).map_or((None, cfg.timeout), |(ok, d)| (Some(*ok), *d));
        let log = match (pod, done) {
            (None, _) => Err("its client pod does not exist".to_string()),
            (Some(_), None) => Err(format!("the client Job did not finish within {}s", cfg.timeout.as_secs())),
            (Some(p), Some(_)) => {
                let name = p.metadata.name.clone().unwrap_or_default();
                let lp = LogParams {
                    container: Some("probe".into()),
                    limit_bytes: Some(probes::LOG_LIMIT_BYTES),
                    tail_lines: Some(probes::LOG_TAIL_LINES),
                    ..Default::default()
                };
                match tokio::time::timeout(list_timeout, pods_api.logs(&name, &lp)).await {
                    Ok(Ok(text)) => Ok(probes::parse_log(&text)),
                    Ok(Err(e)) => Err(format!("cannot read the log of {name}: {}", kube_msg(&e))),
                    Err(_) => Err(format!("cannot read the log of {name}: no answer within 30s")),
                }
            }
        };
        let log = match (log, done) {
            (Ok(l), Some(false)) if l.lines.is_empty() => {
                Err(format!("the client Job failed; its log has no result ({} malformed line(s))", l.malformed.len()))
            }
            (l, _) => l,
        };
        outcomes.push(ClientOutcome { node: n.name.clone(), log, took });
    }

    let mut checks = Vec::new();
    for kind in ProbeKind::ALL {
        if !selection.includes(kind.check_id()) {
            continue;
        }
        let mut check_notes = notes.clone();
        if kind == ProbeKind::NodePort && targets.node_ports.is_empty() {
            let why = match &ingress {
                None => format!("Service {} not found", cfg.ingress_service),
                Some(_) => format!("Service {} has no NodePort", cfg.ingress_service),
            };
            checks.push(single(kind.check_id(), &cfg.ingress_service, State::Red, why, t0.elapsed(), check_notes));
            continue;
        }
        if kind == ProbeKind::LoadBalancer && targets.load_balancer.is_empty() {
            let why = match &ingress {
                None => format!("Service {} not found", cfg.ingress_service),
                Some(_) => "no MetalLB IP in status.loadBalancer.ingress: nothing to probe".to_string(),
            };
            checks.push(single(kind.check_id(), &cfg.ingress_service, State::Red, why, t0.elapsed(), check_notes));
            continue;
        }
        if kind == ProbeKind::ClusterIp && targets.service.is_empty() {
            check_notes.push("the probe Service has no ClusterIP".into());
        }
        checks.push(probes::evaluate_kind(kind, title(kind.check_id()), probe_nodes, &targets, &outcomes, check_notes));
    }
    if let Some(w) = flow_window {
        let mut probe_pods: BTreeMap<(String, String), (String, bool)> = BTreeMap::new();
        let all = pods_api
            .list(&ListParams::default().labels(&probes::selector(Some(run))))
            .await
            .map_err(|e| format!("cannot list the probe pods: {}", kube_msg(&e)))?;
        for p in &all.items {
            if let (Some(name), Some(node)) =
                (p.metadata.name.clone(), p.spec.as_ref().and_then(|s| s.node_name.clone()))
            {
                let client = p.metadata.labels.as_ref().and_then(|l| l.get(probes::ROLE_LABEL)).map(String::as_str)
                    == Some("client");
                probe_pods.insert((cfg.namespace.clone(), name), (node, client));
            }
        }
        let flow_nodes: Vec<ProbeNode> =
            probe_nodes.iter().filter(|n| servers.contains_key(&n.name)).cloned().collect();
        checks.push(probes::evaluate_flows(title("probe-hubble-flows"), &probe_pods, &flow_nodes, &w));
    }
    Ok(checks)
}

/// The volume probe: a PVC on the Longhorn storage class, a writer Job on the first node, then a
/// reader Job on each other node in turn (the volume moves from node to node), each waited for
/// up to the timeout. The first step that does not succeed ends the probe; the nodes after it
/// are not reached. Everything is deleted with the run's other probes.
#[allow(clippy::too_many_arguments)]
async fn volume<D: Door>(
    read: &kube::Client,
    door: &mut D,
    cfg: &ProbeConfig,
    run: &str,
    say: &(dyn Fn(String) + Sync),
    cancel: &CancellationToken,
    probe_nodes: &[ProbeNode],
    mut notes: Vec<String>,
) -> Result<CheckResult, String> {
    let id = ProbeKind::LonghornVolume.check_id();
    let t0 = Instant::now();
    let claim = probes::volume_claim_name(run);
    let one = |subject: &str, state: State, why: String, notes: Vec<String>| {
        single(id, subject, state, why, t0.elapsed(), notes)
    };
    if probe_nodes.len() < 2 {
        return Ok(one("cluster", State::Unknown, "a volume moved between nodes needs two Ready nodes".into(), notes));
    }
    say(format!("run {run}: creating the volume probe's PVC {claim} (storage class {})", cfg.storage_class));
    door.run(Operation::ProbeCreate {
        run: run.into(),
        namespace: cfg.namespace.clone(),
        what: "volume claim".into(),
        objects: vec![probes::volume_claim(cfg, run)],
    })
    .await
    .map_err(|e| format!("creating the volume probe's PVC: {e}"))?;
    let pvcs = Api::<PersistentVolumeClaim>::namespaced(read.clone(), &cfg.namespace);
    let deadline = Instant::now() + cfg.timeout;
    let volume = loop {
        let pvc = pvcs.get_opt(&claim).await.map_err(|e| format!("cannot read PVC {claim}: {}", kube_msg(&e)))?;
        let status = pvc.as_ref().and_then(|p| p.status.as_ref());
        if status.and_then(|s| s.phase.as_deref()) == Some("Bound") {
            break pvc.and_then(|p| p.spec?.volume_name).unwrap_or_default();
        }
        if !pause(cancel, deadline).await {
            if cancel.is_cancelled() {
                return Err("cancelled while the volume probe's PVC was provisioned".into());
            }
            let phase = status.and_then(|s| s.phase.clone()).unwrap_or_else(|| "unknown".into());
            return Ok(one(
                &claim,
                State::Red,
                format!(
                    "PVC {claim} (storage class {}) not Bound within {}s: phase {phase}",
                    cfg.storage_class,
                    cfg.timeout.as_secs()
                ),
                notes,
            ));
        }
    };
    notes.push(format!("PVC {}/{claim} Bound to volume {volume}", cfg.namespace));
    let writer = probe_nodes[0].name.clone();
    let mut steps = Vec::new();
    let mut stopped: Option<String> = None;
    for (i, n) in probe_nodes.iter().enumerate() {
        let role = if i == 0 { VolumeRole::Write } else { VolumeRole::Read };
        if let Some(why) = &stopped {
            steps.push(VolumeStep {
                node: n.name.clone(),
                role,
                outcome: StepOutcome::NotReached(why.clone()),
                took: Duration::ZERO,
            });
            continue;
        }
        say(format!("run {run}: volume probe: {} on {}", role.as_str(), n.name));
        let step = volume_step(read, door, cfg, run, i, &n.name, role, &writer, cancel).await?;
        let ok = match &step.outcome {
            StepOutcome::Log(l) => {
                let mine = l.lines.iter().filter(|x| x.kind == ProbeKind::LonghornVolume && x.subject == n.name);
                let (mut any, mut bad) = (false, false);
                for x in mine {
                    any = true;
                    bad |= !x.ok;
                }
                any && !bad
            }
            _ => false,
        };
        if !ok {
            stopped = Some(format!("the volume probe stopped after the {} on {}", role.as_str(), n.name));
        }
        steps.push(step);
    }
    Ok(probes::evaluate_volume(title(id), &steps, notes))
}

/// One Job of the volume probe: created through the door, waited for up to the timeout, its log
/// read (bounded). A Job that does not finish says what its pod waits for (the FailedMount event).
#[allow(clippy::too_many_arguments)]
async fn volume_step<D: Door>(
    read: &kube::Client,
    door: &mut D,
    cfg: &ProbeConfig,
    run: &str,
    step: usize,
    node: &str,
    role: VolumeRole,
    writer: &str,
    cancel: &CancellationToken,
) -> Result<VolumeStep, String> {
    let started = Instant::now();
    let job_name = probes::volume_job_name(run, step);
    door.run(Operation::ProbeCreate {
        run: run.into(),
        namespace: cfg.namespace.clone(),
        what: format!("volume {} Job on {node}", role.as_str()),
        objects: vec![probes::volume_job(cfg, run, step, node, role, writer)],
    })
    .await
    .map_err(|e| format!("creating the volume probe's Job on {node}: {e}"))?;
    let jobs = Api::<Job>::namespaced(read.clone(), &cfg.namespace);
    let pods = Api::<Pod>::namespaced(read.clone(), &cfg.namespace);
    let deadline = Instant::now() + cfg.timeout;
    let done = loop {
        let j = jobs.get_opt(&job_name).await.map_err(|e| format!("cannot read Job {job_name}: {}", kube_msg(&e)))?;
        if let Some(d) = j.as_ref().and_then(job_done) {
            break Some(d);
        }
        if !pause(cancel, deadline).await {
            if cancel.is_cancelled() {
                return Err("cancelled while the volume probe ran".into());
            }
            break None;
        }
    };
    let took = started.elapsed();
    let sel = ListParams::default().labels(&format!("job-name={job_name}"));
    let pod = pods
        .list(&sel)
        .await
        .map_err(|e| format!("cannot list the pods of Job {job_name}: {}", kube_msg(&e)))?
        .items
        .into_iter()
        .next();
    let outcome = match (done, pod) {
        (_, None) => StepOutcome::Failed(format!("Job {job_name} on {node} has no pod")),
        (None, Some(p)) => {
            let waiting = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.first())
                .and_then(|c| c.state.as_ref())
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.clone());
            let phase = p.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_else(|| "unknown".into());
            let name = p.metadata.name.clone().unwrap_or_default();
            let mut why = format!(
                "Job {job_name} did not finish within {}s on {node}: pod {name} {phase}{}",
                cfg.timeout.as_secs(),
                waiting.map(|w| format!(" ({w})")).unwrap_or_default()
            );
            if let Some(m) = failed_mount(read, &cfg.namespace, &name).await {
                why.push_str(&format!("; FailedMount: {m}"));
            }
            StepOutcome::Failed(why)
        }
        (Some(ok), Some(p)) => {
            let name = p.metadata.name.clone().unwrap_or_default();
            match read_log(&pods, &name).await {
                Ok(l) if !ok && l.lines.is_empty() => StepOutcome::Failed(format!(
                    "Job {job_name} on {node} failed; its log has no result ({} malformed line(s))",
                    l.malformed.len()
                )),
                Ok(l) => StepOutcome::Log(l),
                Err(e) if !ok => StepOutcome::Failed(format!("Job {job_name} on {node} failed; {e}")),
                Err(e) => StepOutcome::NoResult(e),
            }
        }
    };
    Ok(VolumeStep { node: node.to_string(), role, outcome, took })
}

/// A probe pod's log, bounded and parsed.
async fn read_log(pods: &Api<Pod>, name: &str) -> Result<probes::ParsedLog, String> {
    let lp = LogParams {
        container: Some("probe".into()),
        limit_bytes: Some(probes::LOG_LIMIT_BYTES),
        tail_lines: Some(probes::LOG_TAIL_LINES),
        ..Default::default()
    };
    match tokio::time::timeout(Duration::from_secs(30), pods.logs(name, &lp)).await {
        Ok(Ok(text)) => Ok(probes::parse_log(&text)),
        Ok(Err(e)) => Err(format!("cannot read the log of {name}: {}", kube_msg(&e))),
        Err(_) => Err(format!("cannot read the log of {name}: no answer within 30s")),
    }
}

/// The message of the latest FailedMount event of a pod, if it can be read.
async fn failed_mount(read: &kube::Client, namespace: &str, pod: &str) -> Option<String> {
    let events = Api::<Event>::namespaced(read.clone(), namespace);
    let lp = ListParams::default().fields(&format!("involvedObject.name={pod}")).limit(50);
    let list = tokio::time::timeout(Duration::from_secs(10), events.list(&lp)).await.ok()?.ok()?;
    list.items
        .iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(pod) && e.reason.as_deref() == Some("FailedMount"))
        .filter_map(|e| e.message.as_deref())
        .next_back()
        .map(probes::cut_evidence)
}
