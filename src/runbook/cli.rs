//! Headless twins of the cockpit's operations (`cutover cordon|uncordon|drain|sync|refresh`)
//! and `cutover journal`. They go through the same runner, lock and journal as the keys.
//!
//! Exit codes: 0 done, 1 failed, 3 refused (read-only, lock held, RBAC, unknown name — the
//! message lists the known names), 4 cancelled or timed out.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use color_eyre::eyre::{Result, WrapErr, eyre};
use tokio::sync::mpsc;

use super::executor::{ExecError, drain_preview, plan_drain};
use super::journal::{Entry, Journal, Record, unfinished};
use super::runner::{RunEvent, RunRequest, Runner};
use crate::app::action::Operation;
use crate::cli::GlobalArgs;

/// `cutover drain NODE`.
#[derive(Debug, Clone, clap::Args)]
pub struct DrainArgs {
    /// The node to drain (cordon, then evict its pods through the eviction API).
    pub node: String,
    /// Give up after this long (Go duration: `90s`, `10m`); the node stays cordoned.
    #[arg(long, default_value = "10m", value_parser = crate::duration::parse_non_negative)]
    pub timeout: Duration,
    /// Do not ask for the node's name (scripts). Without it, the name must be typed on a terminal.
    #[arg(long)]
    pub yes: bool,
    /// Take over the cluster lock if it is stale (its holder stopped renewing it).
    #[arg(long)]
    pub take_over_stale_lock: bool,
}

/// `cutover cordon|uncordon NODE`.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    pub node: String,
    /// Take over the cluster lock if it is stale (its holder stopped renewing it).
    #[arg(long)]
    pub take_over_stale_lock: bool,
}

/// `cutover sync|refresh APP`.
#[derive(Debug, Clone, clap::Args)]
pub struct AppArgs {
    /// The Argo CD Application (in the settings' Argo CD namespace).
    pub app: String,
    /// Take over the cluster lock if it is stale (its holder stopped renewing it).
    #[arg(long)]
    pub take_over_stale_lock: bool,
}

/// What a headless operation is asked to do.
#[derive(Debug, Clone)]
pub enum Headless {
    Cordon(NodeArgs),
    Uncordon(NodeArgs),
    Drain(DrainArgs),
    Sync(AppArgs),
    Refresh(AppArgs),
}

fn refused(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("cutover: {msg}");
    ExitCode::from(3)
}

/// Runs one operation through the runner, printing progress on stderr and the result on stdout.
pub async fn run(what: Headless, global: &GlobalArgs) -> Result<ExitCode> {
    let settings = crate::settings::Settings::load(global.settings.as_deref()).wrap_err("cannot load the settings")?;
    let conn = match crate::cluster::client::connect(global, |ctx| settings.read_only_for(Some(ctx))).await {
        Ok(c) => c,
        Err(e) => return Ok(refused(format!("cannot connect to the cluster: {e}"))),
    };
    let (op, timeout, yes, take_over) = match what {
        Headless::Cordon(a) => (Operation::Cordon { node: a.node }, None, true, a.take_over_stale_lock),
        Headless::Uncordon(a) => (Operation::Uncordon { node: a.node }, None, true, a.take_over_stale_lock),
        Headless::Drain(a) => (Operation::Drain { node: a.node }, Some(a.timeout), a.yes, a.take_over_stale_lock),
        Headless::Sync(a) => (Operation::Sync { app: a.app }, None, true, a.take_over_stale_lock),
        Headless::Refresh(a) => (Operation::Refresh { app: a.app }, None, true, a.take_over_stale_lock),
    };
    if conn.read_only {
        return Ok(refused(format!("{} refused: {}", op.title(), ExecError::ReadOnly)));
    }
    let journal = Journal::for_cluster(&conn.cluster).wrap_err("cannot place the journal")?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut runner = Runner::new(&conn, &settings.argo.namespace, journal, tx).map_err(|e| eyre!(e))?;
    if let (Some(t), Some(exec)) = (timeout, runner.executor_mut()) {
        exec.drain.timeout = t;
    }
    let drain_opts = runner.executor_mut().map(|e| e.drain.clone()).unwrap_or_default();
    let (preview, confirmed) = match &op {
        Operation::Drain { node } => {
            let plan = match plan_drain(&conn.client, node).await {
                Ok(p) => p,
                Err(e) => return Ok(report(&op, Err(e))),
            };
            let preview = drain_preview(&plan, &drain_opts);
            if !plan.refuse.is_empty() {
                for l in &preview {
                    eprintln!("{l}");
                }
                return Ok(report(
                    &op,
                    Err(super::executor::ExecError::DrainRefused {
                        node: node.clone(),
                        reasons: plan.refuse.iter().map(|(p, _)| p.key()).collect::<Vec<_>>().join(", "),
                    }),
                ));
            }
            let confirmed = if yes {
                "--yes on the command line".to_string()
            } else {
                match ask_for_name(node, &preview)? {
                    true => "typed the node's name at the prompt".to_string(),
                    false => {
                        return Ok(refused(format!(
                            "drain {node} not confirmed: type its name exactly, or pass --yes"
                        )));
                    }
                }
            };
            (preview, confirmed)
        }
        other => (other.explain(), format!("ran `cutover {}`", other.title())),
    };
    let confirmed = if take_over { format!("{confirmed}; --take-over-stale-lock") } else { confirmed };
    if let Err(e) = runner.start(RunRequest { op: op.clone(), preview, confirmed, take_over_stale_lock: take_over }) {
        return Ok(report(&op, Err(e)));
    }
    let mut signals = crate::tui::Signals::new().wrap_err("cannot watch for signals")?;
    let mut cancelled_once = false;
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(RunEvent::Progress { op, text }) => eprintln!("{}: {text}", op.title()),
                Some(RunEvent::Done { op, result }) => return Ok(report(&op, result)),
                Some(RunEvent::Node { .. } | RunEvent::Report { .. }) => {}
                None => return Err(eyre!("the runner stopped without a result")),
            },
            why = signals.next() => {
                if !cancelled_once {
                    // First signal: stop at the next safe point and report what is true then.
                    cancelled_once = true;
                    eprintln!("{why}: cancelling {} at its next safe point (again to stop at once)", op.title());
                    runner.cancel();
                } else {
                    runner.interrupt(&format!("{why} while it ran (headless)")).await;
                    eprintln!("cutover: {} interrupted; see `cutover journal`", op.title());
                    return Ok(ExitCode::from(4));
                }
            }
        }
    }
}

