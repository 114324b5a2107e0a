//! Renders the GitOps files of a stage from the settings and the embedded templates: the Argo CD
//! Application, the Cilium values, the Hubble UI Ingress (when standalone) and the k3s server
//! config drop-in. Also writes them into a Git checkout without ever overwriting uncommitted work.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use color_eyre::eyre::WrapErr;

use super::lint::{self, LintContext, LintOptions};
use super::template::{self, TemplateError, Vars};
use crate::settings::{IngressMode, ServiceMonitors, Settings, TlsMethod};

const TPL_APP: &str = include_str!("../../assets/templates/cilium-app.yaml");
const TPL_VALUES: &str = include_str!("../../assets/templates/values.yaml");
const TPL_INGRESS: &str = include_str!("../../assets/templates/hubble-ui-ingress.yaml");
const TPL_K3S: &str = include_str!("../../assets/templates/k3s-config.yaml");

/// The API group/version ServiceMonitors need.
pub const MONITORING_API: &str = "monitoring.coreos.com/v1";

/// Cutover stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum, serde::Serialize)]
pub enum Stage {
    /// Cilium is the CNI; k3s' embedded kube-proxy stays.
    #[value(name = "1")]
    One,
    /// Cilium replaces kube-proxy.
    #[value(name = "2")]
    Two,
}

impl Stage {
    pub fn number(self) -> u8 {
        match self {
            Stage::One => 1,
            Stage::Two => 2,
        }
    }
}

/// What the renderer knows about the cluster (all optional: rendering works offline).
#[derive(Debug, Clone, Default)]
pub struct RenderContext {
    /// API group/versions served, when known (decides ServiceMonitors in `auto` mode).
    pub api_versions: Option<Vec<String>>,
    /// Schedulable nodes, when known (caps `operator.replicas`).
    pub schedulable_nodes: Option<usize>,
    /// Server node names, first the one the others join through.
    pub servers: Vec<String>,
    pub agents: Vec<String>,
}

/// One rendered file; `path` is relative to the repo root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    pub path: PathBuf,
    pub contents: String,
}

/// What writing did to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteStatus {
    Created,
    Changed,
    Unchanged,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    pub path: PathBuf,
    pub status: WriteStatus,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("rendered values.yaml would break the rollout ({0}); fix cutover.toml")]
    Lint(String),
    #[error(
        "refusing to overwrite files with uncommitted changes: {} (commit or stash them first)",
        .files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    Dirty { files: Vec<PathBuf> },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("git status failed in {dir}: {message}")]
    Git { dir: PathBuf, message: String },
}

/// Renders every file of `stage`. Pure: same inputs, same bytes.
pub fn render(stage: Stage, settings: &Settings, ctx: &RenderContext) -> Result<Vec<RenderedFile>, RenderError> {
    let vars = variables(stage, settings, ctx);
    let mut files = vec![
        RenderedFile {
            path: Path::new(&settings.git.apps_path).join(settings.cilium_app_file()),
            contents: template::render("cilium-app.yaml", TPL_APP, &vars)?,
        },
        RenderedFile {
            path: PathBuf::from(&settings.git.values_path),
            contents: template::render("values.yaml", TPL_VALUES, &vars)?,
        },
    ];
    if settings.hubble.ingress == IngressMode::Manifest {
        files.push(RenderedFile {
            path: PathBuf::from(&settings.git.ingress_path),
            contents: template::render("hubble-ui-ingress.yaml", TPL_INGRESS, &vars)?,
        });
    }
    files.push(RenderedFile {
        path: PathBuf::from(&settings.git.k3s_config_path),
        contents: template::render("k3s-config.yaml", TPL_K3S, &vars)?,
    });

    // Never hand out values our own linter says break the rollout.
    let lint_ctx = LintContext {
        chart_version: settings.cilium.chart_version.clone(),
        api_versions: ctx.api_versions.clone(),
        schedulable_nodes: ctx.schedulable_nodes,
    };
    let opts = LintOptions { native_routing_cidr: Some(settings.cluster.pod_cidr.clone()), ..Default::default() };
    let values = &files[1].contents;
    let findings = lint::lint_values_with(values, &lint_ctx, &opts).map_err(|e| RenderError::Lint(e.to_string()))?;
    let breaking: Vec<String> =
        findings.iter().filter(|f| f.impact.is_breaking()).map(|f| format!("{}: {}", f.key, f.message)).collect();
    if !breaking.is_empty() {
        return Err(RenderError::Lint(breaking.join("; ")));
    }
    Ok(files)
}

