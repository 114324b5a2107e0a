//! The kubelet of every node: pod sandboxes (which CNI gives the pod its IP, per the node's k3s
//! and Cilium state), container start/readiness/crash loops, restarts after k3s restarts and
//! reboots, graceful termination, and the pod IP allocators (flannel host-local, Cilium IPAM).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::events::involved;
use super::objects::{self as o, ids, res};
use super::{World, timing};

/// Who set up a pod's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cni {
    Flannel,
    Cilium,
    Host,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    pub ip: String,
    pub cni: Cni,
}

/// A crash-looping main container.
#[derive(Debug, Clone)]
pub struct Crash {
    pub message: String,
    pub backoff: f64,
    pub until: f64,
    pub in_backoff: bool,
    pub last_started: String,
}

/// What the kubelet remembers about one pod (by uid).
#[derive(Debug, Clone)]
pub struct PodRt {
    pub ns: String,
    pub name: String,
    pub node: String,
    pub sandbox: Option<Sandbox>,
    pub boot_gen: u64,
    pub start_gen: u64,
    pub start_time: String,
    pub last_net_event: f64,
    /// When the last FailedMount event was emitted.
    pub last_mount_event: f64,
    pub net_error: Option<String>,
    pub containers_at: Option<f64>,
    pub running: bool,
    pub started_ts: String,
    pub ready_at: Option<f64>,
    pub ready: bool,
    pub restarts: u32,
    pub last_term: Option<Value>,
    pub crash: Option<Crash>,
    /// The crash message the container loaded at its last start (Cilium agent config).
    pub crash_cause: Option<String>,
    pub terminating_since: Option<f64>,
    /// Cilium endpoint id (0 = not a Cilium endpoint).
    pub endpoint_id: u32,
    pub container_ids: Vec<String>,
    /// A run-to-completion pod (a Job's, `restartPolicy` Never/OnFailure): when its containers
    /// exit 0 (simulated), and whether they have.
    pub completes_at: Option<f64>,
    pub completed: bool,
    /// Fingerprint of what the last status write was computed from, and the pod's
    /// resourceVersion after it (nothing changed → no need to rebuild the status).
    pub written: Option<(u64, String)>,
}

/// Pod IP allocators per (node, CNI): flannel's host-local and Cilium's IPAM do not know each
/// other's leases, so duplicates are possible on a node until the old pods are gone (as on a real
/// cutover with `ipam.mode: kubernetes`).
#[derive(Debug, Default)]
pub struct Ipam {
    used: BTreeMap<(String, Cni), BTreeSet<u8>>,
    last: BTreeMap<(String, Cni), u8>,
}

impl Ipam {
    /// Allocates an address of `10.42.<index>.0/24`.
    pub fn alloc(&mut self, node: &str, index: usize, cni: Cni, rng: &mut fastrand::Rng) -> Option<String> {
        let key = (node.to_string(), cni);
        let used = self.used.entry(key.clone()).or_default();
        let pick = match cni {
            // host-local: next after the last reserved, .1 is the cni0 gateway.
            Cni::Flannel => {
                let start = *self.last.get(&key).unwrap_or(&1);
                (0..253i32).map(|k| ((i32::from(start) - 1 + k).rem_euclid(253) + 2) as u8).find(|c| !used.contains(c))
            }
            // Cilium's allocator scans from a random offset.
            _ => {
                let off = rng.u16(0..254);
                (0..254u16).map(|i| ((off + i) % 254 + 1) as u8).find(|c| !used.contains(c))
            }
        }?;
        used.insert(pick);
        self.last.insert(key, pick);
        Some(format!("10.42.{index}.{pick}"))
    }

    pub fn release(&mut self, node: &str, cni: Cni, ip: &str) {
        if let Some(last) = ip.rsplit('.').next().and_then(|x| x.parse::<u8>().ok())
            && let Some(set) = self.used.get_mut(&(node.to_string(), cni))
        {
            set.remove(&last);
        }
    }
}

