//! The values linter on the user's plan (every mistake in its values, with its line, on the plan's
//! 1.16.4 pin) and on the values `cutover render` produces (nothing that breaks the rollout).

use std::path::{Path, PathBuf};

use cutover::manifests::lint::{
    self, Finding, Impact, LintContext, LintError, LintFileError, LintOptions, lint_file, lint_file_with,
    lint_values_with,
};
use cutover::manifests::render::{self, MONITORING_API, RenderContext, Stage};
use cutover::settings::Settings;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// The plan pins 1.16.4; the cluster is not consulted (API versions unknown).
fn plan_ctx() -> LintContext {
    LintContext { chart_version: "1.16.4".into(), ..Default::default() }
}

/// Argo CD renders; the pod CIDR is known for the fixes.
fn opts() -> LintOptions {
    LintOptions { native_routing_cidr: Some("10.42.0.0/16".into()), ..Default::default() }
}

fn lint(name: &str, ctx: &LintContext) -> Vec<Finding> {
    lint_file_with(&fixture(name), ctx, &opts()).expect("lints")
}

fn has(f: &[Finding], id: &str, key: &str, line: Option<usize>, impact: Impact) -> bool {
    f.iter().any(|x| x.id == id && x.key == key && x.line == line && x.impact == impact)
}

fn dump(f: &[Finding]) -> String {
    f.iter().map(|x| format!("{:?} {} {} {:?}\n", x.line, x.id, x.key, x.impact)).collect()
}

#[test]
fn plan_stage1_reports_every_mistake_with_its_line() {
    let f = lint("plan-values-stage1.yaml", &plan_ctx());
    let d = dump(&f);
    // `tunnel` was removed: 1.16.4's validate.yaml refuses any non-empty value.
    assert!(has(&f, "removed-key-tunnel", "tunnel", Some(8), Impact::RenderFails), "{d}");
    // Without `tunnel` the routing mode is the default tunnel, which autoDirectNodeRoutes forbids.
    assert!(has(&f, "auto-direct-routes-with-tunnel", "autoDirectNodeRoutes", Some(9), Impact::AgentCrash), "{d}");
    // `disabled` is not a valid kubeProxyReplacement any more.
    assert!(has(&f, "kpr-invalid-value", "kubeProxyReplacement", Some(13), Impact::RenderFails), "{d}");
    // Both ServiceMonitors need the Prometheus Operator CRDs (unknown here → warning).
    assert!(
        has(&f, "servicemonitor-crd-unknown", "operator.prometheus.serviceMonitor.enabled", Some(21), Impact::Warning),
        "{d}"
    );
    assert!(
        has(&f, "servicemonitor-crd-unknown", "prometheus.serviceMonitor.enabled", Some(40), Impact::Warning),
        "{d}"
    );
    // Hubble TLS with the default `helm` method churns certificates under Argo CD.
    assert!(has(&f, "hubble-tls-helm-under-argo", "hubble.tls.auto.method", Some(23), Impact::Warning), "{d}");
    // The chart-managed Ingress: TLS entry without hosts, and no cert-manager issuer.
    assert!(has(&f, "hubble-ui-ingress-without-issuer", "hubble.ui.ingress", Some(29), Impact::Warning), "{d}");
    assert!(
        has(&f, "hubble-ui-ingress-tls-without-hosts", "hubble.ui.ingress.tls[0]", Some(35), Impact::Warning),
        "{d}"
    );
    // Notes: Hubble node-name prefix, cluster.id only for ClusterMesh.
    assert!(has(&f, "cluster-name-prefixes-hubble-nodes", "cluster.name", Some(2), Impact::Info), "{d}");
    assert!(has(&f, "cluster-id-without-clustermesh", "cluster.id", Some(3), Impact::Info), "{d}");
    assert_eq!(f.len(), 10, "unexpected extra findings:\n{d}");
    assert_eq!(lint::exit_code(&f), 1);

    let kpr = f.iter().find(|x| x.id == "kpr-invalid-value").expect("kpr");
    assert!(kpr.message.contains("kubeProxyReplacement must be explicitly set to a valid value (true or false)"));
    assert_eq!(kpr.fix, "kubeProxyReplacement: \"false\"");
    let tunnel = f.iter().find(|x| x.id == "removed-key-tunnel").expect("tunnel");
    assert!(tunnel.message.contains("tunnel was deprecated in v1.14 and has been removed in v1.15"));
    assert!(tunnel.fix.contains("routingMode: native") && tunnel.fix.contains("ipv4NativeRoutingCIDR: 10.42.0.0/16"));
}

