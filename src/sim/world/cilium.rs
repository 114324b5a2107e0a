//! Cilium in the sim: what the chart renders from a values file (DaemonSets `cilium` and
//! `cilium-envoy`, Deployment `cilium-operator`, ConfigMap `cilium-config`, Hubble relay/peer/UI,
//! certs, ServiceMonitors), and what the running pieces do: the operator registers the CRDs and
//! manages the `node.cilium.io/agent-not-ready` taint, agents become Ready node by node (or crash
//! with the linter's or the node's reason), write the CNI config, create CiliumNodes and
//! CiliumEndpoints.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::kubelet::{Cni, Gate, PodRt};
use super::objects::{self as o, ids, res};
use super::{World, timing};

pub const AGENT_NOT_READY_TAINT: &str = "node.cilium.io/agent-not-ready";

/// What the sim needs from the values (chart defaults of 1.16 where unset, assumed unchanged in
/// 1.17; the one 1.17 difference modelled is that `externalIPs` is no chart value any more).
#[derive(Debug, Clone, PartialEq)]
pub struct CiliumConfig {
    pub chart_version: String,
    pub namespace: String,
    pub cluster_name: String,
    pub cluster_id: i64,
    pub routing_mode: String,
    pub tunnel_protocol: String,
    pub kpr: String,
    pub native_cidr: String,
    pub auto_direct_routes: bool,
    pub endpoint_routes: bool,
    pub ipam_mode: String,
    pub k8s_service_host: String,
    pub k8s_service_port: String,
    pub bpf_masquerade: bool,
    pub require_pod_cidr: bool,
    pub operator_replicas: i64,
    pub hubble: bool,
    pub relay: bool,
    pub ui: bool,
    pub ui_ingress: Option<Value>,
    pub tls_method: String,
    pub tls: bool,
    pub prometheus: bool,
    pub agent_service_monitor: bool,
    pub operator_prometheus: bool,
    pub operator_service_monitor: bool,
    pub resources: Value,
    pub operator_resources: Value,
    pub cni_conf_path: String,
    pub cni_bin_path: String,
    pub cni_exclusive: bool,
    pub cni_install: bool,
    pub envoy: bool,
    pub node_port: bool,
    pub external_ips: bool,
    pub healthz_bind: String,
}

fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |cur, k| cur.get(k)).filter(|x| !x.is_null())
}

fn gbool(v: &Value, path: &str, default: bool) -> bool {
    match get(v, path) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => default,
    }
}

fn gstr(v: &Value, path: &str, default: &str) -> String {
    match get(v, path) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => default.to_string(),
    }
}

impl CiliumConfig {
    /// Reads values (already parsed) the way the 1.16/1.17 charts' templates do.
    pub fn from_values(values: &Value, chart_version: &str, namespace: &str) -> CiliumConfig {
        let routing = gstr(values, "routingMode", "");
        // The 1.17 chart has no `externalIPs` value: whatever the file says, nothing is rendered.
        let has_external_ips_value =
            crate::settings::ChartVersion::parse(chart_version).is_none_or(|v| !v.at_least(1, 17, 0));
        let kpr = gstr(values, "kubeProxyReplacement", "false");
        CiliumConfig {
            chart_version: chart_version.to_string(),
            namespace: namespace.to_string(),
            cluster_name: gstr(values, "cluster.name", "default"),
            cluster_id: get(values, "cluster.id")
                .and_then(|x| x.as_i64().or_else(|| x.as_str()?.parse().ok()))
                .unwrap_or(0),
            // `tunnel:` is gone since 1.15: the chart never reads it (an empty routingMode is tunnel).
            routing_mode: if routing.is_empty() { "tunnel".into() } else { routing },
            tunnel_protocol: match gstr(values, "tunnelProtocol", "") {
                p if p.is_empty() => "vxlan".into(),
                p => p,
            },
            kpr,
            native_cidr: gstr(values, "ipv4NativeRoutingCIDR", ""),
            auto_direct_routes: gbool(values, "autoDirectNodeRoutes", false),
            endpoint_routes: gbool(values, "endpointRoutes.enabled", false),
            ipam_mode: gstr(values, "ipam.mode", "cluster-pool"),
            k8s_service_host: gstr(values, "k8sServiceHost", ""),
            k8s_service_port: gstr(values, "k8sServicePort", ""),
            bpf_masquerade: gbool(values, "bpf.masquerade", false),
            require_pod_cidr: gbool(values, "k8s.requireIPv4PodCIDR", false),
            operator_replicas: get(values, "operator.replicas")
                .and_then(|x| x.as_i64().or_else(|| x.as_str()?.parse().ok()))
                .unwrap_or(2),
            hubble: gbool(values, "hubble.enabled", true),
            relay: gbool(values, "hubble.relay.enabled", false),
            ui: gbool(values, "hubble.ui.enabled", false),
            ui_ingress: get(values, "hubble.ui.ingress").filter(|i| gbool(i, "enabled", false)).cloned(),
            tls_method: gstr(values, "hubble.tls.auto.method", "helm"),
            tls: gbool(values, "hubble.tls.enabled", true),
            prometheus: gbool(values, "prometheus.enabled", false),
            agent_service_monitor: gbool(values, "prometheus.enabled", false)
                && gbool(values, "prometheus.serviceMonitor.enabled", false),
            operator_prometheus: gbool(values, "operator.prometheus.enabled", true),
            operator_service_monitor: gbool(values, "operator.prometheus.enabled", true)
                && gbool(values, "operator.prometheus.serviceMonitor.enabled", false),
            resources: get(values, "resources").cloned().unwrap_or(json!({})),
            operator_resources: get(values, "operator.resources").cloned().unwrap_or(json!({})),
            cni_conf_path: gstr(values, "cni.confPath", "/etc/cni/net.d"),
            cni_bin_path: gstr(values, "cni.binPath", "/opt/cni/bin"),
            cni_exclusive: gbool(values, "cni.exclusive", true),
            cni_install: gbool(values, "cni.install", true),
            envoy: gbool(values, "envoy.enabled", true),
            node_port: gbool(values, "nodePort.enabled", false),
            external_ips: has_external_ips_value && gbool(values, "externalIPs.enabled", false),
            healthz_bind: gstr(values, "kubeProxyReplacementHealthzBindAddr", ""),
        }
    }

    fn image(&self, repo: &str) -> String {
        format!(
            "quay.io/cilium/{repo}:v{}@sha256:{}",
            self.chart_version,
            o::sha_hex(&format!("{repo}:{}", self.chart_version))
        )
    }