/// What gates a running pod's readiness.
#[derive(Debug, Clone, PartialEq)]
pub enum Gate {
    /// Becomes Ready this many seconds after its containers started.
    ReadyAfter(f64),
    /// Runs but is not Ready.
    NotReady,
}

fn rand_hex(rng: &mut fastrand::Rng, n: usize) -> String {
    (0..n).map(|_| char::from_digit(rng.u32(0..16), 16).unwrap_or('0')).collect()
}

fn containers(pod: &Value, field: &str) -> Vec<(String, String)> {
    pod.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|c| (o::s(c, "/name").to_string(), o::s(c, "/image").to_string())).collect())
        .unwrap_or_default()
}

fn image_id(image: &str) -> String {
    let repo = image.split('@').next().unwrap_or(image);
    let repo = repo.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')).map(|(r, _)| r).unwrap_or(repo);
    let repo = if repo.matches('/').count() < 2 && !repo.contains('.') {
        format!("docker.io/{repo}")
    } else {
        repo.to_string()
    };
    format!("{repo}@sha256:{}", o::sha_hex(image))
}

/// A Job's pod whose containers end (`restartPolicy` Never or OnFailure).
fn runs_to_completion(pod: &Value) -> bool {
    o::controller_of(pod).is_some_and(|c| c.kind == "Job")
        && matches!(o::s(pod, "/spec/restartPolicy"), "Never" | "OnFailure")
}

impl World {
    fn new_rt(&self, pod: &Value, node: &str) -> PodRt {
        let k = self.nodes.get(node);
        PodRt {
            ns: o::namespace(pod).to_string(),
            name: o::name(pod).to_string(),
            node: node.to_string(),
            sandbox: None,
            boot_gen: k.map(|k| k.boot_gen).unwrap_or(0),
            start_gen: k.map(|k| k.start_gen).unwrap_or(0),
            start_time: self.now_str.clone(),
            last_net_event: f64::NEG_INFINITY,
            last_mount_event: f64::NEG_INFINITY,
            net_error: None,
            containers_at: None,
            running: false,
            started_ts: String::new(),
            ready_at: None,
            ready: false,
            restarts: 0,
            last_term: None,
            crash: None,
            crash_cause: None,
            terminating_since: None,
            endpoint_id: 0,
            container_ids: Vec::new(),
            completes_at: None,
            completed: false,
            written: None,
        }
    }

    fn release_sandbox(&mut self, rt: &mut PodRt) {
        if let Some(sb) = rt.sandbox.take()
            && sb.cni != Cni::Host
        {
            self.ipam.release(&rt.node, sb.cni, &sb.ip);
        }
        rt.endpoint_id = 0;
    }

    /// Sets up the pod network the way containerd + the configured CNI would on this node.
    fn try_sandbox(
        &mut self,
        pod: &Value,
        node: &str,
        cilium_ready: &BTreeSet<String>,
    ) -> Result<Sandbox, (&'static str, String)> {
        let Some(k) = self.nodes.get(node) else { return Err(("FailedCreatePodSandBox", "node gone".into())) };
        if o::bool_at(pod, "/spec/hostNetwork") {
            return Ok(Sandbox { ip: k.ip.clone(), cni: Cni::Host });
        }
        let sid = rand_hex(&mut self.rng, 64);
        let fail = |m: String| {
            format!(
                "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network for sandbox \"{sid}\": {m}"
            )
        };
        let conf_dir = k.containerd_conf_dir();
        let index = k.index;
        if k.cilium_conf_dirs.contains(conf_dir) {
            let bin = k.containerd_bin_dir();
            if !k.cilium_bin_dirs.contains(bin) {
                return Err((
                    "FailedCreatePodSandBox",
                    fail(format!("failed to find plugin \"cilium-cni\" in path [{bin}]")),
                ));
            }
            if !cilium_ready.contains(node) {
                return Err((
                    "FailedCreatePodSandBox",
                    fail("plugin type=\"cilium-cni\" name=\"cilium\" failed (add): unable to connect to Cilium daemon: failed to create cilium agent client after 30.000000 seconds timeout: Get \"http:///var/run/cilium/cilium.sock/v1/config\": dial unix /var/run/cilium/cilium.sock: connect: no such file or directory\nIs the agent running?".into()),
                ));
            }
            let ip = self
                .ipam
                .alloc(node, index, Cni::Cilium, &mut self.rng)
                .ok_or(("FailedCreatePodSandBox", fail("plugin type=\"cilium-cni\" failed (add): unable to allocate IP via local cilium agent: no more IPs available".into())))?;
            return Ok(Sandbox { ip, cni: Cni::Cilium });
        }
        if k.net.flannel_backend.is_some() {
            let ip = self
                .ipam
                .alloc(node, index, Cni::Flannel, &mut self.rng)
                .ok_or(("FailedCreatePodSandBox", fail("plugin type=\"flannel\" failed (add): failed to allocate for range 0: no IP addresses available in range set: 10.42.0.1-10.42.0.254".into())))?;
            return Ok(Sandbox { ip, cni: Cni::Flannel });
        }
        Err((
            "NetworkNotReady",
            "network is not ready: container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized".into(),
        ))
    }