#[test]
fn plan_stage1_on_a_cluster_without_prometheus_operator_fails_to_render() {
    let ctx = LintContext { api_versions: Some(vec!["v1".into(), "apps/v1".into()]), ..plan_ctx() };
    let f = lint("plan-values-stage1.yaml", &ctx);
    assert!(has(
        &f,
        "servicemonitor-without-crd",
        "operator.prometheus.serviceMonitor.enabled",
        Some(21),
        Impact::RenderFails
    ));
    assert!(has(&f, "servicemonitor-without-crd", "prometheus.serviceMonitor.enabled", Some(40), Impact::RenderFails));
}

#[test]
fn plan_stage1_on_chart_1_16_1_silently_gets_vxlan() {
    let ctx = LintContext { chart_version: "1.16.1".into(), ..plan_ctx() };
    let f = lint("plan-values-stage1.yaml", &ctx);
    let t = f.iter().find(|x| x.id == "removed-key-tunnel").expect("tunnel");
    assert_eq!((t.impact, t.line), (Impact::Ignored, Some(8)));
    assert!(t.message.contains("VXLAN"));
}

#[test]
fn plan_stage2_snippet() {
    let f = lint("plan-values-stage2.yaml", &plan_ctx());
    let d = dump(&f);
    assert!(has(&f, "kpr-invalid-value", "kubeProxyReplacement", Some(1), Impact::RenderFails), "{d}");
    assert_eq!(
        f.iter().find(|x| x.id == "kpr-invalid-value").map(|x| x.fix.as_str()),
        Some("kubeProxyReplacement: \"true\"")
    );
    assert!(has(&f, "removed-key-host-services", "hostServices", Some(2), Impact::Ignored), "{d}");
    assert!(has(&f, "kpr-forces-external-ips", "externalIPs.enabled", Some(5), Impact::Ignored), "{d}");
    assert!(has(&f, "kpr-forces-node-port", "nodePort.enabled", Some(7), Impact::Ignored), "{d}");
    // KPR without k8sServiceHost: the agent cannot reach the API once kube-proxy is gone.
    assert!(has(&f, "kpr-needs-k8s-service-host", "k8sServiceHost", Some(1), Impact::AgentCrash), "{d}");
    // bpf.masquerade is fine here: KPR (meant as true) brings NodePort.
    assert!(!f.iter().any(|x| x.id == "bpf-masquerade-needs-nodeport"), "{d}");
    // On the 1.17 chart externalIPs is no chart value at all.
    let v17 = LintContext { chart_version: "1.17.6".into(), ..plan_ctx() };
    let f = lint("plan-values-stage2.yaml", &v17);
    assert!(has(&f, "removed-key-external-ips", "externalIPs", Some(4), Impact::Ignored), "{}", dump(&f));
}

#[test]
fn plan_stage2_merged_with_kube_proxy_still_running() {
    let running = LintOptions { kube_proxy_running: Some(true), ..opts() };
    let f = lint_file_with(&fixture("plan-values-stage2-merged.yaml"), &plan_ctx(), &running).expect("lints");
    let d = dump(&f);
    assert!(has(&f, "kpr-invalid-value", "kubeProxyReplacement", Some(13), Impact::RenderFails), "{d}");
    assert!(has(&f, "kpr-needs-k8s-service-host", "k8sServiceHost", Some(13), Impact::Warning), "{d}");
    assert!(has(&f, "removed-key-tunnel", "tunnel", Some(8), Impact::RenderFails), "{d}");
    assert!(has(&f, "removed-key-host-services", "hostServices", Some(14), Impact::Ignored), "{d}");
}

#[test]
fn rendered_values_lint_clean() {
    for stage in [Stage::One, Stage::Two] {
        for api_versions in
            [None, Some(vec!["v1".to_string()]), Some(vec!["v1".to_string(), MONITORING_API.to_string()])]
        {
            for nodes in [None, Some(1), Some(3)] {
                let rctx = RenderContext {
                    api_versions: api_versions.clone(),
                    schedulable_nodes: nodes,
                    ..Default::default()
                };
                let files = render::render(stage, &Settings::default(), &rctx).expect("renders");
                let values = &files.iter().find(|f| f.path.ends_with("values.yaml")).expect("values").contents;
                let lctx = LintContext {
                    chart_version: "1.16.4".into(),
                    api_versions: api_versions.clone(),
                    schedulable_nodes: nodes,
                };
                let lopts = LintOptions { kube_proxy_running: Some(stage == Stage::One), ..Default::default() };
                let f = lint_values_with(values, &lctx, &lopts).expect("lints");
                // Only notes: nothing that breaks, is ignored or is risky.
                assert!(
                    f.iter().all(|x| x.impact == Impact::Info),
                    "stage {stage:?} {api_versions:?} {nodes:?}:\n{}",
                    dump(&f)
                );
                assert_eq!(lint::exit_code(&f), 0);
                // Also clean on the default pin (a 1.17 release).
                let pin = Settings::default().cilium.chart_version;
                let f17 = lint_values_with(values, &LintContext { chart_version: pin.clone(), ..lctx }, &lopts)
                    .expect("lints");
                assert!(f17.iter().all(|x| x.impact == Impact::Info), "{pin}:\n{}", dump(&f17));
            }
        }
    }
}

