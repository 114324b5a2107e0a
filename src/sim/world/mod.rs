//! The simulated homelab's contents and the controllers that make it live: the seed and the
//! scenarios, the kubelet and workload controllers, the scheduler, k3s on every node (node ops),
//! Argo CD with its Git source, Cilium, PDBs, and the topology published for the relay.
//!
//! All controllers run in one loop over one [`World`] (so a seed replays the same history), write
//! the shared [`Store`](crate::sim::Store) in-process, and wake on store changes, on fault
//! changes and on a short tick. Simulated time runs `speed` times faster than wall time.

mod argo;
mod cilium;
mod events;
mod git;
mod k3s;
mod kubelet;
mod objects;
mod pdb;
mod scenario;
mod scheduler;
mod seed;
mod services;
mod topology;
mod workloads;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::sync::broadcast::error::TryRecvError;
use tokio::task::JoinHandle;

pub use k3s::{K3S_VERSION, NodeRuntime};
pub use scenario::{
    BaseScenario, CiliumOptions, GitOptions, NodeRole, Scenario, ScenarioNode, TimedFault, TimedNodeOp,
};
pub use seed::{STAGE1_VALUES, cilium_app_manifest, stage2_values};

use super::faults::{ActiveFaults, Fault};
use super::store::Store;
use super::{SimError, SimShared, TempDir};

/// Controller delays in simulated seconds (divide by `speed` for wall time).
pub mod timing {
    /// k3s restart: the node posts NotReady this long.
    pub const K3S_START: f64 = 5.0;
    /// Reboot: the machine is silent this long, then k3s starts.
    pub const REBOOT_DOWN: f64 = 20.0;
    /// systemd `RestartSec` of the k3s units: a failed k3s retries this often.
    pub const SYSTEMD_RESTART: f64 = 5.0;
    /// The kubelet re-posts unchanged node status this often (heartbeat).
    pub const NODE_STATUS_PERIOD: f64 = 60.0;
    /// A silent node becomes Ready=Unknown after this.
    pub const NODE_MONITOR_GRACE: f64 = 40.0;
    /// Node Lease renewal.
    pub const LEASE_RENEW: f64 = 10.0;
    /// Sandbox ready → containers running: PULL_MIN + up to PULL_JITTER.
    pub const PULL_MIN: f64 = 1.0;
    pub const PULL_JITTER: f64 = 2.0;
    /// Running → Ready: READY_MIN + up to READY_JITTER (per pod name).
    pub const READY_MIN: f64 = 0.5;
    pub const READY_JITTER: f64 = 1.5;
    /// Cilium agent Running → Ready: AGENT_READY + node index × AGENT_STAGGER (node by node).
    pub const AGENT_READY: f64 = 4.0;
    pub const AGENT_STAGGER: f64 = 3.0;
    /// A Job's pod (a probe client) runs this long, then its containers exit 0.
    pub const JOB_RUN: f64 = 8.0;
    /// A crashing container runs this long before it exits.
    pub const CRASH_RUN: f64 = 1.5;
    /// Graceful termination takes min(grace period, this).
    pub const TERMINATE_MAX: f64 = 3.0;
    /// FailedCreatePodSandBox / NetworkNotReady events per pod at most this often.
    pub const SANDBOX_EVENT_EVERY: f64 = 30.0;
    /// An Argo CD sync operation runs this long.
    pub const ARGO_SYNC: f64 = 1.5;
    /// Periodic app reconciliation (`timeout.reconciliation`).
    pub const ARGO_RECONCILE: f64 = 180.0;
    /// selfHeal waits this long after the last sync.
    pub const ARGO_SELF_HEAL: f64 = 5.0;
    /// The repo's `main` is polled this often.
    pub const GIT_POLL: f64 = 2.0;
}

