//! Pre-flight checks: what the cluster looks like before the cutover, as pass/warn/fail/unknown
//! with the evidence read and what to do. `gather` reads the cluster into a `ClusterSnapshot`
//! (each resource on its own), `evaluate` is a pure function over it.

pub mod client;
pub mod drain;
pub mod evaluate;
pub mod gather;
pub mod k3s;
pub mod report;
pub mod snapshot;

use std::process::ExitCode;

use color_eyre::eyre::WrapErr;
use serde::Serialize;

pub use evaluate::evaluate;
pub use gather::gather;
pub use report::{format_table, format_table_width, worst_first};
pub use snapshot::{AccessDecision, AccessReview, ClusterSnapshot, FetchError, FetchErrorKind, Fetched};

use crate::manifests::lint::OutputFormat;
use crate::settings::Settings;

/// Outcome of one check. Ordered by severity: Pass < Warn < Unknown < Fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    /// Could not be decided (e.g. the resource was forbidden); the evidence says why.
    Unknown,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Unknown => "unknown",
            Status::Fail => "fail",
        }
    }
}

/// One pre-flight check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable id, e.g. `k3s-flannel`, `drain/node-2`, `access/patch-nodes`.
    pub id: String,
    pub title: String,
    pub status: Status,
    /// What was read: object names, annotation values, counts.
    pub evidence: Vec<String>,
    /// What to do about it (empty when nothing).
    pub action: String,
}

/// Exit code: 0 all pass, 1 any fail, 2 warnings/unknowns only.
pub fn exit_code(checks: &[Check]) -> u8 {
    match checks.iter().map(|c| c.status).max() {
        Some(Status::Fail) => 1,
        Some(Status::Warn | Status::Unknown) => 2,
        _ => 0,
    }
}

/// `cutover preflight`: read-only checks before the cutover.
#[derive(Debug, Clone, clap::Args)]
pub struct PreflightArgs {
    /// Output format (`text`: worst first, every evidence line; `json`: an array of the checks in
    /// evaluation order).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

pub async fn run(args: PreflightArgs, global: &crate::cli::GlobalArgs) -> color_eyre::Result<ExitCode> {
    let settings = Settings::load(global.settings.as_deref()).wrap_err("loading settings")?;
    let snapshot = match client::build(global).await {
        Ok(c) => gather(&c, &settings).await,
        // Still evaluate: checks that need the cluster become unknown, `api-reachable` fails.
        Err(e) => ClusterSnapshot::failed(FetchErrorKind::Unreachable, &e.to_string()),
    };
    let checks = evaluate(&snapshot, &settings);
    let text = match args.output {
        // Worst first, every evidence line, wrapped at the terminal's width (or a fixed one when
        // piped, so a saved report reads the same everywhere).
        OutputFormat::Text => format_table_width(&checks, report::stdout_width()),
        OutputFormat::Json => format!("{}\n", serde_json::to_string_pretty(&checks).wrap_err("encoding checks")?),
    };
    // Not `print!`, which panics when the reader has gone (`cutover preflight | head -1`). A gone
    // reader (`Ok(false)`) is no error: the exit code still says what the checks found.
    crate::cli::write_stdout(&text).wrap_err("writing the checks to stdout")?;
    Ok(ExitCode::from(exit_code(&checks)))
}
