//! The rules: what the pinned chart and the agent do with each value (render failures, agent
//! start failures, silently ignored keys, risky choices), one method per topic. Facts: the 1.16
//! chart's templates and the agent; the rules hold for 1.17 as well unless a rule names a version.

use super::values::{Val, Values};
use super::{Finding, Impact, LintContext, LintOptions};
use crate::manifests::chart_keys::{REMOVED_KEYS, TOP_LEVEL_KEYS, suggest};
use crate::settings::ChartVersion;

/// What `kubeProxyReplacement` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kpr {
    False,
    True,
    /// A value the chart rejects; `intended` is what the author meant.
    Invalid {
        intended: bool,
    },
}

impl Kpr {
    fn wants_true(self) -> bool {
        matches!(self, Kpr::True | Kpr::Invalid { intended: true })
    }
}

/// Every finding of `values` (unsorted).
pub(super) fn check(v: &Values, ctx: &LintContext, opts: &LintOptions, chart: ChartVersion) -> Vec<Finding> {
    let mut l = Linter { v, ctx, opts, chart, out: Vec::new() };
    l.run();
    l.out
}

struct Linter<'a> {
    v: &'a Values,
    ctx: &'a LintContext,
    opts: &'a LintOptions,
    chart: ChartVersion,
    out: Vec<Finding>,
}