#[test]
fn malformed_values_name_file_and_line() {
    let path = fixture("values-malformed.yaml");
    let err = lint_file(&path, &plan_ctx()).expect_err("malformed");
    let msg = err.to_string();
    assert!(matches!(err, LintFileError::Syntax { line, .. } if (4..=6).contains(&line)), "{msg}");
    assert!(msg.starts_with(&format!("{}:", path.display())), "{msg}");
    let missing = lint_file(&fixture("does-not-exist.yaml"), &plan_ctx()).expect_err("missing");
    assert!(missing.to_string().contains("does-not-exist.yaml"), "{missing}");
}

#[test]
fn text_output_shape() {
    let path = fixture("plan-values-stage1.yaml");
    let f = lint("plan-values-stage1.yaml", &plan_ctx());
    let text = lint::format_text(&path, &f);
    let expect = format!("{}:8: tunnel: [render-fails] tunnel was deprecated", path.display());
    assert!(text.contains(&expect), "{text}");
    assert!(text.contains("\n  fix: kubeProxyReplacement: \"false\"\n"), "{text}");
}

#[test]
fn arbitrary_input_never_panics() {
    let mut rng = fastrand::Rng::with_seed(7);
    let base = std::fs::read_to_string(fixture("plan-values-stage1.yaml")).expect("fixture");
    let alphabet: Vec<char> = ":-[]{}#&*!|>'\"%@` \n\tabc0.".chars().collect();
    for _ in 0..300 {
        let mut s: Vec<char> = base.chars().collect();
        for _ in 0..rng.usize(1..8) {
            let i = rng.usize(0..s.len());
            s[i] = alphabet[rng.usize(0..alphabet.len())];
        }
        let text: String = s.into_iter().collect();
        match lint_values_with(&text, &plan_ctx(), &opts()) {
            Ok(_) => {}
            Err(LintError::Syntax { line, .. }) => assert!(line >= 1),
        }
    }
}

#[tokio::test]
async fn cli_exit_codes() {
    let global = cutover::cli::GlobalArgs {
        settings: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/cutover.toml")),
        ..Default::default()
    };
    let args = |name: &str, chart: Option<&str>| lint::LintArgs {
        values: fixture(name),
        chart_version: chart.map(String::from),
        output: lint::OutputFormat::Json,
    };
    let code = lint::run(args("plan-values-stage1.yaml", None), &global).await.expect("runs");
    assert_eq!(code, std::process::ExitCode::from(1));
    // The 1.16.1 chart ignores `tunnel` instead of failing, but the agent still crashes.
    let code = lint::run(args("plan-values-stage1.yaml", Some("1.16.1")), &global).await.expect("runs");
    assert_eq!(code, std::process::ExitCode::from(1));
    assert!(lint::run(args("plan-values-stage1.yaml", Some("latest")), &global).await.is_err());
    assert!(lint::run(args("values-malformed.yaml", None), &global).await.is_err());

    let tmp = cutover::tempdir::TempDir::new().expect("tmp");
    let files = render::render(Stage::One, &Settings::default(), &RenderContext::default()).expect("renders");
    render::write(&tmp.path, &files).expect("writes");
    let rendered = lint::LintArgs {
        values: tmp.path.join("platform/networking/cilium/values.yaml"),
        chart_version: None,
        output: lint::OutputFormat::Text,
    };
    assert_eq!(lint::run(rendered, &global).await.expect("runs"), std::process::ExitCode::SUCCESS);
}

/// `cutover lint` run as a process (the plan's settings, no log file).
fn lint_command(args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cutover"));
    let settings = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/cutover.toml");
    cmd.arg("--settings").arg(settings).args(["--log-file", "/dev/null", "lint"]).args(args);
    cmd
}

#[test]
fn endless_input_is_refused_with_one_line() {
    let out = lint_command(&["/dev/zero"]).output().expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("/dev/zero is larger than 4 MiB; a Helm values file is not that big"), "{stderr}");
}

#[test]
fn closed_stdout_ends_quietly_with_the_exit_code() {
    let values = fixture("plan-values-stage1.yaml");
    for output in ["text", "json"] {
        let mut child = lint_command(&["-o", output])
            .arg(&values)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawns");
        // The reader goes away before the report is written.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{output}: {stderr}");
        // Breaking findings: exit code 1, as with a reader.
        assert_eq!(out.status.code(), Some(1), "{output}: {stderr}");
    }
}
