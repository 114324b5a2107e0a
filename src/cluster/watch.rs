//! kube-runtime watchers for everything the cockpit shows, merged into one event stream.
//!
//! Each resource is watched independently (list + watch, never polled) with backoff on errors;
//! a resource that is forbidden (403) or not installed (404, no CRD) is reported as such and the
//! others keep working. No error ends a watch: after an API outage of any length, a watch cut, a
//! 410 or a 429 it lists again, and the successful list marks its source live (see
//! [`run_watch`]). Objects are reduced to summaries here, so the state never holds
//! managedFields or specs it does not show.

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher::{self, watcher};
use serde::de::DeserializeOwned;
use std::fmt;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::app::model::{
    AppSummary, EndpointSummary, NodeStartEvent, NodeSummary, PdbSummary, PodSummary, WorkloadSummary,
};
use crate::cluster::client::redact;
use crate::cluster::error_text;

/// Which watched resource an event or error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceId {
    Nodes,
    Pods,
    CiliumDaemonSet,
    CiliumOperator,
    CiliumNodes,
    Applications,
    Pdbs,
    /// Node Events with reason `Starting` (when k3s last started on each node).
    NodeEvents,
    /// `cilium.io/v2` CiliumEndpoints (which pods Cilium manages).
    CiliumEndpoints,
}

impl SourceId {
    pub const ALL: [SourceId; 9] = [
        SourceId::Nodes,
        SourceId::Pods,
        SourceId::CiliumDaemonSet,
        SourceId::CiliumOperator,
        SourceId::CiliumNodes,
        SourceId::Applications,
        SourceId::Pdbs,
        SourceId::NodeEvents,
        SourceId::CiliumEndpoints,
    ];

    pub fn label(self) -> &'static str {
        match self {
            SourceId::Nodes => "nodes",
            SourceId::Pods => "pods",
            SourceId::CiliumDaemonSet => "daemonset/cilium",
            SourceId::CiliumOperator => "deployment/cilium-operator",
            SourceId::CiliumNodes => "ciliumnodes.cilium.io",
            SourceId::Applications => "applications.argoproj.io",
            SourceId::Pdbs => "poddisruptionbudgets",
            SourceId::NodeEvents => "events (node Starting)",
            SourceId::CiliumEndpoints => "ciliumendpoints.cilium.io",
        }
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A change to one watched collection, in kube-runtime's terms (relists are Init..InitDone).
#[derive(Debug, Clone, PartialEq)]
pub enum Change<T> {
    /// A relist starts: objects not re-announced before `InitDone` are gone.
    Init,
    InitApply(T),
    InitDone,
    Apply(T),
    Delete(T),
}

/// Why a source is not delivering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceProblem {
    /// 403: the identity may not list/watch it.
    Forbidden(String),
    /// 404: the resource is not served (CRD not installed).
    NotInstalled(String),
    /// Connection refused, timeouts, 5xx: the API is unreachable or failing.
    Unreachable(String),
    Other(String),
}

impl SourceProblem {
    pub fn message(&self) -> &str {
        match self {
            SourceProblem::Forbidden(m)
            | SourceProblem::NotInstalled(m)
            | SourceProblem::Unreachable(m)
            | SourceProblem::Other(m) => m,
        }
    }
}

/// Everything the Kubernetes sources tell the state.
#[derive(Debug, Clone, PartialEq)]
pub enum KubeEvent {
    Nodes(Change<NodeSummary>),
    Pods(Change<PodSummary>),
    CiliumDaemonSet(Change<WorkloadSummary>),
    CiliumOperator(Change<WorkloadSummary>),
    CiliumNodes(Change<String>),
    Applications(Change<AppSummary>),
    Pdbs(Change<PdbSummary>),
    NodeStarts(Change<NodeStartEvent>),
    CiliumEndpoints(Change<EndpointSummary>),
    /// A source failed; the watcher backs off and retries by itself.
    Problem(SourceId, SourceProblem),
}

impl KubeEvent {
    /// `Init` only announces a (re)list attempt; it says nothing about success.
    pub fn is_init(&self) -> bool {
        matches!(
            self,
            KubeEvent::Nodes(Change::Init)
                | KubeEvent::Pods(Change::Init)
                | KubeEvent::CiliumDaemonSet(Change::Init)
                | KubeEvent::CiliumOperator(Change::Init)
                | KubeEvent::CiliumNodes(Change::Init)
                | KubeEvent::Applications(Change::Init)
                | KubeEvent::Pdbs(Change::Init)
                | KubeEvent::NodeStarts(Change::Init)
                | KubeEvent::CiliumEndpoints(Change::Init)
        )
    }