/// What an operator does on a node over SSH, accepted by the sim through the `/simulator` hook
/// (and the library) so that a per-node cutover can be rehearsed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum NodeOp {
    /// Replace `/etc/rancher/k3s/config.yaml` on the node (YAML text, k3s config keys).
    WriteK3sConfig { config: String },
    /// `systemctl restart k3s` (servers) or `k3s-agent` (agents).
    RestartK3s,
    /// Reboot the node (also clears flannel/kube-proxy leftovers).
    Reboot,
    /// `cat /etc/rancher/k3s/config.yaml`.
    ReadK3sConfig,
    /// What an operator would look at on the node: k3s state and args, flannel/kube-proxy
    /// leftovers, containerd CNI dirs and the files in them.
    Inspect,
    /// Write `/etc/rancher/k3s/config.yaml.d/<name>` (raw text, stored as given: k3s parses the
    /// drop-ins, in lexical order after config.yaml, at its next start).
    WriteDropin { name: String, content: String },
    /// `cat /etc/rancher/k3s/config.yaml.d/<name>` (Err when absent).
    ReadDropin { name: String },
    /// `rm /etc/rancher/k3s/config.yaml.d/<name>` (Err when absent).
    RemoveDropin { name: String },
    /// The file names in `/etc/rancher/k3s/config.yaml.d/`, one a line.
    ListDropins,
    /// `journalctl -u k3s|k3s-agent -n <lines>`: the unit's last journal lines.
    Journal { lines: usize },
    /// `systemctl status k3s|k3s-agent`: the unit's state (Err = the unit is not active, as
    /// `systemctl status` exits 3).
    Status,
}

/// Simulated clock: `offset + elapsed wall time × speed`.
#[derive(Debug, Clone)]
struct SimClock {
    start: Instant,
    speed: f64,
    offset: f64,
}

impl SimClock {
    fn now(&self) -> f64 {
        self.offset + self.start.elapsed().as_secs_f64() * self.speed
    }
}

enum TimelineItem {
    Fault(Fault),
    NodeOp(String, NodeOp),
}

/// The world: everything the controllers know beyond the store.
pub(crate) struct World {
    pub(crate) store: Store,
    pub(crate) rng: fastrand::Rng,
    pub(crate) scenario: Scenario,
    /// Simulated seconds since the world was created.
    pub(crate) now: f64,
    pub(crate) now_str: String,
    pub(crate) nodes: BTreeMap<String, k3s::K3sNode>,
    pub(crate) pods: BTreeMap<String, kubelet::PodRt>,
    pub(crate) ipam: kubelet::Ipam,
    pub(crate) argo: argo::ArgoState,
    pub(crate) cilium: cilium::CiliumState,
    pub(crate) events: events::EventLog,
    pub(crate) faults: ActiveFaults,
    pub(crate) git: git::GitState,
    /// Faults the world wants injected into the shared state (API outages on server restarts,
    /// scenario faults).
    pub(crate) outbox: Vec<Fault>,
    pub(crate) taint_since: BTreeMap<(String, String), f64>,
    /// Template hashes by (workload uid, generation).
    pub(crate) hashes: BTreeMap<(String, i64), String>,
    /// Longhorn volume contents and the volume probes' output, shared with the API.
    pub(crate) volumes: crate::sim::probes::Volumes,
    timeline: Vec<(f64, TimelineItem)>,
    timeline_origin: f64,
    /// Off while seeding: scenario faults and node ops count from the start of the run.
    live: bool,
}

