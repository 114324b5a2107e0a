//! `cutover run` and `cutover rollback`: the runbook's steps from the command line, through the
//! same runner, lock, journal and step engine as the cockpit's `n` and `R`.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use color_eyre::eyre::{Result, WrapErr, eyre};
use tokio::sync::mpsc;

use super::executor::ExecError;
use super::journal::Journal;
use super::plan::{Runbook, Stage, Step, StepKind};
use super::runner::{RunEvent, RunRequest, Runner};
use super::steps::{self, Position, StepEnv, StepPreview, StepState};
use crate::cli::GlobalArgs;
use crate::settings::Settings;

/// `cutover run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Stages (`stage0`, `stage1`, `stage2`, or `1`, `2`) or step ids, run in runbook order.
    /// Default: every stage that is not optional (Stage 2 is run only when named).
    #[arg(value_name = "STAGE|STEP")]
    pub targets: Vec<String>,
    /// Stop after this step.
    #[arg(long, value_name = "STEP")]
    pub until: Option<String>,
    #[command(flatten)]
    pub common: StepArgs,
}

/// `cutover rollback`.
#[derive(Debug, Clone, clap::Args)]
pub struct RollbackArgs {
    /// The stage to roll back (`stage2` or `2`, `stage1` or `1`), in the runbook's reverse order.
    #[arg(value_name = "STAGE")]
    pub stage: String,
    /// Stop after this step of the rollback.
    #[arg(long, value_name = "STEP")]
    pub until: Option<String>,
    #[command(flatten)]
    pub common: StepArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct StepArgs {
    /// Confirm each step without asking (red gates still stop the run).
    #[arg(long)]
    pub yes: bool,
    /// Show every step's preview with its gates; send nothing, commit nothing, take no lock.
    #[arg(long)]
    pub dry_run: bool,
    /// A runbook file that replaces the built-in one (default: `runbook.file` in the settings).
    #[arg(long, value_name = "PATH")]
    pub runbook: Option<PathBuf>,
    /// Take over a stale cluster lock (its holder stopped renewing it: that cockpit is gone).
    #[arg(long)]
    pub take_over_stale_lock: bool,
}

fn say(line: &str) {
    eprintln!("{line}");
}

/// The runbook the options name: `--runbook`, else the settings' `runbook.file`, else built in.
pub fn load_runbook(flag: Option<&std::path::Path>, settings: &Settings) -> Result<Runbook, super::plan::RunbookError> {
    match flag.or(settings.runbook.file.as_deref()) {
        Some(p) => Runbook::load(p),
        None => Ok(Runbook::built_in()),
    }
}

/// The steps `targets` select, in runbook order (an unknown name is an input error).
pub fn select<'a>(runbook: &'a Runbook, targets: &[String]) -> Result<Vec<(&'a Stage, &'a Step)>, String> {
    let stage_id = |t: &str| if t.chars().all(|c| c.is_ascii_digit()) { format!("stage{t}") } else { t.to_string() };
    let mut chosen: Vec<(&Stage, &Step)> = Vec::new();
    for st in &runbook.stages {
        for s in &st.steps {
            let pick = if targets.is_empty() {
                !st.optional
            } else {
                targets.iter().any(|t| stage_id(t) == st.id || *t == s.id)
            };
            if pick {
                chosen.push((st, s));
            }
        }
    }
    for t in targets {
        let known = runbook.stages.iter().any(|st| st.id == stage_id(t) || st.steps.iter().any(|s| s.id == *t));
        if !known {
            let stages: Vec<&str> = runbook.stages.iter().map(|s| s.id.as_str()).collect();
            let rollback_step = runbook.rollbacks.iter().any(|rb| rb.steps.iter().any(|s| s.id == *t));
            return Err(if rollback_step {
                format!("{t:?} is a rollback step: use `cutover rollback STAGE`")
            } else {
                format!("no stage or step {t:?} in the runbook; stages: {}", stages.join(", "))
            });
        }
    }
    Ok(chosen)
}