    pub fn source(&self) -> SourceId {
        match self {
            KubeEvent::Nodes(_) => SourceId::Nodes,
            KubeEvent::Pods(_) => SourceId::Pods,
            KubeEvent::CiliumDaemonSet(_) => SourceId::CiliumDaemonSet,
            KubeEvent::CiliumOperator(_) => SourceId::CiliumOperator,
            KubeEvent::CiliumNodes(_) => SourceId::CiliumNodes,
            KubeEvent::Applications(_) => SourceId::Applications,
            KubeEvent::Pdbs(_) => SourceId::Pdbs,
            KubeEvent::NodeStarts(_) => SourceId::NodeEvents,
            KubeEvent::CiliumEndpoints(_) => SourceId::CiliumEndpoints,
            KubeEvent::Problem(s, _) => *s,
        }
    }
}

/// Where the cockpit looks.
#[derive(Debug, Clone)]
pub struct WatchTargets {
    pub cilium_namespace: String,
    pub argo_namespace: String,
}

impl Default for WatchTargets {
    fn default() -> Self {
        WatchTargets { cilium_namespace: "kube-system".into(), argo_namespace: "argocd".into() }
    }
}

/// How the watchers retry (the defaults are client-go's reflector's; tests shorten them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchOptions {
    /// Shortest wait after a failure.
    pub min_backoff: Duration,
    /// Longest wait between attempts, however long the API has been gone.
    pub max_backoff: Duration,
    /// How long a watch must have delivered without failing before the next failure starts the
    /// backoff from `min_backoff` again.
    pub stable_after: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions { min_backoff: MIN_BACKOFF, max_backoff: MAX_BACKOFF, stable_after: STABLE_AFTER }
    }
}

/// Starts every watcher; events go to `tx` until it is closed.
pub fn spawn_all<E>(client: kube::Client, targets: &WatchTargets, tx: mpsc::Sender<E>) -> Vec<JoinHandle<()>>
where
    E: From<KubeEvent> + Send + 'static,
{
    spawn_all_with(client, targets, tx, WatchOptions::default())
}

/// [`spawn_all`] with retry options.
pub fn spawn_all_with<E>(
    client: kube::Client,
    targets: &WatchTargets,
    tx: mpsc::Sender<E>,
    opts: WatchOptions,
) -> Vec<JoinHandle<()>>
where
    E: From<KubeEvent> + Send + 'static,
{
    let w = Spawner(opts);
    let ns = &targets.cilium_namespace;
    let by_name = |n: &str| watcher::Config::default().fields(&format!("metadata.name={n}"));
    let application = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"),
        "applications",
    );
    let cilium_node =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("cilium.io", "v2", "CiliumNode"), "ciliumnodes");
    let evidence = spawn_node_evidence(&w, client.clone(), tx.clone());
    let mut tasks = vec![
        w.spawn(Api::<Node>::all(client.clone()), watcher::Config::default(), SourceId::Nodes, tx.clone(), |c| {
            KubeEvent::Nodes(c.map(|n| NodeSummary::from_node(&n)))
        }),
        w.spawn(Api::<Pod>::all(client.clone()), watcher::Config::default(), SourceId::Pods, tx.clone(), |c| {
            KubeEvent::Pods(c.map(|p| PodSummary::from_pod(&p)))
        }),
        w.spawn(
            Api::<DaemonSet>::namespaced(client.clone(), ns),
            by_name("cilium"),
            SourceId::CiliumDaemonSet,
            tx.clone(),
            |c| KubeEvent::CiliumDaemonSet(c.map(|d| WorkloadSummary::from_daemonset(&d))),
        ),
        w.spawn(
            Api::<Deployment>::namespaced(client.clone(), ns),
            by_name("cilium-operator"),
            SourceId::CiliumOperator,
            tx.clone(),
            |c| KubeEvent::CiliumOperator(c.map(|d| WorkloadSummary::from_deployment(&d))),
        ),
        w.spawn(
            Api::<PodDisruptionBudget>::all(client.clone()),
            watcher::Config::default(),
            SourceId::Pdbs,
            tx.clone(),
            |c| KubeEvent::Pdbs(c.map(|p| PdbSummary::from_pdb(&p))),
        ),
        w.spawn(
            Api::all_with(client.clone(), &cilium_node),
            watcher::Config::default(),
            SourceId::CiliumNodes,
            tx.clone(),
            |c| KubeEvent::CiliumNodes(c.map(|o: DynamicObject| o.metadata.name.unwrap_or_default())),
        ),
        w.spawn(
            Api::namespaced_with(client, &targets.argo_namespace, &application),
            watcher::Config::default(),
            SourceId::Applications,
            tx,
            |c| {
                KubeEvent::Applications(c.map(|o: DynamicObject| {
                    let name = o.metadata.name.clone().unwrap_or_default();
                    let mut v = o.data.clone();
                    if let Some(m) = v.as_object_mut() {
                        // `data` holds everything but metadata; the summary wants deletionTimestamp.
                        if o.metadata.deletion_timestamp.is_some() {
                            m.insert("metadata".into(), serde_json::json!({ "deletionTimestamp": "set" }));
                        }
                    }
                    AppSummary::from_json(&name, &v)
                }))
            },
        ),
    ];
    tasks.extend(evidence);
    tasks
}

