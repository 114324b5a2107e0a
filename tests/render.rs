//! `cutover render`: golden files per stage (byte for byte; `UPDATE_GOLDEN=1` rewrites them), the
//! shape of the rendered manifests, writing into a Git checkout without touching uncommitted work,
//! and settings files with errors.

use std::path::{Path, PathBuf};
use std::process::Command;

use cutover::manifests::render::{self, MONITORING_API, RenderContext, RenderError, RenderedFile, Stage, WriteStatus};
use cutover::settings::{IngressMode, Settings, SettingsError, TlsMethod};
use cutover::tempdir::TempDir;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Compares `files` with `tests/golden/<name>/<path>`; rewrites them with UPDATE_GOLDEN=1.
fn golden(name: &str, files: &[RenderedFile]) {
    let dir = root().join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let _ = std::fs::remove_dir_all(&dir);
        for f in files {
            let p = dir.join(&f.path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, &f.contents).expect("write golden");
        }
    }
    let mut expected: Vec<PathBuf> = Vec::new();
    collect(&dir, &dir, &mut expected);
    expected.sort();
    let mut got: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
    got.sort();
    assert_eq!(got, expected, "golden {name}: file set differs (UPDATE_GOLDEN=1 to accept)");
    for f in files {
        let want = std::fs::read(dir.join(&f.path)).expect("golden file");
        assert!(
            want == f.contents.as_bytes(),
            "golden {name}/{} differs (UPDATE_GOLDEN=1 to accept):\n{}",
            f.path.display(),
            f.contents
        );
    }
}

fn collect(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(base, &p, out);
        } else if let Ok(rel) = p.strip_prefix(base) {
            out.push(rel.to_path_buf());
        }
    }
}

fn cluster_ctx() -> RenderContext {
    RenderContext {
        api_versions: Some(vec!["v1".into(), "apps/v1".into(), MONITORING_API.into()]),
        schedulable_nodes: Some(3),
        servers: vec!["cp-1".into()],
        agents: vec!["worker-1".into(), "worker-2".into()],
    }
}

#[test]
fn golden_stage1() {
    golden("stage1", &render::render(Stage::One, &Settings::default(), &RenderContext::default()).expect("renders"));
}

#[test]
fn golden_stage2() {
    golden("stage2", &render::render(Stage::Two, &Settings::default(), &RenderContext::default()).expect("renders"));
}

/// The other template branches: ServiceMonitors on (CRDs served), standalone Ingress, helm certs.
#[test]
fn golden_stage2_cluster_manifest_ingress() {
    let mut s = Settings::default();
    s.hubble.ingress = IngressMode::Manifest;
    s.hubble.tls_method = TlsMethod::Helm;
    s.cilium.operator_replicas = 2;
    s.cilium.chart_version = "1.17.6".into();
    golden("stage2-cluster", &render::render(Stage::Two, &s, &cluster_ctx()).expect("renders"));
}

#[test]
fn byte_stable() {
    for stage in [Stage::One, Stage::Two] {
        let a = render::render(stage, &Settings::default(), &cluster_ctx()).expect("renders");
        let b = render::render(stage, &Settings::default(), &cluster_ctx()).expect("renders");
        assert_eq!(a, b);
    }
}

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).expect("rendered YAML parses")
}

fn find<'a>(files: &'a [RenderedFile], suffix: &str) -> &'a str {
    &files.iter().find(|f| f.path.to_string_lossy().ends_with(suffix)).expect("rendered").contents
}

#[test]
fn application_shape() {
    let files = render::render(Stage::One, &Settings::default(), &RenderContext::default()).expect("renders");
    assert_eq!(files[0].path, Path::new("platform/gitops/argocd/apps/cilium-app.yaml"));
    let app = yaml(find(&files, "cilium-app.yaml"));
    // syncOptions is a sibling of `automated` inside syncPolicy (the plan put it beside syncPolicy).
    assert_eq!(app.pointer("/spec/syncPolicy/syncOptions/0"), Some(&Value::from("ServerSideApply=true")));
    assert!(app.pointer("/spec/syncOptions").is_none());
    assert_eq!(app.pointer("/spec/syncPolicy/automated/selfHeal"), Some(&Value::from(true)));
    assert_eq!(app.pointer("/metadata/finalizers/0"), Some(&Value::from("resources-finalizer.argocd.argoproj.io")));
    assert_eq!(app.pointer("/spec/sources/0/chart"), Some(&Value::from("cilium")));
    assert_eq!(app.pointer("/spec/sources/0/targetRevision"), Some(&Value::from("1.17.18")), "the default pin");
    assert_eq!(app.pointer("/spec/sources/0/helm/releaseName"), Some(&Value::from("cilium")));
    assert_eq!(
        app.pointer("/spec/sources/0/helm/valueFiles/0"),
        Some(&Value::from("$values/platform/networking/cilium/values.yaml"))
    );
    assert_eq!(app.pointer("/spec/sources/1/ref"), Some(&Value::from("values")));
    assert!(app.pointer("/spec/sources/1/chart").is_none(), "a ref source may not set chart");
    assert!(app.pointer("/spec/ignoreDifferences").is_none(), "cronJob certs need no ignoreDifferences");
    assert!(find(&files, "cilium-app.yaml").contains("NEVER roll back by deleting this Application"));

    // The plan's own Application has syncOptions one level too high.
    let plan = std::fs::read_to_string(root().join("tests/fixtures/plan-cilium-app.yaml")).expect("fixture");
    let plan = yaml(&plan);
    assert!(plan.pointer("/spec/syncOptions").is_some() && plan.pointer("/spec/syncPolicy/syncOptions").is_none());
}

