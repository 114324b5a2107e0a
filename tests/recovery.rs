//! Every watch recovers by itself, and its badge says so: after API outages longer than the
//! longest backoff, a 429 from a watch cache that is (re)initializing, watch cuts with 410s, and a
//! k3s server restart, every source of the cockpit is `live` again within a bounded time — by a
//! successful re-list, with no object having to change. Errors reach the Events pane as one
//! readable line. Without Hubble Relay, the Service is watched, never polled.
#![cfg(feature = "sim")] // drives the simulated cluster

use std::collections::BTreeMap;
use std::time::Duration;

use cutover::app::state::{AppState, Mode, SourceState};
use cutover::cli::GlobalArgs;
use cutover::cluster::watch::{self, Change, KubeEvent, SourceId, WatchOptions, WatchTargets};
use cutover::sim::{Fault, Sim, SimOptions};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Generous: recovery is bounded by the backoff, not a performance figure.
const RECOVERY: Duration = Duration::from_secs(45);

/// How a source went from failing back to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovered {
    /// `InitApply`/`InitDone`: a re-list (no object had to change).
    Relist,
    /// `Apply`/`Delete`: an object changed.
    Change,
}

/// The cockpit's state fed by the real watchers over loopback, as `tui::run` does it.
struct Cockpit {
    state: AppState,
    rx: mpsc::Receiver<KubeEvent>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Every recovery since the start, by source.
    recoveries: Vec<(SourceId, Recovered)>,
    /// Problems seen, by source.
    problems: BTreeMap<SourceId, usize>,
}

impl Drop for Cockpit {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Cockpit {
    async fn start(sim: &Sim, opts: WatchOptions) -> Cockpit {
        let global = GlobalArgs {
            kubeconfig: Some(sim.kubeconfig.clone()),
            context: Some("sim-viewer".into()),
            read_only: true,
            ..Default::default()
        };
        let conn = cutover::cluster::client::connect(&global, |_| true).await.expect("connects");
        let (tx, rx) = mpsc::channel::<KubeEvent>(4096);
        let tasks = watch::spawn_all_with(conn.client.clone(), &WatchTargets::default(), tx, opts);
        Cockpit {
            state: AppState::new(jiff::Timestamp::now(), Mode::ReadOnly, 100),
            rx,
            tasks,
            recoveries: Vec::new(),
            problems: BTreeMap::new(),
        }
    }

    fn apply(&mut self, ev: KubeEvent) {
        self.state.now = jiff::Timestamp::now();
        let source = ev.source();
        let was_failing = matches!(self.state.sources[&source].state, SourceState::Failing { .. });
        let how = match &ev {
            KubeEvent::Problem(..) => {
                *self.problems.entry(source).or_default() += 1;
                None
            }
            KubeEvent::Nodes(c) => kind(c),
            KubeEvent::Pods(c) => kind(c),
            KubeEvent::CiliumDaemonSet(c) => kind(c),
            KubeEvent::CiliumOperator(c) => kind(c),
            KubeEvent::CiliumNodes(c) => kind(c),
            KubeEvent::Applications(c) => kind(c),
            KubeEvent::Pdbs(c) => kind(c),
            KubeEvent::NodeStarts(c) => kind(c),
            KubeEvent::CiliumEndpoints(c) => kind(c),
        };
        self.state.on_kube(ev);
        let live = matches!(self.state.sources[&source].state, SourceState::Live { .. });
        if let (true, true, Some(how)) = (was_failing, live, how) {
            self.recoveries.push((source, how));
        }
    }

    /// Feeds events until `done` holds (checked after each event and every 100 ms).
    async fn until(&mut self, what: &str, limit: Duration, done: impl Fn(&AppState) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            self.state.now = jiff::Timestamp::now();
            if done(&self.state) {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: not within {limit:?}\n{}", self.describe());
            if let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(100), self.rx.recv()).await {
                self.apply(ev);
            }
        }
    }