/// The watchers behind each node's migration state ([`crate::app::migration`]): the Node Events
/// with reason `Starting` (the kubelet's "Starting kubelet." marks a k3s start; filtered on the
/// server, so the cockpit never holds the whole event stream), and the CiliumEndpoints (a pod with
/// one is managed by Cilium, as `cilium status` counts them).
fn spawn_node_evidence<E>(w: &Spawner, client: kube::Client, tx: mpsc::Sender<E>) -> Vec<JoinHandle<()>>
where
    E: From<KubeEvent> + Send + 'static,
{
    let endpoint = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cilium.io", "v2", "CiliumEndpoint"),
        "ciliumendpoints",
    );
    vec![
        w.spawn(
            Api::<Event>::all(client.clone()),
            watcher::Config::default().fields("involvedObject.kind=Node,reason=Starting"),
            SourceId::NodeEvents,
            tx.clone(),
            |c| KubeEvent::NodeStarts(c.map(|e| NodeStartEvent::from_event(&e))),
        ),
        w.spawn(Api::all_with(client, &endpoint), watcher::Config::default(), SourceId::CiliumEndpoints, tx, |c| {
            KubeEvent::CiliumEndpoints(c.map(|o: DynamicObject| EndpointSummary::from_dynamic(&o)))
        }),
    ]
}

impl<T> Change<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Change<U> {
        match self {
            Change::Init => Change::Init,
            Change::InitApply(t) => Change::InitApply(f(t)),
            Change::InitDone => Change::InitDone,
            Change::Apply(t) => Change::Apply(f(t)),
            Change::Delete(t) => Change::Delete(f(t)),
        }
    }
}

fn from_watcher<K>(ev: watcher::Event<K>) -> Change<K> {
    match ev {
        watcher::Event::Init => Change::Init,
        watcher::Event::InitApply(k) => Change::InitApply(k),
        watcher::Event::InitDone => Change::InitDone,
        watcher::Event::Apply(k) => Change::Apply(k),
        watcher::Event::Delete(k) => Change::Delete(k),
    }
}

/// Starts typed watchers with the same retry options.
struct Spawner(WatchOptions);

impl Spawner {
    fn spawn<K, E>(
        &self,
        api: Api<K>,
        cfg: watcher::Config,
        source: SourceId,
        tx: mpsc::Sender<E>,
        to_event: fn(Change<K>) -> KubeEvent,
    ) -> JoinHandle<()>
    where
        K: kube::Resource + Clone + DeserializeOwned + fmt::Debug + Send + 'static,
        E: From<KubeEvent> + Send + 'static,
    {
        tokio::spawn(run_watch(api, cfg, source, tx, to_event, Backoff::new(self.0)))
    }
}

