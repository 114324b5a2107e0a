//! kube-runtime watchers for everything the cockpit shows, merged into one event stream.
//!
//! Each resource is watched independently (list + watch, never polled) with backoff on errors;
//! a resource that is forbidden (403) or not installed (404, no CRD) is reported as such and the
//! others keep working. Objects are reduced to summaries here, so the state never holds
//! managedFields or specs it does not show.

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher::{self, watcher};
use serde::de::DeserializeOwned;
use std::fmt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::app::model::{
    AppSummary, EndpointSummary, NodeStartEvent, NodeSummary, PdbSummary, PodSummary, WorkloadSummary,
};

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

/// Starts every watcher; events go to `tx` until it is closed.
pub fn spawn_all<E>(client: kube::Client, targets: &WatchTargets, tx: mpsc::Sender<E>) -> Vec<JoinHandle<()>>
where
    E: From<KubeEvent> + Send + 'static,
{
    let ns = &targets.cilium_namespace;
    let by_name = |n: &str| watcher::Config::default().fields(&format!("metadata.name={n}"));
    let application = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"),
        "applications",
    );
    let cilium_node =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("cilium.io", "v2", "CiliumNode"), "ciliumnodes");
    let evidence = spawn_node_evidence(client.clone(), tx.clone());
    let mut tasks = vec![
        spawn_typed(Api::<Node>::all(client.clone()), watcher::Config::default(), SourceId::Nodes, tx.clone(), |c| {
            KubeEvent::Nodes(c.map(|n| NodeSummary::from_node(&n)))
        }),
        spawn_typed(Api::<Pod>::all(client.clone()), watcher::Config::default(), SourceId::Pods, tx.clone(), |c| {
            KubeEvent::Pods(c.map(|p| PodSummary::from_pod(&p)))
        }),
        spawn_typed(
            Api::<DaemonSet>::namespaced(client.clone(), ns),
            by_name("cilium"),
            SourceId::CiliumDaemonSet,
            tx.clone(),
            |c| KubeEvent::CiliumDaemonSet(c.map(|d| WorkloadSummary::from_daemonset(&d))),
        ),
        spawn_typed(
            Api::<Deployment>::namespaced(client.clone(), ns),
            by_name("cilium-operator"),
            SourceId::CiliumOperator,
            tx.clone(),
            |c| KubeEvent::CiliumOperator(c.map(|d| WorkloadSummary::from_deployment(&d))),
        ),
        spawn_typed(
            Api::<PodDisruptionBudget>::all(client.clone()),
            watcher::Config::default(),
            SourceId::Pdbs,
            tx.clone(),
            |c| KubeEvent::Pdbs(c.map(|p| PdbSummary::from_pdb(&p))),
        ),
        spawn_typed(
            Api::all_with(client.clone(), &cilium_node),
            watcher::Config::default(),
            SourceId::CiliumNodes,
            tx.clone(),
            |c| KubeEvent::CiliumNodes(c.map(|o: DynamicObject| o.metadata.name.unwrap_or_default())),
        ),
        spawn_typed(
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
pub fn spawn_node_evidence<E>(client: kube::Client, tx: mpsc::Sender<E>) -> Vec<JoinHandle<()>>
where
    E: From<KubeEvent> + Send + 'static,
{
    let endpoint = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cilium.io", "v2", "CiliumEndpoint"),
        "ciliumendpoints",
    );
    vec![
        spawn_typed(
            Api::<Event>::all(client.clone()),
            watcher::Config::default().fields("involvedObject.kind=Node,reason=Starting"),
            SourceId::NodeEvents,
            tx.clone(),
            |c| KubeEvent::NodeStarts(c.map(|e| NodeStartEvent::from_event(&e))),
        ),
        spawn_typed(Api::all_with(client, &endpoint), watcher::Config::default(), SourceId::CiliumEndpoints, tx, |c| {
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

fn spawn_typed<K, E>(
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
    tokio::spawn(async move {
        // Backoff as client-go's reflector (0.8 s doubling to 30 s, jittered), reset only by
        // real data: kube-runtime announces `Init` before each list attempt, so a resource that
        // is not installed would otherwise be re-listed at the minimum delay forever.
        let mut stream = watcher(api, cfg).boxed();
        let mut delay = MIN_BACKOFF;
        while let Some(item) = stream.next().await {
            let ev = match item {
                Ok(ev) => {
                    if !matches!(ev, watcher::Event::Init) {
                        delay = MIN_BACKOFF;
                    }
                    to_event(from_watcher(ev))
                }
                Err(e) => KubeEvent::Problem(source, classify(&e)),
            };
            let failed = matches!(ev, KubeEvent::Problem(..));
            if tx.send(E::from(ev)).await.is_err() {
                return;
            }
            if failed {
                let jitter = 1.0 + fastrand::f64() * 0.5;
                tokio::time::sleep(delay.mul_f64(jitter)).await;
                delay = (delay * 2).min(MAX_BACKOFF);
            }
        }
    })
}

const MIN_BACKOFF: std::time::Duration = std::time::Duration::from_millis(800);
const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(30);

/// Turns a watcher error into what the operator needs to know.
pub fn classify(err: &watcher::Error) -> SourceProblem {
    let kube_err = match err {
        watcher::Error::InitialListFailed(e) | watcher::Error::WatchStartFailed(e) | watcher::Error::WatchFailed(e) => {
            Some(e)
        }
        _ => None,
    };
    let msg = crate::cluster::client::redact(&err.to_string());
    match kube_err {
        Some(kube::Error::Api(s)) if s.code == 403 => SourceProblem::Forbidden(s.message.clone()),
        Some(kube::Error::Api(s)) if s.code == 404 => SourceProblem::NotInstalled(s.message.clone()),
        Some(kube::Error::Api(s)) if s.code >= 500 => SourceProblem::Unreachable(format!("{} {}", s.code, s.message)),
        Some(kube::Error::HyperError(_) | kube::Error::Service(_)) => SourceProblem::Unreachable(msg),
        _ => match err {
            watcher::Error::WatchError(s) if s.code == 403 => SourceProblem::Forbidden(s.message.clone()),
            _ => SourceProblem::Other(msg),
        },
    }
}