    /// Feeds whatever arrives for `d`.
    async fn run_for(&mut self, d: Duration) {
        self.until("run", d + Duration::from_secs(1), {
            let end = Instant::now() + d;
            move |_| Instant::now() >= end
        })
        .await;
    }

    fn describe(&self) -> String {
        let mut out = String::new();
        for (id, s) in &self.state.sources {
            out.push_str(&format!("  {id}: {:?}\n", s.state));
        }
        for l in &self.state.log {
            out.push_str(&format!("  log: {}\n", l.text));
        }
        out
    }

    fn log_lines(&self) -> Vec<String> {
        self.state.log.iter().map(|l| l.text.clone()).collect()
    }
}

fn kind<T>(c: &Change<T>) -> Option<Recovered> {
    match c {
        Change::Init => None,
        Change::InitApply(_) | Change::InitDone => Some(Recovered::Relist),
        Change::Apply(_) | Change::Delete(_) => Some(Recovered::Change),
    }
}

fn all_live(s: &AppState) -> bool {
    s.sources.values().all(|src| matches!(src.state, SourceState::Live { .. }))
}

fn all_failing(s: &AppState) -> bool {
    s.sources.values().all(|src| matches!(src.state, SourceState::Failing { .. }))
}

/// Short backoff, so that an outage of a few seconds is many times the longest wait.
fn quick() -> WatchOptions {
    WatchOptions {
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
        stable_after: Duration::from_secs(2),
    }
}

async fn sim(scenario: &str, speed: f64) -> Sim {
    Sim::start(SimOptions { scenario: scenario.into(), speed, ..Default::default() }).await.expect("sim starts")
}

/// Asserts that every source that failed since `mark` recovered, and through a re-list.
fn assert_recovered_by_relist(c: &Cockpit, mark: usize) {
    let after = &c.recoveries[mark..];
    for id in SourceId::ALL {
        let how: Vec<_> = after.iter().filter(|(s, _)| *s == id).map(|(_, h)| *h).collect();
        assert!(!how.is_empty(), "{id} never recovered: {after:?}\n{}", c.describe());
        assert!(how.iter().all(|h| *h == Recovered::Relist), "{id} recovered by {how:?}, not by a re-list");
    }
}

fn assert_readable(lines: &[String]) {
    for l in lines {
        assert!(!l.contains("Status {") && !l.contains("ErrorResponse") && !l.contains('\n'), "debug dump: {l}");
    }
}

/// (a) A 60 s outage (simulated seconds at 6× speed: 10 s wall, ten times the longest backoff):
/// every watch re-opens, every badge is live again, the header clears, the retry count was
/// visible meanwhile and is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_api_outage_ends_with_every_source_live() {
    let sim = sim("migrated", 6.0).await;
    let mut c = Cockpit::start(&sim, quick()).await;
    c.until("initial lists", RECOVERY, all_live).await;
    let mark = c.recoveries.len();
    sim.inject(&Fault::ApiDown { seconds: 60 });
    c.until("every watch notices the outage", Duration::from_secs(8), all_failing).await;
    assert!(c.state.api_unreachable(), "{}", c.describe());
    c.until("retries counted while the API is down", Duration::from_secs(8), |s| {
        s.sources.values().all(|src| matches!(src.state, SourceState::Failing { attempts: 3.., .. }))
    })
    .await;
    c.until("every source live after the outage", RECOVERY, all_live).await;
    assert!(!c.state.api_unreachable(), "header still says API unreachable\n{}", c.describe());
    assert_recovered_by_relist(&c, mark);
    // Stays live: no lingering failure after the recovery.
    c.run_for(Duration::from_secs(2)).await;
    assert!(all_live(&c.state), "{}", c.describe());
    let lines = c.log_lines();
    assert_readable(&lines);
    assert!(
        lines.iter().any(|l| l == "nodes watch: API unreachable (503 ServiceUnavailable: the server is currently unable to handle the request)"),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l == "poddisruptionbudgets: watching again"), "{lines:?}");
}

