//! The user's homelab as the sim starts it: namespaces, CRDs, nodes, the k3s add-ons, Argo CD
//! and its app-of-apps (MetalLB, Longhorn, cert-manager, HAProxy ingress, Jellyfin, Home
//! Assistant, a blog, and Cilium in the Cilium scenarios), the Git repository they come from, and
//! the state each scenario starts in (reached by running the controllers on a fast clock).

use serde_json::{Value, json};

use super::k3s::{self, ConfigValue};
use super::objects::{self as o, ids, res};
use super::scenario::{BaseScenario, NodeRole};
use super::{World, cilium, git};
use crate::sim::registry;

/// One container: name, image, (port name, port, protocol) list, resources.
fn container(name: &str, image: &str, ports: &[(&str, i64, &str)], resources: Value) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, p, proto)| {
            let mut v = json!({"containerPort": p, "protocol": proto});
            if !n.is_empty() {
                v["name"] = json!(n);
            }
            v
        })
        .collect();
    let mut c = json!({"name": name, "image": image, "resources": resources});
    if !ports.is_empty() {
        c["ports"] = json!(ports);
    }
    c
}

fn req(cpu: &str, mem: &str) -> Value {
    json!({"requests": {"cpu": cpu, "memory": mem}})
}

fn labels_sel(l: &Value) -> Value {
    json!({"matchLabels": l})
}

fn deployment(ns: &str, name: &str, labels: Value, replicas: i64, pod_spec: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "replicas": replicas, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
            "selector": labels_sel(&labels),
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    })
}

fn daemonset(ns: &str, name: &str, labels: Value, pod_spec: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "revisionHistoryLimit": 10, "selector": labels_sel(&labels),
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    })
}

fn service(ns: &str, name: &str, labels: Value, selector: Value, ports: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns, "labels": labels},
           "spec": {"type": "ClusterIP", "selector": selector, "ports": ports}})
}

fn sa(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}})
}

fn ingress(ns: &str, name: &str, host: &str, svc: &str, port: i64) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": ns, "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt-prod"}},
        "spec": {
            "ingressClassName": "haproxy-restricted",
            "tls": [{"hosts": [host], "secretName": format!("{name}-tls")}],
            "rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": svc, "port": {"number": port}}}}]}}],
        },
    })
}

/// How an app's sources look in its Application manifest.
enum Source {
    /// A Helm chart the sim does not render (objects fixed at seed), values from git.
    Helm {
        repo: &'static str,
        chart: &'static str,
        version: &'static str,
        values: &'static str,
        config_path: Option<&'static str>,
    },
    /// Plain manifests in a git directory.
    Git { path: &'static str },
}

struct App {
    name: &'static str,
    dest: &'static str,
    source: Source,
    /// Objects the chart renders (Helm) or the files in the git path (Git).
    objects: Vec<Value>,
    /// Objects in the git config path of a Helm app.
    config: Vec<Value>,
}

fn app_manifest(a: &App, repo_url: &str) -> Value {
    let mut spec = json!({
        "project": "default",
        "destination": {"server": "https://kubernetes.default.svc", "namespace": a.dest},
        "syncPolicy": {"automated": {"prune": true, "selfHeal": true}, "syncOptions": ["CreateNamespace=true"]},
    });
    match &a.source {
        Source::Helm { repo, chart, version, values, config_path } => {
            let mut srcs = vec![
                json!({"repoURL": repo, "chart": chart, "targetRevision": version, "helm": {"releaseName": chart, "valueFiles": [format!("$values/{values}")]}}),
                json!({"repoURL": repo_url, "targetRevision": "main", "ref": "values"}),
            ];
            if let Some(p) = config_path {
                srcs.push(json!({"repoURL": repo_url, "targetRevision": "main", "path": p}));
            }
            spec["sources"] = json!(srcs);
        }
        Source::Git { path } => {
            spec["source"] = json!({"repoURL": repo_url, "targetRevision": "main", "path": path});
        }
    }
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": a.name, "namespace": "argocd", "finalizers": ["resources-finalizer.argocd.argoproj.io"]},
        "spec": spec,
    })
}

/// The Cilium Application as the corrected plan has it (syncOptions moved under syncPolicy).
pub fn cilium_app_manifest(repo_url: &str, chart_version: &str, values_path: &str) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "cilium-app", "namespace": "argocd", "finalizers": ["resources-finalizer.argocd.argoproj.io"]},
        "spec": {
            "project": "default",
            "sources": [
                {"repoURL": "https://helm.cilium.io", "chart": "cilium", "targetRevision": chart_version,
                 "helm": {"releaseName": "cilium", "valueFiles": [format!("$values/{values_path}")]}},
                {"repoURL": repo_url, "targetRevision": "main", "ref": "values"},
            ],
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "kube-system"},
            "syncPolicy": {"automated": {"prune": true, "selfHeal": true}, "syncOptions": ["CreateNamespace=true"]},
        },
    })
}

/// The plan's Stage 1 values, corrected (valid for the 1.16 and 1.17 charts: no `tunnel`, no
/// `hostServices`, no `externalIPs`, kubeProxyReplacement `"false"`).
pub const STAGE1_VALUES: &str = r#"# Cilium Stage 1: Cilium is the CNI, k3s kube-proxy keeps handling Services.
cluster:
  name: homelab
  id: 0

k8sServiceHost: 127.0.0.1
k8sServicePort: 6444

kubeProxyReplacement: "false"

routingMode: native
ipv4NativeRoutingCIDR: 10.42.0.0/16
autoDirectNodeRoutes: true
endpointRoutes:
  enabled: true

ipam:
  mode: kubernetes

k8s:
  requireIPv4PodCIDR: true

bpf:
  masquerade: false

operator:
  replicas: 2
  prometheus:
    enabled: true
    serviceMonitor:
      enabled: false

