//! `cutover lint VALUES`: the linter as a command (text or JSON report, exit code by impact).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use color_eyre::eyre::WrapErr;

use super::{Finding, Impact, LintContext, LintOptions, lint_file_with};
use crate::settings::{ChartVersion, Settings};

/// Output format of `lint` and `preflight`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

/// `cutover lint`: check a Cilium values file against the pinned chart.
#[derive(Debug, Clone, clap::Args)]
pub struct LintArgs {
    /// The Helm values file to check.
    #[arg(value_name = "VALUES")]
    pub values: PathBuf,
    /// Chart version to check against (default: cilium.chart_version from the settings).
    #[arg(long, value_name = "V")]
    pub chart_version: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Exit code for a set of findings: 1 breaking, 2 warnings/ignored only, 0 clean (info only).
pub fn exit_code(findings: &[Finding]) -> u8 {
    if findings.iter().any(|f| f.impact.is_breaking()) {
        1
    } else if findings.iter().any(|f| matches!(f.impact, Impact::Warning | Impact::Ignored)) {
        2
    } else {
        0
    }
}

/// Text report, one finding per entry: `file:line: key: [impact] message` + `  fix: …`.
pub fn format_text(file: &Path, findings: &[Finding]) -> String {
    let mut s = String::new();
    for f in findings {
        let line = f.line.map(|l| format!(":{l}")).unwrap_or_default();
        s.push_str(&format!(
            "{}{line}: {}: [{}] {}\n  fix: {}\n",
            file.display(),
            f.key,
            f.impact.as_str(),
            f.message,
            f.fix
        ));
    }
    s
}

pub async fn run(args: LintArgs, global: &crate::cli::GlobalArgs) -> color_eyre::Result<ExitCode> {
    let settings = Settings::load(global.settings.as_deref()).wrap_err("loading settings")?;
    let chart_version = args.chart_version.unwrap_or_else(|| settings.cilium.chart_version.clone());
    if ChartVersion::parse(&chart_version).is_none() {
        color_eyre::eyre::bail!("--chart-version {chart_version:?} is not a version like 1.17.6");
    }
    let ctx = LintContext { chart_version, ..LintContext::default() };
    let opts = LintOptions { native_routing_cidr: Some(settings.cluster.pod_cidr.clone()), ..LintOptions::default() };
    let findings = lint_file_with(&args.values, &ctx, &opts).wrap_err("linting values")?;
    let out = match args.output {
        OutputFormat::Text => format_text(&args.values, &findings),
        OutputFormat::Json => {
            let mut v = serde_json::to_value(&findings).wrap_err("encoding findings")?;
            if let Some(items) = v.as_array_mut() {
                for item in items {
                    if let Some(o) = item.as_object_mut() {
                        o.insert("file".into(), serde_json::Value::String(args.values.display().to_string()));
                    }
                }
            }
            format!("{}\n", serde_json::to_string_pretty(&v).wrap_err("encoding findings")?)
        }
    };
    // A reader that went away (`| head`) ends the report quietly; the exit code still says
    // what was found.
    crate::cli::write_stdout(&out).wrap_err("writing the report")?;
    Ok(ExitCode::from(exit_code(&findings)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        let f = |impact| Finding {
            id: "x",
            key: "k".into(),
            line: None,
            impact,
            message: String::new(),
            fix: String::new(),
        };
        assert_eq!(exit_code(&[]), 0);
        assert_eq!(exit_code(&[f(Impact::Info)]), 0);
        assert_eq!(exit_code(&[f(Impact::Ignored), f(Impact::Info)]), 2);
        assert_eq!(exit_code(&[f(Impact::Warning), f(Impact::AgentCrash)]), 1);
    }
}