/// (a') Outages longer than the default longest backoff (30 s), without waiting that long: back to
/// back outages of 3 s each keep the API down for 9 s while the quick backoff sits at its cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_outages_at_the_backoff_cap_still_recover() {
    let sim = sim("migrated", 1.0).await;
    let mut c = Cockpit::start(&sim, quick()).await;
    c.until("initial lists", RECOVERY, all_live).await;
    let mark = c.recoveries.len();
    for _ in 0..3 {
        sim.inject(&Fault::ApiDown { seconds: 3 });
        c.run_for(Duration::from_secs(3)).await;
        assert!(!all_live(&c.state));
    }
    c.until("every source live after the outages", RECOVERY, all_live).await;
    assert!(!c.state.api_unreachable());
    assert_recovered_by_relist(&c, mark);
}

/// (b) 429 "storage is (re)initializing" on the first list of CiliumNodes, and again on a watch
/// start after the watches are cut: retried after Retry-After, live again, one readable line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_is_retried_and_the_badge_clears() {
    let sim = sim("migrated", 1.0).await;
    sim.inject(&Fault::TooManyRequests { resource: "ciliumnodes.cilium.io".into(), count: 1 });
    let mut c = Cockpit::start(&sim, WatchOptions::default()).await;
    c.until("initial lists (one answered 429)", RECOVERY, all_live).await;
    assert_eq!(c.problems.get(&SourceId::CiliumNodes), Some(&1), "{:?}", c.problems);
    assert_eq!(c.problems.len(), 1, "only CiliumNodes failed: {:?}", c.problems);
    let line = "ciliumnodes.cilium.io watch: 429 TooManyRequests: storage is (re)initializing";
    assert!(c.log_lines().iter().any(|l| l == line), "{:?}", c.log_lines());

    // The watch (not the list) gets the 429 this time: the re-watch after a cut. The re-listed
    // source is live before its new watch request has reached the API; a cut before that request
    // arrives has nothing to cut (as with a real apiserver), so let the request arrive first.
    c.run_for(Duration::from_secs(2)).await;
    let mark = c.recoveries.len();
    sim.inject(&Fault::TooManyRequests { resource: "ciliumnodes.cilium.io".into(), count: 1 });
    sim.inject(&Fault::CutWatches);
    c.until("the re-watch is refused", RECOVERY, |s| {
        matches!(s.sources[&SourceId::CiliumNodes].state, SourceState::Failing { .. })
    })
    .await;
    c.until("CiliumNodes live again", RECOVERY, all_live).await;
    let how: Vec<_> = c.recoveries[mark..].iter().filter(|(s, _)| *s == SourceId::CiliumNodes).collect();
    assert_eq!(how, vec![&(SourceId::CiliumNodes, Recovered::Relist)]);
    assert_eq!(c.problems.get(&SourceId::CiliumNodes), Some(&2));
    assert_readable(&c.log_lines());
    let watches = sim.requests().iter().filter(|r| r.path.ends_with("/ciliumnodes") && r.code == 429).count();
    assert_eq!(watches, 2, "both 429s were answered");
}

/// Watch cuts and 410s (history compacted) are routine: the watches re-list without a single
/// problem, so no badge ever leaves `live`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_cuts_and_expired_versions_never_show_as_failures() {
    let sim = sim("migrated", 1.0).await;
    let mut c = Cockpit::start(&sim, WatchOptions::default()).await;
    c.until("initial lists", RECOVERY, all_live).await;
    for _ in 0..2 {
        sim.inject(&Fault::ExpireResourceVersions);
        sim.inject(&Fault::CutWatches);
        c.run_for(Duration::from_secs(2)).await;
    }
    // Every watch was opened again after the cuts. (A watch still re-listing when the second cut
    // comes is not open to be cut: twice at least, not always three times.)
    let per_path = || {
        let mut per: std::collections::BTreeMap<String, usize> = Default::default();
        for r in sim.requests().iter().filter(|r| r.verb == "watch") {
            *per.entry(r.path.clone()).or_default() += 1;
        }
        per
    };
    let deadline = tokio::time::Instant::now() + RECOVERY;
    while per_path().values().filter(|n| **n >= 2).count() < SourceId::ALL.len()
        && tokio::time::Instant::now() < deadline
    {
        c.run_for(Duration::from_millis(500)).await;
    }
    assert!(c.problems.is_empty(), "{:?}\n{}", c.problems, c.describe());
    assert!(all_live(&c.state), "{}", c.describe());
    let per = per_path();
    assert!(
        per.len() == SourceId::ALL.len() && per.values().all(|n| *n >= 2),
        "every watch was re-opened after the cuts: {per:?}"
    );
}