/// The settings and the runbook, or the exit code of a runbook file that does not read.
fn load(common: &StepArgs, global: &GlobalArgs) -> Result<Result<(Settings, Runbook), ExitCode>> {
    let settings = Settings::load(global.settings.as_deref()).wrap_err("cannot load the settings")?;
    Ok(match load_runbook(common.runbook.as_deref(), &settings) {
        Ok(r) => Ok((settings, r)),
        Err(e) => {
            say(&format!("cutover: {e}"));
            Err(ExitCode::from(2))
        }
    })
}

pub async fn run(args: RunArgs, global: &GlobalArgs) -> Result<ExitCode> {
    let (settings, runbook) = match load(&args.common, global)? {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let mut chosen: Vec<(Stage, Step)> = match select(&runbook, &args.targets) {
        Ok(c) => c.into_iter().map(|(a, b)| (a.clone(), b.clone())).collect(),
        Err(e) => {
            say(&format!("cutover: {e}"));
            return Ok(ExitCode::from(2));
        }
    };
    if let Some(until) = &args.until {
        match chosen.iter().position(|(_, s)| &s.id == until) {
            Some(i) => chosen.truncate(i + 1),
            None => {
                say(&format!("cutover: --until {until:?} is not one of the steps selected"));
                return Ok(ExitCode::from(2));
            }
        }
    }
    drive(chosen, runbook, settings, &args.common, global).await
}

pub async fn rollback(args: RollbackArgs, global: &GlobalArgs) -> Result<ExitCode> {
    let (settings, runbook) = match load(&args.common, global)? {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let Some(rb) = steps::rollback_for(&runbook, &args.stage) else {
        say(&format!(
            "cutover: no rollback for stage {:?}; stages with one: {}",
            args.stage,
            runbook
                .stages
                .iter()
                .filter(|s| steps::rollback_for(&runbook, &s.id).is_some())
                .map(|s| s.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        return Ok(ExitCode::from(2));
    };
    let mut chosen: Vec<(Stage, Step)> = rb.steps.iter().map(|s| (rb.clone(), s.clone())).collect();
    if let Some(until) = &args.until {
        match chosen.iter().position(|(_, s)| &s.id == until) {
            Some(i) => chosen.truncate(i + 1),
            None => {
                say(&format!("cutover: --until {until:?} is not a step of {}", rb.id));
                return Ok(ExitCode::from(2));
            }
        }
    }
    drive(chosen, runbook.clone(), settings, &args.common, global).await
}

/// Runs (or, dry, previews) the chosen steps in order, stopping at the first that does not end
/// well.
async fn drive(
    chosen: Vec<(Stage, Step)>,
    runbook: Runbook,
    settings: Settings,
    opts: &StepArgs,
    global: &GlobalArgs,
) -> Result<ExitCode> {
    let conn = match crate::cluster::client::connect(global, |ctx| settings.read_only_for(Some(ctx))).await {
        Ok(c) => c,
        Err(e) => {
            say(&format!("cutover: cannot connect to the cluster: {e}"));
            return Ok(ExitCode::from(3));
        }
    };
    if conn.read_only && !opts.dry_run {
        say(&format!(
            "cutover: the runbook changes the cluster and Git: {}; `--dry-run` shows every step",
            ExecError::ReadOnly
        ));
        return Ok(ExitCode::from(3));
    }
    let settings = Arc::new(settings);
    let relay = match &global.hubble_server {
        Some(addr) => crate::hubble::client::RelayTarget::Address(addr.clone()),
        None => crate::hubble::client::RelayTarget::Kube {
            client: conn.client.clone(),
            namespace: settings.cilium.namespace.clone(),
        },
    };
    let journal = Journal::for_cluster(&conn.cluster).wrap_err("cannot place the journal")?;
    let env = StepEnv::new(settings.clone(), Arc::new(runbook.clone())).with_relay(relay).with_journal(journal.clone());
    let entries = match journal.read() {
        Ok(v) => v.entries,
        Err(e) => {
            say(&format!("cutover: cannot read the journal {}: {e}", journal.path().display()));
            return Ok(ExitCode::from(3));
        }
    };
    let position = Position::from_journal(&runbook, &entries);
    if let Some((step, time)) = &position.interrupted {
        say(&format!("interrupted at {step} (started {time}); its gates are re-checked before anything continues"));
    }

    if opts.dry_run {
        return dry_run(&env, &conn.client, &chosen, &position).await;
    }

    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut runner = Runner::new(&conn, &settings.argo.namespace, journal, tx).map_err(|e| eyre!(e))?;
    runner.lease_config_mut().duration = settings.runbook.lock_duration();
    runner.enable_runbook(env.clone());
    let mut signals = crate::tui::Signals::new().wrap_err("cannot watch for signals")?;

    for (stage, step) in &chosen {
        // Done in the journal: acknowledgements and Argo requests are not repeated. Commits and
        // node changes are judged by the branch and the nodes; waits and validation only read,
        // and their truth is now: they run again.
        if let Some(j) = position.done(&step.id)
            && matches!(step.kind, StepKind::OperatorCheck | StepKind::ArgoRefresh | StepKind::ArgoSync)
        {
            say(&format!("done     {:<18} (journal {}: {})", step.id, j.time, j.message));
            continue;
        }
        if let Some(j) = position.skipped(&step.id) {
            say(&format!("skipped  {:<18} (journal {}: {})", step.id, j.time, j.message));
            continue;
        }
        let snap = crate::checks::gather(&conn.client, &settings).await;
        let checks = crate::checks::evaluate(&snap, &settings);
        let pre = steps::preview(&env, &conn.client, &stage.id, step, &snap, &checks).await;
        match &pre.state {
            StepState::Done(why) => {
                say(&format!("done     {:<18} {why}", step.id));
                continue;
            }
            StepState::Skip(why) => {
                say(&format!("skip     {:<18} {why}", step.id));
                continue;
            }
            StepState::Blocked(_) | StepState::Unavailable(_) => {
                print_preview(&pre);
                say(&format!(
                    "cutover: the runbook stops at {}: {} — nothing was changed by this step",
                    step.id,
                    pre.state.why()
                ));
                return Ok(ExitCode::from(3));
            }
            StepState::Ready => {}
        }
        print_preview(&pre);
        let confirmed = if opts.yes {
            "--yes on the command line".to_string()
        } else {
            match ask(step)? {
                Some(how) => how,
                None => {
                    say(&format!(
                        "cutover: {} not confirmed ({}, or pass --yes); nothing was changed",
                        step.id,
                        if steps::is_disruptive(step) { "type the step's id exactly" } else { "answer y" }
                    ));
                    return Ok(ExitCode::from(3));
                }
            }
        };
        let confirmed =
            if opts.take_over_stale_lock { format!("{confirmed}; --take-over-stale-lock") } else { confirmed };
        let op = steps::operation(step);
        if let Err(e) = runner.start(RunRequest {
            op: op.clone(),
            preview: pre.lines(),
            confirmed,
            take_over_stale_lock: opts.take_over_stale_lock,
        }) {
            say(&format!("cutover: {}: {e}", op.title()));
            return Ok(ExitCode::from(e.exit_code()));
        }
        let mut cancelled_once = false;
        let result = loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(RunEvent::Progress { text, .. }) => say(&format!("  {text}")),
                    Some(RunEvent::Done { result, .. }) => break result,
                    Some(RunEvent::Node { .. } | RunEvent::Report { .. }) => {}
                    None => return Err(eyre!("the runner stopped without a result")),
                },
                why = signals.next() => {
                    if !cancelled_once {
                        cancelled_once = true;
                        say(&format!("{why}: stopping {} at its next safe point (again to stop at once)", step.id));
                        runner.cancel();
                    } else {
                        runner.interrupt(&format!("{why} while it ran (headless)")).await;
                        say(&format!("cutover: {} interrupted; `cutover run` resumes from the journal", step.id));
                        return Ok(ExitCode::from(4));
                    }
                }
            }
        };
        match result {
            Ok(msg) => {
                let _ = crate::cli::write_stdout(&format!("ok       {:<18} {msg}\n", step.id));
            }
            Err(e) => {
                say(&format!("cutover: the runbook stops at {}: {e}", step.id));
                return Ok(ExitCode::from(e.exit_code()));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_preview(pre: &StepPreview) {
    for l in pre.lines() {
        say(&l);
    }
}

/// Every step's preview, without a lock, a journal entry, a commit or a mutating request.
async fn dry_run(
    env: &StepEnv,
    read: &kube::Client,
    chosen: &[(Stage, Step)],
    position: &Position,
) -> Result<ExitCode> {
    let mut out = String::from("dry run: nothing is sent, committed or pushed; no lock is taken\n\n");
    for (stage, step) in chosen {
        let snap = crate::checks::gather(read, &env.settings).await;
        let checks = crate::checks::evaluate(&snap, &env.settings);
        let pre = steps::preview(env, read, &stage.id, step, &snap, &checks).await;
        let journal = position.done(&step.id).map(|j| format!(" (journal: done {})", j.time)).unwrap_or_default();
        out.push_str(&format!("[{}] {}{journal}\n", pre.state.word(), stage.id));
        for l in pre.lines() {
            out.push_str(&format!("  {l}\n"));
        }
        out.push('\n');
    }
    crate::cli::write_stdout(&out).wrap_err("writing the dry run")?;
    Ok(ExitCode::SUCCESS)
}

/// Asks on the terminal: the step's id for a disruptive step, `y` otherwise. `None`: not
/// confirmed (or no terminal to ask on).
fn ask(step: &Step) -> Result<Option<String>> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Ok(None);
    }
    let mut err = std::io::stderr().lock();
    let disruptive = steps::is_disruptive(step);
    if disruptive {
        write!(err, "Type the step's id ({}) to run it: ", step.id).wrap_err("writing the prompt")?;
    } else {
        write!(err, "Run {}? [y/N] ", step.id).wrap_err("writing the prompt")?;
    }
    err.flush().wrap_err("writing the prompt")?;
    let mut line = String::new();
    stdin.lock().take(256).read_line(&mut line).wrap_err("reading the answer")?;
    let answer = line.trim_end_matches(['\n', '\r']);
    Ok(match (disruptive, answer) {
        (true, a) if a == step.id => Some("typed the step's id at the prompt".into()),
        (false, "y" | "Y" | "yes") => Some("answered y at the prompt".into()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_select_stages_and_steps_in_runbook_order() {
        let rb = Runbook::built_in();
        let ids = |t: &[&str]| -> Result<Vec<String>, String> {
            let t: Vec<String> = t.iter().map(|s| s.to_string()).collect();
            select(&rb, &t).map(|v| v.into_iter().map(|(_, s)| s.id.clone()).collect())
        };
        let all = ids(&[]).expect("default");
        assert_eq!(all.first().map(String::as_str), Some("preflight"));
        assert!(!all.iter().any(|s| s.starts_with("stage2")), "the optional stage runs only when named");
        let two = ids(&["2"]).expect("stage 2");
        assert!(two.iter().all(|s| s.starts_with("stage2")) && !two.is_empty());
        assert_eq!(ids(&["stage1-wait", "preflight"]).expect("steps"), vec!["preflight", "stage1-wait"]);
        assert!(ids(&["stage9"]).expect_err("unknown").contains("stages: stage0, stage1, stage2"));
        assert!(ids(&["stage1-revert"]).expect_err("rollback step").contains("cutover rollback"));
    }
}