/// The plan's 1.16 pin still renders (preflight warns about it; the values are the same).
#[test]
fn the_plans_1_16_pin_renders_the_same_values() {
    let mut plan = Settings::default();
    plan.cilium.chart_version = "1.16.4".into();
    for stage in [Stage::One, Stage::Two] {
        let old = render::render(stage, &plan, &RenderContext::default()).expect("renders on 1.16.4");
        let new = render::render(stage, &Settings::default(), &RenderContext::default()).expect("renders");
        let app = yaml(find(&old, "cilium-app.yaml"));
        assert_eq!(app.pointer("/spec/sources/0/targetRevision"), Some(&Value::from("1.16.4")));
        assert_eq!(yaml(find(&old, "cilium/values.yaml")), yaml(find(&new, "cilium/values.yaml")), "{stage:?}");
    }
}

#[test]
fn values_and_k3s_fragment_per_stage() {
    let one = render::render(Stage::One, &Settings::default(), &RenderContext::default()).expect("stage 1");
    let two = render::render(Stage::Two, &Settings::default(), &RenderContext::default()).expect("stage 2");
    let v1 = yaml(find(&one, "cilium/values.yaml"));
    let v2 = yaml(find(&two, "cilium/values.yaml"));
    for v in [&v1, &v2] {
        assert_eq!(v["routingMode"], "native");
        assert_eq!(v["ipv4NativeRoutingCIDR"], "10.42.0.0/16");
        assert_eq!(v["k8sServiceHost"], "127.0.0.1");
        assert_eq!(v["k8sServicePort"], 6444);
        assert_eq!(v["hubble"]["tls"]["auto"]["method"], "cronJob");
        assert!(v.get("tunnel").is_none() && v.get("hostServices").is_none() && v.get("externalIPs").is_none());
        assert_eq!(v["prometheus"]["serviceMonitor"]["enabled"], false, "CRDs unknown offline");
        assert_eq!(v["hubble"]["ui"]["ingress"]["tls"][0]["hosts"][0], "hubble.rcrumana.xyz");
    }
    assert_eq!(v1["kubeProxyReplacement"], "false");
    assert!(v1.get("bpf").is_none());
    assert_eq!(v2["kubeProxyReplacement"], "true");
    assert_eq!(v2["bpf"]["masquerade"], true);

    let k1 = yaml(find(&one, "50-cilium.yaml"));
    let k2 = yaml(find(&two, "50-cilium.yaml"));
    assert_eq!(k1["flannel-backend"], "none");
    assert_eq!(k1["disable-network-policy"], true);
    assert!(k1.get("disable-kube-proxy").is_none());
    assert_eq!(k2["disable-kube-proxy"], true);
    assert!(find(&one, "50-cilium.yaml").contains("servers first"));

    let c = render::render(Stage::One, &Settings::default(), &cluster_ctx()).expect("cluster");
    assert!(find(&c, "50-cilium.yaml").contains("Node order: cp-1 (server), worker-1 (agent), worker-2 (agent)"));
    assert_eq!(yaml(find(&c, "cilium/values.yaml"))["prometheus"]["serviceMonitor"]["enabled"], true);
}

// ---------------------------------------------------------------------------------------------
// Writing.

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=cutover-test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn statuses(o: &[render::WriteOutcome]) -> Vec<WriteStatus> {
    o.iter().map(|o| o.status).collect()
}

