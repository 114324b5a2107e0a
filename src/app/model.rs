//! What the cockpit keeps of each Kubernetes object: small summaries made from the API objects
//! (no managedFields, no specs it does not show), built by pure functions so the state can be
//! tested without a cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::Value;

/// The `k3s.io/node-args` flags that matter for the cutover, as one node reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct K3sArgs {
    /// `server` or `agent` (first element).
    pub role: String,
    pub flannel_backend: Option<String>,
    pub disable_network_policy: bool,
    pub disable_kube_proxy: bool,
    pub cluster_cidr: Option<String>,
    pub service_cidr: Option<String>,
}

impl K3sArgs {
    /// Parses the annotation (a JSON array of strings) with the pre-flight's parser. `None` when
    /// malformed.
    pub fn parse(annotation: &str) -> Option<K3sArgs> {
        let args = crate::checks::k3s::NodeArgs::parse(annotation).ok()?;
        let value = |f: &str| args.value(f).filter(|v| !v.is_empty()).map(str::to_string);
        Some(K3sArgs {
            role: args.role.clone(),
            flannel_backend: value("flannel-backend"),
            disable_network_policy: args.bool("disable-network-policy"),
            disable_kube_proxy: args.bool("disable-kube-proxy"),
            cluster_cidr: value("cluster-cidr"),
            service_cidr: value("service-cidr"),
        })
    }

    /// Embedded flannel runs unless the backend is `none`.
    pub fn flannel_enabled(&self) -> bool {
        self.flannel_backend.as_deref() != Some("none")
    }
}

/// One node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSummary {
    pub name: String,
    /// Ready condition: Some(true/false), None = Unknown / not reported.
    pub ready: Option<bool>,
    pub ready_message: String,
    pub unschedulable: bool,
    pub server: bool,
    pub kubelet_version: String,
    pub kernel: String,
    pub os_image: String,
    pub arch: String,
    pub internal_ip: String,
    pub pod_cidr: String,
    /// `k3s.io/node-args`, when present and parseable.
    pub k3s_args: Option<K3sArgs>,
    /// `k3s.io/node-config-hash`: k3s rewrites it (with node-args) at a start whose own args or env
    /// changed, so on a server it changes exactly when the server's flags do.
    pub config_hash: String,
    /// `lastTransitionTime` of the Ready condition: a k3s restart takes the node through NotReady,
    /// so this is a lower bound of "up since" when no `Starting` event is left (events expire).
    pub ready_since: Option<jiff::Timestamp>,
    /// Any `flannel.alpha.coreos.com/*` annotation present (k3s never removes them).
    pub flannel_annotations: bool,
    pub agent_not_ready_taint: bool,
    pub taints: Vec<String>,
}

impl NodeSummary {
    pub fn from_node(n: &Node) -> NodeSummary {
        let meta = &n.metadata;
        let ann = meta.annotations.clone().unwrap_or_default();
        let labels = meta.labels.clone().unwrap_or_default();
        let status = n.status.clone().unwrap_or_default();
        let spec = n.spec.clone().unwrap_or_default();
        let ready_cond = status.conditions.as_ref().and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
        let info = status.node_info.clone().unwrap_or_default();
        let taints: Vec<String> = spec
            .taints
            .as_ref()
            .map(|ts| ts.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect())
            .unwrap_or_default();
        NodeSummary {
            name: meta.name.clone().unwrap_or_default(),
            ready: ready_cond.and_then(|c| match c.status.as_str() {
                "True" => Some(true),
                "False" => Some(false),
                _ => None,
            }),
            ready_message: ready_cond.and_then(|c| c.message.clone()).unwrap_or_default(),
            ready_since: ready_cond.and_then(|c| c.last_transition_time.as_ref()).map(|t| t.0),
            unschedulable: spec.unschedulable.unwrap_or(false),
            server: labels.get("node-role.kubernetes.io/control-plane").is_some_and(|v| v == "true")
                || labels.get("node-role.kubernetes.io/master").is_some_and(|v| v == "true"),
            kubelet_version: info.kubelet_version,
            kernel: info.kernel_version,
            os_image: info.os_image,
            arch: info.architecture,
            internal_ip: status
                .addresses
                .as_ref()
                .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
                .map(|a| a.address.clone())
                .unwrap_or_default(),
            pod_cidr: spec.pod_cidr.clone().unwrap_or_default(),
            k3s_args: ann.get("k3s.io/node-args").and_then(|a| K3sArgs::parse(a)),
            config_hash: ann.get("k3s.io/node-config-hash").cloned().unwrap_or_default(),
            flannel_annotations: ann.keys().any(|k| k.starts_with("flannel.alpha.coreos.com/")),
            agent_not_ready_taint: taints.iter().any(|t| t.starts_with("node.cilium.io/agent-not-ready")),
            taints,
        }
    }
}