    fn config_map_data(&self) -> Value {
        let b = |x: bool| json!(if x { "true" } else { "false" });
        let pairs: Vec<(&str, Value)> = vec![
            ("identity-allocation-mode", json!("crd")),
            ("identity-heartbeat-timeout", json!("30m0s")),
            ("identity-gc-interval", json!("15m0s")),
            ("cilium-endpoint-gc-interval", json!("5m0s")),
            ("nodes-gc-interval", json!("5m0s")),
            ("debug", json!("false")),
            ("enable-policy", json!("default")),
            ("enable-ipv4", json!("true")),
            ("enable-ipv6", json!("false")),
            ("custom-cni-conf", json!("false")),
            ("enable-bpf-clock-probe", json!("false")),
            ("monitor-aggregation", json!("medium")),
            ("monitor-aggregation-interval", json!("5s")),
            ("monitor-aggregation-flags", json!("all")),
            ("bpf-map-dynamic-size-ratio", json!("0.0025")),
            ("bpf-policy-map-max", json!("16384")),
            ("bpf-lb-map-max", json!("65536")),
            ("bpf-lb-external-clusterip", json!("false")),
            ("bpf-root", json!("/sys/fs/bpf")),
            ("cgroup-root", json!("/run/cilium/cgroupv2")),
            ("preallocate-bpf-maps", json!("false")),
            ("cluster-name", json!(self.cluster_name)),
            ("cluster-id", json!(self.cluster_id.to_string())),
            ("routing-mode", json!(self.routing_mode)),
            ("service-no-backend-response", json!("reject")),
            ("enable-l7-proxy", json!("true")),
            ("enable-ipv4-masquerade", json!("true")),
            ("enable-ipv4-big-tcp", json!("false")),
            ("enable-ipv6-big-tcp", json!("false")),
            ("enable-ipv6-masquerade", json!("true")),
            ("enable-tcx", json!("true")),
            ("datapath-mode", json!("veth")),
            ("enable-bpf-masquerade", json!(b(self.bpf_masquerade))),
            ("enable-masquerade-to-route-source", json!("false")),
            ("enable-xt-socket-fallback", json!("true")),
            ("install-no-conntrack-iptables-rules", json!("false")),
            ("auto-direct-node-routes", json!(b(self.auto_direct_routes))),
            ("direct-routing-skip-unreachable", json!("false")),
            ("enable-local-redirect-policy", json!("false")),
            ("kube-proxy-replacement", json!(self.kpr)),
            ("kube-proxy-replacement-healthz-bind-address", json!(self.healthz_bind)),
            ("bpf-lb-sock", json!("false")),
            ("enable-health-check-nodeport", json!("true")),
            ("enable-health-check-loadbalancer-ip", json!("false")),
            ("node-port-bind-protection", json!("true")),
            ("enable-auto-protect-node-port-range", json!("true")),
            ("bpf-lb-acceleration", json!("disabled")),
            ("enable-svc-source-range-check", json!("true")),
            ("enable-l2-neigh-discovery", json!("true")),
            ("arping-refresh-period", json!("30s")),
            ("k8s-require-ipv4-pod-cidr", json!(b(self.require_pod_cidr))),
            ("k8s-require-ipv6-pod-cidr", json!("false")),
            ("enable-k8s-networkpolicy", json!("true")),
            ("write-cni-conf-when-ready", json!("/host/etc/cni/net.d/05-cilium.conflist")),
            ("cni-exclusive", json!(b(self.cni_exclusive))),
            ("cni-log-file", json!("/var/run/cilium/cilium-cni.log")),
            ("enable-endpoint-health-checking", json!("true")),
            ("enable-health-checking", json!("true")),
            ("enable-well-known-identities", json!("false")),
            ("enable-node-selector-labels", json!("false")),
            ("synchronize-k8s-nodes", json!("true")),
            ("operator-api-serve-addr", json!("127.0.0.1:9234")),
            ("ipam", json!(self.ipam_mode)),
            ("ipam-cilium-node-update-rate", json!("15s")),
            ("egress-gateway-reconciliation-trigger-interval", json!("1s")),
            ("enable-vtep", json!("false")),
            ("procfs", json!("/host/proc")),
            ("enable-k8s-terminating-endpoint", json!("true")),
            ("enable-sctp", json!("false")),
            ("k8s-client-qps", json!("10")),
            ("k8s-client-burst", json!("20")),
            ("remove-cilium-node-taints", json!("true")),
            ("set-cilium-node-taints", json!("true")),
            ("set-cilium-is-up-condition", json!("true")),
            ("unmanaged-pod-watcher-interval", json!("15")),
            ("dnsproxy-enable-transparent-mode", json!("true")),
            ("agent-not-ready-taint-key", json!(AGENT_NOT_READY_TAINT)),
            ("mesh-auth-enabled", json!("true")),
            ("external-envoy-proxy", json!(b(self.envoy))),
            ("envoy-base-id", json!("0")),
            ("max-connected-clusters", json!("255")),
            ("clustermesh-enable-endpoint-sync", json!("false")),
            ("clustermesh-enable-mcs-api", json!("false")),
            ("nat-map-stats-entries", json!("32")),
            ("nat-map-stats-interval", json!("30s")),
            ("enable-metrics", json!("true")),
            ("operator-prometheus-serve-addr", json!(if self.operator_prometheus { ":9963" } else { "" })),
        ];
        let mut d = Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
        if self.routing_mode == "tunnel" {
            d["tunnel-protocol"] = json!(self.tunnel_protocol);
        }
        if !self.native_cidr.is_empty() {
            d["ipv4-native-routing-cidr"] = json!(self.native_cidr);
        }
        if self.endpoint_routes {
            d["enable-endpoint-routes"] = json!("true");
        }
        if self.kpr != "true" {
            if self.node_port {
                d["enable-node-port"] = json!("true");
            }
            if self.external_ips {
                d["enable-external-ips"] = json!("true");
            }
        }
        if self.prometheus {
            d["prometheus-serve-addr"] = json!(":9962");
            d["proxy-prometheus-port"] = json!("9964");
        }
        if self.hubble {
            d["enable-hubble"] = json!("true");
            d["hubble-socket-path"] = json!("/var/run/cilium/hubble.sock");
            d["hubble-export-file-max-size-mb"] = json!("10");
            d["hubble-export-file-max-backups"] = json!("5");
            d["hubble-listen-address"] = json!(":4244");
            d["hubble-disable-tls"] = b(!self.tls);
            if self.tls {
                d["hubble-tls-cert-file"] = json!("/var/lib/cilium/tls/hubble/server.crt");
                d["hubble-tls-key-file"] = json!("/var/lib/cilium/tls/hubble/server.key");
                d["hubble-tls-client-ca-files"] = json!("/var/lib/cilium/tls/hubble/client-ca.crt");
            }
        }
        d
    }
}

/// The chart's output for one release.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub config: CiliumConfig,
    pub objects: Vec<Value>,
}