/// Whether the rendered values enable ServiceMonitors, and why (goes into a comment).
fn service_monitors(settings: &Settings, ctx: &RenderContext) -> (bool, String) {
    let served = ctx.api_versions.as_ref().map(|v| v.iter().any(|a| a == MONITORING_API));
    match (settings.cilium.service_monitors, served) {
        (ServiceMonitors::On, _) => {
            (true, "on (cutover.toml); the chart fails to render without the Prometheus Operator CRDs.".into())
        }
        (ServiceMonitors::Off, _) => (false, "off (cutover.toml).".into()),
        (ServiceMonitors::Auto, Some(true)) => (true, format!("on: the cluster serves {MONITORING_API}.")),
        (ServiceMonitors::Auto, Some(false)) => {
            (false, format!("off: the cluster does not serve {MONITORING_API} (the chart would fail to render)."))
        }
        (ServiceMonitors::Auto, None) => {
            (false, format!("off: {MONITORING_API} not known to be served (rendered offline; see cutover.toml)."))
        }
    }
}

fn variables(stage: Stage, s: &Settings, ctx: &RenderContext) -> Vars {
    let mut v = Vars::default();
    let (sm, sm_note) = service_monitors(s, ctx);
    let (replicas, op_note) = match ctx.schedulable_nodes {
        Some(n) if (n as u64) < u64::from(s.cilium.operator_replicas) => {
            (n.max(1) as u64, format!("cutover.toml asks for {}, only {n} schedulable", s.cilium.operator_replicas))
        }
        Some(n) => (u64::from(s.cilium.operator_replicas), format!("{n} schedulable nodes")),
        None => (u64::from(s.cilium.operator_replicas), "node count not checked".to_string()),
    };
    let node_order = if !s.runbook.node_order.is_empty() {
        s.runbook.node_order.join(", ")
    } else if !ctx.servers.is_empty() || !ctx.agents.is_empty() {
        let mut all: Vec<String> = ctx.servers.iter().map(|n| format!("{n} (server)")).collect();
        all.extend(ctx.agents.iter().map(|n| format!("{n} (agent)")));
        all.join(", ")
    } else {
        "servers first, then agents (`cutover preflight` lists them)".to_string()
    };
    let ingress_dir = Path::new(&s.git.ingress_path).parent().map(|p| p.display().to_string()).unwrap_or_default();
    v.set("stage", stage.number().to_string())
        .set(
            "stage_title",
            match stage {
                Stage::One => "Cilium is the CNI, k3s' embedded kube-proxy stays",
                Stage::Two => "Cilium replaces kube-proxy",
            },
        )
        .set("cluster_name", &s.cluster.name)
        .set("cluster_id", s.cilium.cluster_id.to_string())
        .set("pod_cidr", &s.cluster.pod_cidr)
        .set("api_host", &s.cluster.api_host)
        .set("api_port", s.cluster.api_port.to_string())
        .set("chart_repo", &s.cilium.chart_repo)
        .set("chart", &s.cilium.chart)
        .set("chart_version", &s.cilium.chart_version)
        .set("release_name", &s.cilium.release_name)
        .set("namespace", &s.cilium.namespace)
        .set("operator_replicas", replicas.to_string())
        .set("operator_note", op_note)
        .set("service_monitors", sm.to_string())
        .set("service_monitors_note", sm_note)
        .set("tls_method", s.hubble.tls_method.as_str())
        .set("ingress_class", &s.hubble.ingress_class)
        .set("cluster_issuer", &s.hubble.cluster_issuer)
        .set("whitelist", &s.hubble.whitelist)
        .set("ui_host", &s.hubble.ui_host)
        .set("tls_secret", &s.hubble.tls_secret)
        .set("ingress_path", &s.git.ingress_path)
        .set("ingress_dir", ingress_dir)
        .set("cpu_request", &s.cilium.resources.cpu_request)
        .set("memory_request", &s.cilium.resources.memory_request)
        .set("cpu_limit", &s.cilium.resources.cpu_limit)
        .set("memory_limit", &s.cilium.resources.memory_limit)
        .set("app_name", &s.argo.cilium_app)
        .set("argo_namespace", &s.argo.namespace)
        .set("root_app", &s.argo.root_app)
        .set("project", &s.argo.project)
        .set("destination_server", &s.argo.destination_server)
        .set("apps_path", &s.git.apps_path)
        .set("values_path", &s.git.values_path)
        .set("repo_url", &s.git.repo_url)
        .set("branch", &s.git.branch)
        .set("node_order", node_order)
        .flag("stage1", stage == Stage::One)
        .flag("stage2", stage == Stage::Two)
        .flag("ingress_chart", s.hubble.ingress == IngressMode::Chart)
        .flag("ingress_manifest", s.hubble.ingress == IngressMode::Manifest)
        .flag("helm_certs", s.hubble.tls_method == TlsMethod::Helm);
    v
}