/// One resource's watch, for as long as the cockpit listens: it never ends on an error, however
/// many there are or however long the API is gone.
///
/// After a failure the watcher is started afresh, so the next attempt begins with a list. That
/// is deliberate: kube-runtime resumes a broken watch from its last resourceVersion without
/// telling anyone when it succeeds, so a source whose objects do not change (the operator
/// Deployment, PDBs) would stay STALE for hours after the API came back. A list that succeeds
/// announces itself (`Init`, `InitApply`…, `InitDone`) and makes the source live again even when
/// nothing changed; it also drops objects deleted while we were not watching.
async fn run_watch<K, E>(
    api: Api<K>,
    cfg: watcher::Config,
    source: SourceId,
    tx: mpsc::Sender<E>,
    to_event: fn(Change<K>) -> KubeEvent,
    mut backoff: Backoff,
) where
    K: kube::Resource + Clone + DeserializeOwned + fmt::Debug + Send + 'static,
    E: From<KubeEvent> + Send + 'static,
{
    loop {
        let mut stream = watcher(api.clone(), cfg.clone()).boxed();
        // A 410 (history compacted) is routine: kube-runtime re-lists by itself. Only a second
        // one without any data in between is treated as a failure (and backed off).
        let mut expired = false;
        let failure = loop {
            let item = tokio::select! {
                item = stream.next() => item,
                () = tx.closed() => return,
            };
            match item {
                // The watcher stream never ends by itself; if it does, start a new one.
                None => break None,
                Some(Ok(ev)) => {
                    // `Init` only announces a list attempt; anything else is data from the server.
                    if !matches!(ev, watcher::Event::Init) {
                        backoff.healthy();
                        expired = false;
                    }
                    if tx.send(E::from(to_event(from_watcher(ev)))).await.is_err() {
                        return;
                    }
                }
                Some(Err(e)) if is_expired(&e) && !expired => {
                    expired = true;
                    tracing::debug!(source = %source, error = %error_text::watcher_error_line(&e), "watch expired; re-listing");
                }
                Some(Err(e)) => break Some(e),
            }
        };
        let retry_after = match &failure {
            Some(e) => {
                let problem = classify(e);
                // The operator sees one line; the log keeps the whole error.
                tracing::debug!(source = %source, error = %problem.message(), detail = ?e, "watch failed; retrying");
                if tx.send(E::from(KubeEvent::Problem(source, problem))).await.is_err() {
                    return;
                }
                retry_after(e)
            }
            None => {
                tracing::warn!(source = %source, "watch stream ended; starting it again");
                None
            }
        };
        let wait = backoff.failed(retry_after);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = tx.closed() => return,
        }
    }
}

/// Whether the server said the watch's resourceVersion is too old (410 Gone / Expired).
fn is_expired(err: &watcher::Error) -> bool {
    error_text::watcher_status(err).is_some_and(|s| s.code == 410)
}

/// The server's `retryAfterSeconds` (429 "storage is (re)initializing" says 1), capped.
fn retry_after(err: &watcher::Error) -> Option<Duration> {
    let secs = error_text::watcher_status(err)?.details.as_ref()?.retry_after_seconds;
    (secs > 0).then(|| Duration::from_secs(u64::from(secs)).min(MAX_BACKOFF))
}

/// Shortest wait after a failure (default of [`WatchOptions::min_backoff`]).
pub const MIN_BACKOFF: Duration = Duration::from_millis(800);
/// Longest wait between attempts (default of [`WatchOptions::max_backoff`]).
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Default of [`WatchOptions::stable_after`].
pub const STABLE_AFTER: Duration = Duration::from_secs(10);

/// Retry delays of one watch, as client-go's reflector: 0.8 s doubling to 30 s, plus up to 50 %
/// jitter so that seven watches do not hit a recovering API server at the same instant.
///
/// The delay resets only once the watch has delivered data for `stable_after` without failing:
/// a list that succeeds followed at once by a failing watch must keep backing off, and a resource
/// that is not installed (404 each time, never any data) must not be re-listed at the minimum
/// delay forever. A watch that ran fine for a while starts again from the minimum, so a short
/// outage after a long one is recovered from quickly.
#[derive(Debug, Clone)]
pub struct Backoff {
    opts: WatchOptions,
    delay: Duration,
    healthy_since: Option<Instant>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(WatchOptions::default())
    }
}

impl Backoff {
    pub fn new(opts: WatchOptions) -> Self {
        Backoff { opts, delay: opts.min_backoff, healthy_since: None }
    }

    /// The server delivered data (a list, an event).
    pub fn healthy(&mut self) {
        self.healthy_at(Instant::now());
    }

    /// An attempt failed: how long to wait before the next one (at least `at_least`, the
    /// server's Retry-After).
    pub fn failed(&mut self, at_least: Option<Duration>) -> Duration {
        self.failed_at(Instant::now(), at_least, fastrand::f64())
    }

    fn healthy_at(&mut self, now: Instant) {
        self.healthy_since.get_or_insert(now);
    }

    /// `jitter` in 0..1 (random in [`Backoff::failed`]).
    fn failed_at(&mut self, now: Instant, at_least: Option<Duration>, jitter: f64) -> Duration {
        if self.healthy_since.take().is_some_and(|t| now.saturating_duration_since(t) >= self.opts.stable_after) {
            self.delay = self.opts.min_backoff;
        }
        let wait = self.delay.mul_f64(1.0 + jitter.clamp(0.0, 1.0) * 0.5).max(at_least.unwrap_or_default());
        self.delay = (self.delay * 2).min(self.opts.max_backoff);
        wait
    }
}