/// Renders the Cilium chart from parsed values. `churn` varies the Helm-generated certs (the
/// chart regenerates them on every `helm template` when `hubble.tls.auto.method` is `helm`).
pub fn render(values: &Value, chart_version: &str, namespace: &str, churn: u64) -> Rendered {
    let c = CiliumConfig::from_values(values, chart_version, namespace);
    let mut objs: Vec<Value> = Vec::new();
    let ns = namespace;
    let sa =
        |name: &str| json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}});
    objs.push(sa("cilium"));
    objs.push(sa("cilium-operator"));
    if c.envoy {
        objs.push(sa("cilium-envoy"));
    }
    objs.push(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cilium-config", "namespace": ns}, "data": c.config_map_data()}));
    for (name, rules) in [
        (
            "cilium",
            json!([{"apiGroups": ["cilium.io"], "resources": ["ciliumnodes", "ciliumnodes/status", "ciliumendpoints", "ciliumendpoints/status", "ciliumidentities"], "verbs": ["*"]}, {"apiGroups": [""], "resources": ["nodes", "nodes/status", "pods", "services", "endpoints", "namespaces"], "verbs": ["get", "list", "watch", "patch"]}]),
        ),
        (
            "cilium-operator",
            json!([{"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["create", "get", "list", "watch", "update"]}, {"apiGroups": ["cilium.io"], "resources": ["*"], "verbs": ["*"]}, {"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["get", "list", "watch", "patch", "delete"]}]),
        ),
    ] {
        objs.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "cilium"}}, "rules": rules}));
        objs.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "cilium"}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]}));
    }

    // Agent DaemonSet.
    let mut env = vec![
        json!({"name": "K8S_NODE_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}}),
        json!({"name": "CILIUM_K8S_NAMESPACE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}}),
        json!({"name": "CILIUM_CLUSTERMESH_CONFIG", "value": "/var/lib/cilium/clustermesh/"}),
        json!({"name": "GOMEMLIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1"}}}),
    ];
    if !c.k8s_service_host.is_empty() {
        env.push(json!({"name": "KUBERNETES_SERVICE_HOST", "value": c.k8s_service_host}));
        env.push(json!({"name": "KUBERNETES_SERVICE_PORT", "value": c.k8s_service_port}));
    }
    let mut ports = Vec::new();
    if c.hubble {
        ports.push(json!({"name": "peer-service", "containerPort": 4244, "hostPort": 4244, "protocol": "TCP"}));
    }
    if c.prometheus {
        ports.push(json!({"name": "prometheus", "containerPort": 9962, "hostPort": 9962, "protocol": "TCP"}));
    }
    let agent_image = c.image("cilium");
    let init = |name: &str, cmd: Value| json!({"name": name, "image": agent_image, "imagePullPolicy": "IfNotPresent", "command": cmd});
    let mut inits = vec![
        init("config", json!(["cilium-dbg", "build-config"])),
        init(
            "mount-cgroup",
            json!([
                "sh",
                "-ec",
                "cp /usr/bin/cilium-mount /hostbin/cilium-mount; nsenter --cgroup=/hostproc/1/ns/cgroup --mount=/hostproc/1/ns/mnt \"${BIN_PATH}/cilium-mount\" $CGROUP_ROOT; rm /hostbin/cilium-mount"
            ]),
        ),
        init(
            "apply-sysctl-overwrites",
            json!([
                "sh",
                "-ec",
                "cp /usr/bin/cilium-sysctlfix /hostbin/cilium-sysctlfix; nsenter --mount=/hostproc/1/ns/mnt \"${BIN_PATH}/cilium-sysctlfix\"; rm /hostbin/cilium-sysctlfix"
            ]),
        ),
        init("mount-bpf-fs", json!(["/bin/bash", "-c", "--"])),
        init("clean-cilium-state", json!(["/init-container.sh"])),
    ];
    if c.cni_install {
        inits.push(init("install-cni-binaries", json!(["/install-plugin.sh"])));
    }
    let ds = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "cilium", "namespace": ns, "labels": {"k8s-app": "cilium", "app.kubernetes.io/part-of": "cilium", "app.kubernetes.io/name": "cilium-agent"}},
        "spec": {
            "selector": {"matchLabels": {"k8s-app": "cilium"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}},
            "template": {
                "metadata": {
                    "annotations": {"kubectl.kubernetes.io/default-container": "cilium-agent"},
                    "labels": {"k8s-app": "cilium", "app.kubernetes.io/name": "cilium-agent", "app.kubernetes.io/part-of": "cilium"},
                },
                "spec": {
                    "hostNetwork": true,
                    "priorityClassName": "system-node-critical",
                    "serviceAccountName": "cilium",
                    "automountServiceAccountToken": true,
                    "terminationGracePeriodSeconds": 1,
                    "restartPolicy": "Always",
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "tolerations": [{"operator": "Exists"}],
                    "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                        {"labelSelector": {"matchLabels": {"k8s-app": "cilium"}}, "topologyKey": "kubernetes.io/hostname"}]}},
                    "initContainers": inits,
                    "containers": [{
                        "name": "cilium-agent",
                        "image": agent_image,
                        "command": ["cilium-agent"],
                        "args": ["--config-dir=/tmp/cilium/config-map"],
                        "env": env,
                        "ports": ports,
                        "resources": c.resources,
                        "readinessProbe": {"httpGet": {"host": "127.0.0.1", "path": "/healthz", "port": 9879, "scheme": "HTTP",
                            "httpHeaders": [{"name": "brief", "value": "true"}]}, "periodSeconds": 30, "successThreshold": 1, "failureThreshold": 3, "timeoutSeconds": 5},
                        "securityContext": {"seLinuxOptions": {"level": "s0", "type": "spc_t"}, "capabilities": {"add": ["CHOWN", "KILL", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "SYS_MODULE", "SYS_ADMIN", "SYS_RESOURCE", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"], "drop": ["ALL"]}},
                    }],
                    "volumes": [
                        {"name": "cilium-run", "hostPath": {"path": "/var/run/cilium", "type": "DirectoryOrCreate"}},
                        {"name": "bpf-maps", "hostPath": {"path": "/sys/fs/bpf", "type": "DirectoryOrCreate"}},
                        {"name": "cni-path", "hostPath": {"path": c.cni_bin_path, "type": "DirectoryOrCreate"}},
                        {"name": "etc-cni-netd", "hostPath": {"path": c.cni_conf_path, "type": "DirectoryOrCreate"}},
                        {"name": "lib-modules", "hostPath": {"path": "/lib/modules"}},
                        {"name": "xtables-lock", "hostPath": {"path": "/run/xtables.lock", "type": "FileOrCreate"}},
                        {"name": "hubble-tls", "projected": {"defaultMode": 256, "sources": [{"secret": {"name": "hubble-server-certs", "optional": true}}]}},
                    ],
                },
            },
        },
    });
    objs.push(ds);

    if c.envoy {
        objs.push(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cilium-envoy-config", "namespace": ns}, "data": {"bootstrap-config.json": "{\"node\":{\"id\":\"host~127.0.0.1~no-id~localdomain\",\"cluster\":\"ingress-cluster\"}}"}}));
        objs.push(json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "cilium-envoy", "namespace": ns, "labels": {"k8s-app": "cilium-envoy", "app.kubernetes.io/part-of": "cilium", "app.kubernetes.io/name": "cilium-envoy", "name": "cilium-envoy"}},
            "spec": {
                "selector": {"matchLabels": {"k8s-app": "cilium-envoy"}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}},
                "template": {
                    "metadata": {"labels": {"k8s-app": "cilium-envoy", "name": "cilium-envoy", "app.kubernetes.io/name": "cilium-envoy", "app.kubernetes.io/part-of": "cilium"}},
                    "spec": {
                        "hostNetwork": true, "priorityClassName": "system-node-critical", "serviceAccountName": "cilium-envoy",
                        "terminationGracePeriodSeconds": 1, "nodeSelector": {"kubernetes.io/os": "linux"}, "tolerations": [{"operator": "Exists"}],
                        "containers": [{"name": "cilium-envoy", "image": format!("quay.io/cilium/cilium-envoy:v1.30.7-1731393961-97edc2815e2c6a174d3d12e71731d54f5d32ea16@sha256:{}", o::sha_hex("envoy")),
                            "command": ["/usr/bin/cilium-envoy-starter"], "args": ["--", "-c /var/run/cilium/envoy/bootstrap-config.json", "--base-id 0"],
                            "ports": [{"name": "envoy-metrics", "containerPort": 9964, "hostPort": 9964, "protocol": "TCP"}],
                            "readinessProbe": {"httpGet": {"host": "127.0.0.1", "path": "/healthz", "port": 9878, "scheme": "HTTP"}}}],
                    },
                },
            },
        }));
    }

    // Operator.
    let mut op_ports = Vec::new();
    if c.operator_prometheus {
        op_ports.push(json!({"name": "prometheus", "containerPort": 9963, "hostPort": 9963, "protocol": "TCP"}));
    }
    objs.push(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "cilium-operator", "namespace": ns, "labels": {"io.cilium/app": "operator", "name": "cilium-operator", "app.kubernetes.io/part-of": "cilium", "app.kubernetes.io/name": "cilium-operator"}},
        "spec": {
            "replicas": c.operator_replicas,
            "selector": {"matchLabels": {"io.cilium/app": "operator", "name": "cilium-operator"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "50%"}},
            "template": {
                "metadata": {"labels": {"io.cilium/app": "operator", "name": "cilium-operator", "app.kubernetes.io/part-of": "cilium", "app.kubernetes.io/name": "cilium-operator"}},
                "spec": {
                    "hostNetwork": true, "priorityClassName": "system-cluster-critical", "serviceAccountName": "cilium-operator",
                    "automountServiceAccountToken": true, "restartPolicy": "Always", "nodeSelector": {"kubernetes.io/os": "linux"}, "tolerations": [{"operator": "Exists"}],
                    "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                        {"labelSelector": {"matchLabels": {"io.cilium/app": "operator"}}, "topologyKey": "kubernetes.io/hostname"}]}},
                    "containers": [{
                        "name": "cilium-operator", "image": c.image("operator-generic"),
                        "command": ["cilium-operator-generic"], "args": ["--config-dir=/tmp/cilium/config-map", "--debug=$(CILIUM_DEBUG)"],
                        "env": [{"name": "K8S_NODE_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}}],
                        "ports": op_ports, "resources": c.operator_resources,
                        "livenessProbe": {"httpGet": {"host": "127.0.0.1", "path": "/healthz", "port": 9234, "scheme": "HTTP"}},
                        "readinessProbe": {"httpGet": {"host": "127.0.0.1", "path": "/healthz", "port": 9234, "scheme": "HTTP"}},
                    }],
                    "volumes": [{"name": "cilium-config-path", "configMap": {"name": "cilium-config"}}],
                },
            },
        },
    }));

    if c.hubble {
        objs.push(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "hubble-peer", "namespace": ns, "labels": {"k8s-app": "cilium", "app.kubernetes.io/part-of": "cilium", "app.kubernetes.io/name": "hubble-peer"}},
            "spec": {"selector": {"k8s-app": "cilium"}, "internalTrafficPolicy": "Local",
                     "ports": [{"name": "peer-service", "port": if c.tls { 443 } else { 80 }, "protocol": "TCP", "targetPort": 4244}]},
        }));
        match c.tls_method.as_str() {
            "cronJob" => {
                objs.push(sa("hubble-generate-certs"));
                let job_spec = json!({"template": {"metadata": {"labels": {"k8s-app": "hubble-generate-certs"}}, "spec": {
                    "serviceAccountName": "hubble-generate-certs", "restartPolicy": "OnFailure",
                    "containers": [{"name": "certgen", "image": format!("quay.io/cilium/certgen:v0.2.0@sha256:{}", o::sha_hex("certgen")), "command": ["/usr/bin/cilium-certgen"]}]}}});
                objs.push(json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "hubble-generate-certs", "namespace": ns,
                    "labels": {"k8s-app": "hubble-generate-certs", "app.kubernetes.io/part-of": "cilium"},
                    "annotations": {"argocd.argoproj.io/hook": "PostSync"}}, "spec": job_spec}));
                objs.push(json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "hubble-generate-certs", "namespace": ns,
                    "labels": {"k8s-app": "hubble-generate-certs", "app.kubernetes.io/part-of": "cilium"}},
                    "spec": {"schedule": "0 0 1 */4 *", "concurrencyPolicy": "Forbid", "jobTemplate": {"spec": job_spec}}}));
            }
            "helm" if c.tls => {
                // `helm template` has no lookup: a new CA and certs on every render.
                let pem = |what: &str| {
                    let body = o::sha_hex(&format!("{what}-{churn}"));
                    json!(format!("LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t{body}"))
                };
                objs.push(json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": "cilium-ca", "namespace": ns},
                    "data": {"ca.crt": pem("ca.crt"), "ca.key": pem("ca.key")}}));
                for name in ["hubble-server-certs", "hubble-relay-client-certs"] {
                    objs.push(json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls", "metadata": {"name": name, "namespace": ns},
                        "data": {"ca.crt": pem("ca.crt"), "tls.crt": pem(&format!("{name}.crt")), "tls.key": pem(&format!("{name}.key"))}}));
                }
            }
            _ => {}
        }
    }
    if c.hubble && c.relay {
        objs.push(sa("hubble-relay"));
        objs.push(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "hubble-relay-config", "namespace": ns},
            "data": {"config.yaml": format!(
                "cluster-name: {}\npeer-service: \"hubble-peer.{ns}.svc.cluster.local.:{}\"\nlisten-address: :4245\ngops: true\ngops-port: \"9893\"\n{}disable-server-tls: true\n",
                c.cluster_name,
                if c.tls { 443 } else { 80 },
                if c.tls {
                    "tls-hubble-client-cert-file: /var/lib/hubble-relay/tls/client.crt\ntls-hubble-client-key-file: /var/lib/hubble-relay/tls/client.key\ntls-hubble-server-ca-files: /var/lib/hubble-relay/tls/hubble-server-ca.crt\n"
                } else {
                    "disable-client-tls: true\n"
                }
            )}}));
        objs.push(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "hubble-relay", "namespace": ns, "labels": {"k8s-app": "hubble-relay", "app.kubernetes.io/name": "hubble-relay", "app.kubernetes.io/part-of": "cilium"}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"k8s-app": "hubble-relay"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                "template": {
                    "metadata": {"labels": {"k8s-app": "hubble-relay", "app.kubernetes.io/name": "hubble-relay", "app.kubernetes.io/part-of": "cilium"}},
                    "spec": {
                        "serviceAccountName": "hubble-relay", "automountServiceAccountToken": false, "terminationGracePeriodSeconds": 1,
                        "nodeSelector": {"kubernetes.io/os": "linux"},
                        "affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                            {"labelSelector": {"matchLabels": {"k8s-app": "cilium"}}, "topologyKey": "kubernetes.io/hostname"}]}},
                        "containers": [{
                            "name": "hubble-relay", "image": c.image("hubble-relay"), "command": ["hubble-relay"], "args": ["serve"],
                            "ports": [{"name": "grpc", "containerPort": 4245, "protocol": "TCP"}],
                            "readinessProbe": {"grpc": {"port": 4222, "service": ""}, "timeoutSeconds": 3},
                            "livenessProbe": {"grpc": {"port": 4222, "service": ""}, "timeoutSeconds": 3},
                            "volumeMounts": [{"name": "config", "mountPath": "/etc/hubble-relay", "readOnly": true}, {"name": "tls", "mountPath": "/var/lib/hubble-relay/tls", "readOnly": true}],
                        }],
                        "volumes": [{"name": "config", "configMap": {"name": "hubble-relay-config", "items": [{"key": "config.yaml", "path": "config.yaml"}]}},
                                    {"name": "tls", "projected": {"defaultMode": 256, "sources": [{"secret": {"name": "hubble-relay-client-certs"}}]}}],
                    },
                },
            },
        }));
        objs.push(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "hubble-relay", "namespace": ns, "labels": {"k8s-app": "hubble-relay", "app.kubernetes.io/name": "hubble-relay", "app.kubernetes.io/part-of": "cilium"}},
            "spec": {"type": "ClusterIP", "selector": {"k8s-app": "hubble-relay"}, "ports": [{"protocol": "TCP", "port": 80, "targetPort": "grpc"}]},
        }));
        if c.ui {
            objs.push(sa("hubble-ui"));
            objs.push(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "hubble-ui-nginx", "namespace": ns},
                "data": {"nginx.conf": "server {\n    listen       8081;\n    location / {\n        root /app;\n        try_files $uri $uri/ /index.html;\n    }\n}\n"}}));
            objs.push(json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "hubble-ui", "namespace": ns, "labels": {"k8s-app": "hubble-ui", "app.kubernetes.io/name": "hubble-ui", "app.kubernetes.io/part-of": "cilium"}},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"k8s-app": "hubble-ui"}},
                    "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                    "template": {
                        "metadata": {"labels": {"k8s-app": "hubble-ui", "app.kubernetes.io/name": "hubble-ui", "app.kubernetes.io/part-of": "cilium"}},
                        "spec": {
                            "serviceAccountName": "hubble-ui", "automountServiceAccountToken": true, "nodeSelector": {"kubernetes.io/os": "linux"},
                            "containers": [
                                {"name": "frontend", "image": format!("quay.io/cilium/hubble-ui:v0.13.1@sha256:{}", o::sha_hex("hubble-ui")),
                                 "ports": [{"name": "http", "containerPort": 8081}], "readinessProbe": {"httpGet": {"path": "/", "port": 8081}}},
                                {"name": "backend", "image": format!("quay.io/cilium/hubble-ui-backend:v0.13.1@sha256:{}", o::sha_hex("hubble-ui-backend")),
                                 "env": [{"name": "EVENTS_SERVER_PORT", "value": "8090"}, {"name": "FLOWS_API_ADDR", "value": "hubble-relay:80"}],
                                 "ports": [{"name": "grpc", "containerPort": 8090}]},
                            ],
                            "volumes": [{"name": "hubble-ui-nginx-conf", "configMap": {"name": "hubble-ui-nginx", "defaultMode": 420}}, {"name": "tmp-dir", "emptyDir": {}}],
                        },
                    },
                },
            }));
            objs.push(json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "hubble-ui", "namespace": ns, "labels": {"k8s-app": "hubble-ui", "app.kubernetes.io/name": "hubble-ui", "app.kubernetes.io/part-of": "cilium"}},
                "spec": {"type": "ClusterIP", "selector": {"k8s-app": "hubble-ui"}, "ports": [{"name": "http", "port": 80, "targetPort": 8081}]},
            }));
            if let Some(ing) = &c.ui_ingress {
                let hosts: Vec<String> = ing
                    .get("hosts")
                    .and_then(Value::as_array)
                    .map(|h| h.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                    .unwrap_or_else(|| vec!["chart-example.local".into()]);
                let rules: Vec<Value> = hosts.iter().map(|h| json!({"host": h, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "hubble-ui", "port": {"number": 80}}}}]}})).collect();
                let mut spec = json!({"rules": rules});
                if let Some(cls) = ing.get("className").and_then(Value::as_str).filter(|s| !s.is_empty()) {
                    spec["ingressClassName"] = json!(cls);
                }
                if let Some(tls) = ing.get("tls").filter(|t| t.as_array().is_some_and(|a| !a.is_empty())) {
                    spec["tls"] = tls.clone();
                }
                let mut meta = json!({"name": "hubble-ui", "namespace": ns, "labels": {"k8s-app": "hubble-ui", "app.kubernetes.io/name": "hubble-ui", "app.kubernetes.io/part-of": "cilium"}});
                if let Some(a) = ing.get("annotations").filter(|a| a.as_object().is_some_and(|m| !m.is_empty())) {
                    meta["annotations"] = a.clone();
                }
                objs.push(
                    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}),
                );
            }
        }
    }
    if c.agent_service_monitor {
        objs.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "cilium-agent", "namespace": ns, "labels": {"k8s-app": "cilium", "app.kubernetes.io/part-of": "cilium", "app.kubernetes.io/name": "cilium-agent"}},
            "spec": {"clusterIP": "None", "type": "ClusterIP", "selector": {"k8s-app": "cilium"}, "ports": [{"name": "metrics", "port": 9962, "protocol": "TCP", "targetPort": "prometheus"}]}}));
        objs.push(json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "cilium-agent", "namespace": ns, "labels": {"app.kubernetes.io/part-of": "cilium"}},
            "spec": {"selector": {"matchLabels": {"k8s-app": "cilium"}}, "namespaceSelector": {"matchNames": [ns]}, "endpoints": [{"port": "metrics", "interval": "10s", "honorLabels": true, "path": "/metrics"}]}}));
    }
    if c.operator_service_monitor {
        objs.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "cilium-operator", "namespace": ns, "labels": {"io.cilium/app": "operator", "name": "cilium-operator", "app.kubernetes.io/part-of": "cilium"}},
            "spec": {"clusterIP": "None", "type": "ClusterIP", "selector": {"io.cilium/app": "operator", "name": "cilium-operator"}, "ports": [{"name": "metrics", "port": 9963, "protocol": "TCP", "targetPort": "prometheus"}]}}));
        objs.push(json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "cilium-operator", "namespace": ns, "labels": {"app.kubernetes.io/part-of": "cilium"}},
            "spec": {"selector": {"matchLabels": {"io.cilium/app": "operator", "name": "cilium-operator"}}, "namespaceSelector": {"matchNames": [ns]}, "endpoints": [{"port": "metrics", "interval": "10s", "honorLabels": true, "path": "/metrics"}]}}));
    }
    Rendered { config: c, objects: objs }
}