fn report(op: &Operation, result: Result<String, ExecError>) -> ExitCode {
    match result {
        Ok(msg) => {
            let _ = crate::cli::write_stdout(&format!("{msg}\n"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cutover: {}: {e}", op.title());
            ExitCode::from(e.exit_code())
        }
    }
}

/// Shows the plan on the terminal and asks for the node's name. Refuses without a terminal.
fn ask_for_name(node: &str, preview: &[String]) -> Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Ok(false);
    }
    let mut err = std::io::stderr().lock();
    for l in preview {
        writeln!(err, "{l}").wrap_err("writing the plan")?;
    }
    write!(err, "Type the node's name ({node}) to drain it: ").wrap_err("writing the prompt")?;
    err.flush().wrap_err("writing the prompt")?;
    let mut line = String::new();
    stdin.lock().take(256).read_line(&mut line).wrap_err("reading the answer")?;
    Ok(line.trim_end_matches(['\n', '\r']) == node)
}

/// `cutover journal`.
#[derive(Debug, Clone, clap::Args)]
pub struct JournalArgs {
    /// The cluster whose journal to read (default: the kubeconfig context's cluster).
    #[arg(long)]
    pub cluster: Option<String>,
    /// Read this journal file instead.
    #[arg(long, value_name = "PATH", conflicts_with = "cluster")]
    pub file: Option<PathBuf>,
    #[arg(short = 'o', long = "output", value_enum, default_value_t = JournalFormat::Text)]
    pub output: JournalFormat,
    /// Check the hash chain; exit 1 naming the first bad line.
    #[arg(long)]
    pub verify: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JournalFormat {
    Text,
    Json,
}

/// Prints a journal (entries up to the first bad line, which is reported, never trusted).
pub fn run_journal(args: JournalArgs, global: &GlobalArgs) -> Result<ExitCode> {
    let journal = match (&args.file, &args.cluster) {
        (Some(f), _) => Journal::at(f.clone()),
        (None, Some(c)) => Journal::for_cluster(c)?,
        (None, None) => {
            let cluster = crate::cluster::client::cluster_name(global)
                .wrap_err("cannot tell which cluster's journal to read (pass --cluster NAME)")?;
            Journal::for_cluster(&cluster)?
        }
    };
    let v = journal.read().wrap_err("cannot read the journal")?;
    let path = journal.path().display().to_string();
    if args.verify {
        return Ok(match &v.bad {
            None => {
                let _ = crate::cli::write_stdout(&format!("{path}: {} entries, chain verifies\n", v.entries.len()));
                ExitCode::SUCCESS
            }
            Some(bad) => {
                eprintln!("cutover: journal {path} does not verify: {bad}");
                ExitCode::from(1)
            }
        });
    }
    let out = match args.output {
        JournalFormat::Json => {
            let mut s = serde_json::to_string_pretty(&v.entries).wrap_err("encoding the journal")?;
            s.push('\n');
            s
        }
        // Past a bad line nothing is trusted, so no "interrupted" is inferred from a cut journal.
        JournalFormat::Text => format_text(&v.entries, v.bad.is_none()),
    };
    crate::cli::write_stdout(&out).wrap_err("writing the journal")?;
    match &v.bad {
        None => Ok(ExitCode::SUCCESS),
        Some(bad) => {
            eprintln!("cutover: journal {path} does not verify: {bad}; nothing after it is shown");
            Ok(ExitCode::from(1))
        }
    }
}

/// One line per entry; with `complete`, operations without a result are marked interrupted at
/// the end.
pub fn format_text(entries: &[Entry], complete: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for e in entries {
        let what = match &e.record {
            Record::Intent { title, confirmed_by, mode, preview, .. } => {
                format!("intent   {title} ({mode}; {confirmed_by}; preview {} line(s))", preview.len())
            }
            Record::Request { verb, path, .. } => format!("request  {verb} {path}"),
            Record::Response { request, code, .. } => format!("response #{request} → {code}"),
            Record::Change { target, action, detail, .. } => format!("change   {action} {target}: {detail}"),
            Record::ChangeDone { change, ok, detail, .. } => {
                format!(
                    "done     #{change} → {}{}",
                    if *ok { "ok" } else { "failed" },
                    if detail.is_empty() { String::new() } else { format!(": {detail}") }
                )
            }
            Record::Result { outcome, message, .. } => format!("result   {}: {message}", outcome.as_str()),
            Record::Ack { what, by, .. } => format!("ack      {what} (by {by})"),
            Record::Note { target, what, detail, .. } => format!("note     {what} {target}: {detail}"),
        };
        let _ = writeln!(out, "{:>5} {} {:<22} {what}", e.seq, e.time, e.record.op());
    }
    for u in unfinished(entries).into_iter().filter(|_| complete) {
        let did = if u.requests.is_empty() { "nothing sent".into() } else { u.requests.join(", ") };
        let _ = writeln!(out, "interrupted: {} ({}, started {}; it had sent: {did})", u.title, u.op, u.time);
    }
    out
}