/// Well-known pod roles the cockpit tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PodRole {
    #[default]
    Workload,
    CiliumAgent,
    CiliumOperator,
    HubbleRelay,
}

/// One pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSummary {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub phase: String,
    pub ready: bool,
    pub restarts: i32,
    /// e.g. CrashLoopBackOff, ContainerCreating.
    pub waiting_reason: String,
    pub role: PodRole,
    pub owner_kind: String,
    pub terminating: bool,
    pub labels: BTreeMap<String, String>,
    /// `spec.hostNetwork`: such a pod has the node's address and no CNI at all.
    pub host_network: bool,
    /// `status.podIP` (empty until the sandbox has one).
    pub ip: String,
}

impl PodSummary {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn from_pod(p: &Pod) -> PodSummary {
        let meta = &p.metadata;
        let labels: BTreeMap<String, String> = meta.labels.clone().unwrap_or_default();
        let status = p.status.clone().unwrap_or_default();
        let statuses = status.container_statuses.clone().unwrap_or_default();
        let role = match (labels.get("k8s-app").map(String::as_str), labels.get("io.cilium/app").map(String::as_str)) {
            (Some("cilium"), _) => PodRole::CiliumAgent,
            (_, Some("operator")) => PodRole::CiliumOperator,
            (Some("hubble-relay"), _) => PodRole::HubbleRelay,
            _ => PodRole::Workload,
        };
        PodSummary {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            node: p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default(),
            phase: status.phase.clone().unwrap_or_default(),
            ready: status
                .conditions
                .as_ref()
                .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
                .is_some_and(|c| c.status == "True"),
            restarts: statuses.iter().map(|c| c.restart_count).sum(),
            waiting_reason: statuses
                .iter()
                .find_map(|c| c.state.as_ref().and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.clone()))
                .unwrap_or_default(),
            role,
            owner_kind: meta
                .owner_references
                .as_ref()
                .and_then(|o| o.iter().find(|o| o.controller == Some(true)))
                .map(|o| o.kind.clone())
                .unwrap_or_default(),
            terminating: meta.deletion_timestamp.is_some(),
            labels,
            host_network: p.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false),
            ip: status.pod_ip.clone().unwrap_or_default(),
        }
    }
}

/// One `Starting` Event about a Node: the kubelet's ("Starting kubelet.") marks a start of k3s on
/// that node; the embedded kube-proxy emits its own with the same reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeStartEvent {
    /// The Event's `namespace/name` (several per node over time).
    pub key: String,
    pub node: String,
    /// `source.component` (or `reportingComponent`): `kubelet`, `kube-proxy`.
    pub component: String,
    /// The latest occurrence: the recorder bumps `count` and `lastTimestamp` on a repeat.
    pub at: Option<jiff::Timestamp>,
}

impl NodeStartEvent {
    pub fn from_event(e: &Event) -> NodeStartEvent {
        let meta = &e.metadata;
        let component = e
            .source
            .as_ref()
            .and_then(|s| s.component.clone())
            .filter(|c| !c.is_empty())
            .or_else(|| e.reporting_component.clone())
            .unwrap_or_default();
        NodeStartEvent {
            key: format!("{}/{}", meta.namespace.as_deref().unwrap_or(""), meta.name.as_deref().unwrap_or("")),
            node: e.involved_object.name.clone().unwrap_or_default(),
            component,
            at: e
                .last_timestamp
                .as_ref()
                .map(|t| t.0)
                .or_else(|| e.event_time.as_ref().map(|t| t.0))
                .or_else(|| e.first_timestamp.as_ref().map(|t| t.0)),
        }
    }