/// Turns a watcher error into what the operator needs to know, as one readable line (see
/// [`error_text`]); 5xx and transport failures mean the API is unreachable.
pub fn classify(err: &watcher::Error) -> SourceProblem {
    let line = error_text::watcher_error_line(err);
    let message = |s: &kube::core::Status| if s.message.trim().is_empty() { line.clone() } else { redact(&s.message) };
    match error_text::watcher_status(err) {
        Some(s) if s.code == 403 => SourceProblem::Forbidden(message(s)),
        Some(s) if s.code == 404 => SourceProblem::NotInstalled(message(s)),
        Some(s) if s.code >= 500 => SourceProblem::Unreachable(line),
        Some(_) => SourceProblem::Other(line),
        None => match err {
            watcher::Error::InitialListFailed(e)
            | watcher::Error::WatchStartFailed(e)
            | watcher::Error::WatchFailed(e)
                if is_transport(e) =>
            {
                SourceProblem::Unreachable(line)
            }
            _ => SourceProblem::Other(line),
        },
    }
}

/// Connection refused, TLS, timeouts: the request never got an answer (a read-only refusal is
/// the cockpit's own doing, not the API's).
fn is_transport(e: &kube::Error) -> bool {
    match e {
        kube::Error::HyperError(_) => true,
        kube::Error::Service(b) => b.downcast_ref::<crate::cluster::client::ReadOnlyRefused>().is_none(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_err(code: u16, reason: &str, message: &str) -> kube::Error {
        let mut s = kube::core::Status::failure(message, reason);
        s.code = code;
        kube::Error::Api(Box::new(s))
    }

    #[test]
    fn problems_are_classified_and_readable() {
        let busy = watcher::Error::WatchStartFailed(status_err(429, "TooManyRequests", "storage is (re)initializing"));
        assert_eq!(classify(&busy), SourceProblem::Other("429 TooManyRequests: storage is (re)initializing".into()));
        let down = watcher::Error::InitialListFailed(status_err(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        ));
        assert_eq!(
            classify(&down),
            SourceProblem::Unreachable(
                "503 ServiceUnavailable: the server is currently unable to handle the request".into()
            )
        );
        let missing = watcher::Error::InitialListFailed(status_err(404, "NotFound", "the server could not find it"));
        assert_eq!(classify(&missing), SourceProblem::NotInstalled("the server could not find it".into()));
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let refused = watcher::Error::WatchStartFailed(kube::Error::Service(Box::new(io)));
        assert_eq!(classify(&refused), SourceProblem::Unreachable("Connection refused".into()));
        let gone =
            watcher::Error::WatchError(Box::new(kube::core::Status::failure("too old", "Expired").with_code(410)));
        assert!(is_expired(&gone));
        assert!(!is_expired(&busy));
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let with = |secs: u32| {
            let mut s = kube::core::Status::failure("storage is (re)initializing", "TooManyRequests").with_code(429);
            s.details = serde_json::from_value(serde_json::json!({ "retryAfterSeconds": secs })).ok();
            watcher::Error::WatchStartFailed(kube::Error::Api(Box::new(s)))
        };
        assert_eq!(retry_after(&with(1)), Some(Duration::from_secs(1)));
        assert_eq!(retry_after(&with(0)), None);
        assert_eq!(retry_after(&with(3600)), Some(MAX_BACKOFF));
        let mut b = Backoff::default();
        assert_eq!(b.failed_at(Instant::now(), Some(Duration::from_secs(1)), 0.0), Duration::from_secs(1));
    }

    #[test]
    fn backoff_grows_to_the_cap_and_resets_only_after_a_stable_watch() {
        let t0 = Instant::now();
        let mut b = Backoff::default();
        let waits: Vec<Duration> = (0..8).map(|_| b.failed_at(t0, None, 0.0)).collect();
        assert_eq!(waits[0], MIN_BACKOFF);
        assert_eq!(waits[1], MIN_BACKOFF * 2);
        assert_eq!(*waits.last().unwrap(), MAX_BACKOFF, "{waits:?}");
        // Jitter stays within +50 %.
        assert!(b.failed_at(t0, None, 1.0) <= MAX_BACKOFF.mul_f64(1.5));
        // A list that succeeds, then a watch that fails at once: keep backing off.
        b.healthy_at(t0);
        assert_eq!(b.failed_at(t0 + Duration::from_millis(50), None, 0.0), MAX_BACKOFF);
        // Data for longer than STABLE_AFTER: the next outage starts from the minimum again.
        b.healthy_at(t0 + Duration::from_secs(1));
        assert_eq!(b.failed_at(t0 + Duration::from_secs(1) + STABLE_AFTER, None, 0.0), MIN_BACKOFF);
    }
}