hubble:
  enabled: true
  tls:
    auto:
      method: cronJob
  relay:
    enabled: true
  ui:
    enabled: true
    ingress:
      enabled: true
      className: haproxy-restricted
      hosts:
        - hubble.rcrumana.xyz
      tls:
        - secretName: hubble-ui-tls
          hosts:
            - hubble.rcrumana.xyz

prometheus:
  enabled: true
  serviceMonitor:
    enabled: false

resources:
  limits:
    cpu: 500m
    memory: 512Mi
  requests:
    cpu: 100m
    memory: 128Mi
"#;

/// Stage 2 (kube-proxy replacement) values.
pub fn stage2_values() -> String {
    STAGE1_VALUES
        .replace(
            "# Cilium Stage 1: Cilium is the CNI, k3s kube-proxy keeps handling Services.",
            "# Cilium Stage 2: kube-proxy replacement.",
        )
        .replace("kubeProxyReplacement: \"false\"", "kubeProxyReplacement: \"true\"")
}

fn yaml_docs(objs: &[Value]) -> String {
    objs.iter().map(|o| serde_saphyr::to_string(o).unwrap_or_default()).collect::<Vec<_>>().join("---\n")
}

fn homelab_apps() -> Vec<App> {
    let ctrl_labels = json!({"app.kubernetes.io/name": "metallb", "app.kubernetes.io/instance": "metallb", "app.kubernetes.io/component": "controller"});
    let speaker_labels = json!({"app.kubernetes.io/name": "metallb", "app.kubernetes.io/instance": "metallb", "app.kubernetes.io/component": "speaker"});
    let metallb = App {
        name: "metallb-app",
        dest: "metallb-system",
        source: Source::Helm {
            repo: "https://metallb.github.io/metallb",
            chart: "metallb",
            version: "0.14.9",
            values: "platform/networking/metallb/values.yaml",
            config_path: Some("platform/networking/metallb/config"),
        },
        objects: vec![
            sa("metallb-system", "metallb-controller"),
            sa("metallb-system", "metallb-speaker"),
            deployment(
                "metallb-system",
                "metallb-controller",
                ctrl_labels.clone(),
                1,
                json!({
                    "serviceAccountName": "metallb-controller", "nodeSelector": {"kubernetes.io/os": "linux"}, "terminationGracePeriodSeconds": 0,
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 65534, "fsGroup": 65534},
                    "containers": [container("controller", "quay.io/metallb/controller:v0.14.9", &[("monitoring", 7472, "TCP"), ("webhook-server", 9443, "TCP")], json!({}))],
                }),
            ),
            daemonset(
                "metallb-system",
                "metallb-speaker",
                speaker_labels.clone(),
                json!({
                    "serviceAccountName": "metallb-speaker", "hostNetwork": true, "nodeSelector": {"kubernetes.io/os": "linux"}, "terminationGracePeriodSeconds": 2,
                    "tolerations": [{"key": "node-role.kubernetes.io/master", "effect": "NoSchedule", "operator": "Exists"}, {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule", "operator": "Exists"}],
                    "containers": [container("speaker", "quay.io/metallb/speaker:v0.14.9", &[("monitoring", 7472, "TCP"), ("memberlist-tcp", 7946, "TCP"), ("memberlist-udp", 7946, "UDP")], json!({}))],
                }),
            ),
            service(
                "metallb-system",
                "metallb-webhook-service",
                json!({"app.kubernetes.io/name": "metallb"}),
                json!({"app.kubernetes.io/component": "controller", "app.kubernetes.io/name": "metallb"}),
                json!([{"port": 443, "targetPort": 9443, "protocol": "TCP"}]),
            ),
        ],
        config: vec![
            json!({"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": "homelab-pool", "namespace": "metallb-system"},
            "spec": {"addresses": ["192.168.20.240-192.168.20.250"], "autoAssign": true, "avoidBuggyIPs": false}}),
        ],
    };

    let lh = |name: &str| json!({"app": name, "app.kubernetes.io/name": "longhorn", "app.kubernetes.io/instance": "longhorn"});
    let longhorn = App {
        name: "longhorn-app",
        dest: "longhorn-system",
        source: Source::Helm {
            repo: "https://charts.longhorn.io",
            chart: "longhorn",
            version: "1.9.0",
            values: "platform/storage/longhorn/values.yaml",
            config_path: None,
        },
        objects: vec![
            sa("longhorn-system", "longhorn-service-account"),
            sa("longhorn-system", "longhorn-ui-service-account"),
            daemonset(
                "longhorn-system",
                "longhorn-manager",
                lh("longhorn-manager"),
                json!({
                    "serviceAccountName": "longhorn-service-account", "priorityClassName": "longhorn-critical",
                    "containers": [{"name": "longhorn-manager", "image": "longhornio/longhorn-manager:v1.9.0", "command": ["longhorn-manager", "-d", "daemon"],
                                    "ports": [{"containerPort": 9500, "name": "manager", "protocol": "TCP"}, {"containerPort": 9502, "name": "admission-wh", "protocol": "TCP"}],
                                    "securityContext": {"privileged": true}, "readinessProbe": {"httpGet": {"path": "/v1/healthz", "port": 9502, "scheme": "HTTPS"}}}],
                }),
            ),
            deployment(
                "longhorn-system",
                "longhorn-driver-deployer",
                lh("longhorn-driver-deployer"),
                1,
                json!({
                    "serviceAccountName": "longhorn-service-account", "priorityClassName": "longhorn-critical",
                    "initContainers": [{"name": "wait-longhorn-manager", "image": "longhornio/longhorn-manager:v1.9.0", "command": ["sh", "-c", "while [ $(curl -m 1 -s -o /dev/null -w \"%{http_code}\" http://longhorn-backend:9500/v1) != \"200\" ]; do echo waiting; sleep 2; done"]}],
                    "containers": [container("longhorn-driver-deployer", "longhornio/longhorn-manager:v1.9.0", &[], json!({}))],
                }),
            ),
            deployment(
                "longhorn-system",
                "longhorn-ui",
                lh("longhorn-ui"),
                2,
                json!({
                    "serviceAccountName": "longhorn-ui-service-account",
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "longhorn-ui"}}, "topologyKey": "kubernetes.io/hostname"}}]}},
                    "containers": [container("longhorn-ui", "longhornio/longhorn-ui:v1.9.0", &[("http", 8000, "TCP")], json!({}))],
                }),
            ),
            service(
                "longhorn-system",
                "longhorn-backend",
                lh("longhorn-manager"),
                json!({"app": "longhorn-manager"}),
                json!([{"name": "manager", "port": 9500, "targetPort": "manager", "protocol": "TCP"}]),
            ),
            service(
                "longhorn-system",
                "longhorn-frontend",
                lh("longhorn-ui"),
                json!({"app": "longhorn-ui"}),
                json!([{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]),
            ),
        ],
        config: vec![],
    };

    let cm = |comp: &str, name: &str| json!({"app": name, "app.kubernetes.io/name": name, "app.kubernetes.io/instance": "cert-manager", "app.kubernetes.io/component": comp});
    let cert_manager = App {
        name: "cert-manager-app",
        dest: "cert-manager",
        source: Source::Helm {
            repo: "https://charts.jetstack.io",
            chart: "cert-manager",
            version: "v1.17.2",
            values: "platform/security/cert-manager/values.yaml",
            config_path: Some("platform/security/cert-manager/issuers"),
        },
        objects: vec![
            sa("cert-manager", "cert-manager"),
            sa("cert-manager", "cert-manager-cainjector"),
            sa("cert-manager", "cert-manager-webhook"),
            deployment(
                "cert-manager",
                "cert-manager",
                cm("controller", "cert-manager"),
                1,
                json!({
                    "serviceAccountName": "cert-manager", "nodeSelector": {"kubernetes.io/os": "linux"},
                    "containers": [container("cert-manager-controller", "quay.io/jetstack/cert-manager-controller:v1.17.2", &[("http-metrics", 9402, "TCP"), ("http-healthz", 9403, "TCP")], json!({}))],
                }),
            ),
            deployment(
                "cert-manager",
                "cert-manager-cainjector",
                cm("cainjector", "cainjector"),
                1,
                json!({
                    "serviceAccountName": "cert-manager-cainjector", "nodeSelector": {"kubernetes.io/os": "linux"},
                    "containers": [container("cert-manager-cainjector", "quay.io/jetstack/cert-manager-cainjector:v1.17.2", &[("http-metrics", 9402, "TCP")], json!({}))],
                }),
            ),
            deployment(
                "cert-manager",
                "cert-manager-webhook",
                cm("webhook", "webhook"),
                1,
                json!({
                    "serviceAccountName": "cert-manager-webhook", "nodeSelector": {"kubernetes.io/os": "linux"},
                    "containers": [container("cert-manager-webhook", "quay.io/jetstack/cert-manager-webhook:v1.17.2", &[("https", 10250, "TCP"), ("healthcheck", 6080, "TCP")], json!({}))],
                }),
            ),
            service(
                "cert-manager",
                "cert-manager",
                cm("controller", "cert-manager"),
                json!({"app.kubernetes.io/name": "cert-manager", "app.kubernetes.io/component": "controller"}),
                json!([{"name": "tcp-prometheus-servicemonitor", "port": 9402, "protocol": "TCP", "targetPort": "http-metrics"}]),
            ),
            service(
                "cert-manager",
                "cert-manager-webhook",
                cm("webhook", "webhook"),
                json!({"app.kubernetes.io/name": "webhook", "app.kubernetes.io/component": "webhook"}),
                json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": "https"}]),
            ),
        ],
        config: vec![
            json!({"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": "letsencrypt-prod"},
            "spec": {"acme": {"email": "admin@rcrumana.xyz", "server": "https://acme-v02.api.letsencrypt.org/directory",
                              "privateKeySecretRef": {"name": "letsencrypt-prod"}, "solvers": [{"http01": {"ingress": {"ingressClassName": "haproxy-restricted"}}}]}}}),
        ],
    };

    let hl = json!({"app.kubernetes.io/name": "haproxy-ingress", "app.kubernetes.io/instance": "haproxy-ingress"});
    let haproxy = App {
        name: "haproxy-app",
        dest: "haproxy-ingress",
        source: Source::Helm {
            repo: "https://haproxy-ingress.github.io/charts",
            chart: "haproxy-ingress",
            version: "0.14.8",
            values: "platform/networking/haproxy/values.yaml",
            config_path: None,
        },
        objects: vec![
            sa("haproxy-ingress", "haproxy-ingress"),
            deployment(
                "haproxy-ingress",
                "haproxy-ingress",
                hl.clone(),
                2,
                json!({
                    "serviceAccountName": "haproxy-ingress",
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app.kubernetes.io/name": "haproxy-ingress"}}, "topologyKey": "kubernetes.io/hostname"}}]}},
                    "containers": [container("haproxy-ingress", "quay.io/jcmoraisjr/haproxy-ingress:v0.14.8", &[("http", 80, "TCP"), ("https", 443, "TCP"), ("healthz", 10253, "TCP")], req("100m", "128Mi"))],
                }),
            ),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "haproxy-ingress", "namespace": "haproxy-ingress", "labels": hl,
                "annotations": {"metallb.universe.tf/loadBalancerIPs": "192.168.20.240"}},
                "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "selector": hl,
                         "ports": [{"name": "http-80", "port": 80, "protocol": "TCP", "targetPort": "http"}, {"name": "https-443", "port": 443, "protocol": "TCP", "targetPort": "https"}]}}),
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "haproxy-restricted", "labels": hl},
                "spec": {"controller": "haproxy-ingress.github.io/controller"}}),
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "haproxy-ingress", "namespace": "haproxy-ingress", "labels": hl},
                "spec": {"minAvailable": 1, "selector": {"matchLabels": hl}}}),
        ],
        config: vec![],
    };

    let jl = json!({"app.kubernetes.io/name": "jellyfin", "app.kubernetes.io/instance": "jellyfin"});
    let mut jelly_dep = deployment(
        "media",
        "jellyfin",
        jl.clone(),
        1,
        json!({
            "securityContext": {"fsGroup": 1000},
            "containers": [{"name": "jellyfin", "image": "jellyfin/jellyfin:10.10.7", "ports": [{"name": "http", "containerPort": 8096, "protocol": "TCP"}],
                            "resources": req("500m", "1Gi"), "volumeMounts": [{"name": "config", "mountPath": "/config"}, {"name": "media", "mountPath": "/media", "readOnly": true}]}],
            "volumes": [{"name": "config", "persistentVolumeClaim": {"claimName": "jellyfin-config"}}, {"name": "media", "nfs": {"server": "192.168.20.5", "path": "/volume1/media"}}],
        }),
    );
    jelly_dep["spec"]["strategy"] = json!({"type": "Recreate"});
    let jellyfin = App {
        name: "jellyfin-app",
        dest: "media",
        source: Source::Git { path: "apps/media/jellyfin" },
        objects: vec![
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "jellyfin-config", "namespace": "media"},
                   "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "longhorn", "resources": {"requests": {"storage": "20Gi"}}}}),
            jelly_dep,
            service(
                "media",
                "jellyfin",
                jl.clone(),
                jl.clone(),
                json!([{"name": "http", "port": 8096, "targetPort": "http", "protocol": "TCP"}]),
            ),
            ingress("media", "jellyfin", "jellyfin.rcrumana.xyz", "jellyfin", 8096),
        ],
        config: vec![],
    };

    let hal = json!({"app.kubernetes.io/name": "home-assistant", "app.kubernetes.io/instance": "home-assistant"});
    let home_assistant = App {
        name: "home-assistant-app",
        dest: "home",
        source: Source::Git { path: "apps/home/home-assistant" },
        objects: vec![
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "home-assistant", "namespace": "home", "labels": hal},
                "spec": {"replicas": 1, "serviceName": "home-assistant", "podManagementPolicy": "OrderedReady", "selector": labels_sel(&hal),
                    "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                    "template": {"metadata": {"labels": hal}, "spec": {
                        "containers": [{"name": "home-assistant", "image": "ghcr.io/home-assistant/home-assistant:2025.6.3", "ports": [{"name": "http", "containerPort": 8123, "protocol": "TCP"}],
                                        "resources": req("250m", "512Mi"), "volumeMounts": [{"name": "config", "mountPath": "/config"}]}]}},
                    "volumeClaimTemplates": [{"metadata": {"name": "config"}, "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "longhorn", "resources": {"requests": {"storage": "5Gi"}}}}]}}),
            service(
                "home",
                "home-assistant",
                hal.clone(),
                hal.clone(),
                json!([{"name": "http", "port": 8123, "targetPort": "http", "protocol": "TCP"}]),
            ),
            ingress("home", "home-assistant", "ha.rcrumana.xyz", "home-assistant", 8123),
        ],
        config: vec![],
    };

    let bl = json!({"app.kubernetes.io/name": "blog", "app.kubernetes.io/instance": "blog"});
    let blog = App {
        name: "blog-app",
        dest: "blog",
        source: Source::Git { path: "apps/blog" },
        objects: vec![
            deployment(
                "blog",
                "blog",
                bl.clone(),
                2,
                json!({
                    "containers": [{"name": "nginx", "image": "nginx:1.27-alpine", "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                                    "resources": req("50m", "64Mi"), "volumeMounts": [{"name": "cache", "mountPath": "/var/cache/nginx"}]}],
                    "volumes": [{"name": "cache", "emptyDir": {}}],
                }),
            ),
            service(
                "blog",
                "blog",
                bl.clone(),
                bl.clone(),
                json!([{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]),
            ),
            ingress("blog", "blog", "blog.rcrumana.xyz", "blog", 80),
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "blog", "namespace": "blog"},
                   "spec": {"minAvailable": 1, "selector": labels_sel(&bl)}}),
        ],
        config: vec![],
    };
    vec![metallb, longhorn, cert_manager, haproxy, jellyfin, home_assistant, blog]
}