    /// Nodes whose Cilium agent pod is Ready.
    pub(crate) fn cilium_ready_nodes(pods: &[std::sync::Arc<Value>]) -> BTreeSet<String> {
        pods.iter()
            .filter(|p| {
                o::namespace(p) == "kube-system"
                    && o::labels(p).get("k8s-app").map(String::as_str) == Some("cilium")
                    && o::pod_ready(p)
            })
            .map(|p| o::s(p, "/spec/nodeName").to_string())
            .collect()
    }

    /// The PVs of the pod's PVC volumes, each checked as the kubelet and the CSI node plugin
    /// would before mounting: the claim exists and is Bound, and for a Longhorn volume
    /// (`driver.longhorn.io`) the node's `longhorn-csi-plugin` pod is Ready (its driver is
    /// registered). `Err`: not mountable now, with the FailedMount message (`None`: a claim not
    /// Bound yet, which the provisioner binds within a tick: no event).
    fn mount_volumes(
        &self,
        pod: &Value,
        node: &str,
        pods: &[std::sync::Arc<Value>],
    ) -> Result<Vec<String>, Option<String>> {
        let ns = o::namespace(pod);
        let mut pvs = Vec::new();
        for v in pod.pointer("/spec/volumes").and_then(Value::as_array).into_iter().flatten() {
            let claim = o::s(v, "/persistentVolumeClaim/claimName");
            if claim.is_empty() {
                continue;
            }
            let vname = o::s(v, "/name");
            let Ok(pvc) = self.store.get(res(ids::PVCS), ns, claim) else {
                return Err(Some(format!(
                    "Unable to attach or mount volumes: unmounted volumes=[{vname}], unattached volumes=[{vname}]: error processing PVC {ns}/{claim}: PVC is not bound: persistentvolumeclaim \"{claim}\" not found"
                )));
            };
            let pv_name = o::s(&pvc, "/spec/volumeName");
            let Ok(pv) = self.store.get(res(ids::PVS), "", pv_name) else { return Err(None) };
            if o::s(&pvc, "/status/phase") != "Bound" {
                return Err(None);
            }
            if o::s(&pv, "/spec/csi/driver") == "driver.longhorn.io" {
                let plugin = pods.iter().find(|p| {
                    o::s(p, "/spec/nodeName") == node
                        && o::labels(p).get("app").map(String::as_str) == Some("longhorn-csi-plugin")
                });
                if plugin.is_some_and(|p| !o::pod_ready(p)) {
                    return Err(Some(format!(
                        "MountVolume.MountDevice failed for volume \"{pv_name}\" : kubernetes.io/csi: attacher.MountDevice failed to create newCsiDriverClient: driver name driver.longhorn.io not found in the list of registered CSI drivers"
                    )));
                }
            }
            pvs.push(pv_name.to_string());
        }
        Ok(pvs)
    }