// ---------------------------------------------------------------------------------------------
// Writing into a checkout.

/// Whether `dir` is inside a Git work tree (false when git is missing too).
fn in_git_worktree(dir: &Path) -> bool {
    std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--is-inside-work-tree"])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"true"))
}

/// Whether `rel` (relative to `dir`) has uncommitted changes (modified, staged, untracked, deleted).
fn git_dirty(dir: &Path, rel: &Path) -> Result<bool, RenderError> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["status", "--porcelain", "--untracked-files=all", "--"])
        .arg(rel)
        .output()
        .map_err(|e| RenderError::Git { dir: dir.to_path_buf(), message: e.to_string() })?;
    if !out.status.success() {
        return Err(RenderError::Git {
            dir: dir.to_path_buf(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(!out.stdout.is_empty())
}

/// Writes `files` under `out_dir`. In a Git checkout, refuses (writing nothing) if any file that
/// would be created or changed has uncommitted changes.
pub fn write(out_dir: &Path, files: &[RenderedFile]) -> Result<Vec<WriteOutcome>, RenderError> {
    let mut plan = Vec::new();
    for f in files {
        let target = out_dir.join(&f.path);
        let status = match std::fs::read(&target) {
            Ok(existing) if existing == f.contents.as_bytes() => WriteStatus::Unchanged,
            Ok(_) => WriteStatus::Changed,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => WriteStatus::Created,
            Err(source) => return Err(RenderError::Write { path: target, source }),
        };
        plan.push((f, target, status));
    }
    if in_git_worktree(out_dir) {
        let mut dirty = Vec::new();
        for (f, _, status) in &plan {
            if *status != WriteStatus::Unchanged && git_dirty(out_dir, &f.path)? {
                dirty.push(f.path.clone());
            }
        }
        if !dirty.is_empty() {
            return Err(RenderError::Dirty { files: dirty });
        }
    } else {
        tracing::info!(dir = %out_dir.display(), "not a Git checkout: no uncommitted-change protection");
    }
    let mut out = Vec::new();
    for (f, target, status) in plan {
        if status != WriteStatus::Unchanged {
            write_atomic(&target, f.contents.as_bytes())?;
        }
        out.push(WriteOutcome { path: f.path.clone(), status });
    }
    Ok(out)
}

fn write_atomic(target: &Path, bytes: &[u8]) -> Result<(), RenderError> {
    let err = |source| RenderError::Write { path: target.to_path_buf(), source };
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    let tmp = target.with_extension(format!("cutover-tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(err)?;
    std::fs::rename(&tmp, target).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })
}

// ---------------------------------------------------------------------------------------------
// CLI: `cutover render`.

/// `cutover render`: the GitOps files of a stage.
#[derive(Debug, Clone, clap::Args)]
pub struct RenderArgs {
    /// Stage to render: 1 (Cilium as CNI, kube-proxy stays) or 2 (kube-proxy replacement).
    #[arg(long, value_enum)]
    pub stage: Stage,
    /// Write the files under this directory (normally the repo checkout) instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Ask the cluster (API versions, nodes) instead of rendering from the settings alone.
    #[arg(long)]
    pub cluster: bool,
}

pub async fn run(args: RenderArgs, global: &crate::cli::GlobalArgs) -> color_eyre::Result<ExitCode> {
    let settings = Settings::load(global.settings.as_deref()).wrap_err("loading settings")?;
    let ctx = if args.cluster {
        let client = crate::checks::client::build(global).await.wrap_err("connecting to the cluster")?;
        crate::checks::gather::render_context(&client).await
    } else {
        RenderContext::default()
    };
    let files = render(args.stage, &settings, &ctx).wrap_err("rendering")?;
    let Some(out) = args.out else {
        let mut text = String::new();
        for f in &files {
            text.push_str(&format!("# ==> {} <==\n{}", f.path.display(), f.contents));
        }
        // A reader that went away (`| head`) ends the output quietly.
        crate::cli::write_stdout(&text).wrap_err("writing the files to stdout")?;
        return Ok(ExitCode::SUCCESS);
    };
    if global.read_only || settings.read_only_for(global.context.as_deref()) {
        color_eyre::eyre::bail!("read-only mode: not writing into {} (drop --out to print the files)", out.display());
    }
    let outcomes = write(&out, &files).wrap_err_with(|| format!("writing into {}", out.display()))?;
    let mut text = String::new();
    for o in outcomes {
        let word = match o.status {
            WriteStatus::Created => "created",
            WriteStatus::Changed => "changed",
            WriteStatus::Unchanged => "unchanged",
        };
        text.push_str(&format!("{word:9} {}\n", o.path.display()));
    }
    crate::cli::write_stdout(&text).wrap_err("writing the summary")?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file<'a>(files: &'a [RenderedFile], name: &str) -> &'a str {
        files.iter().find(|f| f.path.ends_with(name)).map(|f| f.contents.as_str()).expect("file rendered")
    }

    #[test]
    fn stage_values_differ_only_where_they_should() {
        let s = Settings::default();
        let one = render(Stage::One, &s, &RenderContext::default()).expect("stage 1");
        let two = render(Stage::Two, &s, &RenderContext::default()).expect("stage 2");
        let v1 = file(&one, "values.yaml");
        let v2 = file(&two, "values.yaml");
        assert!(v1.contains("kubeProxyReplacement: \"false\"") && !v1.contains("masquerade: true"));
        assert!(v2.contains("kubeProxyReplacement: \"true\"") && v2.contains("masquerade: true"));
        for v in [v1, v2] {
            assert!(v.contains("routingMode: native") && v.contains("ipv4NativeRoutingCIDR: 10.42.0.0/16"));
            assert!(v.contains("k8sServiceHost: 127.0.0.1") && v.contains("k8sServicePort: 6444"));
            assert!(!v.contains("\ntunnel:") && !v.contains("\nhostServices"));
            assert!(v.contains("method: cronJob"));
        }
        let k1 = file(&one, "50-cilium.yaml");
        let k2 = file(&two, "50-cilium.yaml");
        assert!(
            k1.contains("flannel-backend: none\ndisable-network-policy: true\n")
                && !k1.contains("disable-kube-proxy: true")
        );
        assert!(k2.contains("disable-kube-proxy: true"));
        assert_eq!(file(&one, "cilium-app.yaml"), file(&two, "cilium-app.yaml"));
    }

    #[test]
    fn service_monitors_follow_the_cluster() {
        let s = Settings::default();
        let off = render(Stage::One, &s, &RenderContext::default()).expect("offline");
        assert!(file(&off, "values.yaml").contains("serviceMonitor:\n    enabled: false"));
        let ctx = RenderContext { api_versions: Some(vec![MONITORING_API.into()]), ..Default::default() };
        let on = render(Stage::One, &s, &ctx).expect("with CRDs");
        assert!(file(&on, "values.yaml").contains("serviceMonitor:\n    enabled: true"));
        // Forcing them on against a cluster without the CRDs is refused by the built-in lint.
        let mut forced = Settings::default();
        forced.cilium.service_monitors = ServiceMonitors::On;
        let ctx = RenderContext { api_versions: Some(vec!["v1".into()]), ..Default::default() };
        assert!(matches!(render(Stage::One, &forced, &ctx), Err(RenderError::Lint(_))));
    }

    #[test]
    fn operator_replicas_capped_by_nodes() {
        let mut s = Settings::default();
        s.cilium.operator_replicas = 2;
        let ctx = RenderContext { schedulable_nodes: Some(1), ..Default::default() };
        let files = render(Stage::One, &s, &ctx).expect("renders");
        assert!(file(&files, "values.yaml").contains("  replicas: 1\n"));
    }

    #[test]
    fn manifest_ingress_and_helm_certs() {
        let mut s = Settings::default();
        s.hubble.ingress = IngressMode::Manifest;
        s.hubble.tls_method = TlsMethod::Helm;
        let files = render(Stage::One, &s, &RenderContext::default()).expect("renders");
        assert_eq!(files.len(), 4);
        let app = file(&files, "cilium-app.yaml");
        assert!(app.contains("path: platform/networking/cilium/ingress"));
        assert!(app.contains("ignoreDifferences:") && app.contains("RespectIgnoreDifferences=true"));
        assert!(file(&files, "hubble-ui.yaml").contains("kind: Ingress"));
        assert!(file(&files, "values.yaml").contains("      enabled: false\n"));
    }
}
