//! What the pre-flight checks read from the cluster, as plain data: each resource list is fetched
//! on its own, so a 403 or a missing API for one of them leaves the others intact.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::networking::v1::IngressClass;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde::Serialize;

/// Why a resource could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FetchErrorKind {
    /// 401/403: this identity may not read it.
    Forbidden,
    /// 404: the API is not served (e.g. its CRD is not installed).
    NotFound,
    /// No answer from the API server.
    Unreachable,
    Other,
}

/// A failed read, e.g. "forbidden: nodes".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FetchError {
    /// What was asked for, e.g. `nodes`, `applications.argoproj.io`.
    pub resource: String,
    pub kind: FetchErrorKind,
    /// The server's message (never credentials).
    pub message: String,
}

impl FetchError {
    pub fn new(resource: &str, kind: FetchErrorKind, message: impl Into<String>) -> Self {
        FetchError { resource: resource.to_string(), kind, message: message.into() }
    }
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            FetchErrorKind::Forbidden => "forbidden",
            FetchErrorKind::NotFound => "not served",
            FetchErrorKind::Unreachable => "unreachable",
            FetchErrorKind::Other => "error",
        };
        write!(f, "{kind}: {}", self.resource)?;
        if !self.message.is_empty() {
            write!(f, " ({})", self.message)?;
        }
        Ok(())
    }
}

/// A read that may have failed.
pub type Fetched<T> = Result<T, FetchError>;

/// One "may I?" question asked with a SelfSubjectAccessReview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessReview {
    pub verb: String,
    /// API group ("" for core).
    pub group: String,
    pub resource: String,
    pub subresource: String,
    /// `None` = all namespaces / cluster-scoped.
    pub namespace: Option<String>,
    /// What the cockpit needs it for, in the operator's words.
    pub purpose: String,
    pub result: Fetched<AccessDecision>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessDecision {
    pub allowed: bool,
    /// The authorizer's reason, when it gave one.
    pub reason: String,
}

impl AccessReview {
    /// `patch nodes`, `create pods/eviction`.
    pub fn what(&self) -> String {
        let res = if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        };
        let res = if self.group.is_empty() { res } else { format!("{res}.{}", self.group) };
        match &self.namespace {
            Some(ns) => format!("{} {res} in {ns}", self.verb),
            None => format!("{} {res}", self.verb),
        }
    }
}

/// The questions `gather` asks (verb, group, resource, subresource, namespace from settings?, purpose).
pub const ACCESS_QUESTIONS: &[(&str, &str, &str, &str, bool, &str)] = &[
    ("patch", "", "nodes", "", false, "cordon and uncordon nodes"),
    ("create", "", "pods", "eviction", false, "drain nodes"),
    ("patch", "argoproj.io", "applications", "", true, "sync, refresh and pause Argo CD apps"),
    ("get", "", "pods", "portforward", false, "port-forward over WebSocket (GET upgrade)"),
    ("create", "", "pods", "portforward", false, "port-forward to hubble-relay"),
];

/// Everything the checks look at. Build it with `gather::gather` or by hand in tests.
#[derive(Debug, Clone)]
pub struct ClusterSnapshot {
    /// API server `gitVersion`.
    pub server_version: Fetched<String>,
    /// Served group/versions (`v1`, `apps/v1`, `monitoring.coreos.com/v1`, …).
    pub api_versions: Fetched<Vec<String>>,
    pub nodes: Fetched<Vec<Node>>,
    pub pods: Fetched<Vec<Pod>>,
    pub daemonsets: Fetched<Vec<DaemonSet>>,
    pub deployments: Fetched<Vec<Deployment>>,
    pub pdbs: Fetched<Vec<PodDisruptionBudget>>,
    pub services: Fetched<Vec<Service>>,
    pub ingress_classes: Fetched<Vec<IngressClass>>,
    /// Names of the CustomResourceDefinitions (`servicemonitors.monitoring.coreos.com`).
    pub crds: Fetched<Vec<String>>,
    /// Argo CD Applications in the settings' Argo namespace.
    pub applications: Fetched<Vec<serde_json::Value>>,
    /// cert-manager ClusterIssuers.
    pub cluster_issuers: Fetched<Vec<serde_json::Value>>,
    pub access: Vec<AccessReview>,
}

impl ClusterSnapshot {
    /// A snapshot where every read failed the same way (e.g. the API server is unreachable).
    pub fn failed(kind: FetchErrorKind, message: &str) -> Self {
        fn e<T>(r: &str, kind: FetchErrorKind, message: &str) -> Fetched<T> {
            Err(FetchError::new(r, kind, message))
        }
        ClusterSnapshot {
            server_version: e("version", kind, message),
            api_versions: e("discovery", kind, message),
            nodes: e("nodes", kind, message),
            pods: e("pods", kind, message),
            daemonsets: e("daemonsets.apps", kind, message),
            deployments: e("deployments.apps", kind, message),
            pdbs: e("poddisruptionbudgets.policy", kind, message),
            services: e("services", kind, message),
            ingress_classes: e("ingressclasses.networking.k8s.io", kind, message),
            crds: e("customresourcedefinitions.apiextensions.k8s.io", kind, message),
            applications: e("applications.argoproj.io", kind, message),
            cluster_issuers: e("clusterissuers.cert-manager.io", kind, message),
            access: Vec::new(),
        }
    }

    /// An empty, fully readable cluster (a start for hand-built test snapshots).
    pub fn empty() -> Self {
        ClusterSnapshot {
            server_version: Ok("v1.32.6+k3s1".into()),
            api_versions: Ok(vec!["v1".into()]),
            nodes: Ok(Vec::new()),
            pods: Ok(Vec::new()),
            daemonsets: Ok(Vec::new()),
            deployments: Ok(Vec::new()),
            pdbs: Ok(Vec::new()),
            services: Ok(Vec::new()),
            ingress_classes: Ok(Vec::new()),
            crds: Ok(Vec::new()),
            applications: Ok(Vec::new()),
            cluster_issuers: Ok(Vec::new()),
            access: Vec::new(),
        }
    }

    /// Whether a CRD is installed: from the CRD list, else from discovery (`group/version`).
    pub fn has_crd(&self, crd_name: &str, api_version: &str) -> Option<bool> {
        match (&self.crds, &self.api_versions) {
            (Ok(crds), _) => Some(crds.iter().any(|c| c == crd_name)),
            (Err(_), Ok(v)) => Some(v.iter().any(|a| a == api_version)),
            _ => None,
        }
    }
}