/// A CustomResourceDefinition object for a registry resource.
pub fn crd_object(r: &crate::sim::registry::Resource, now: &str) -> Value {
    let mut subres = json!({});
    if r.subresources.contains(&"status") {
        subres["status"] = json!({});
    }
    json!({
        "metadata": {"name": r.crd_name()},
        "spec": {
            "group": r.group,
            "names": {"kind": r.kind, "listKind": format!("{}List", r.kind), "plural": r.plural, "singular": r.singular,
                      "shortNames": r.short_names, "categories": r.categories},
            "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
            "versions": [{"name": r.version, "served": true, "storage": true, "subresources": subres,
                          "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}],
        },
        "status": {
            "acceptedNames": {"kind": r.kind, "listKind": format!("{}List", r.kind), "plural": r.plural, "singular": r.singular, "shortNames": r.short_names, "categories": r.categories},
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
            ],
            "storedVersions": [r.version],
        },
    })
}

/// Cilium security identity for a pod: stable per namespace + identity-relevant labels.
pub fn identity_for(ns: &str, labels: &BTreeMap<String, String>) -> u32 {
    let relevant: Vec<String> = labels
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "pod-template-hash"
                    | "controller-revision-hash"
                    | "pod-template-generation"
                    | "statefulset.kubernetes.io/pod-name"
                    | "apps.kubernetes.io/pod-index"
            )
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    256 + (o::fnv64(&format!("{ns}|{}", relevant.join(","))) % (65535 - 256)) as u32
}