    /// The kubelet's event, i.e. a k3s (re)start on the node.
    pub fn is_kubelet(&self) -> bool {
        self.component == "kubelet"
    }
}

/// One `cilium.io/v2` CiliumEndpoint: named and namespaced like the pod it belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointSummary {
    pub namespace: String,
    pub name: String,
    /// `status.networking.addressing[0].ipv4` (empty when not reported).
    pub ip: String,
}

impl EndpointSummary {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn from_dynamic(o: &kube::api::DynamicObject) -> EndpointSummary {
        EndpointSummary {
            namespace: o.metadata.namespace.clone().unwrap_or_default(),
            name: o.metadata.name.clone().unwrap_or_default(),
            ip: o
                .data
                .pointer("/status/networking/addressing/0/ipv4")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        }
    }
}

/// A DaemonSet or Deployment's rollout numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadSummary {
    pub name: String,
    pub desired: i32,
    pub ready: i32,
    pub available: i32,
    pub updated: i32,
}

impl WorkloadSummary {
    pub fn from_daemonset(d: &DaemonSet) -> WorkloadSummary {
        let s = d.status.clone().unwrap_or_default();
        WorkloadSummary {
            name: d.metadata.name.clone().unwrap_or_default(),
            desired: s.desired_number_scheduled,
            ready: s.number_ready,
            available: s.number_available.unwrap_or(0),
            updated: s.updated_number_scheduled.unwrap_or(0),
        }
    }

    pub fn from_deployment(d: &Deployment) -> WorkloadSummary {
        let s = d.status.clone().unwrap_or_default();
        WorkloadSummary {
            name: d.metadata.name.clone().unwrap_or_default(),
            desired: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            ready: s.ready_replicas.unwrap_or(0),
            available: s.available_replicas.unwrap_or(0),
            updated: s.updated_replicas.unwrap_or(0),
        }
    }
}

/// One resource an Argo CD Application manages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppResource {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub status: String,
    pub health: String,
}

/// One Argo CD Application.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppSummary {
    pub name: String,
    pub sync: String,
    pub health: String,
    pub health_message: String,
    pub op_phase: String,
    pub op_message: String,
    pub revision: String,
    /// `status.reconciledAt`.
    pub reconciled_at: Option<jiff::Timestamp>,
    pub conditions: Vec<(String, String)>,
    pub resources: Vec<AppResource>,
    pub automated: bool,
    pub self_heal: bool,
    pub prune: bool,
    /// Helm chart and version when a source is a chart (`cilium` `1.16.4`).
    pub chart: Option<(String, String)>,
    pub terminating: bool,
}