/// Objects k3s and the operator installed outside Argo CD.
fn platform_objects() -> Vec<Value> {
    let crit = json!([{"key": "CriticalAddonsOnly", "operator": "Exists"}, {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}, {"key": "node-role.kubernetes.io/master", "operator": "Exists", "effect": "NoSchedule"}]);
    let dns = json!({"k8s-app": "kube-dns"});
    let mut coredns = deployment(
        "kube-system",
        "coredns",
        dns.clone(),
        1,
        json!({
            "priorityClassName": "system-cluster-critical", "serviceAccountName": "coredns", "dnsPolicy": "Default", "nodeSelector": {"kubernetes.io/os": "linux"}, "tolerations": crit,
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
            "containers": [{"name": "coredns", "image": "rancher/mirrored-coredns-coredns:1.12.1", "args": ["-conf", "/etc/coredns/Corefile"],
                            "ports": [{"containerPort": 53, "name": "dns", "protocol": "UDP"}, {"containerPort": 53, "name": "dns-tcp", "protocol": "TCP"}, {"containerPort": 9153, "name": "metrics", "protocol": "TCP"}],
                            "resources": {"limits": {"memory": "170Mi"}, "requests": {"cpu": "100m", "memory": "70Mi"}},
                            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181, "scheme": "HTTP"}, "periodSeconds": 2}}],
            "volumes": [{"name": "config-volume", "configMap": {"name": "coredns", "items": [{"key": "Corefile", "path": "Corefile"}, {"key": "NodeHosts", "path": "NodeHosts"}]}}],
        }),
    );
    coredns["metadata"]["labels"]["kubernetes.io/name"] = json!("CoreDNS");
    coredns["spec"]["strategy"] =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}});
    let ms = json!({"k8s-app": "metrics-server"});
    let lpp = json!({"app": "local-path-provisioner"});
    let argo = |n: &str| json!({"app.kubernetes.io/name": n, "app.kubernetes.io/part-of": "argocd"});
    let argo_dep = |n: &str, image: &str, ports: &[(&str, i64, &str)]| {
        deployment(
            "argocd",
            n,
            argo(n),
            1,
            json!({"serviceAccountName": n, "containers": [container(n, image, ports, json!({}))]}),
        )
    };
    let ai = "quay.io/argoproj/argocd:v3.0.11";
    vec![
        coredns,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": "kube-system"},
               "data": {"Corefile": ".:53 {\n    errors\n    health\n    ready\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n      pods insecure\n      fallthrough in-addr.arpa ip6.arpa\n    }\n    hosts /etc/coredns/NodeHosts {\n      ttl 60\n      reload 15s\n      fallthrough\n    }\n    prometheus :9153\n    forward . /etc/resolv.conf\n    cache 30\n    loop\n    reload\n    loadbalance\n    import /etc/coredns/custom/*.override\n}\nimport /etc/coredns/custom/*.server\n",
                        "NodeHosts": "192.168.20.11 homelab-cp1\n192.168.20.12 homelab-w1\n192.168.20.13 homelab-w2\n"}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kube-dns", "namespace": "kube-system",
                "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
                "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}},
               "spec": {"type": "ClusterIP", "clusterIP": "10.43.0.10", "clusterIPs": ["10.43.0.10"], "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "selector": dns,
                        "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53}, {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}, {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153}]}}),
        sa("kube-system", "coredns"),
        deployment(
            "kube-system",
            "metrics-server",
            ms.clone(),
            1,
            json!({
                "priorityClassName": "system-cluster-critical", "serviceAccountName": "metrics-server", "tolerations": crit,
                "containers": [{"name": "metrics-server", "image": "rancher/mirrored-metrics-server:v0.7.2", "args": ["--cert-dir=/tmp", "--secure-port=10250", "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname", "--kubelet-use-node-status-port", "--metric-resolution=15s"],
                                "ports": [{"containerPort": 10250, "name": "https", "protocol": "TCP"}], "resources": {"requests": {"cpu": "100m", "memory": "70Mi"}}}],
                "volumes": [{"name": "tmp-dir", "emptyDir": {}}],
            }),
        ),
        service(
            "kube-system",
            "metrics-server",
            json!({"kubernetes.io/cluster-service": "true", "kubernetes.io/name": "Metrics-server"}),
            ms,
            json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": "https"}]),
        ),
        sa("kube-system", "metrics-server"),
        deployment(
            "kube-system",
            "local-path-provisioner",
            lpp.clone(),
            1,
            json!({
                "priorityClassName": "system-node-critical", "serviceAccountName": "local-path-provisioner-service-account", "tolerations": crit,
                "containers": [{"name": "local-path-provisioner", "image": "rancher/local-path-provisioner:v0.0.31", "command": ["local-path-provisioner", "start", "--config", "/etc/config/config.json"]}],
                "volumes": [{"name": "config-volume", "configMap": {"name": "local-path-config"}}],
            }),
        ),
        sa("kube-system", "local-path-provisioner-service-account"),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "local-path-config", "namespace": "kube-system"},
               "data": {"config.json": "{\"nodePathMap\":[{\"node\":\"DEFAULT_PATH_FOR_NON_LISTED_NODES\",\"paths\":[\"/var/lib/rancher/k3s/storage\"]}]}"}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
               "spec": {"type": "ClusterIP", "clusterIP": "10.43.0.1", "clusterIPs": ["10.43.0.1"], "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "sessionAffinity": "None",
                        "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}}),
        // Argo CD itself (installed from its upstream manifests, not self-managed).
        argo_dep("argocd-server", ai, &[("server", 8080, "TCP"), ("metrics", 8083, "TCP")]),
        argo_dep("argocd-repo-server", ai, &[("server", 8081, "TCP"), ("metrics", 8084, "TCP")]),
        argo_dep("argocd-redis", "public.ecr.aws/docker/library/redis:7.2.8-alpine", &[("redis", 6379, "TCP")]),
        argo_dep("argocd-applicationset-controller", ai, &[("webhook", 7000, "TCP"), ("metrics", 8080, "TCP")]),
        argo_dep("argocd-notifications-controller", ai, &[("metrics", 9001, "TCP")]),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "argocd-application-controller", "namespace": "argocd", "labels": argo("argocd-application-controller")},
               "spec": {"replicas": 1, "serviceName": "argocd-application-controller", "selector": labels_sel(&argo("argocd-application-controller")),
                        "template": {"metadata": {"labels": argo("argocd-application-controller")}, "spec": {"serviceAccountName": "argocd-application-controller",
                            "containers": [container("argocd-application-controller", ai, &[("metrics", 8082, "TCP")], json!({}))]}}}}),
        service(
            "argocd",
            "argocd-server",
            argo("argocd-server"),
            argo("argocd-server"),
            json!([{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}, {"name": "https", "port": 443, "targetPort": 8080, "protocol": "TCP"}]),
        ),
        service(
            "argocd",
            "argocd-repo-server",
            argo("argocd-repo-server"),
            argo("argocd-repo-server"),
            json!([{"name": "server", "port": 8081, "targetPort": 8081, "protocol": "TCP"}]),
        ),
        service(
            "argocd",
            "argocd-redis",
            argo("argocd-redis"),
            argo("argocd-redis"),
            json!([{"name": "tcp-redis", "port": 6379, "targetPort": 6379, "protocol": "TCP"}]),
        ),
        service(
            "argocd",
            "argocd-applicationset-controller",
            argo("argocd-applicationset-controller"),
            argo("argocd-applicationset-controller"),
            json!([{"name": "webhook", "port": 7000, "targetPort": "webhook", "protocol": "TCP"}]),
        ),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-cm", "namespace": "argocd", "labels": {"app.kubernetes.io/name": "argocd-cm", "app.kubernetes.io/part-of": "argocd"}},
               "data": {"application.resourceTrackingMethod": "annotation", "timeout.reconciliation": "180s",
                        "resource.exclusions": "- apiGroups:\n  - cilium.io\n  kinds:\n  - CiliumIdentity\n  clusters:\n  - \"*\"\n"}}),
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject", "metadata": {"name": "default", "namespace": "argocd"},
               "spec": {"clusterResourceWhitelist": [{"group": "*", "kind": "*"}], "destinations": [{"namespace": "*", "server": "*"}], "sourceRepos": ["*"]}}),
        // Longhorn pieces its manager creates (not in the chart, so not tracked by Argo CD).
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
               "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"}),
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "longhorn"}, "provisioner": "driver.longhorn.io", "allowVolumeExpansion": true,
               "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate", "parameters": {"numberOfReplicas": "2", "staleReplicaTimeout": "30", "dataLocality": "disabled", "fsType": "ext4"}}),
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": {"name": "driver.longhorn.io"}, "spec": {"attachRequired": true, "podInfoOnMount": true, "fsGroupPolicy": "ReadWriteOnceWithFSType", "volumeLifecycleModes": ["Persistent"]}}),
        daemonset(
            "longhorn-system",
            "longhorn-csi-plugin",
            json!({"app": "longhorn-csi-plugin"}),
            json!({
                "serviceAccountName": "longhorn-service-account", "priorityClassName": "longhorn-critical",
                "containers": [container("node-driver-registrar", "longhornio/csi-node-driver-registrar:v2.14.0", &[], json!({})),
                               container("longhorn-liveness-probe", "longhornio/livenessprobe:v2.16.0", &[], json!({})),
                               container("longhorn-csi-plugin", "longhornio/longhorn-manager:v1.9.0", &[], json!({}))],
            }),
        ),
        daemonset(
            "longhorn-system",
            "engine-image-ei-db6c2b6f",
            json!({"longhorn.io/component": "engine-image", "longhorn.io/engine-image": "ei-db6c2b6f"}),
            json!({
                "serviceAccountName": "longhorn-service-account", "priorityClassName": "longhorn-critical",
                "containers": [container("engine-image-ei-db6c2b6f", "longhornio/longhorn-engine:v1.9.0", &[], json!({}))],
            }),
        ),
        deployment(
            "longhorn-system",
            "csi-attacher",
            json!({"app": "csi-attacher"}),
            3,
            json!({"serviceAccountName": "longhorn-service-account", "containers": [container("csi-attacher", "longhornio/csi-attacher:v4.8.1", &[], json!({}))]}),
        ),
        deployment(
            "longhorn-system",
            "csi-provisioner",
            json!({"app": "csi-provisioner"}),
            3,
            json!({"serviceAccountName": "longhorn-service-account", "containers": [container("csi-provisioner", "longhornio/csi-provisioner:v5.2.0", &[], json!({}))]}),
        ),
        deployment(
            "longhorn-system",
            "csi-resizer",
            json!({"app": "csi-resizer"}),
            3,
            json!({"serviceAccountName": "longhorn-service-account", "containers": [container("csi-resizer", "longhornio/csi-resizer:v1.13.2", &[], json!({}))]}),
        ),
        deployment(
            "longhorn-system",
            "csi-snapshotter",
            json!({"app": "csi-snapshotter"}),
            3,
            json!({"serviceAccountName": "longhorn-service-account", "containers": [container("csi-snapshotter", "longhornio/csi-snapshotter:v8.2.0", &[], json!({}))]}),
        ),
    ]
}