fn identity_labels(ns: &str, labels: &BTreeMap<String, String>, sa: &str, cluster: &str) -> Vec<String> {
    let mut out: Vec<String> = labels
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "pod-template-hash"
                    | "controller-revision-hash"
                    | "pod-template-generation"
                    | "statefulset.kubernetes.io/pod-name"
                    | "apps.kubernetes.io/pod-index"
            )
        })
        .map(|(k, v)| format!("k8s:{k}={v}"))
        .collect();
    out.push(format!("k8s:io.cilium.k8s.policy.cluster={cluster}"));
    out.push(format!("k8s:io.cilium.k8s.policy.serviceaccount={sa}"));
    out.push(format!("k8s:io.kubernetes.pod.namespace={ns}"));
    out.sort();
    out
}

/// Cilium state the world keeps (what the last sync applied, router IPs).
#[derive(Debug, Default)]
pub struct CiliumState {
    /// Agent exit reason from the values (linter AgentCrash findings) of the last applied sync.
    pub lint_crash: Option<String>,
    /// Chart version and cluster name of the last applied sync.
    pub applied: Option<CiliumConfig>,
    pub router_ips: BTreeMap<String, String>,
    pub health_ips: BTreeMap<String, String>,
}

fn is_agent(pod: &Value) -> bool {
    o::labels(pod).get("k8s-app").map(String::as_str) == Some("cilium")
        && o::controller_of(pod).is_some_and(|c| c.kind == "DaemonSet")
}