#[test]
fn writes_into_a_plain_directory() {
    let tmp = TempDir::new().expect("tmp");
    let files = render::render(Stage::One, &Settings::default(), &RenderContext::default()).expect("renders");
    let first = render::write(&tmp.path, &files).expect("writes");
    assert_eq!(statuses(&first), vec![WriteStatus::Created; files.len()]);
    let again = render::write(&tmp.path, &files).expect("writes");
    assert_eq!(statuses(&again), vec![WriteStatus::Unchanged; files.len()]);
    let two = render::render(Stage::Two, &Settings::default(), &RenderContext::default()).expect("renders");
    let changed = render::write(&tmp.path, &two).expect("writes");
    assert_eq!(statuses(&changed), vec![WriteStatus::Unchanged, WriteStatus::Changed, WriteStatus::Changed]);
    let on_disk = std::fs::read_to_string(tmp.path.join("platform/networking/cilium/values.yaml")).expect("read");
    assert_eq!(on_disk, two[1].contents);
}

#[test]
fn never_overwrites_uncommitted_changes_in_a_checkout() {
    let tmp = TempDir::new().expect("tmp");
    git(&tmp.path, &["init", "-q"]);
    let s1 = render::render(Stage::One, &Settings::default(), &RenderContext::default()).expect("renders");
    let s2 = render::render(Stage::Two, &Settings::default(), &RenderContext::default()).expect("renders");

    // Fresh checkout: everything is created.
    assert_eq!(statuses(&render::write(&tmp.path, &s1).expect("writes")), vec![WriteStatus::Created; 3]);
    // Our own uncommitted files count as the user's work too: stage 2 would change two of them.
    let err = render::write(&tmp.path, &s2).expect_err("dirty");
    match &err {
        RenderError::Dirty { files } => assert_eq!(
            files,
            &vec![
                PathBuf::from("platform/networking/cilium/values.yaml"),
                PathBuf::from("infrastructure/k3s/config.yaml.d/50-cilium.yaml")
            ]
        ),
        other => panic!("expected Dirty, got {other:?}"),
    }
    assert!(err.to_string().contains("platform/networking/cilium/values.yaml"), "{err}");
    // Unchanged files never trip the check.
    assert_eq!(statuses(&render::write(&tmp.path, &s1).expect("writes")), vec![WriteStatus::Unchanged; 3]);

    git(&tmp.path, &["add", "-A"]);
    git(&tmp.path, &["commit", "-q", "-m", "stage 1"]);
    // Committed: stage 2 may change them.
    let out = render::write(&tmp.path, &s2).expect("clean checkout");
    assert_eq!(statuses(&out), vec![WriteStatus::Unchanged, WriteStatus::Changed, WriteStatus::Changed]);

    git(&tmp.path, &["add", "-A"]);
    git(&tmp.path, &["commit", "-q", "-m", "stage 2"]);
    // The user edits the app by hand: rendering stage 1 again must not clobber it, and nothing else is written.
    let app = tmp.path.join("platform/gitops/argocd/apps/cilium-app.yaml");
    std::fs::write(&app, "# my edit\n").expect("edit");
    let err = render::write(&tmp.path, &s1).expect_err("dirty app");
    assert!(
        matches!(&err, RenderError::Dirty { files } if files == &vec![PathBuf::from("platform/gitops/argocd/apps/cilium-app.yaml")])
    );
    assert_eq!(std::fs::read_to_string(&app).expect("read"), "# my edit\n");
    let values = std::fs::read_to_string(tmp.path.join("platform/networking/cilium/values.yaml")).expect("read");
    assert_eq!(values, s2[1].contents, "all-or-nothing: values.yaml untouched");
}

// ---------------------------------------------------------------------------------------------
// Settings files.

#[test]
fn settings_errors_name_file_and_line() {
    let fx = root().join("tests/fixtures");
    let err = Settings::load(Some(&fx.join("settings-malformed.toml"))).expect_err("malformed");
    assert!(matches!(err, SettingsError::Parse { line: 4, .. }), "{err}");
    assert!(err.to_string().contains("settings-malformed.toml:4:"), "{err}");

    let err = Settings::load(Some(&fx.join("settings-unknown-key.toml"))).expect_err("unknown key");
    let msg = err.to_string();
    assert!(msg.contains("settings-unknown-key.toml:3:") && msg.contains("chart_verison"), "{msg}");

    let err = Settings::load(Some(&fx.join("no-such-settings.toml"))).expect_err("missing explicit file");
    assert!(err.to_string().contains("no-such-settings.toml"), "{err}");

    let shipped = Settings::load(Some(&root().join("assets/cutover.toml"))).expect("shipped settings");
    assert_eq!(shipped, Settings::default());
}

/// `cutover render` to stdout whose reader is gone before anything is written (`| head` that
/// already quit): no panic, the normal exit code.
#[test]
fn closed_stdout_ends_quietly() {
    let settings = root().join("assets/cutover.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .arg("--settings")
        .arg(&settings)
        .args(["--log-file", "/dev/null", "render", "--stage", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawns");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{stderr}");
}