/// (c) `systemctl restart k3s` on the only server: the API is down while it starts; every watch
/// comes back (the operator Deployment and CiliumNodes too) and every badge is live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_k3s_server_restart_ends_with_every_source_live() {
    let sim = sim("migrated", 1.0).await;
    let mut c = Cockpit::start(&sim, WatchOptions::default()).await;
    c.until("initial lists", RECOVERY, all_live).await;
    let mark = c.recoveries.len();
    let server = c.state.nodes.values().find(|n| n.server).map(|n| n.name.clone()).expect("a server node");
    cutover::sim::world::node_op(&sim.shared, &server, &cutover::sim::world::NodeOp::RestartK3s).expect("restart k3s");
    c.until("the outage is noticed", Duration::from_secs(10), |s| s.api_unreachable()).await;
    c.until("every source live after the restart", RECOVERY, all_live).await;
    assert!(!c.state.api_unreachable());
    for id in [SourceId::CiliumOperator, SourceId::CiliumNodes, SourceId::Pdbs] {
        let how: Vec<_> = c.recoveries[mark..].iter().filter(|(s, _)| *s == id).map(|(_, h)| *h).collect();
        assert_eq!(how, vec![Recovered::Relist], "{id}");
    }
    assert_readable(&c.log_lines());
}

/// Without Hubble Relay the flow source watches Service hubble-relay (one list, one watch) instead
/// of asking for it at every reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_relay_service_is_watched_not_polled() {
    use cutover::hubble::client::{FlowQuery, FlowSourceOptions, HubbleEvent, RelayTarget, spawn_flow_source_with};
    let sim = sim("fresh", 1.0).await;
    let global = GlobalArgs {
        kubeconfig: Some(sim.kubeconfig.clone()),
        context: Some("sim-viewer".into()),
        read_only: true,
        ..Default::default()
    };
    let conn = cutover::cluster::client::connect(&global, |_| true).await.expect("connects");
    let (tx, mut rx) = mpsc::channel::<HubbleEvent>(64);
    let opts = FlowSourceOptions {
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        ..Default::default()
    };
    let target = RelayTarget::Kube { client: conn.client.clone(), namespace: "kube-system".into() };
    let source = spawn_flow_source_with(target, FlowQuery::follow_last(10), tx, opts);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut errors = Vec::new();
    while Instant::now() < deadline {
        if let Ok(Some(HubbleEvent::Disconnected { error, .. })) =
            tokio::time::timeout(Duration::from_millis(100), rx.recv()).await
        {
            errors.push(error);
        }
    }
    source.abort();
    assert!(errors.len() >= 5, "the source kept retrying: {errors:?}");
    assert!(errors.iter().all(|e| e.contains("no Service hubble-relay in namespace kube-system")), "{errors:?}");
    let services: Vec<_> =
        sim.requests().into_iter().filter(|r| r.path.starts_with("/api/v1/namespaces/kube-system/services")).collect();
    assert!(services.iter().all(|r| r.verb == "list" || r.verb == "watch"), "{services:?}");
    assert!(services.len() <= 3, "polled: {services:?}");
    assert!(
        services
            .iter()
            .all(|r| r.query.as_deref().is_some_and(|q| q.contains("fieldSelector=metadata.name%3Dhubble-relay"))),
        "{services:?}"
    );
}