fn env_value(pod: &Value, name: &str) -> Option<String> {
    pod.pointer("/spec/containers/0/env")?
        .as_array()?
        .iter()
        .find(|e| o::s(e, "/name") == name)
        .map(|e| o::s(e, "/value").to_string())
}

fn host_path(pod: &Value, volume: &str) -> Option<String> {
    pod.pointer("/spec/volumes")?
        .as_array()?
        .iter()
        .find(|v| o::s(v, "/name") == volume)
        .map(|v| o::s(v, "/hostPath/path").to_string())
}

impl World {
    /// Why a container exits right after it starts (read at every container start).
    pub(crate) fn crash_cause_at_start(&self, pod: &Value) -> Option<String> {
        if !is_agent(pod) {
            return None;
        }
        if let Some(c) = &self.cilium.lint_crash {
            return Some(c.clone());
        }
        let node = self.nodes.get(o::s(pod, "/spec/nodeName"))?;
        let cm = self.store.get(res(ids::CONFIGMAPS), o::namespace(pod), "cilium-config").ok()?;
        let data = |k: &str| o::s(&cm, &format!("/data/{k}")).to_string();
        // Without kube-proxy on the node, the agent reaches the API only through k8sServiceHost.
        if !node.net.kube_proxy && env_value(pod, "KUBERNETES_SERVICE_HOST").is_none_or(|h| h.is_empty()) {
            return Some("Unable to contact k8s api-server: Get \"https://10.43.0.1:443/api/v1/namespaces/kube-system\": dial tcp 10.43.0.1:443: i/o timeout (kube-proxy is disabled on this node and k8sServiceHost is not set)".into());
        }
        let healthz = data("kube-proxy-replacement-healthz-bind-address");
        if node.net.kube_proxy && healthz.ends_with(":10256") {
            return Some(format!(
                "Error while initializing daemon: failed to start kube-proxy replacement healthz server: listen tcp {healthz}: bind: address already in use"
            ));
        }
        if data("routing-mode") == "tunnel"
            && data("tunnel-protocol") != "geneve"
            && node.net.flannel_backend.as_deref() == Some("vxlan")
        {
            return Some("Error while initializing daemon: failed to setup vxlan tunnel device: failed to create vxlan device \"cilium_vxlan\": address already in use (UDP 8472 is held by flannel.1)".into());
        }
        None
    }

    /// Readiness gates: agents need the CRDs (registered by the operator) and come up node by
    /// node; the relay needs a Ready agent; Longhorn's CSI plugin is not Ready on a node under the
    /// `LonghornCsiNotReady` fault.
    pub(crate) fn pod_gate(&self, pod: &Value, _rt: &PodRt) -> Gate {
        let labels = o::labels(pod);
        if is_agent(pod) {
            if self.store.get(res(ids::CRDS), "", "ciliumnodes.cilium.io").is_err() {
                return Gate::NotReady;
            }
            let idx = self.nodes.get(o::s(pod, "/spec/nodeName")).map(|k| k.index).unwrap_or(0) as f64;
            return Gate::ReadyAfter(timing::AGENT_READY + idx * timing::AGENT_STAGGER);
        }
        // The `LonghornCsiNotReady` fault: the CSI plugin on that node fails its probes.
        if labels.get("app").map(String::as_str) == Some("longhorn-csi-plugin")
            && self.faults.longhorn_csi_not_ready.contains(o::s(pod, "/spec/nodeName"))
        {
            return Gate::NotReady;
        }
        if labels.get("k8s-app").map(String::as_str) == Some("hubble-relay") {
            let (pods, _) = self.store.list(res(ids::PODS), Some(o::namespace(pod)));
            if !pods.iter().any(|p| is_agent(p) && o::pod_ready(p)) {
                return Gate::NotReady;
            }
        }
        Gate::ReadyAfter(timing::READY_MIN + (o::fnv64(o::name(pod)) % 1000) as f64 / 1000.0 * timing::READY_JITTER)
    }

