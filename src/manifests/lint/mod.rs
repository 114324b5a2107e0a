//! Cilium Helm values linter: checks a values file against what the pinned chart and the agent
//! really do (render failures, agent start failures, silently ignored keys, risky choices), with
//! the line, the chart's or agent's own message, and the fix. Facts: the Cilium charts'
//! `values.yaml` and `templates/validate.yaml` (1.16, with the 1.17 differences where known: what
//! 1.16 refuses is taken to be refused by 1.17 too) and the agent's start-up checks.
//!
//! The interface (`Impact`, `Finding`, `LintContext`, `LintError`, `lint_values`) is also used by
//! the simulator's Argo CD controller to fail renders and crash agents the way the real ones do.
//!
//! `values` reads the file (every key with its line), `rules` holds the checks, `command` is
//! `cutover lint`.

mod command;
mod rules;
pub(crate) mod values;

use std::io::Read;
use std::path::{Path, PathBuf};

pub use command::{LintArgs, OutputFormat, exit_code, format_text, run};

use crate::settings::ChartVersion;

/// What a finding does to the rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Impact {
    /// `helm template` fails: Argo shows ComparisonError, nothing is applied.
    RenderFails,
    /// Renders, but the cilium agent exits at start (CrashLoopBackOff).
    AgentCrash,
    /// Accepted but silently ignored (does not do what the author meant).
    Ignored,
    /// Works, but risky or not recommended for this cluster.
    Warning,
    /// Worth knowing, nothing to change (does not affect the exit code).
    Info,
}

impl Impact {
    /// Breaks the rollout (render or agent start).
    pub fn is_breaking(self) -> bool {
        matches!(self, Impact::RenderFails | Impact::AgentCrash)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Impact::RenderFails => "render-fails",
            Impact::AgentCrash => "agent-crash",
            Impact::Ignored => "ignored",
            Impact::Warning => "warning",
            Impact::Info => "info",
        }
    }
}

/// One problem in a values file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// Stable id, e.g. `removed-key-tunnel`.
    pub id: &'static str,
    /// Dotted key path, e.g. `hubble.relay.enabled`.
    pub key: String,
    /// 1-based line in the values file, when known.
    pub line: Option<usize>,
    pub impact: Impact,
    /// What is wrong (the chart's or agent's own message where there is one).
    pub message: String,
    /// What to write instead.
    pub fix: String,
}

/// What the linter knows about the target cluster and chart.
#[derive(Debug, Clone, Default)]
pub struct LintContext {
    /// Pinned chart version, e.g. `1.17.18`. Empty or unparsable = the default pin of the settings.
    pub chart_version: String,
    /// API group/versions served by the cluster (e.g. `monitoring.coreos.com/v1`), when known.
    pub api_versions: Option<Vec<String>>,
    /// Schedulable nodes, when known (for `operator.replicas`).
    pub schedulable_nodes: Option<usize>,
}

/// More that the linter can use when the caller knows it (kept apart from `LintContext`, whose
/// shape other components construct literally).
#[derive(Debug, Clone, Default)]
pub struct LintOptions {
    /// The pod CIDR, used in suggested fixes (`ipv4NativeRoutingCIDR`).
    pub native_routing_cidr: Option<String>,
    /// Whether k3s' embedded kube-proxy still runs, when known (Stage 2 ordering).
    pub kube_proxy_running: Option<bool>,
    /// Rendered with `helm install/upgrade` against the cluster (Helm `lookup` works). `false` =
    /// Argo CD / `helm template`, where it does not.
    pub direct_helm: bool,
}

/// Errors reading a values file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LintError {
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
}

/// Errors of `lint_file`: they name the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LintFileError {
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path} is larger than {} MiB; a Helm values file is not that big", MAX_VALUES_BYTES >> 20)]
    TooLarge { path: PathBuf },
    #[error("{path}:{line}: {message}")]
    Syntax { path: PathBuf, line: usize, message: String },
}

/// The most `lint_file` reads. A Cilium values file is a few KiB; the cap keeps `cutover lint
/// /dev/zero` (or a wrong path to a disk image) from reading until memory runs out.
pub const MAX_VALUES_BYTES: u64 = 4 << 20;

/// Assumed when the context names no readable version: the chart the settings pin by default.
fn default_chart() -> ChartVersion {
    let pin = crate::settings::CiliumSettings::default().chart_version;
    ChartVersion::parse(&pin).unwrap_or(ChartVersion { major: 1, minor: 17, patch: 0 })
}

/// Lints values YAML text against the pinned chart.
pub fn lint_values(text: &str, ctx: &LintContext) -> Result<Vec<Finding>, LintError> {
    lint_values_with(text, ctx, &LintOptions::default())
}

/// `lint_values` with what else the caller knows.
pub fn lint_values_with(text: &str, ctx: &LintContext, opts: &LintOptions) -> Result<Vec<Finding>, LintError> {
    let values = values::Values::parse(text)?;
    let chart = ChartVersion::parse(&ctx.chart_version).unwrap_or_else(default_chart);
    let mut out = rules::check(&values, ctx, opts, chart);
    out.sort_by(|a, b| {
        (a.line.unwrap_or(usize::MAX), a.impact, a.id, &a.key).cmp(&(
            b.line.unwrap_or(usize::MAX),
            b.impact,
            b.id,
            &b.key,
        ))
    });
    Ok(out)
}