const NAMESPACES: &[&str] = &[
    "default",
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "argocd",
    "metallb-system",
    "haproxy-ingress",
    "longhorn-system",
    "cert-manager",
    "media",
    "home",
    "blog",
];

impl World {
    /// Builds the scenario's starting state. Events stay off until it is done.
    pub(crate) fn seed(&mut self, git_dir: &std::path::Path) -> Result<(), String> {
        let base = self.scenario.base;
        let now = self.now_str.clone();
        let create = |w: &mut World, obj: Value| {
            let Some((r, ns, _)) = o::key_of(&obj, "default") else { return };
            if let Err(e) = w.store.create(r, &ns, obj) {
                tracing::warn!(error = %e, "sim seed: create failed");
            }
        };
        for ns in NAMESPACES {
            create(
                self,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
            );
            create(
                self,
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt", "namespace": ns}, "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\n(sim)\n-----END CERTIFICATE-----\n"}}),
            );
        }
        // CRDs: Argo CD, cert-manager, MetalLB always; ServiceMonitor and Cilium's by scenario.
        for r in registry::RESOURCES.iter().filter(|r| r.crd) {
            let default = matches!(r.group, "argoproj.io" | "cert-manager.io" | "metallb.io");
            if self.scenario.crd_present(&r.crd_name(), default) {
                create(self, {
                    let mut c = cilium::crd_object(r, &now);
                    c["apiVersion"] = json!("apiextensions.k8s.io/v1");
                    c["kind"] = json!("CustomResourceDefinition");
                    c
                });
            }
        }
        // Nodes. In the Cilium scenarios flannel ran before the switch: its annotations stay.
        let installed_later = base == BaseScenario::CiliumInstalled;
        if installed_later {
            for k in self.nodes.values_mut() {
                for key in ["flannel-backend", "disable-network-policy"] {
                    k.running.entries.retain(|(x, _)| x != key);
                }
                k.net = k.running.net_flags();
            }
        }
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        for name in &names {
            let Some(k) = self.nodes.get(name).cloned() else { continue };
            let mut n = k3s::node_object(&k, &now);
            n["apiVersion"] = json!("v1");
            n["kind"] = json!("Node");
            let args = k.running.node_args(k.role);
            let env = serde_json::to_string(&k.env).unwrap_or_default();
            let hash = k3s::base32(&{
                use sha2::Digest;
                sha2::Sha256::digest(format!("{}{env}", serde_json::to_string(&args).unwrap_or_default()).as_bytes())
                    .to_vec()
            });
            n["metadata"]["annotations"]["k3s.io/node-args"] = json!(serde_json::to_string(&args).unwrap_or_default());
            n["metadata"]["annotations"]["k3s.io/node-env"] = json!(env);
            n["metadata"]["annotations"]["k3s.io/node-config-hash"] = json!(hash);
            if base != BaseScenario::Fresh {
                let a = &mut n["metadata"]["annotations"];
                a["flannel.alpha.coreos.com/backend-type"] = json!("vxlan");
                a["flannel.alpha.coreos.com/backend-data"] =
                    json!(format!("{{\"VNI\":1,\"VtepMAC\":\"{}\"}}", k.flannel_mac));
                a["flannel.alpha.coreos.com/kube-subnet-manager"] = json!("true");
                a["flannel.alpha.coreos.com/public-ip"] = json!(k.ip);
                if let Some(c) = n.pointer_mut("/status/conditions").and_then(Value::as_array_mut) {
                    c.insert(0, json!({"type": "NetworkUnavailable", "status": "False", "reason": "FlannelIsUp", "message": "Flannel is running on this node", "lastHeartbeatTime": now, "lastTransitionTime": now}));
                }
            }
            create(self, n);
        }
        for obj in platform_objects() {
            create(self, obj);
        }
        // One pod without a controller (a debug shell someone left behind).
        let mut netshoot = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "netshoot", "namespace": "default", "labels": {"run": "netshoot"}},
            "spec": {"containers": [{"name": "netshoot", "image": "nicolaka/netshoot:v0.13", "command": ["sleep", "infinity"], "stdin": true, "tty": true}]},
            "status": {"phase": "Pending", "qosClass": "BestEffort"}});
        self.pod_defaults(&mut netshoot["spec"], false);
        create(self, netshoot);

        // The Git repository (temp repo unless the scenario names one).
        let apps = homelab_apps();
        let repo_url = self.scenario.git.repo_url.clone();
        let apps_path = self.scenario.git.apps_path.clone();
        let values_path = self.scenario.git.values_path.clone();
        let mut files: Vec<(String, String)> = Vec::new();
        files.push((
            "platform/gitops/argocd/root-app.yaml".into(),
            serde_saphyr::to_string(&root_app(&repo_url, &apps_path)).unwrap_or_default(),
        ));
        files.push((
            format!("{apps_path}/README.md"),
            "Every `*-app.yaml` here is an Argo CD Application picked up by the root app.\n".into(),
        ));
        for a in &apps {
            files.push((
                format!("{apps_path}/{}.yaml", a.name),
                serde_saphyr::to_string(&app_manifest(a, &repo_url)).unwrap_or_default(),
            ));
            match &a.source {
                Source::Helm { values, config_path, .. } => {
                    files.push((values.to_string(), format!("# values for {}\n{}", a.name, helm_values(a.name))));
                    if let Some(p) = config_path {
                        files.push((format!("{p}/resources.yaml"), yaml_docs(&a.config)));
                    }
                    let mut objs = a.objects.clone();
                    if config_path.is_none() {
                        objs.extend(a.config.iter().cloned());
                    }
                    self.argo.fixed.insert(a.name.to_string(), objs);
                }
                Source::Git { path } => files.push((format!("{path}/manifests.yaml"), yaml_docs(&a.objects))),
            }
        }
        let server_cfg =
            self.nodes.values().find(|k| k.role == NodeRole::Server).map(|k| k.file.clone()).unwrap_or_default();
        files.push(("infrastructure/k3s/config.yaml".into(), server_cfg.to_yaml()));
        let cilium_files = |scn: &super::scenario::Scenario| -> Vec<(String, String)> {
            let values = scn.cilium.values.clone().unwrap_or_else(|| {
                if scn.base == BaseScenario::Kpr { stage2_values() } else { STAGE1_VALUES.to_string() }
            });
            vec![
                (
                    format!("{apps_path}/cilium-app.yaml"),
                    serde_saphyr::to_string(&cilium_app_manifest(&repo_url, &scn.cilium.chart_version, &values_path))
                        .unwrap_or_default(),
                ),
                (values_path.clone(), values),
            ]
        };
        if matches!(base, BaseScenario::Migrated | BaseScenario::Kpr) {
            files.extend(cilium_files(&self.scenario));
        }
        match &self.scenario.git.path {
            Some(_) => {}
            None => {
                git::init_repo(git_dir, &files)?;
            }
        }
        self.git.path = Some(git_dir.to_path_buf());
        self.git.branch = "main".into();
        self.refresh_git_blocking()?;

        // Argo CD: the root app-of-apps; it creates and syncs the rest.
        create(self, root_app(&repo_url, &apps_path));
        self.settle(600.0);

        if installed_later {
            // Stage 1 as the operator did it: flags on the servers, k3s restarted (agents too,
            // they took the server's network settings), then Cilium committed and synced.
            for k in self.nodes.values_mut() {
                let (cfg, _) = k.file.for_role(k.role);
                k.running = cfg;
                k.starts += 1;
            }
            let server_flags = self.nodes.values().find(|k| k.role == NodeRole::Server).map(|k| k.running.net_flags());
            for k in self.nodes.values_mut() {
                if let Some(f) = &server_flags {
                    k.net = f.clone();
                }
            }
            for name in &names {
                let Some(k) = self.nodes.get(name).cloned() else { continue };
                if k.role != NodeRole::Server {
                    continue;
                }
                let args = serde_json::to_string(&k.running.node_args(k.role)).unwrap_or_default();
                let env = serde_json::to_string(&k.env).unwrap_or_default();
                let hash = k3s::base32(&{
                    use sha2::Digest;
                    sha2::Sha256::digest(format!("{args}{env}").as_bytes()).to_vec()
                });
                let _ = self.store.mutate(res(ids::NODES), "", name, |n| {
                    n["metadata"]["annotations"]["k3s.io/node-args"] = json!(args);
                    n["metadata"]["annotations"]["k3s.io/node-config-hash"] = json!(hash);
                    Ok(())
                });
            }
            if self.scenario.git.path.is_none() {
                for (p, c) in cilium_files(&self.scenario) {
                    let full = git_dir.join(&p);
                    if let Some(parent) = full.parent() {
                        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                    }
                    std::fs::write(&full, c).map_err(|e| e.to_string())?;
                }
                let mut cfg = server_cfg.clone();
                cfg.set("flannel-backend", ConfigValue::Scalar("none".into()));
                cfg.set("disable-network-policy", ConfigValue::Bool(true));
                std::fs::write(git_dir.join("infrastructure/k3s/config.yaml"), cfg.to_yaml())
                    .map_err(|e| e.to_string())?;
                git::commit_all(git_dir, "Add Cilium (Stage 1) and disable embedded flannel")?;
            }
            self.refresh_git_blocking()?;
            self.settle(600.0);
        }
        if base != BaseScenario::Fresh {
            self.backdate_stage1_restarts();
        }
        // Longhorn's instance-manager PDBs track the finished state.
        Ok(())
    }

    /// In the Cilium scenarios the operator restarted k3s after the flag change — servers first,
    /// then agents — before the sim started. Events of that time are gone (the API keeps them an
    /// hour); what is left is each Node's condition transitions, so they carry that history:
    /// servers 30 min ago, agents 20 min ago.
    fn backdate_stage1_restarts(&mut self) {
        let now = self.store.now();
        let names: Vec<(String, NodeRole)> = self.nodes.values().map(|k| (k.name.clone(), k.role)).collect();
        for (name, role) in names {
            let ago = if role == NodeRole::Server { 1800 } else { 1200 };
            let at =
                crate::sim::store::format_time(now.checked_sub(jiff::SignedDuration::from_secs(ago)).unwrap_or(now));
            let _ = self.store.mutate(res(ids::NODES), "", &name, |n| {
                if let Some(conds) = n.pointer_mut("/status/conditions").and_then(Value::as_array_mut) {
                    for c in conds.iter_mut() {
                        if o::s(c, "/type") != "NetworkUnavailable" {
                            c["lastTransitionTime"] = json!(at);
                        }
                    }
                }
                Ok(())
            });
        }
    }

    /// Reads `main` of the repo into the Argo controller's snapshot.
    pub(crate) fn refresh_git_blocking(&mut self) -> Result<(), String> {
        let Some(dir) = self.git.path.clone() else { return Ok(()) };
        let rev = git::head(&dir, &self.git.branch)?;
        self.git.head = Some(git::snapshot(&dir, &rev)?);
        Ok(())
    }

    /// Runs the controllers on a fast clock until the cluster has settled.
    pub(crate) fn settle(&mut self, max_secs: f64) {
        let start = self.now;
        let mut quiet = 0;
        while self.now - start < max_secs {
            let t = self.now + 0.5;
            self.step(t);
            if self.settled() {
                quiet += 1;
                if quiet >= 6 {
                    break;
                }
            } else {
                quiet = 0;
            }
        }
    }

    fn settled(&self) -> bool {
        if self.argo.apps.values().any(|a| a.op.is_some()) {
            return false;
        }
        let (apps, _) = self.store.list(res(ids::APPLICATIONS), None);
        if apps.iter().any(|a| {
            a.get("operation").is_some()
                || a.pointer("/status/sync/status").is_none()
                || o::s(a, "/status/sync/status") == "OutOfSync"
        }) {
            return false;
        }
        let (pods, _) = self.store.list(res(ids::PODS), None);
        pods.iter().all(|p| {
            o::pod_ready(p)
                || o::condition_status(p, "/status/conditions", "PodScheduled") == "False"
                || p.pointer("/status/containerStatuses/0/lastState/terminated/exitCode")
                    .is_some_and(|c| c != 0 && c != 255)
        })
    }
}