    /// Operator and agent side effects on the cluster.
    pub(crate) fn cilium_tick(&mut self) {
        let (pods, _) = self.store.list(res(ids::PODS), None);
        let operator_running = pods.iter().any(|p| {
            o::labels(p).get("io.cilium/app").map(String::as_str) == Some("operator")
                && o::s(p, "/status/phase") == "Running"
                && !o::is_terminating(p)
        });
        if operator_running {
            for id in [ids::CILIUMNODES, ids::CILIUMENDPOINTS] {
                let r = res(id);
                if self.store.get(res(ids::CRDS), "", &r.crd_name()).is_err() {
                    let _ = self.store.create(res(ids::CRDS), "", crd_object(r, &self.now_str));
                }
            }
        }
        let crds = self.store.get(res(ids::CRDS), "", "ciliumnodes.cilium.io").is_ok();
        let cep_crd = self.store.get(res(ids::CRDS), "", "ciliumendpoints.cilium.io").is_ok();
        let agents: Vec<_> = pods.iter().filter(|p| is_agent(p) && !o::is_terminating(p)).collect();
        let ready_nodes: BTreeSet<String> =
            agents.iter().filter(|p| o::pod_ready(p)).map(|p| o::s(p, "/spec/nodeName").to_string()).collect();
        let ds_exists = !self
            .store
            .list(res(ids::DAEMONSETS), None)
            .0
            .iter()
            .all(|d| o::name(d) != "cilium" || o::labels(d).get("k8s-app").map(String::as_str) != Some("cilium"));
        let cluster = self.cilium.applied.as_ref().map(|c| c.cluster_name.clone()).unwrap_or_else(|| "default".into());

        // Agents that are Ready wrote their CNI config and installed the plugin binary.
        for p in agents.iter().filter(|p| o::pod_ready(p)) {
            let node = o::s(p, "/spec/nodeName").to_string();
            let conf = host_path(p, "etc-cni-netd").unwrap_or_else(|| "/etc/cni/net.d".into());
            let bin = host_path(p, "cni-path").unwrap_or_else(|| "/opt/cni/bin".into());
            let installs = p
                .pointer("/spec/initContainers")
                .and_then(Value::as_array)
                .is_some_and(|ics| ics.iter().any(|c| o::s(c, "/name") == "install-cni-binaries"));
            if let Some(k) = self.nodes.get_mut(&node) {
                k.cilium_conf_dirs.insert(conf);
                if installs {
                    k.cilium_bin_dirs.insert(bin);
                }
            }
        }
        let node_names: Vec<String> = self.nodes.keys().cloned().collect();
        for node in &node_names {
            let ready = ready_nodes.contains(node);
            if ready {
                self.ensure_router_ip(node);
                if crds {
                    self.ensure_cilium_node(node);
                }
                let now = self.now_str.clone();
                let _ = self.store.mutate(res(ids::NODES), "", node, |n| {
                    let mut conds =
                        n.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
                    o::set_condition(
                        &mut conds,
                        "NetworkUnavailable",
                        "False",
                        "CiliumIsUp",
                        "Cilium is running on this node",
                        &now,
                    );
                    for c in conds.iter_mut() {
                        if o::s(c, "/type") == "NetworkUnavailable" && c.get("lastHeartbeatTime").is_none() {
                            c["lastHeartbeatTime"] = json!(now);
                        }
                    }
                    let order = ["NetworkUnavailable", "MemoryPressure", "DiskPressure", "PIDPressure", "Ready"];
                    conds.sort_by_key(|c| order.iter().position(|t| *t == o::s(c, "/type")).unwrap_or(99));
                    n["status"]["conditions"] = Value::Array(conds);
                    Ok(())
                });
            }
            // The operator taints nodes whose agent is not up (and removes the taint later).
            if ds_exists && operator_running {
                let _ = self.store.mutate(res(ids::NODES), "", node, |n| {
                    let mut taints = n.pointer("/spec/taints").and_then(Value::as_array).cloned().unwrap_or_default();
                    let has = taints.iter().any(|t| o::s(t, "/key") == AGENT_NOT_READY_TAINT);
                    if ready && has {
                        taints.retain(|t| o::s(t, "/key") != AGENT_NOT_READY_TAINT);
                    } else if !ready && !has {
                        taints.push(json!({"key": AGENT_NOT_READY_TAINT, "value": "true", "effect": "NoSchedule"}));
                    } else {
                        return Ok(());
                    }
                    if taints.is_empty() {
                        if let Some(m) = n.get_mut("spec").and_then(Value::as_object_mut) {
                            m.remove("taints");
                        }
                    } else {
                        n["spec"]["taints"] = Value::Array(taints);
                    }
                    Ok(())
                });
            }
        }
        if cep_crd {
            self.sync_endpoints(&pods, &ready_nodes, &cluster);
        }
    }

    fn ensure_router_ip(&mut self, node: &str) {
        if self.cilium.router_ips.contains_key(node) {
            return;
        }
        let Some(k) = self.nodes.get(node) else { return };
        let index = k.index;
        if let Some(ip) = self.ipam.alloc(node, index, Cni::Cilium, &mut self.rng) {
            self.cilium.router_ips.insert(node.to_string(), ip);
        }
        if let Some(ip) = self.ipam.alloc(node, index, Cni::Cilium, &mut self.rng) {
            self.cilium.health_ips.insert(node.to_string(), ip);
        }
    }