impl AppSummary {
    /// From an `argoproj.io/v1alpha1` Application as JSON (it has no typed schema here).
    pub fn from_json(name: &str, obj: &Value) -> AppSummary {
        let s = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
        let status = obj.get("status").cloned().unwrap_or(Value::Null);
        let automated = obj.pointer("/spec/syncPolicy/automated").filter(|v| !v.is_null());
        let automated_on = automated.is_some_and(|a| a.get("enabled").and_then(Value::as_bool).unwrap_or(true));
        let sources: Vec<Value> = match obj.pointer("/spec/sources").and_then(Value::as_array) {
            Some(a) => a.clone(),
            None => obj.pointer("/spec/source").cloned().into_iter().collect(),
        };
        let chart = sources.iter().find_map(|src| {
            let chart = src.get("chart").and_then(Value::as_str)?;
            Some((chart.to_string(), src.get("targetRevision").and_then(Value::as_str).unwrap_or("").to_string()))
        });
        let revision = status
            .pointer("/sync/revision")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| {
                status
                    .pointer("/sync/revisions")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
            })
            .unwrap_or_default();
        AppSummary {
            name: name.to_string(),
            sync: s("/status/sync/status"),
            health: s("/status/health/status"),
            health_message: s("/status/health/message"),
            op_phase: s("/status/operationState/phase"),
            op_message: s("/status/operationState/message"),
            revision,
            reconciled_at: status.get("reconciledAt").and_then(Value::as_str).and_then(|t| t.parse().ok()),
            conditions: status
                .get("conditions")
                .and_then(Value::as_array)
                .map(|cs| {
                    cs.iter()
                        .map(|c| {
                            (
                                c.get("type").and_then(Value::as_str).unwrap_or("").to_string(),
                                c.get("message").and_then(Value::as_str).unwrap_or("").to_string(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            resources: status
                .get("resources")
                .and_then(Value::as_array)
                .map(|rs| {
                    rs.iter()
                        .map(|r| {
                            let f = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                            AppResource {
                                kind: f("kind"),
                                namespace: f("namespace"),
                                name: f("name"),
                                status: f("status"),
                                health: r.pointer("/health/status").and_then(Value::as_str).unwrap_or("").to_string(),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default(),
            automated: automated_on,
            self_heal: automated_on
                && automated.and_then(|a| a.get("selfHeal")).and_then(Value::as_bool).unwrap_or(false),
            prune: automated_on && automated.and_then(|a| a.get("prune")).and_then(Value::as_bool).unwrap_or(false),
            chart,
            terminating: obj.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()),
        }
    }
}

/// One PodDisruptionBudget.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PdbSummary {
    pub namespace: String,
    pub name: String,
    pub disruptions_allowed: i32,
    pub current_healthy: i32,
    pub desired_healthy: i32,
    /// `spec.selector.matchLabels` (matchExpressions are not used to map pods to nodes).
    pub match_labels: BTreeMap<String, String>,
}

impl PdbSummary {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn from_pdb(p: &PodDisruptionBudget) -> PdbSummary {
        let st = p.status.clone().unwrap_or_default();
        PdbSummary {
            namespace: p.metadata.namespace.clone().unwrap_or_default(),
            name: p.metadata.name.clone().unwrap_or_default(),
            disruptions_allowed: st.disruptions_allowed,
            current_healthy: st.current_healthy,
            desired_healthy: st.desired_healthy,
            match_labels: p
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .and_then(|s| s.match_labels.clone())
                .unwrap_or_default(),
        }
    }

    pub fn selects(&self, pod: &PodSummary) -> bool {
        pod.namespace == self.namespace
            && !self.match_labels.is_empty()
            && self.match_labels.iter().all(|(k, v)| pod.labels.get(k) == Some(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k3s_args_forms() {
        let a = K3sArgs::parse(r#"["server","--flannel-backend","none","--disable-network-policy","--disable-kube-proxy","true","--token","********"]"#)
            .unwrap_or_default();
        assert_eq!(a.role, "server");
        assert!(!a.flannel_enabled());
        assert!(a.disable_network_policy && a.disable_kube_proxy);
        let b = K3sArgs::parse(r#"["server","--disable-kube-proxy","false","--cluster-cidr=10.42.0.0/16"]"#)
            .unwrap_or_default();
        assert!(b.flannel_enabled() && !b.disable_kube_proxy);
        assert_eq!(b.cluster_cidr.as_deref(), Some("10.42.0.0/16"));
        assert!(K3sArgs::parse("not json").is_none());
    }

    #[test]
    fn real_k3s_node_fixture() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/k8s/kdash-k3s-node-k3d-server.yaml"
        ))
        .unwrap();
        let list: Value = serde_saphyr::from_str(&text).unwrap();
        let node: Node = serde_json::from_value(list["items"][0].clone()).unwrap();
        let n = NodeSummary::from_node(&node);
        assert!(n.server);
        assert!(n.flannel_annotations);
        assert_eq!(n.k3s_args.map(|a| a.role), Some("server".to_string()));
    }
}