impl Linter<'_> {
    fn add(&mut self, id: &'static str, key: &str, impact: Impact, message: impl Into<String>, fix: impl Into<String>) {
        self.out.push(Finding {
            id,
            key: key.to_string(),
            line: self.v.line(key),
            impact,
            message: message.into(),
            fix: fix.into(),
        });
    }

    /// Like `add`, but a key that is not in the file points at `anchor`'s line (the key that
    /// triggered the finding).
    fn add_at(
        &mut self,
        id: &'static str,
        key: &str,
        anchor: &str,
        impact: Impact,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.add(id, key, impact, message, fix);
        if let Some(f) = self.out.last_mut()
            && !self.v.has(key)
        {
            f.line = self.v.line(anchor).or(f.line);
        }
    }

    fn pod_cidr(&self) -> String {
        self.opts.native_routing_cidr.clone().unwrap_or_else(|| "<pod CIDR, e.g. 10.42.0.0/16>".into())
    }

    fn run(&mut self) {
        self.tunnel();
        let kpr = self.kpr();
        self.routing();
        self.host_services();
        self.kpr_dependent_keys(kpr);
        self.masquerade(kpr);
        self.api_server(kpr);
        self.hubble();
        self.service_monitors();
        self.cluster_identity();
        self.operator();
        self.unknown_keys();
    }

    fn tunnel(&mut self) {
        let Some(e) = self.v.get("tunnel") else { return };
        if e.val.is_empty_str() {
            return;
        }
        let value = e.val.show();
        let native = value == "disabled";
        let fix = if native {
            format!("delete `tunnel`; write `routingMode: native` and `ipv4NativeRoutingCIDR: {}`", self.pod_cidr())
        } else {
            format!("delete `tunnel`; write `routingMode: tunnel` and `tunnelProtocol: {value}`")
        };
        if self.chart.at_least(1, 16, 2) {
            self.add(
                "removed-key-tunnel",
                "tunnel",
                Impact::RenderFails,
                "tunnel was deprecated in v1.14 and has been removed in v1.15",
                fix,
            );
        } else {
            let got = if native {
                "the chart ignores it and you get the default tunnel (VXLAN) routing, not direct routing"
            } else {
                "the chart ignores it (routingMode/tunnelProtocol decide)"
            };
            self.add(
                "removed-key-tunnel",
                "tunnel",
                Impact::Ignored,
                format!("`tunnel` was removed in chart 1.15; {got}"),
                fix,
            );
        }
    }

    fn kpr(&mut self) -> Kpr {
        let Some(e) = self.v.get("kubeProxyReplacement") else { return Kpr::False };
        match &e.val {
            Val::Bool(b) => {
                if *b {
                    Kpr::True
                } else {
                    Kpr::False
                }
            }
            Val::Str(s) if s == "true" => Kpr::True,
            Val::Str(s) if s == "false" || s.is_empty() => Kpr::False,
            Val::Null => Kpr::False,
            other => {
                let shown = other.show();
                let (intended, fix) = match shown.as_str() {
                    "disabled" => (false, "kubeProxyReplacement: \"false\"".to_string()),
                    "strict" => (true, "kubeProxyReplacement: \"true\"".to_string()),
                    "partial" => (
                        false,
                        "kubeProxyReplacement: \"false\" and enable the wanted features one by one \
                         (nodePort.enabled, socketLB.enabled, …)"
                            .to_string(),
                    ),
                    _ => (false, "kubeProxyReplacement: \"false\" (kube-proxy stays) or \"true\"".to_string()),
                };
                self.add(
                    "kpr-invalid-value",
                    "kubeProxyReplacement",
                    Impact::RenderFails,
                    format!(
                        "kubeProxyReplacement must be explicitly set to a valid value (true or false) to continue \
                         (got {shown:?}; the {}.{} chart accepts nothing else)",
                        self.chart.major, self.chart.minor
                    ),
                    fix,
                );
                Kpr::Invalid { intended }
            }
        }
    }

    /// Routing mode as the agent ends up with it.
    fn native_routing(&self) -> bool {
        self.v.str("routingMode").as_deref() == Some("native")
    }

    fn routing(&mut self) {
        let mode = self.v.str("routingMode").unwrap_or_default();
        if !matches!(mode.as_str(), "" | "native" | "tunnel" | "null") {
            self.add(
                "routing-mode-invalid",
                "routingMode",
                Impact::AgentCrash,
                format!("invalid routing mode {mode:?}: the agent accepts only `native` or `tunnel`"),
                "routingMode: native",
            );
            return;
        }
        let native = self.native_routing();
        if native
            && self.v.val("ipv4NativeRoutingCIDR").is_none_or(Val::is_empty_str)
            && self.v.flag("ipv4.enabled", true)
            && self.v.flag("enableIPv4Masquerade", true)
            && !self.v.flag("ipMasqAgent.enabled", false)
        {
            self.add_at(
                "native-routing-cidr-missing",
                "ipv4NativeRoutingCIDR",
                "routingMode",
                Impact::AgentCrash,
                "native routing cidr must be configured with option --ipv4-native-routing-cidr in combination with \
                 --enable-ipv4-masquerade (the agent exits at start)",
                format!("ipv4NativeRoutingCIDR: {}", self.pod_cidr()),
            );
        }
        if self.v.flag("autoDirectNodeRoutes", false) && !native {
            let why = if self.v.has("tunnel") {
                " (`tunnel` no longer selects the routing mode, so this is tunnel mode)"
            } else {
                " (routingMode defaults to tunnel)"
            };
            self.add(
                "auto-direct-routes-with-tunnel",
                "autoDirectNodeRoutes",
                Impact::AgentCrash,
                format!("auto-direct-node-routes cannot be used with tunneling{why}; the agent exits at start"),
                format!(
                    "routingMode: native + ipv4NativeRoutingCIDR: {} (nodes share one L2 segment)",
                    self.pod_cidr()
                ),
            );
        }
    }

    fn host_services(&mut self) {
        if self.v.has("hostServices") {
            self.add(
                "removed-key-host-services",
                "hostServices",
                Impact::Ignored,
                "`hostServices` is not a chart value any more (renamed `socketLB`); it has no effect",
                "delete `hostServices`; use `socketLB.enabled` (kubeProxyReplacement \"true\" turns socket LB on by \
                 itself)",
            );
        }
    }

    fn kpr_dependent_keys(&mut self, kpr: Kpr) {
        if self.v.has("externalIPs") {
            if self.chart.at_least(1, 17, 0) {
                self.add(
                    "removed-key-external-ips",
                    "externalIPs",
                    Impact::Ignored,
                    format!(
                        "`externalIPs` is not a value of the {}.{} chart (removed in 1.17); it has no effect",
                        self.chart.major, self.chart.minor
                    ),
                    "delete `externalIPs` (kubeProxyReplacement \"true\" handles external IPs)",
                );
            } else if kpr.wants_true() && self.v.has("externalIPs.enabled") {
                self.add(
                    "kpr-forces-external-ips",
                    "externalIPs.enabled",
                    Impact::Ignored,
                    "with kubeProxyReplacement \"true\" the chart does not render externalIPs.enabled: the agent \
                     turns ExternalIPs on by itself",
                    "delete `externalIPs` (it is also gone from the 1.17 chart)",
                );
            }
        }
        if kpr.wants_true() && self.v.has("nodePort.enabled") {
            self.add(
                "kpr-forces-node-port",
                "nodePort.enabled",
                Impact::Ignored,
                "with kubeProxyReplacement \"true\" the chart does not render nodePort.enabled: the agent turns \
                 NodePort on by itself",
                "delete `nodePort.enabled`",
            );
        }
    }

    fn masquerade(&mut self, kpr: Kpr) {
        if self.v.flag("bpf.masquerade", false) && !kpr.wants_true() && !self.v.flag("nodePort.enabled", false) {
            self.add(
                "bpf-masquerade-needs-nodeport",
                "bpf.masquerade",
                Impact::AgentCrash,
                "BPF masquerade requires NodePort (--enable-node-port=\"true\"); the agent exits at start",
                "bpf.masquerade: false until kubeProxyReplacement is \"true\" (Stage 2)",
            );
        }
    }

    fn api_server(&mut self, kpr: Kpr) {
        let host = self.v.str("k8sServiceHost").unwrap_or_default();
        if host == "auto" {
            self.add(
                "k8s-service-host-auto",
                "k8sServiceHost",
                Impact::Warning,
                "`auto` reads the kubeadm ConfigMap kube-public/cluster-info with Helm `lookup`: k3s has no such \
                 ConfigMap and `lookup` returns nothing under Argo CD (helm template)",
                "k8sServiceHost: 127.0.0.1 and k8sServicePort: 6444 (k3s' local API load balancer on every node)",
            );
        }
        let host_missing = host.is_empty() || host == "null";
        let port_missing = self.v.val("k8sServicePort").is_none_or(Val::is_empty_str);
        if kpr.wants_true() && (host_missing || port_missing) {
            let running = self.opts.kube_proxy_running;
            let (impact, msg) = if running == Some(true) {
                (
                    Impact::Warning,
                    "kubeProxyReplacement \"true\" without k8sServiceHost/k8sServicePort: the agent reaches the API \
                     through the kubernetes ClusterIP, which works only while kube-proxy still runs; once k3s runs \
                     with disable-kube-proxy the agent cannot start",
                )
            } else {
                (
                    Impact::AgentCrash,
                    "kubeProxyReplacement \"true\" without k8sServiceHost/k8sServicePort: without kube-proxy the \
                     kubernetes ClusterIP answers only once Cilium runs, so the agent cannot reach the API and exits",
                )
            };
            let key = if host_missing { "k8sServiceHost" } else { "k8sServicePort" };
            self.add_at(
                "kpr-needs-k8s-service-host",
                key,
                "kubeProxyReplacement",
                impact,
                msg,
                "k8sServiceHost: 127.0.0.1 and k8sServicePort: 6444 (k3s' local API load balancer)",
            );
        }
        if let Some(addr) = self.v.str("kubeProxyReplacementHealthzBindAddr")
            && !addr.is_empty()
            && addr != "null"
            && self.opts.kube_proxy_running != Some(false)
        {
            self.add(
                "kpr-healthz-bind-collision",
                "kubeProxyReplacementHealthzBindAddr",
                Impact::Warning,
                format!(
                    "{addr} collides with a still-running kube-proxy's healthz port 10256 (\"bind: address already \
                     in use\")"
                ),
                "leave kubeProxyReplacementHealthzBindAddr empty until kube-proxy is gone on every node",
            );
        }
    }

    fn hubble(&mut self) {
        let hubble = self.v.flag("hubble.enabled", true);
        let relay = self.v.flag("hubble.relay.enabled", false);
        let ui = self.v.flag("hubble.ui.enabled", false);
        if relay && !hubble {
            self.add(
                "hubble-relay-needs-hubble",
                "hubble.relay.enabled",
                Impact::RenderFails,
                "Hubble Relay requires .Values.hubble.enabled=true",
                "hubble.enabled: true",
            );
        }
        if ui && !self.v.flag("hubble.ui.standalone.enabled", false) && !relay {
            self.add(
                "hubble-ui-needs-relay",
                "hubble.ui.enabled",
                Impact::RenderFails,
                "Hubble UI requires .Values.hubble.relay.enabled=true",
                "hubble.relay.enabled: true",
            );
        }
        let method = self.v.str("hubble.tls.auto.method").unwrap_or_else(|| "helm".into());
        if hubble
            && self.v.flag("hubble.tls.enabled", true)
            && self.v.flag("hubble.tls.auto.enabled", true)
            && method == "helm"
            && !self.opts.direct_helm
        {
            self.add(
                "hubble-tls-helm-under-argo",
                "hubble.tls.auto.method",
                Impact::Warning,
                "hubble.tls.auto.method `helm` (the default) generates new Hubble certificates on every render; \
                 under Argo CD (helm template, no lookup) the app is permanently OutOfSync and every sync rotates \
                 hubble-server-certs / hubble-relay-client-certs",
                "hubble.tls.auto.method: cronJob (or ignoreDifferences on those Secrets)",
            );
        }
        if ui && self.v.flag("hubble.ui.ingress.enabled", false) {
            self.hubble_ingress();
        }
    }

    fn hubble_ingress(&mut self) {
        let tls_count = match self.v.val("hubble.ui.ingress.tls") {
            Some(Val::Seq(n)) => *n,
            _ => 0,
        };
        for i in 0..tls_count {
            let hosts = format!("hubble.ui.ingress.tls[{i}].hosts");
            if !matches!(self.v.val(&hosts), Some(Val::Seq(n)) if *n > 0) {
                let key = format!("hubble.ui.ingress.tls[{i}]");
                let ui_host = self.v.str("hubble.ui.ingress.hosts[0]").unwrap_or_else(|| "<ui host>".into());
                self.add(
                    "hubble-ui-ingress-tls-without-hosts",
                    &key,
                    Impact::Warning,
                    "an Ingress TLS entry without `hosts`: cert-manager issues no certificate for it and HAProxy \
                     serves its default certificate",
                    format!("add `hosts: [{ui_host}]` to the TLS entry"),
                );
            }
        }
        let has_issuer = ["cert-manager.io/cluster-issuer", "cert-manager.io/issuer"]
            .iter()
            .any(|a| self.v.has(&format!("hubble.ui.ingress.annotations.{a}")));
        if tls_count > 0 && !has_issuer {
            self.add(
                "hubble-ui-ingress-without-issuer",
                "hubble.ui.ingress",
                Impact::Warning,
                "the Hubble UI Ingress asks for TLS but has no cert-manager issuer annotation: nothing creates its \
                 TLS Secret",
                "hubble.ui.ingress.annotations: {cert-manager.io/cluster-issuer: <ClusterIssuer>}",
            );
        }
    }

    fn service_monitors(&mut self) {
        // (prometheus.enabled path, its chart default, serviceMonitor.enabled path) checked by the
        // chart's validate.yaml against .Capabilities.APIVersions.
        const CHECKED: [(&str, bool, &str); 4] = [
            ("prometheus.enabled", false, "prometheus.serviceMonitor.enabled"),
            ("operator.prometheus.enabled", true, "operator.prometheus.serviceMonitor.enabled"),
            ("hubble.relay.prometheus.enabled", false, "hubble.relay.prometheus.serviceMonitor.enabled"),
            ("envoy.prometheus.enabled", true, "envoy.prometheus.serviceMonitor.enabled"),
        ];
        let trust = self.v.flag("prometheus.serviceMonitor.trustCRDsExist", false);
        let served = self.ctx.api_versions.as_ref().map(|v| v.iter().any(|a| a == "monitoring.coreos.com/v1"));
        if trust || served == Some(true) {
            return;
        }
        for (enabled, default, sm) in CHECKED {
            if !(self.v.flag(enabled, default) && self.v.flag(sm, false)) {
                continue;
            }
            match served {
                Some(false) => self.add(
                    "servicemonitor-without-crd",
                    sm,
                    Impact::RenderFails,
                    "Service Monitor requires monitoring.coreos.com/v1 CRDs (the cluster does not serve \
                     monitoring.coreos.com/v1)",
                    format!(
                        "{sm}: false until the Prometheus Operator CRDs are installed (or \
                         prometheus.serviceMonitor.trustCRDsExist: true if they really are)"
                    ),
                ),
                _ => self.add(
                    "servicemonitor-crd-unknown",
                    sm,
                    Impact::Warning,
                    "Service Monitor requires monitoring.coreos.com/v1 CRDs: the chart fails to render unless the \
                     cluster serves monitoring.coreos.com/v1 (not known here; run `cutover preflight`)",
                    format!("{sm}: true only if the Prometheus Operator CRDs exist"),
                ),
            }
        }
        // Not checked by the chart: the ServiceMonitor renders and the sync fails on apply instead.
        if self.v.flag("hubble.metrics.serviceMonitor.enabled", false) && served == Some(false) {
            self.add(
                "servicemonitor-without-crd",
                "hubble.metrics.serviceMonitor.enabled",
                Impact::Warning,
                "the hubble metrics ServiceMonitor renders but cannot be applied without the \
                 monitoring.coreos.com/v1 CRDs: the Argo CD sync fails",
                "hubble.metrics.serviceMonitor.enabled: false until the Prometheus Operator CRDs are installed",
            );
        }
    }

    fn cluster_identity(&mut self) {
        let name = self.v.str("cluster.name").unwrap_or_else(|| "default".into());
        let id = match self.v.val("cluster.id") {
            None | Some(Val::Null) => Some(0),
            Some(Val::Int(i)) => Some(*i),
            Some(Val::Str(s)) => s.parse::<i64>().ok(),
            Some(_) => None,
        };
        if name != "default"
            && let Err(m) = crate::settings::check_cluster_name(&name)
        {
            self.add(
                "cluster-name-invalid",
                "cluster.name",
                Impact::RenderFails,
                format!("The cluster name is invalid: {m}"),
                "cluster.name: a DNS label of at most 32 characters, e.g. homelab",
            );
        }
        match id {
            None => self.add(
                "cluster-id-invalid",
                "cluster.id",
                Impact::AgentCrash,
                "cluster.id must be an integer 0-255",
                "cluster.id: 0",
            ),
            Some(id) if !(0..=255).contains(&id) => self.add(
                "cluster-id-invalid",
                "cluster.id",
                Impact::AgentCrash,
                format!("cluster.id {id} is outside 0-255 (the agent refuses it)"),
                "cluster.id: 0",
            ),
            Some(id) if id != 0 && name == "default" => self.add(
                "cluster-name-default-with-id",
                "cluster.name",
                Impact::RenderFails,
                "The cluster name must be set when the cluster ID is not 0 (`default` with cluster.id != 0)",
                "cluster.name: <your cluster>, or cluster.id: 0",
            ),
            Some(id) if id != 0 && !self.v.flag("clustermesh.useAPIServer", false) => self.add(
                "cluster-id-without-clustermesh",
                "cluster.id",
                Impact::Info,
                format!("cluster.id {id} only matters for ClusterMesh; 0 is the usual single-cluster value"),
                "cluster.id: 0 (harmless either way; changing it later re-creates identities)",
            ),
            _ => {}
        }
        if name != "default" && self.v.has("cluster.name") {
            self.add(
                "cluster-name-prefixes-hubble-nodes",
                "cluster.name",
                Impact::Info,
                format!("with cluster.name {name:?}, Hubble reports node names as `{name}/<node>`"),
                "nothing to change; filter flows by `<cluster>/<node>`",
            );
        }
    }

    fn operator(&mut self) {
        let replicas = match self.v.val("operator.replicas") {
            None => 2,
            Some(Val::Int(i)) => *i,
            Some(Val::Str(s)) => s.parse().unwrap_or(2),
            Some(_) => 2,
        };
        let Some(nodes) = self.ctx.schedulable_nodes else { return };
        let nodes = i64::try_from(nodes).unwrap_or(i64::MAX);
        if replicas > nodes {
            self.add(
                "operator-replicas-exceed-nodes",
                "operator.replicas",
                Impact::Warning,
                format!(
                    "operator.replicas {replicas} > {nodes} schedulable node(s): the operator's required pod \
                     anti-affinity on kubernetes.io/hostname leaves {} replica(s) Pending and the app Progressing",
                    replicas - nodes
                ),
                format!("operator.replicas: {}", nodes.clamp(1, 2)),
            );
        } else if replicas >= 2 && replicas == nodes {
            self.add(
                "operator-replicas-equal-nodes",
                "operator.replicas",
                Impact::Info,
                format!(
                    "operator.replicas {replicas} on {nodes} nodes: while a node is drained one replica is Pending"
                ),
                "fine during the cutover; one replica keeps working",
            );
        }
    }

    fn unknown_keys(&mut self) {
        for key in self.v.top.clone() {
            // Removed keys have their own rules above.
            if TOP_LEVEL_KEYS.contains(&key.as_str()) || REMOVED_KEYS.contains(&key.as_str()) {
                continue;
            }
            let (msg, fix) = match suggest(&key, TOP_LEVEL_KEYS) {
                Some(k) => (
                    format!("`{key}` is not a chart value (Helm ignores it); did you mean `{k}`?"),
                    format!("rename to `{k}`"),
                ),
                None => (
                    format!("`{key}` is not a chart value (Helm ignores it)"),
                    "delete it or check the chart's values.yaml".to_string(),
                ),
            };
            self.add("unknown-key", &key, Impact::Warning, msg, fix);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::lint::{lint_values, lint_values_with};

    /// Chart 1.16.4, rendered by Helm directly (keeps the Argo-only Hubble TLS warning out of the
    /// rule tests; `hubble_tls_under_argo` covers it).
    fn ctx() -> LintContext {
        LintContext { chart_version: "1.16.4".into(), ..Default::default() }
    }

    fn direct() -> LintOptions {
        LintOptions { direct_helm: true, ..Default::default() }
    }

    #[test]
    fn hubble_tls_under_argo() {
        let argo = LintOptions::default();
        assert!(ids_opts("", &ctx(), &argo).contains(&("hubble-tls-helm-under-argo", None, Impact::Warning)));
        assert!(ids_opts("hubble:\n  tls:\n    auto:\n      method: cronJob\n", &ctx(), &argo).is_empty());
        assert!(ids_opts("hubble:\n  enabled: false\n", &ctx(), &argo).is_empty());
    }

    fn ids(text: &str, ctx: &LintContext) -> Vec<(&'static str, Option<usize>, Impact)> {
        ids_opts(text, ctx, &direct())
    }

    fn ids_opts(text: &str, ctx: &LintContext, opts: &LintOptions) -> Vec<(&'static str, Option<usize>, Impact)> {
        lint_values_with(text, ctx, opts).expect("lints").into_iter().map(|f| (f.id, f.line, f.impact)).collect()
    }

    #[test]
    fn empty_and_comment_only_files_are_clean() {
        assert!(ids("", &ctx()).iter().all(|(_, _, i)| !i.is_breaking()));
        assert!(ids("# nothing\n", &ctx()).iter().all(|(_, _, i)| !i.is_breaking()));
    }

    #[test]
    fn tunnel_depends_on_chart_patch() {
        let text = "tunnel: disabled\n";
        assert_eq!(ids(text, &ctx()).first().map(|f| (f.0, f.2)), Some(("removed-key-tunnel", Impact::RenderFails)));
        let old = LintContext { chart_version: "1.16.1".into(), ..Default::default() };
        assert_eq!(ids(text, &old).first().map(|f| (f.0, f.2)), Some(("removed-key-tunnel", Impact::Ignored)));
    }

    #[test]
    fn kpr_values() {
        for (v, bad) in [("disabled", true), ("strict", true), ("partial", true), ("\"false\"", false), ("true", false)]
        {
            let found =
                ids(&format!("kubeProxyReplacement: {v}\nk8sServiceHost: 127.0.0.1\nk8sServicePort: 6444\n"), &ctx())
                    .iter()
                    .any(|f| f.0 == "kpr-invalid-value");
            assert_eq!(found, bad, "{v}");
        }
        let f = lint_values("kubeProxyReplacement: strict\n", &ctx()).expect("lints");
        let kpr = f.iter().find(|f| f.id == "kpr-invalid-value").expect("kpr finding");
        assert!(kpr.fix.contains("\"true\""));
        assert!(kpr.message.contains("must be explicitly set to a valid value (true or false)"));
    }

    #[test]
    fn native_routing_needs_cidr() {
        let f = ids("routingMode: native\n", &ctx());
        assert!(f.contains(&("native-routing-cidr-missing", Some(1), Impact::AgentCrash)));
        let f = ids("routingMode: native\nipv4NativeRoutingCIDR: 10.42.0.0/16\nautoDirectNodeRoutes: true\n", &ctx());
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn auto_direct_routes_need_native() {
        let f = ids("autoDirectNodeRoutes: true\n", &ctx());
        assert!(f.contains(&("auto-direct-routes-with-tunnel", Some(1), Impact::AgentCrash)));
    }

    #[test]
    fn bpf_masquerade_needs_nodeport() {
        assert!(ids("bpf:\n  masquerade: true\n", &ctx()).contains(&(
            "bpf-masquerade-needs-nodeport",
            Some(2),
            Impact::AgentCrash
        )));
        let ok = "bpf:\n  masquerade: true\nkubeProxyReplacement: \"true\"\nk8sServiceHost: 127.0.0.1\nk8sServicePort: 6444\n";
        assert!(ids(ok, &ctx()).is_empty());
    }

    #[test]
    fn hubble_dependencies() {
        let f = ids("hubble:\n  enabled: false\n  relay:\n    enabled: true\n", &ctx());
        assert!(f.contains(&("hubble-relay-needs-hubble", Some(4), Impact::RenderFails)));
        let f = ids("hubble:\n  ui:\n    enabled: true\n", &ctx());
        assert!(f.contains(&("hubble-ui-needs-relay", Some(3), Impact::RenderFails)));
    }

    #[test]
    fn service_monitor_depends_on_api_versions() {
        let text = "prometheus:\n  enabled: true\n  serviceMonitor:\n    enabled: true\n";
        assert!(ids(text, &ctx()).contains(&("servicemonitor-crd-unknown", Some(4), Impact::Warning)));
        let none = LintContext { api_versions: Some(vec!["v1".into()]), ..ctx() };
        assert!(ids(text, &none).contains(&("servicemonitor-without-crd", Some(4), Impact::RenderFails)));
        let some = LintContext { api_versions: Some(vec!["monitoring.coreos.com/v1".into()]), ..ctx() };
        assert!(!ids(text, &some).iter().any(|f| f.0.starts_with("servicemonitor")));
        let trust = format!("{text}    trustCRDsExist: true\n");
        assert!(!ids(&trust, &none).iter().any(|f| f.0.starts_with("servicemonitor")));
    }

    #[test]
    fn cluster_name_rules() {
        let long = "a".repeat(33);
        assert!(ids(&format!("cluster:\n  name: {long}\n"), &ctx()).iter().any(|f| f.0 == "cluster-name-invalid"));
        assert!(ids("cluster:\n  name: Home_Lab\n", &ctx()).iter().any(|f| f.0 == "cluster-name-invalid"));
        assert!(ids("cluster:\n  id: 3\n", &ctx()).iter().any(|f| f.0 == "cluster-name-default-with-id"));
        assert!(ids("cluster:\n  id: 300\n", &ctx()).iter().any(|f| f.0 == "cluster-id-invalid"));
        let f = ids("cluster:\n  name: homelab\n", &ctx());
        assert_eq!(f, vec![("cluster-name-prefixes-hubble-nodes", Some(2), Impact::Info)]);
    }

    #[test]
    fn operator_replicas_vs_nodes() {
        let one = LintContext { schedulable_nodes: Some(1), ..ctx() };
        assert!(ids("operator:\n  replicas: 2\n", &one).contains(&(
            "operator-replicas-exceed-nodes",
            Some(2),
            Impact::Warning
        )));
        // The chart default is 2.
        assert!(ids("", &one).iter().any(|f| f.0 == "operator-replicas-exceed-nodes"));
        let three = LintContext { schedulable_nodes: Some(3), ..ctx() };
        assert!(ids("operator:\n  replicas: 2\n", &three).is_empty());
    }

    #[test]
    fn api_server_rules() {
        assert!(ids("k8sServiceHost: auto\n", &ctx()).iter().any(|f| f.0 == "k8s-service-host-auto"));
        let f = ids("kubeProxyReplacement: \"true\"\n", &ctx());
        assert!(f.contains(&("kpr-needs-k8s-service-host", Some(1), Impact::AgentCrash)), "{f:?}");
        let running = LintOptions { kube_proxy_running: Some(true), ..direct() };
        assert!(ids_opts("kubeProxyReplacement: true\n", &ctx(), &running).contains(&(
            "kpr-needs-k8s-service-host",
            Some(1),
            Impact::Warning
        )));
        let f = ids("kubeProxyReplacementHealthzBindAddr: 0.0.0.0:10256\n", &ctx());
        assert!(f.contains(&("kpr-healthz-bind-collision", Some(1), Impact::Warning)));
    }

    #[test]
    fn removed_and_unknown_keys() {
        let f = ids("hostServices:\n  enabled: true\nhubbel:\n  enabled: true\n", &ctx());
        assert!(f.contains(&("removed-key-host-services", Some(1), Impact::Ignored)));
        assert!(f.contains(&("unknown-key", Some(3), Impact::Warning)));
        let msg = lint_values("hubbel: {}\n", &ctx()).expect("lints");
        assert!(msg[0].message.contains("did you mean `hubble`"));
        let v17 = LintContext { chart_version: "1.17.6".into(), ..Default::default() };
        assert!(ids("externalIPs:\n  enabled: true\n", &v17).contains(&(
            "removed-key-external-ips",
            Some(1),
            Impact::Ignored
        )));
        assert!(ids("externalIPs:\n  enabled: true\n", &ctx()).is_empty());
    }
}