fn root_app(repo_url: &str, apps_path: &str) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "root", "namespace": "argocd", "finalizers": ["resources-finalizer.argocd.argoproj.io"]},
        "spec": {
            "project": "default",
            "source": {"repoURL": repo_url, "targetRevision": "main", "path": apps_path, "directory": {"include": "*-app.yaml", "recurse": false}},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "argocd"},
            "syncPolicy": {"automated": {"prune": true, "selfHeal": true}},
        },
    })
}

fn helm_values(app: &str) -> &'static str {
    match app {
        "metallb-app" => "controller:\n  logLevel: info\nspeaker:\n  frr:\n    enabled: false\n",
        "longhorn-app" => {
            "defaultSettings:\n  defaultReplicaCount: 2\n  nodeDrainPolicy: block-if-contains-last-replica\npersistence:\n  defaultClass: false\n  defaultClassReplicaCount: 2\n"
        }
        "cert-manager-app" => "crds:\n  enabled: true\nprometheus:\n  enabled: true\n",
        "haproxy-app" => {
            "controller:\n  replicaCount: 2\n  ingressClass: haproxy-restricted\n  service:\n    type: LoadBalancer\n    annotations:\n      metallb.universe.tf/loadBalancerIPs: 192.168.20.240\n"
        }
        _ => "{}\n",
    }
}