    /// A volume probe's container runs: it writes or reads its volume; its output is kept for
    /// the log endpoint.
    fn run_volume_probe(&mut self, pod: &Value) {
        let ns = o::namespace(pod);
        let pv = pod
            .pointer("/spec/volumes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|v| o::s(v, "/persistentVolumeClaim/claimName"))
            .find(|c| !c.is_empty())
            .and_then(|c| self.store.get(res(ids::PVCS), ns, c).ok())
            .map(|pvc| o::s(&pvc, "/spec/volumeName").to_string())
            .unwrap_or_default();
        if let Ok(mut v) = self.volumes.lock() {
            let log = crate::sim::probes::volume_run(&mut v, pod, &pv);
            v.logs.insert(o::uid(pod).to_string(), log);
        }
    }

    /// Runs every node's kubelet once.
    pub(crate) fn kubelet_tick(&mut self) {
        let (pods, _) = self.store.list(res(ids::PODS), None);
        let live: BTreeSet<String> = pods.iter().map(|p| o::uid(p).to_string()).collect();
        // Pods gone from the API: their sandboxes are torn down.
        let gone: Vec<String> = self.pods.keys().filter(|u| !live.contains(*u)).cloned().collect();
        for u in gone {
            if let Some(mut rt) = self.pods.remove(&u) {
                self.release_sandbox(&mut rt);
            }
            if let Ok(mut v) = self.volumes.lock() {
                v.logs.remove(&u);
            }
        }
        // Agents whose status is current (not left over from before a k3s restart or reboot).
        let cilium_ready: BTreeSet<String> = Self::cilium_ready_nodes(&pods)
            .into_iter()
            .filter(|n| {
                let Some(k) = self.nodes.get(n) else { return false };
                pods.iter().any(|p| {
                    o::s(p, "/spec/nodeName") == n
                        && o::labels(p).get("k8s-app").map(String::as_str) == Some("cilium")
                        && self
                            .pods
                            .get(o::uid(p))
                            .is_some_and(|r| r.ready && r.start_gen == k.start_gen && r.boot_gen == k.boot_gen)
                })
            })
            .collect();
        for pod in &pods {
            let node = o::s(pod, "/spec/nodeName").to_string();
            if node.is_empty() {
                continue;
            }
            let (ns, name, uid) = (o::namespace(pod).to_string(), o::name(pod).to_string(), o::uid(pod).to_string());
            let Some(k) = self.nodes.get(&node) else {
                // Pod GC: pods bound to a node that no longer exists are removed.
                let _ = self.store.delete(res(ids::PODS), &ns, &name, Some(0));
                continue;
            };
            if !k.kubelet_running() || self.faults.not_ready_nodes.contains(&node) {
                continue;
            }
            let (boot_gen, start_gen) = (k.boot_gen, k.start_gen);
            let mut rt = match self.pods.remove(&uid) {
                Some(rt) => rt,
                None => self.new_rt(pod, &node),
            };
            if o::is_terminating(pod) {
                let done = self.terminate(pod, &mut rt);
                if done {
                    self.release_sandbox(&mut rt);
                } else {
                    self.pods.insert(uid, rt);
                }
                continue;
            }
            self.restart_effects(pod, &mut rt, boot_gen, start_gen);
            // Volumes are attached and mounted before the sandbox and the containers start.
            if !rt.running
                && let Err(why) = self.mount_volumes(pod, &node, &pods)
            {
                if let Some(msg) = why
                    && self.now - rt.last_mount_event >= timing::SANDBOX_EVENT_EVERY
                {
                    rt.last_mount_event = self.now;
                    self.events.emit(
                        &self.store,
                        &self.now_str,
                        &involved(pod),
                        &ns,
                        "Warning",
                        "FailedMount",
                        &msg,
                        "kubelet",
                        &node,
                    );
                }
                self.write_pod_status(pod, &mut rt);
                self.pods.insert(uid, rt);
                continue;
            }
            if rt.sandbox.is_none() {
                match self.try_sandbox(pod, &node, &cilium_ready) {
                    Ok(sb) => {
                        if sb.cni == Cni::Cilium {
                            rt.endpoint_id = self.rng.u32(1..4096);
                        }
                        rt.sandbox = Some(sb);
                        rt.net_error = None;
                    }
                    Err((reason, msg)) => {
                        if self.now - rt.last_net_event >= timing::SANDBOX_EVENT_EVERY {
                            rt.last_net_event = self.now;
                            self.events.emit(
                                &self.store,
                                &self.now_str,
                                &involved(pod),
                                &ns,
                                "Warning",
                                reason,
                                &msg,
                                "kubelet",
                                &node,
                            );
                        }
                        rt.net_error = Some(msg);
                    }
                }
            }
            if rt.sandbox.is_some() {
                self.containers_step(pod, &mut rt);
            }
            self.write_pod_status(pod, &mut rt);
            self.pods.insert(uid, rt);
        }
    }

    /// k3s restarts restart containers; reboots also need new sandboxes (new IPs).
    fn restart_effects(&mut self, pod: &Value, rt: &mut PodRt, boot_gen: u64, start_gen: u64) {
        if rt.boot_gen != boot_gen {
            rt.boot_gen = boot_gen;
            rt.start_gen = start_gen;
            if rt.sandbox.as_ref().is_some_and(|s| s.cni != Cni::Host) {
                self.events.emit(
                    &self.store,
                    &self.now_str,
                    &involved(pod),
                    &rt.ns,
                    "Normal",
                    "SandboxChanged",
                    "Pod sandbox changed, it will be killed and re-created.",
                    "kubelet",
                    &rt.node,
                );
                self.release_sandbox(rt);
            }
            self.stop_containers(rt);
        } else if rt.start_gen != start_gen {
            rt.start_gen = start_gen;
            self.stop_containers(rt);
        }
    }

    fn stop_containers(&mut self, rt: &mut PodRt) {
        if rt.running {
            rt.restarts += 1;
            rt.last_term = Some(json!({"terminated": {
                "exitCode": 255, "reason": "Unknown", "startedAt": rt.started_ts, "finishedAt": self.now_str,
                "containerID": format!("containerd://{}", rt.container_ids.first().cloned().unwrap_or_default()),
            }}));
        }
        rt.running = false;
        rt.ready = false;
        rt.ready_at = None;
        rt.containers_at = None;
        rt.crash = None;
    }

    fn containers_step(&mut self, pod: &Value, rt: &mut PodRt) {
        let main: Vec<(String, String)> = containers(pod, "containers");
        if !rt.running {
            let at = match rt.containers_at {
                Some(at) => at,
                None => {
                    let at = self.now + timing::PULL_MIN + self.rng.f64() * timing::PULL_JITTER;
                    rt.containers_at = Some(at);
                    at
                }
            };
            if self.now < at {
                return;
            }
            rt.running = true;
            rt.started_ts = self.now_str.clone();
            if crate::sim::probes::is_volume_probe(pod) {
                self.run_volume_probe(pod);
            }
            rt.container_ids = main.iter().map(|_| rand_hex(&mut self.rng, 64)).collect();
            rt.crash_cause = self.crash_cause_at_start(pod);
            let inv = involved(pod);
            for (c, image) in &main {
                let fp = json!({"fieldPath": format!("spec.containers{{{c}}}")});
                let mut i = inv.clone();
                if let (Some(m), Some(f)) = (i.as_object_mut(), fp.as_object()) {
                    m.extend(f.clone());
                }
                let steps = [
                    ("Pulled", format!("Container image \"{image}\" already present on machine")),
                    ("Created", format!("Created container: {c}")),
                    ("Started", format!("Started container {c}")),
                ];
                for (reason, message) in steps {
                    self.events.emit(
                        &self.store,
                        &self.now_str,
                        &i,
                        &rt.ns,
                        "Normal",
                        reason,
                        &message,
                        "kubelet",
                        &rt.node,
                    );
                }
            }
        }
        if runs_to_completion(pod) {
            let at = *rt.completes_at.get_or_insert(self.now + timing::JOB_RUN);
            if self.now >= at {
                rt.completed = true;
                rt.ready = false;
                rt.ready_at = None;
            }
            if rt.completed {
                return;
            }
        }
        if let Some(cause) = rt.crash_cause.clone() {
            self.crash_step(pod, rt, &cause, main.first().map(|c| c.0.clone()).unwrap_or_default());
            return;
        }
        match self.pod_gate(pod, rt) {
            Gate::NotReady => {
                rt.ready = false;
                rt.ready_at = None;
            }
            Gate::ReadyAfter(d) => {
                let at = *rt.ready_at.get_or_insert(self.now + d);
                if self.now >= at {
                    rt.ready = true;
                }
            }
        }
    }

    /// A container that exits at start: run a moment, exit 1, back off (10s doubling to 5m),
    /// restart and read its config again (a fixed config heals it at the next restart).
    fn crash_step(&mut self, pod: &Value, rt: &mut PodRt, cause: &str, container: String) {
        rt.ready = false;
        rt.ready_at = None;
        let now = self.now;
        let crash = rt.crash.get_or_insert_with(|| Crash {
            message: cause.to_string(),
            backoff: 10.0,
            until: now + timing::CRASH_RUN,
            in_backoff: false,
            last_started: rt.started_ts.clone(),
        });
        if now < crash.until {
            return;
        }
        if !crash.in_backoff {
            crash.in_backoff = true;
            crash.until = now + crash.backoff;
            rt.last_term = Some(json!({"terminated": {
                "exitCode": 1, "reason": "Error", "message": crash.message,
                "startedAt": crash.last_started, "finishedAt": self.now_str,
                "containerID": format!("containerd://{}", rt.container_ids.first().cloned().unwrap_or_default()),
            }}));
            let msg = format!(
                "Back-off restarting failed container {container} in pod {}_{}({})",
                rt.name,
                rt.ns,
                o::uid(pod)
            );
            self.events.emit(
                &self.store,
                &self.now_str,
                &involved(pod),
                &rt.ns,
                "Warning",
                "BackOff",
                &msg,
                "kubelet",
                &rt.node,
            );
            return;
        }
        // Restart: the container reads its configuration again.
        rt.restarts += 1;
        rt.started_ts = self.now_str.clone();
        if let Some(id) = rt.container_ids.first_mut() {
            *id = rand_hex(&mut self.rng, 64);
        }
        match self.crash_cause_at_start(pod) {
            Some(c) => {
                if let Some(cr) = rt.crash.as_mut() {
                    cr.message = c.clone();
                    cr.in_backoff = false;
                    cr.backoff = (cr.backoff * 2.0).min(300.0);
                    cr.until = now + timing::CRASH_RUN;
                    cr.last_started = rt.started_ts.clone();
                }
                rt.crash_cause = Some(c);
            }
            None => {
                rt.crash = None;
                rt.crash_cause = None;
            }
        }
    }

    /// Graceful termination; true when the pod is gone.
    fn terminate(&mut self, pod: &Value, rt: &mut PodRt) -> bool {
        let (ns, name) = (rt.ns.clone(), rt.name.clone());
        if self.faults.stuck_pods.contains(&(ns.clone(), name.clone())) {
            return false;
        }
        let since = match rt.terminating_since {
            Some(s) => s,
            None => {
                rt.terminating_since = Some(self.now);
                if rt.running {
                    for (c, _) in containers(pod, "containers") {
                        let mut i = involved(pod);
                        i["fieldPath"] = json!(format!("spec.containers{{{c}}}"));
                        self.events.emit(
                            &self.store,
                            &self.now_str,
                            &i,
                            &ns,
                            "Normal",
                            "Killing",
                            &format!("Stopping container {c}"),
                            "kubelet",
                            &rt.node,
                        );
                    }
                }
                rt.ready = false;
                self.write_pod_status(pod, rt);
                self.now
            }
        };
        let grace = o::i64_at(pod, "/metadata/deletionGracePeriodSeconds").unwrap_or(30).max(0) as f64;
        let wait = if rt.running { grace.min(timing::TERMINATE_MAX) } else { 0.0 };
        if self.now < since + wait {
            return false;
        }
        self.store.delete(res(ids::PODS), &ns, &name, Some(0)).is_ok()
    }

    fn write_pod_status(&self, pod: &Value, rt: &mut PodRt) {
        let fp = o::fnv64(&format!(
            "{}|{}|{}|{:?}|{}|{:?}|{}|{}|{}|{}",
            rt.completed,
            rt.running,
            rt.ready,
            rt.sandbox,
            rt.restarts,
            rt.crash.as_ref().map(|c| (c.in_backoff, c.backoff as u64)),
            rt.last_term.is_some(),
            rt.terminating_since.is_some(),
            rt.started_ts,
            rt.container_ids.len()
        ));
        let rv = o::s(pod, "/metadata/resourceVersion");
        if rt.written.as_ref().is_some_and(|(f, r)| *f == fp && r == rv) {
            return;
        }
        let status = self.pod_status(pod, rt);
        if pod.get("status") == Some(&status) {
            rt.written = Some((fp, rv.to_string()));
            return;
        }
        let written = self.store.mutate(res(ids::PODS), &rt.ns, &rt.name, |p| {
            if o::uid(p) == o::uid(pod) {
                p["status"] = status;
            }
            Ok(())
        });
        rt.written = written.ok().map(|p| (fp, o::s(&p, "/metadata/resourceVersion").to_string()));
    }

    fn pod_status(&self, pod: &Value, rt: &PodRt) -> Value {
        let now = &self.now_str;
        let main = containers(pod, "containers");
        let init = containers(pod, "initContainers");
        let mut conds: Vec<Value> =
            pod.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
        let names = |v: &[(String, String)]| v.iter().map(|c| c.0.clone()).collect::<Vec<_>>().join(" ");
        o::set_condition(
            &mut conds,
            "PodReadyToStartContainers",
            if rt.sandbox.is_some() { "True" } else { "False" },
            "",
            "",
            now,
        );
        if init.is_empty() || rt.running {
            o::set_condition(&mut conds, "Initialized", "True", "", "", now);
        } else {
            o::set_condition(
                &mut conds,
                "Initialized",
                "False",
                "ContainersNotInitialized",
                &format!("containers with incomplete status: [{}]", names(&init)),
                now,
            );
        }
        let ready = rt.ready && rt.terminating_since.is_none();
        if ready {
            o::set_condition(&mut conds, "Ready", "True", "", "", now);
            o::set_condition(&mut conds, "ContainersReady", "True", "", "", now);
        } else {
            let m = format!("containers with unready status: [{}]", names(&main));
            o::set_condition(&mut conds, "Ready", "False", "ContainersNotReady", &m, now);
            o::set_condition(&mut conds, "ContainersReady", "False", "ContainersNotReady", &m, now);
        }
        o::set_condition(&mut conds, "PodScheduled", "True", "", "", now);
        for c in conds.iter_mut() {
            if let Some(m) = c.as_object_mut() {
                m.entry("lastProbeTime").or_insert(Value::Null);
            }
        }
        let order = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"];
        conds.sort_by_key(|c| order.iter().position(|t| *t == o::s(c, "/type")).unwrap_or(9));

        let waiting_reason = if init.is_empty() { "ContainerCreating" } else { "PodInitializing" };
        let statuses: Vec<Value> = main
            .iter()
            .enumerate()
            .map(|(i, (cname, image))| {
                let mut st = json!({
                    "name": cname, "image": image, "imageID": if rt.running { image_id(image) } else { String::new() },
                    "ready": ready, "restartCount": rt.restarts, "started": rt.running,
                    "lastState": {}, "state": {"waiting": {"reason": waiting_reason}},
                });
                if rt.running {
                    st["containerID"] = json!(format!("containerd://{}", rt.container_ids.get(i).cloned().unwrap_or_default()));
                    st["state"] = json!({"running": {"startedAt": rt.started_ts}});
                }
                if rt.completed {
                    st["started"] = json!(false);
                    st["state"] = json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": rt.started_ts,
                        "finishedAt": rt.started_ts, "containerID": st["containerID"].clone()}});
                }
                if i == 0 {
                    if let Some(c) = &rt.crash
                        && c.in_backoff
                    {
                        st["started"] = json!(false);
                        st["state"] = json!({"waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": format!("back-off {}s restarting failed container={cname} pod={}_{}({})", c.backoff as u64, rt.name, rt.ns, o::uid(pod)),
                        }});
                    }
                    if let Some(t) = &rt.last_term {
                        st["lastState"] = t.clone();
                    }
                }
                st
            })
            .collect();
        let mut status = json!({
            "phase": if rt.completed { "Succeeded" } else if rt.running { "Running" } else { "Pending" },
            "conditions": conds,
            "containerStatuses": statuses,
            "hostIP": self.nodes.get(&rt.node).map(|k| k.ip.clone()).unwrap_or_default(),
            "startTime": rt.start_time,
            "qosClass": pod.pointer("/status/qosClass").cloned().unwrap_or(json!("BestEffort")),
        });
        status["hostIPs"] = json!([{"ip": status["hostIP"].clone()}]);
        if !init.is_empty() {
            let inits: Vec<Value> = init
                .iter()
                .map(|(cname, image)| {
                    if rt.running {
                        json!({"name": cname, "image": image, "imageID": image_id(image), "ready": true, "restartCount": 0, "started": false,
                               "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": rt.started_ts, "finishedAt": rt.started_ts}}})
                    } else {
                        json!({"name": cname, "image": image, "imageID": "", "ready": false, "restartCount": 0, "started": false,
                               "state": {"waiting": {"reason": "PodInitializing"}}})
                    }
                })
                .collect();
            status["initContainerStatuses"] = json!(inits);
        }
        if let Some(sb) = &rt.sandbox {
            status["podIP"] = json!(sb.ip);
            status["podIPs"] = json!([{"ip": sb.ip}]);
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipam_flannel_sequential_cilium_separate() {
        let mut ipam = Ipam::default();
        let mut rng = fastrand::Rng::with_seed(1);
        assert_eq!(ipam.alloc("n", 3, Cni::Flannel, &mut rng).as_deref(), Some("10.42.3.2"));
        assert_eq!(ipam.alloc("n", 3, Cni::Flannel, &mut rng).as_deref(), Some("10.42.3.3"));
        ipam.release("n", Cni::Flannel, "10.42.3.2");
        // host-local continues after the last reserved address.
        assert_eq!(ipam.alloc("n", 3, Cni::Flannel, &mut rng).as_deref(), Some("10.42.3.4"));
        let c = ipam.alloc("n", 3, Cni::Cilium, &mut rng).unwrap();
        assert!(c.starts_with("10.42.3."));
        let mut all = BTreeSet::new();
        for _ in 0..250 {
            if let Some(ip) = ipam.alloc("m", 0, Cni::Cilium, &mut rng) {
                assert!(all.insert(ip));
            }
        }
        assert_eq!(all.len(), 250);
    }

    #[test]
    fn image_ids() {
        assert!(
            image_id("rancher/mirrored-coredns-coredns:1.12.1")
                .starts_with("docker.io/rancher/mirrored-coredns-coredns@sha256:")
        );
        assert!(image_id("quay.io/cilium/cilium:v1.16.4").starts_with("quay.io/cilium/cilium@sha256:"));
    }
}