impl World {
    pub(crate) fn new(store: Store, scenario: Scenario, seed: u64) -> World {
        let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed_0fc0_ffee);
        let nodes = k3s::nodes_from_scenario(&scenario, &mut rng);
        let mut timeline: Vec<(f64, TimelineItem)> = Vec::new();
        for f in &scenario.faults {
            timeline.push((f.at, TimelineItem::Fault(f.fault.clone())));
        }
        for op in &scenario.node_ops {
            timeline.push((op.at, TimelineItem::NodeOp(op.node.clone(), op.op.clone())));
        }
        timeline.sort_by(|a, b| a.0.total_cmp(&b.0));
        let now_str = store.now_string();
        World {
            store,
            rng,
            scenario,
            now: 0.0,
            now_str,
            nodes,
            pods: BTreeMap::new(),
            ipam: kubelet::Ipam::default(),
            argo: argo::ArgoState::default(),
            cilium: cilium::CiliumState::default(),
            events: events::EventLog::new(seed),
            faults: ActiveFaults::default(),
            git: git::GitState::default(),
            outbox: Vec::new(),
            taint_since: BTreeMap::new(),
            hashes: BTreeMap::new(),
            volumes: Default::default(),
            timeline,
            timeline_origin: 0.0,
            live: false,
        }
    }

    /// Runs every controller once at simulated time `now`.
    pub(crate) fn step(&mut self, now: f64) {
        self.now = now.max(self.now);
        self.now_str = self.store.now_string();
        self.run_timeline();
        self.k3s_node_deletions();
        self.k3s_tick();
        self.cilium_tick();
        self.gc_tick();
        self.workloads_tick();
        self.taint_eviction_tick();
        self.schedule_tick();
        self.kubelet_tick();
        self.services_tick();
        self.pdb_tick();
        self.argo_tick();
    }

    /// Steps until the store stops changing (controllers react to each other's writes).
    fn run_until_quiet(&mut self, now: f64) {
        for _ in 0..6 {
            let rv = self.store.resource_version();
            self.step(now);
            if self.store.resource_version() == rv {
                break;
            }
        }
    }

    /// Simulated time of the next timer (a container start, readiness, a k3s restart finishing,
    /// a heartbeat, an Argo sync or reconciliation…), at most `IDLE` seconds ahead. Store
    /// changes wake the loop earlier.
    fn next_due(&self) -> f64 {
        const IDLE: f64 = 5.0;
        let now = self.now;
        let mut due = now + IDLE;
        // Timers already past were handled by the step that just ran (or wait for a change).
        let mut at = |t: f64| {
            if t > now && t < due {
                due = t;
            }
        };
        for k in self.nodes.values() {
            match &k.state {
                k3s::ProcState::Starting { until } | k3s::ProcState::Rebooting { until } => at(*until),
                k3s::ProcState::Failed { retry_at, .. } => at(*retry_at),
                k3s::ProcState::Up => {}
            }
            if k.posting() {
                at(k.last_post + timing::NODE_STATUS_PERIOD);
                at(k.last_lease + timing::LEASE_RENEW);
            } else {
                at(k.last_post + timing::NODE_MONITOR_GRACE);
            }
        }
        for rt in self.pods.values() {
            if rt.sandbox.is_none() {
                at(now + 1.0);
            }
            if let (false, Some(t)) = (rt.running, rt.containers_at) {
                at(t);
            }
            if let (false, Some(t)) = (rt.ready, rt.ready_at) {
                at(t);
            }
            if let Some(c) = &rt.crash {
                at(c.until);
            }
            if let (false, Some(t)) = (rt.completed, rt.completes_at) {
                at(t);
            }
            if let Some(t) = rt.terminating_since {
                at(t + timing::TERMINATE_MAX);
            }
        }
        for a in self.argo.apps.values() {
            if let Some(op) = &a.op {
                at(op.finish_at);
            }
            at(a.last_reconcile + timing::ARGO_RECONCILE);
            if now - a.last_sync_finished < timing::ARGO_SELF_HEAL * 2.0 {
                at(a.last_sync_finished + timing::ARGO_SELF_HEAL);
            }
        }
        for t in self.taint_since.values() {
            // Default tolerationSeconds of not-ready/unreachable.
            at(t + 300.0);
        }
        if let Some((t, _)) = self.timeline.first() {
            at(self.timeline_origin + t);
        }
        due
    }

    fn run_timeline(&mut self) {
        if !self.live {
            return;
        }
        let elapsed = self.now - self.timeline_origin;
        while self.timeline.first().is_some_and(|(at, _)| *at <= elapsed) {
            let (_, item) = self.timeline.remove(0);
            match item {
                TimelineItem::Fault(f) => {
                    tracing::info!(fault = ?f, "sim scenario: fault");
                    self.faults.apply(&f, 1.0);
                    self.outbox.push(f);
                }
                TimelineItem::NodeOp(node, op) => match self.apply_node_op(&node, &op) {
                    Ok(line) => tracing::info!(%line, "sim scenario: node op"),
                    Err(e) => tracing::info!(error = %e, "sim scenario: node op failed"),
                },
            }
        }
    }
}

/// What the running world shares with the API (node ops) and the relay.
struct Handle {
    world: Mutex<World>,
    git_dir: PathBuf,
    clock: SimClock,
    wake: Notify,
    _tmp: Option<TempDir>,
}

