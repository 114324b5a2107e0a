//! What the linter knows about the Cilium chart's value tree: top-level keys of the 1.16/1.17
//! `values.yaml` (hand-maintained; generous on purpose, because an unknown key is only a warning),
//! and keys that existed once and were removed.

/// Top-level keys of the Cilium 1.16–1.17 charts (union; `externalIPs` is handled separately since
/// the 1.17 chart dropped it).
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "MTU",
    "affinity",
    "agent",
    "agentNotReadyTaintKey",
    "aksbyocni",
    "alibabacloud",
    "annotateK8sNode",
    "annotations",
    "apiRateLimit",
    "authentication",
    "autoDirectNodeRoutes",
    "azure",
    "bandwidthManager",
    "bgp",
    "bgpControlPlane",
    "bpf",
    "bpfClockProbe",
    "certgen",
    "cgroup",
    "ciliumEndpointSlice",
    "cleanBpfState",
    "cleanState",
    "cluster",
    "clustermesh",
    "cni",
    "commonLabels",
    "conntrackGCInterval",
    "conntrackGCMaxInterval",
    "connectivityProbeFrequencyRatio",
    "crdWaitTimeout",
    "customCalls",
    "daemon",
    "dashboards",
    "debug",
    "defaultLBServiceIPAM",
    "devices",
    "directRoutingSkipUnreachable",
    "disableEndpointCRD",
    "dnsPolicy",
    "dnsProxy",
    "egressGateway",
    "egressMasqueradeInterfaces",
    "enableCiliumEndpointSlice",
    "enableCriticalPriorityClass",
    "enableIPv4BIGTCP",
    "enableIPv4Masquerade",
    "enableIPv6BIGTCP",
    "enableIPv6Masquerade",
    "enableInternalTrafficPolicy",
    "enableK8sTerminatingEndpoint",
    "enableLBIPAM",
    "enableMasqueradeRouteSource",
    "enableNonDefaultDenyPolicies",
    "enableRuntimeDeviceDetection",
    "enableXTSocketFallback",
    "encryption",
    "endpointHealthChecking",
    "endpointLockdownOnMapOverflow",
    "endpointRoutes",
    "eni",
    "envoy",
    "envoyConfig",
    "etcd",
    "externalWorkloads",
    "extraArgs",
    "extraConfig",
    "extraContainers",
    "extraEnv",
    "extraHostPathMounts",
    "extraInitContainers",
    "extraVolumeMounts",
    "extraVolumes",
    "forceDeviceDetection",
    "gatewayAPI",
    "gke",
    "healthCheckICMPFailureThreshold",
    "healthChecking",
    "healthPort",
    "highScaleIPcache",
    "hostFirewall",
    "hostPort",
    "hubble",
    "identityAllocationMode",
    "identityChangeGracePeriod",
    "identityManagementMode",
    "image",
    "imagePullSecrets",
    "ingressController",
    "initResources",
    "installIptablesRules",
    "installNoConntrackIptablesRules",
    "ipMasqAgent",
    "ipam",
    "iptablesRandomFully",
    "ipv4",
    "ipv4NativeRoutingCIDR",
    "ipv6",
    "ipv6NativeRoutingCIDR",
    "k8s",
    "k8sClientExponentialBackoff",
    "k8sClientRateLimit",
    "k8sNetworkPolicy",
    "k8sServiceHost",
    "k8sServiceLookupConfigMapName",
    "k8sServiceLookupNamespace",
    "k8sServicePort",
    "keepDeprecatedLabels",
    "keepDeprecatedProbes",
    "kubeConfigPath",
    "kubeProxyReplacement",
    "kubeProxyReplacementHealthzBindAddr",
    "l2NeighDiscovery",
    "l2announcements",
    "l2podAnnouncements",
    "l7Proxy",
    "livenessProbe",
    "loadBalancer",
    "localRedirectPolicies",
    "localRedirectPolicy",
    "logOptions",
    "logSystemLoad",
    "maglev",
    "monitor",
    "name",
    "namespaceOverride",
    "nat46x64Gateway",
    "nodeIPAM",
    "nodePort",
    "nodeSelector",
    "nodeSelectorLabels",
    "nodeinit",
    "operator",
    "pmtuDiscovery",
    "podAnnotations",
    "podLabels",
    "podSecurityContext",
    "policyCIDRMatchMode",
    "policyEnforcementMode",
    "pprof",
    "preflight",
    "priorityClassName",
    "prometheus",
    "rbac",
    "readinessProbe",
    "resourceQuotas",
    "resources",
    "rollOutCiliumPods",
    "routingMode",
    "sctp",
    "securityContext",
    "serviceAccounts",
    "serviceNoBackendResponse",
    "sessionAffinity",
    "sleepAfterInit",
    "socketLB",
    "startupProbe",
    "svcSourceRangeCheck",
    "synchronizeK8sNodes",
    "sysctlfix",
    "terminationGracePeriodSeconds",
    "tls",
    "tolerations",
    "tunnelPort",
    "tunnelProtocol",
    "underlayProtocol",
    "updateStrategy",
    "upgradeCompatibility",
    "vtep",
    "waitForKubeProxy",
    "wellKnownIdentities",
];

/// Keys that are gone from the chart and have their own rule (never reported as "unknown").
pub const REMOVED_KEYS: &[&str] = &["tunnel", "hostServices", "externalIPs"];

/// Edit distance (optimal string alignment: insert, delete, substitute, swap neighbours).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// The closest known top-level key, if it is close enough to be a typo.
pub fn suggest(key: &str, known: &[&'static str]) -> Option<&'static str> {
    let lower = key.to_ascii_lowercase();
    let mut best: Option<(usize, &'static str)> = None;
    for k in known {
        let d = if k.to_ascii_lowercase() == lower { 0 } else { edit_distance(key, k) };
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, k));
        }
    }
    // Up to 2 edits, and never more than a third of the word (so short keys need near-exact).
    best.filter(|(d, k)| *d <= 2 && *d * 3 <= k.len().max(key.len())).map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance() {
        assert_eq!(edit_distance("hubble", "hubble"), 0);
        assert_eq!(edit_distance("hubbel", "hubble"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("hubbel", TOP_LEVEL_KEYS), Some("hubble"));
        assert_eq!(suggest("kubeproxyreplacement", TOP_LEVEL_KEYS), Some("kubeProxyReplacement"));
        assert_eq!(suggest("routingmode", TOP_LEVEL_KEYS), Some("routingMode"));
        assert_eq!(suggest("operater", TOP_LEVEL_KEYS), Some("operator"));
        assert_eq!(suggest("completelyDifferent", TOP_LEVEL_KEYS), None);
    }

    #[test]
    fn known_keys_are_unique() {
        let mut sorted = TOP_LEVEL_KEYS.to_vec();
        sorted.sort_by_key(|k| k.to_ascii_lowercase());
        sorted.dedup();
        assert_eq!(sorted.len(), TOP_LEVEL_KEYS.len());
    }
}
