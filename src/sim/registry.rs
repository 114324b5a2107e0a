//! The resource types the simulated API server serves, for discovery and routing.
//!
//! Built-in kinds are always served; kinds backed by a CRD (`crd: true`) are served only while the
//! matching `CustomResourceDefinition` object (`<plural>.<group>`) exists in the store, as on a
//! real cluster.

/// One resource type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Store key: `plural` for the core group, `group/plural` otherwise.
    pub id: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Served only while its CRD exists.
    pub crd: bool,
    /// Deleting a bound object only marks it; the node agent finishes (pods).
    pub graceful_delete: bool,
    /// Subresources served (`status`, `eviction`, `log`, `portforward`).
    pub subresources: &'static [&'static str],
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    /// Name of the CRD object that installs this resource.
    pub fn crd_name(&self) -> String {
        format!("{}.{}", self.plural, self.group)
    }
}

const fn r(
    id: &'static str,
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
) -> Resource {
    Resource {
        id,
        group,
        version,
        kind,
        plural,
        singular,
        namespaced,
        short_names: &[],
        categories: &[],
        crd: false,
        graceful_delete: false,
        subresources: &[],
    }
}

/// Every resource type the sim knows.
pub static RESOURCES: &[Resource] = &[
    Resource {
        short_names: &["ns"],
        subresources: &["status"],
        ..r("namespaces", "", "v1", "Namespace", "namespaces", "namespace", false)
    },
    Resource {
        short_names: &["no"],
        subresources: &["status"],
        ..r("nodes", "", "v1", "Node", "nodes", "node", false)
    },
    Resource {
        short_names: &["po"],
        categories: &["all"],
        graceful_delete: true,
        subresources: &["status", "eviction", "log", "portforward"],
        ..r("pods", "", "v1", "Pod", "pods", "pod", true)
    },
    Resource {
        short_names: &["svc"],
        categories: &["all"],
        subresources: &["status"],
        ..r("services", "", "v1", "Service", "services", "service", true)
    },
    Resource { short_names: &["ep"], ..r("endpoints", "", "v1", "Endpoints", "endpoints", "endpoints", true) },
    Resource { short_names: &["cm"], ..r("configmaps", "", "v1", "ConfigMap", "configmaps", "configmap", true) },
    Resource { ..r("secrets", "", "v1", "Secret", "secrets", "secret", true) },
    Resource {
        short_names: &["sa"],
        ..r("serviceaccounts", "", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", true)
    },
    Resource { short_names: &["ev"], ..r("events", "", "v1", "Event", "events", "event", true) },
    Resource {
        short_names: &["pvc"],
        subresources: &["status"],
        ..r(
            "persistentvolumeclaims",
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            "persistentvolumeclaim",
            true,
        )
    },
    Resource {
        short_names: &["pv"],
        subresources: &["status"],
        ..r("persistentvolumes", "", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", false)
    },
    Resource {
        short_names: &["deploy"],
        categories: &["all"],
        subresources: &["status", "scale"],
        ..r("apps/deployments", "apps", "v1", "Deployment", "deployments", "deployment", true)
    },
    Resource {
        short_names: &["ds"],
        categories: &["all"],
        subresources: &["status"],
        ..r("apps/daemonsets", "apps", "v1", "DaemonSet", "daemonsets", "daemonset", true)
    },
    Resource {
        short_names: &["sts"],
        categories: &["all"],
        subresources: &["status", "scale"],
        ..r("apps/statefulsets", "apps", "v1", "StatefulSet", "statefulsets", "statefulset", true)
    },
    Resource {
        short_names: &["rs"],
        categories: &["all"],
        subresources: &["status", "scale"],
        ..r("apps/replicasets", "apps", "v1", "ReplicaSet", "replicasets", "replicaset", true)
    },
    Resource {
        categories: &["all"],
        subresources: &["status"],
        ..r("batch/jobs", "batch", "v1", "Job", "jobs", "job", true)
    },
    Resource {
        short_names: &["cj"],
        categories: &["all"],
        subresources: &["status"],
        ..r("batch/cronjobs", "batch", "v1", "CronJob", "cronjobs", "cronjob", true)
    },
    Resource {
        short_names: &["pdb"],
        subresources: &["status"],
        ..r(
            "policy/poddisruptionbudgets",
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            "poddisruptionbudget",
            true,
        )
    },
    Resource {
        short_names: &["ing"],
        subresources: &["status"],
        ..r("networking.k8s.io/ingresses", "networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", true)
    },
    Resource {
        ..r(
            "networking.k8s.io/ingressclasses",
            "networking.k8s.io",
            "v1",
            "IngressClass",
            "ingressclasses",
            "ingressclass",
            false,
        )
    },
    Resource {
        short_names: &["netpol"],
        ..r(
            "networking.k8s.io/networkpolicies",
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            "networkpolicies",
            "networkpolicy",
            true,
        )
    },
    Resource { ..r("coordination.k8s.io/leases", "coordination.k8s.io", "v1", "Lease", "leases", "lease", true) },
    Resource {
        short_names: &["sc"],
        ..r(
            "storage.k8s.io/storageclasses",
            "storage.k8s.io",
            "v1",
            "StorageClass",
            "storageclasses",
            "storageclass",
            false,
        )
    },
    Resource {
        ..r("storage.k8s.io/csidrivers", "storage.k8s.io", "v1", "CSIDriver", "csidrivers", "csidriver", false)
    },
    Resource {
        ..r(
            "rbac.authorization.k8s.io/clusterroles",
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            "clusterrole",
            false,
        )
    },
    Resource {
        ..r(
            "rbac.authorization.k8s.io/clusterrolebindings",
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            "clusterrolebinding",
            false,
        )
    },
    Resource {
        ..r(
            "authorization.k8s.io/selfsubjectaccessreviews",
            "authorization.k8s.io",
            "v1",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            "selfsubjectaccessreview",
            false,
        )
    },
    Resource {
        ..r(
            "authorization.k8s.io/selfsubjectrulesreviews",
            "authorization.k8s.io",
            "v1",
            "SelfSubjectRulesReview",
            "selfsubjectrulesreviews",
            "selfsubjectrulesreview",
            false,
        )
    },
    Resource {
        short_names: &["crd", "crds"],
        subresources: &["status"],
        ..r(
            "apiextensions.k8s.io/customresourcedefinitions",
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            "customresourcedefinition",
            false,
        )
    },
    Resource {
        short_names: &["app", "apps"],
        categories: &["argoproj"],
        crd: true,
        ..r("argoproj.io/applications", "argoproj.io", "v1alpha1", "Application", "applications", "application", true)
    },
    Resource {
        short_names: &["appproj", "appprojs"],
        categories: &["argoproj"],
        crd: true,
        ..r("argoproj.io/appprojects", "argoproj.io", "v1alpha1", "AppProject", "appprojects", "appproject", true)
    },
    Resource {
        short_names: &["cn", "ciliumn"],
        categories: &["cilium"],
        crd: true,
        subresources: &["status"],
        ..r("cilium.io/ciliumnodes", "cilium.io", "v2", "CiliumNode", "ciliumnodes", "ciliumnode", false)
    },
    Resource {
        short_names: &["cep", "ciliumep"],
        categories: &["cilium"],
        crd: true,
        subresources: &["status"],
        ..r("cilium.io/ciliumendpoints", "cilium.io", "v2", "CiliumEndpoint", "ciliumendpoints", "ciliumendpoint", true)
    },
    Resource {
        short_names: &["smon"],
        crd: true,
        ..r(
            "monitoring.coreos.com/servicemonitors",
            "monitoring.coreos.com",
            "v1",
            "ServiceMonitor",
            "servicemonitors",
            "servicemonitor",
            true,
        )
    },
    Resource {
        crd: true,
        ..r(
            "cert-manager.io/clusterissuers",
            "cert-manager.io",
            "v1",
            "ClusterIssuer",
            "clusterissuers",
            "clusterissuer",
            false,
        )
    },
    Resource {
        crd: true,
        ..r(
            "metallb.io/ipaddresspools",
            "metallb.io",
            "v1beta1",
            "IPAddressPool",
            "ipaddresspools",
            "ipaddresspool",
            true,
        )
    },
];

/// Looks a resource up by store id (`"pods"`, `"argoproj.io/applications"`).
pub fn find(id: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.id == id)
}

/// Looks a resource up by URL parts: group ("" for core), version, plural.
pub fn by_path(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Looks a resource up by `apiVersion` and `kind` (as in an object body or an ownerReference).
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.kind == kind && r.api_version() == api_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_consistent() {
        for (i, a) in RESOURCES.iter().enumerate() {
            let expect = if a.group.is_empty() { a.plural.to_string() } else { format!("{}/{}", a.group, a.plural) };
            assert_eq!(a.id, expect);
            for b in &RESOURCES[i + 1..] {
                assert_ne!(a.id, b.id);
            }
        }
        assert_eq!(by_kind("argoproj.io/v1alpha1", "Application").map(|r| r.plural), Some("applications"));
    }
}