impl Handle {
    fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Running worlds by the address of their `SimShared` (SimShared has no slot for the world).
static WORLDS: Mutex<Vec<(usize, Weak<Handle>)>> = Mutex::new(Vec::new());

fn key(shared: &SimShared) -> usize {
    shared as *const SimShared as usize
}

fn handle_for(shared: &SimShared) -> Option<Arc<Handle>> {
    let g = WORLDS.lock().unwrap_or_else(|e| e.into_inner());
    g.iter().find(|(k, _)| *k == key(shared)).and_then(|(_, w)| w.upgrade())
}

fn register(shared: &SimShared, h: &Arc<Handle>) {
    let mut g = WORLDS.lock().unwrap_or_else(|e| e.into_inner());
    g.retain(|(k, w)| w.strong_count() > 0 && *k != key(shared));
    g.push((key(shared), Arc::downgrade(h)));
}

/// Seeds the store from the scenario and starts the controllers, the Git poller and the
/// topology publisher.
pub fn start(shared: Arc<SimShared>, scenario: &Scenario) -> Result<Vec<JoinHandle<()>>, SimError> {
    let (git_dir, tmp) = match &scenario.git.path {
        Some(p) => (p.clone(), None),
        None => {
            let t = TempDir::new().map_err(|e| SimError::Other(format!("cannot create the sim's git repo: {e}")))?;
            (t.path.join("k8s-homelab.git"), Some(t))
        }
    };
    let mut w = World::new(shared.store.clone(), scenario.clone(), shared.seed);
    w.volumes = shared.volumes.clone();
    w.seed(&git_dir).map_err(|e| SimError::Other(format!("seeding scenario {}: {e}", scenario.name)))?;
    w.journal_boot();
    w.events.enabled = true;
    w.timeline_origin = w.now;
    w.live = true;
    shared.topology.send_replace(w.topology());
    let clock = SimClock { start: Instant::now(), speed: shared.speed.max(0.001), offset: w.now };
    let handle = Arc::new(Handle { world: Mutex::new(w), git_dir, clock, wake: Notify::new(), _tmp: tmp });
    register(&shared, &handle);
    tracing::info!(scenario = %scenario.name, repo = %handle.git_dir.display(), "sim world started");
    Ok(vec![
        tokio::spawn(run_controllers(handle.clone(), shared.clone())),
        tokio::spawn(poll_git(handle.clone())),
        tokio::spawn(publish_topology(handle, shared)),
    ])
}

async fn run_controllers(handle: Arc<Handle>, shared: Arc<SimShared>) {
    let Ok(ws) = shared.store.watch_from(None) else { return };
    let mut live = ws.live;
    let mut faults_rx = shared.faults.subscribe();
    let speed = handle.clock.speed;
    loop {
        let (outbox, due) = {
            let mut w = handle.lock();
            w.faults = shared.faults.borrow().clone();
            w.run_until_quiet(handle.clock.now());
            (std::mem::take(&mut w.outbox), w.next_due())
        };
        // Sleep until the next timer (wall time), woken earlier by outside changes.
        let wait = ((due - handle.clock.now()) / speed).clamp(0.005, 1.0);
        let tick = Duration::from_secs_f64(wait);
        for f in outbox {
            shared.inject(&f);
        }
        // Our own writes are in the channel now: skip them, wake for the next outside change.
        loop {
            match live.try_recv() {
                Ok(_) | Err(TryRecvError::Lagged(_)) => {}
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Closed) => return,
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            r = live.recv() => {
                if matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                    return;
                }
            }
            _ = faults_rx.changed() => {}
            _ = handle.wake.notified() => {}
        }
    }
}

async fn poll_git(handle: Arc<Handle>) {
    let every = Duration::from_secs_f64((timing::GIT_POLL / handle.clock.speed).max(0.1));
    let dir = handle.git_dir.clone();
    let mut last = handle.lock().git.head.as_ref().map(|h| h.rev.clone());
    loop {
        tokio::time::sleep(every).await;
        match git::head_async(&dir, "main").await {
            Ok(rev) if last.as_deref() != Some(rev.as_str()) => match git::snapshot_async(&dir, &rev).await {
                Ok(snap) => {
                    tracing::info!(rev = %rev, "sim argo: new commit on main");
                    let mut w = handle.lock();
                    w.git.head = Some(snap);
                    w.git.error = None;
                    last = Some(rev);
                    drop(w);
                    handle.wake.notify_one();
                }
                Err(e) => handle.lock().git.error = Some(e),
            },
            Ok(_) => {}
            Err(e) => handle.lock().git.error = Some(e),
        }
    }
}

async fn publish_topology(handle: Arc<Handle>, shared: Arc<SimShared>) {
    let Ok(ws) = shared.store.watch_from(None) else { return };
    let mut live = ws.live;
    let debounce = Duration::from_millis(200);
    let mut last = Instant::now() - debounce;
    loop {
        if let Err(tokio::sync::broadcast::error::RecvError::Closed) = live.recv().await {
            return;
        }
        let since = last.elapsed();
        if since < debounce {
            tokio::time::sleep(debounce - since).await;
        }
        loop {
            match live.try_recv() {
                Ok(_) | Err(TryRecvError::Lagged(_)) => {}
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Closed) => return,
            }
        }
        let topo = handle.lock().topology();
        shared.topology.send_if_modified(|t| {
            if *t == topo {
                false
            } else {
                *t = topo;
                true
            }
        });
        last = Instant::now();
    }
}