    fn ensure_cilium_node(&mut self, node: &str) {
        let r = res(ids::CILIUMNODES);
        if self.store.get(r, "", node).is_ok() {
            return;
        }
        let Some(k) = self.nodes.get(node) else { return };
        let Ok(n) = self.store.get(res(ids::NODES), "", node) else { return };
        let router = self.cilium.router_ips.get(node).cloned().unwrap_or_default();
        let health = self.cilium.health_ips.get(node).cloned().unwrap_or_default();
        let obj = json!({
            "metadata": {"name": node, "labels": n.pointer("/metadata/labels").cloned().unwrap_or(json!({})),
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": o::uid(&n)}]},
            "spec": {
                "addresses": [{"type": "InternalIP", "ip": k.ip}, {"type": "CiliumInternalIP", "ip": router}],
                "alibaba-cloud": {}, "azure": {}, "bootid": k.boot_id, "encryption": {}, "eni": {},
                "health": {"ipv4": health}, "ingress": {}, "ipam": {"podCIDRs": [k.pod_cidr()], "pools": {}},
            },
            "status": {"alibaba-cloud": {}, "azure": {}, "eni": {}, "ipam": {"operator-status": {}}},
        });
        let _ = self.store.create(r, "", obj);
    }

    fn sync_endpoints(&mut self, pods: &[std::sync::Arc<Value>], ready_nodes: &BTreeSet<String>, cluster: &str) {
        let r = res(ids::CILIUMENDPOINTS);
        let (ceps, _) = self.store.list(r, None);
        let mut want: BTreeSet<(String, String)> = BTreeSet::new();
        for p in pods {
            let Some(rt) = self.pods.get(o::uid(p)) else { continue };
            let Some(sb) = &rt.sandbox else { continue };
            if sb.cni != Cni::Cilium || o::is_terminating(p) || !ready_nodes.contains(&rt.node) {
                continue;
            }
            let (ns, name) = (o::namespace(p).to_string(), o::name(p).to_string());
            want.insert((ns.clone(), name.clone()));
            let labels = o::labels(p);
            let sa = o::s(p, "/spec/serviceAccountName");
            let node_ip = self.nodes.get(&rt.node).map(|k| k.ip.clone()).unwrap_or_default();
            let status = json!({
                "id": rt.endpoint_id,
                "identity": {"id": identity_for(&ns, &labels), "labels": identity_labels(&ns, &labels, if sa.is_empty() { "default" } else { sa }, cluster)},
                "networking": {"addressing": [{"ipv4": sb.ip}], "node": node_ip},
                "state": "ready",
                "encryption": {},
                "external-identifiers": {"container-id": rt.container_ids.first().cloned().unwrap_or_default(), "k8s-namespace": ns, "k8s-pod-name": name, "pod-name": format!("{ns}/{name}")},
            });
            match ceps.iter().find(|c| o::namespace(c) == ns && o::name(c) == name) {
                Some(c)
                    if c.get("status") == Some(&status) && o::s(c, "/metadata/ownerReferences/0/uid") == o::uid(p) => {}
                Some(c) if o::s(c, "/metadata/ownerReferences/0/uid") == o::uid(p) => {
                    let _ = self.store.mutate(r, &ns, &name, |x| {
                        x["status"] = status.clone();
                        Ok(())
                    });
                }
                other => {
                    if other.is_some() {
                        let _ = self.store.delete(r, &ns, &name, None);
                    }
                    let _ = self.store.create(r, &ns, json!({
                        "metadata": {"name": name, "labels": labels,
                                     "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": name, "uid": o::uid(p), "blockOwnerDeletion": true}]},
                        "status": status,
                    }));
                }
            }
        }
        // Endpoints whose pod no longer has a Cilium sandbox (the agent restarted elsewhere).
        for c in &ceps {
            let key = (o::namespace(c).to_string(), o::name(c).to_string());
            if !want.contains(&key) && !ready_nodes.is_empty() {
                let on_ready_node = pods.iter().any(|p| {
                    o::namespace(p) == key.0 && o::name(p) == key.1 && ready_nodes.contains(o::s(p, "/spec/nodeName"))
                });
                if on_ready_node {
                    let _ = self.store.delete(r, &key.0, &key.1, None);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(text: &str) -> Value {
        o::yaml_to_json(text).unwrap()
    }

    #[test]
    fn defaults_are_the_1_16_chart_defaults() {
        let c = CiliumConfig::from_values(&json!({}), "1.16.4", "kube-system");
        assert_eq!(c.routing_mode, "tunnel");
        assert_eq!(c.operator_replicas, 2);
        assert!(c.hubble && !c.relay && !c.ui);
        assert_eq!(c.cluster_name, "default");
        assert_eq!(c.tls_method, "helm");
    }

    #[test]
    fn render_reflects_values() {
        let v = values(
            "cluster: {name: homelab}\nroutingMode: native\nipv4NativeRoutingCIDR: 10.42.0.0/16\nkubeProxyReplacement: \"false\"\noperator: {replicas: 1}\nhubble: {relay: {enabled: true}, ui: {enabled: true, ingress: {enabled: true, className: haproxy-restricted, hosts: [hubble.example.com]}}, tls: {auto: {method: cronJob}}}\n",
        );
        let r = render(&v, "1.16.4", "kube-system", 0);
        let find =
            |kind: &str, name: &str| r.objects.iter().find(|x| o::s(x, "/kind") == kind && o::name(x) == name).cloned();
        let cm = find("ConfigMap", "cilium-config").unwrap();
        assert_eq!(cm["data"]["routing-mode"], "native");
        assert_eq!(cm["data"]["ipv4-native-routing-cidr"], "10.42.0.0/16");
        assert_eq!(cm["data"]["cluster-name"], "homelab");
        assert!(cm["data"].get("tunnel-protocol").is_none());
        assert_eq!(find("Deployment", "cilium-operator").unwrap()["spec"]["replicas"], 1);
        let relay = find("Service", "hubble-relay").unwrap();
        assert_eq!(relay["spec"]["ports"][0]["port"], 80);
        assert_eq!(relay["spec"]["ports"][0]["targetPort"], "grpc");
        assert!(find("Service", "hubble-peer").is_some());
        assert_eq!(find("Ingress", "hubble-ui").unwrap()["spec"]["ingressClassName"], "haproxy-restricted");
        assert!(find("CronJob", "hubble-generate-certs").is_some());
        assert!(find("Secret", "hubble-server-certs").is_none());
        assert!(find("ServiceMonitor", "cilium-agent").is_none());
    }

    #[test]
    fn external_ips_is_a_value_of_the_1_16_chart_only() {
        let v = values("externalIPs: {enabled: true}\nkubeProxyReplacement: \"false\"\n");
        let cm = |version: &str| {
            let r = render(&v, version, "kube-system", 0);
            r.objects.into_iter().find(|x| o::s(x, "/kind") == "ConfigMap" && o::name(x) == "cilium-config").unwrap()
        };
        assert_eq!(cm("1.16.4")["data"]["enable-external-ips"], "true");
        assert!(cm("1.17.18")["data"].get("enable-external-ips").is_none());
    }

    #[test]
    fn helm_tls_churns() {
        let v = values("hubble: {relay: {enabled: true}}");
        let a = render(&v, "1.16.4", "kube-system", 1);
        let b = render(&v, "1.16.4", "kube-system", 2);
        let sec = |r: &Rendered| r.objects.iter().find(|x| o::name(x) == "hubble-server-certs").cloned().unwrap();
        assert_ne!(sec(&a)["data"], sec(&b)["data"]);
    }

    #[test]
    fn identities_are_stable_and_in_range() {
        let mut l = BTreeMap::new();
        l.insert("app".to_string(), "blog".to_string());
        let a = identity_for("blog", &l);
        l.insert("pod-template-hash".to_string(), "abc".to_string());
        assert_eq!(identity_for("blog", &l), a);
        assert!(a >= 256);
        assert_ne!(identity_for("other", &l), a);
    }
}