/// Reads and lints a values file; errors name the file.
pub fn lint_file(path: &Path, ctx: &LintContext) -> Result<Vec<Finding>, LintFileError> {
    lint_file_with(path, ctx, &LintOptions::default())
}

pub fn lint_file_with(path: &Path, ctx: &LintContext, opts: &LintOptions) -> Result<Vec<Finding>, LintFileError> {
    let text = read_capped(path)?;
    lint_values_with(&text, ctx, opts).map_err(|e| match e {
        LintError::Syntax { line, message } => LintFileError::Syntax { path: path.to_path_buf(), line, message },
    })
}

/// Reads at most `MAX_VALUES_BYTES` (+1 to tell "exactly the cap" from "more"), whatever the
/// file is: a FIFO or a device has no useful size, so the read itself is bounded.
fn read_capped(path: &Path) -> Result<String, LintFileError> {
    let read_err = |e: std::io::Error| LintFileError::Read { path: path.to_path_buf(), message: e.to_string() };
    let mut bytes = Vec::new();
    std::fs::File::open(path).and_then(|f| f.take(MAX_VALUES_BYTES + 1).read_to_end(&mut bytes)).map_err(read_err)?;
    if bytes.len() as u64 > MAX_VALUES_BYTES {
        return Err(LintFileError::TooLarge { path: path.to_path_buf() });
    }
    String::from_utf8(bytes)
        .map_err(|_| LintFileError::Read { path: path.to_path_buf(), message: "not UTF-8 text".into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> LintContext {
        LintContext { chart_version: "1.16.4".into(), ..Default::default() }
    }

    /// A file in target/tmp (removed on drop).
    struct TmpFile(PathBuf);

    impl TmpFile {
        fn new(name: &str, bytes: &[u8]) -> TmpFile {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp");
            std::fs::create_dir_all(&dir).expect("target/tmp");
            let path = dir.join(format!("{name}-{}", std::process::id()));
            std::fs::write(&path, bytes).expect("writes");
            TmpFile(path)
        }
    }

    impl Drop for TmpFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn file_reads_are_capped() {
        let cap = usize::try_from(MAX_VALUES_BYTES).expect("fits");
        // Exactly the cap is read (comment lines: valid YAML, nothing to lint).
        let mut at_cap = "#".repeat(cap - 1).into_bytes();
        at_cap.push(b'\n');
        let f = TmpFile::new("lint-at-cap.yaml", &at_cap);
        assert!(lint_file(&f.0, &ctx()).is_ok());
        // One byte more is refused before any parsing, naming the file and the limit.
        at_cap.push(b'\n');
        let f = TmpFile::new("lint-over-cap.yaml", &at_cap);
        let err = lint_file(&f.0, &ctx()).expect_err("too large");
        assert_eq!(err, LintFileError::TooLarge { path: f.0.clone() });
        let msg = err.to_string();
        assert!(
            msg.contains("lint-over-cap.yaml") && msg.contains("larger than 4 MiB") && !msg.contains('\n'),
            "{msg}"
        );
        // Not UTF-8.
        let f = TmpFile::new("lint-binary.yaml", b"a: \xff\n");
        assert!(matches!(lint_file(&f.0, &ctx()), Err(LintFileError::Read { .. })));
    }

    /// A device and a FIFO have no useful size: the read itself stops at the cap.
    #[cfg(unix)]
    #[test]
    fn endless_input_is_capped() {
        let err = lint_file(Path::new("/dev/zero"), &ctx()).expect_err("endless");
        assert_eq!(err, LintFileError::TooLarge { path: "/dev/zero".into() });

        let fifo =
            TmpFile(Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/tmp/lint-fifo-{}", std::process::id())));
        // target/tmp may not exist yet when this test runs first (a worktree with a shared target dir).
        std::fs::create_dir_all(fifo.0.parent().expect("parent")).expect("target/tmp");
        let made = std::process::Command::new("mkfifo").arg(&fifo.0).status().expect("mkfifo runs");
        assert!(made.success());
        let path = fifo.0.clone();
        // Writes until the reader goes away (then the write fails with EPIPE and the thread ends).
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let mut w = std::fs::OpenOptions::new().write(true).open(&path).expect("opens the FIFO");
            let chunk = vec![b'#'; 64 << 10];
            while w.write_all(&chunk).is_ok() {}
        });
        let err = lint_file(&fifo.0, &ctx()).expect_err("endless");
        assert_eq!(err, LintFileError::TooLarge { path: fifo.0.clone() });
        writer.join().expect("writer ends");
    }

    #[test]
    fn malformed_yaml_is_an_error_with_line() {
        let err = lint_values("cluster:\n  name: a\n bad: [\n", &ctx()).expect_err("malformed");
        assert!(matches!(err, LintError::Syntax { line, .. } if line >= 2), "{err:?}");
        let err = lint_values("- a\n- b\n", &ctx()).expect_err("not a mapping");
        assert!(matches!(err, LintError::Syntax { line: 1, .. }));
        let err = lint_values("a: 1\na: 2\n", &ctx()).expect_err("duplicate");
        assert!(matches!(err, LintError::Syntax { .. }));
    }
}