/// Applies a node operation; returns a human-readable result line. Errors carry what the
/// operator would see (e.g. `Job for k3s.service failed … critical configuration value mismatch`).
pub fn node_op(shared: &SimShared, node: &str, op: &NodeOp) -> Result<String, SimError> {
    let h = handle_for(shared).ok_or_else(|| SimError::Other("the simulated world is not running".into()))?;
    let (result, outbox) = {
        let mut w = h.lock();
        let now = h.clock.now();
        w.now = now.max(w.now);
        w.now_str = w.store.now_string();
        w.faults = shared.faults.borrow().clone();
        let r = w.apply_node_op(node, op);
        (r, std::mem::take(&mut w.outbox))
    };
    for f in outbox {
        shared.inject(&f);
    }
    h.wake.notify_one();
    tracing::info!(%node, op = ?op, ok = result.is_ok(), "sim node op");
    result.map_err(SimError::Other)
}

/// Path of the simulated Git origin (branch `main`) the sim's Argo CD reads: a bare repository
/// unless the scenario names one (`git.path`, read as it is). Clone it ([`git_clone_origin`]),
/// commit and push, or use [`git_push_files`]; the sim notices within `timing::GIT_POLL`
/// simulated seconds.
pub fn git_repo(shared: &SimShared) -> Option<PathBuf> {
    handle_for(shared).map(|h| h.git_dir.clone())
}

/// The origin as a `file://` URL (what `git clone` takes on any machine).
pub fn git_url(shared: &SimShared) -> Option<String> {
    git_repo(shared).map(|p| format!("file://{}", p.display()))
}

/// The scenario's Git options: the `repoURL` the sim's Applications use (`$values` source), the
/// apps and values paths.
pub fn git_options(shared: &SimShared) -> Option<GitOptions> {
    handle_for(shared).map(|h| h.lock().scenario.git.clone())
}

/// What is on a node beyond its Node object (k3s process, flannel/kube-proxy state and leftovers,
/// CNI files). `None` for an unknown node or a stopped world.
pub fn node_runtime(shared: &SimShared, node: &str) -> Option<NodeRuntime> {
    handle_for(shared).and_then(|h| h.lock().nodes.get(node).map(k3s::K3sNode::runtime))
}

/// Whether the node is rebooting, without waiting for the world: `None` while the controllers
/// hold it (or for an unknown node). For pollers on the async runtime (the SSH servers), which
/// must not block a worker thread on the world's lock.
pub fn node_rebooting_now(shared: &SimShared, node: &str) -> Option<bool> {
    let h = handle_for(shared)?;
    let w = match h.world.try_lock() {
        Ok(w) => w,
        Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return None,
    };
    w.nodes.get(node).map(|k| matches!(k.state, k3s::ProcState::Rebooting { .. }))
}

/// Every node's runtime, by name.
pub fn node_runtimes(shared: &SimShared) -> Vec<NodeRuntime> {
    handle_for(shared).map(|h| h.lock().nodes.values().map(k3s::K3sNode::runtime).collect()).unwrap_or_default()
}

/// Simulated seconds since the sim started (after seeding).
pub fn sim_time(shared: &SimShared) -> Option<f64> {
    handle_for(shared).map(|h| h.clock.now() - h.clock.offset)
}

/// Commits `files` (path, contents) to `main` of `origin` through a temporary clone and pushes
/// (the sim's fixed identity and date), as the cockpit would. Returns the new commit.
pub fn git_push_files(origin: &Path, files: &[(&str, &str)], message: &str) -> Result<String, SimError> {
    let files: Vec<(String, Option<String>)> =
        files.iter().map(|(p, c)| (p.to_string(), Some(c.to_string()))).collect();
    git::push_files(origin, &files, message).map_err(SimError::Other)
}

/// Clones `origin` into `dest` (created private, 0700; must be empty) on `main`, with a local
/// identity (`cutover demo` <demo@cutover.invalid>) and `commit.gpgsign=false`. Returns `dest`.
pub fn git_clone_origin(origin: &Path, dest: &Path) -> Result<PathBuf, SimError> {
    git::clone_origin(origin, dest).map_err(SimError::Other)?;
    Ok(dest.to_path_buf())
}

/// Nodes with a Ready Cilium agent, from the store (helper for checks and tests).
pub fn cilium_ready_nodes(store: &Store) -> BTreeSet<String> {
    let (pods, _) = store.list(objects::res(objects::ids::PODS), Some("kube-system"));
    World::cilium_ready_nodes(&pods)
}

#[cfg(test)]
mod tests;
