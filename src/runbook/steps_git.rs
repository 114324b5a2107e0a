//! The `git-commit` steps: commit the files `cutover render` produces for a stage into the
//! operator's clone (`settings.git`), push them, or revert the cockpit's own commit of a stage,
//! through [`crate::gitops`] (the operator's own `git`). Every Git write is journaled as a
//! `change` before it is made.

use std::path::PathBuf;
use std::sync::Mutex;

use super::executor::{ExecError, Progress};
use super::plan::Step;
use super::steps::{StepEnv, StepJournal, short};
use crate::gitops::{Change, GitError, GitJournal, NoJournal, Repo, TRAILER_STAGE, TRAILER_STEP};
use crate::manifests::render::{RenderedFile, Stage, render};

/// The remote the cockpit pushes to (the clone's `origin`).
const REMOTE: &str = "origin";

/// Git journal bridge: each `before` becomes a journaled `change`, its `after` the answer.
struct Bridge<'a> {
    journal: &'a dyn StepJournal,
    open: Mutex<Vec<(String, u64)>>,
}

impl GitJournal for Bridge<'_> {
    fn before(&self, action: &str, detail: &str) -> Result<(), String> {
        let token = self.journal.change("git", action, detail)?;
        self.open.lock().unwrap_or_else(|e| e.into_inner()).push((action.to_string(), token));
        Ok(())
    }

    fn after(&self, action: &str, detail: &str, ok: bool) {
        let token = {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            open.iter().rposition(|(a, _)| a == action).map(|i| open.remove(i).1)
        };
        if let Some(t) = token {
            self.journal.change_done(t, ok, detail);
        }
    }
}

async fn open(env: &StepEnv, read_only: bool) -> Result<Repo, GitError> {
    Repo::open(&env.settings.git.repo_path, &env.settings.git.branch, REMOTE, read_only).await
}

fn stage_of(step: &Step) -> Stage {
    if step.stage == Some(2) { Stage::Two } else { Stage::One }
}

/// The files the stage's commit holds, rendered with what the cluster says now.
async fn files(env: &StepEnv, read: &kube::Client, step: &Step) -> Result<Vec<RenderedFile>, String> {
    let ctx = crate::checks::gather::render_context(read).await;
    render(stage_of(step), &env.settings, &ctx)
        .map_err(|e| format!("cannot render stage {}: {e}", stage_of(step).number()))
}

/// The subject of the cockpit's commit for a stage.
fn message(env: &StepEnv, step: &Step) -> String {
    match stage_of(step) {
        Stage::One => format!(
            "cutover: Stage 1 — Cilium {} as the CNI (flannel off), k3s kube-proxy stays",
            env.settings.cilium.chart_version
        ),
        Stage::Two => "cutover: Stage 2 — Cilium replaces kube-proxy (kubeProxyReplacement: \"true\")".to_string(),
    }
}

fn body(env: &StepEnv, step: &Step) -> String {
    format!(
        "{}\n\nCommitted by cutover {} (runbook step {}) for {}.\n",
        message(env, step),
        env!("CARGO_PKG_VERSION"),
        step.id,
        super::journal::who()
    )
}

/// The forward step a rollback step undoes (the step that names it as its rollback).
fn forward_of<'a>(env: &'a StepEnv, step: &Step) -> Option<&'a Step> {
    env.runbook.stages.iter().flat_map(|s| &s.steps).find(|s| s.rollback.as_deref() == Some(step.id.as_str()))
}

/// Read-only: fetches, checks the clone, diffs the rendered files against its `HEAD`, or names
/// the commit a revert would undo.
pub async fn preview(env: &StepEnv, read: &kube::Client, step: &Step) -> Result<super::steps::KindPreview, String> {
    let repo = open(env, true).await.map_err(|e| e.to_string())?;
    let branch = format!("{REMOTE}/{}", repo.branch());
    let mut lines = Vec::new();
    if step.undo {
        let forward = forward_of(env, step).ok_or_else(|| format!("no step names {} as its rollback", step.id))?;
        let prepared = repo.prepare(&[], &NoJournal).await.map_err(|e| e.to_string())?;
        if prepared.behind > 0 {
            lines.push(format!(
                "your clone is {} commit(s) behind {branch}: the run fast-forwards it first",
                prepared.behind
            ));
        }
        return match repo.find_own_commit(&forward.id).await.map_err(|e| e.to_string())? {
            None => Ok(super::steps::KindPreview {
                lines,
                done: Some(format!("no commit of {} on {branch}: nothing to revert", forward.id)),
            }),
            Some(own) if own.reverted_by.is_some() => Ok(super::steps::KindPreview {
                lines,
                done: Some(format!(
                    "{} ({}) already reverted by {}",
                    short(&own.commit),
                    own.subject,
                    own.reverted_by.as_deref().map(short).unwrap_or("?")
                )),
            }),
            Some(own) => {
                lines.push(format!("git revert {} ({}) in a new commit", short(&own.commit), own.subject));
                lines.push(format!(
                    "push it to {branch} (never forced; a remote that moved is fetched and rebased onto)"
                ));
                Ok(super::steps::KindPreview { lines, done: None })
            }
        };
    }
    let files = files(env, read, step).await?;
    let own: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
    let prepared = repo.prepare(&own, &NoJournal).await.map_err(|e| e.to_string())?;
    let diff = repo.preview(&files).await.map_err(|e| e.to_string())?;
    if prepared.behind > 0 {
        lines.push(format!(
            "your clone is {} commit(s) behind {branch}: this diff is against your HEAD; the run fast-forwards first",
            prepared.behind
        ));
    }
    // Done is what the branch says: the stage's own commit is there and not reverted. (Rendering
    // again may differ, e.g. with a node not Ready the operator replicas are capped: shown, never
    // committed over a done step.)
    if let Some(c) =
        repo.find_own_commit(&step.id).await.map_err(|e| e.to_string())?.filter(|c| c.reverted_by.is_none())
    {
        let differ: Vec<&str> =
            diff.files.iter().filter(|f| f.change != Change::Unchanged).map(|f| f.path.as_str()).collect();
        if !differ.is_empty() {
            lines.push(format!(
                "note: rendering now differs from your HEAD in {} (`cutover render --stage {} --cluster` shows it); a done step does not commit again",
                differ.join(", "),
                stage_of(step).number()
            ));
        }
        return Ok(super::steps::KindPreview {
            lines,
            done: Some(format!("on {branch} as {} ({})", short(&c.commit), c.subject)),
        });
    }
    if diff.is_unchanged() && prepared.unpushed_own.is_empty() && prepared.behind == 0 {
        let done = format!("the files on {branch} already equal the rendered ones: nothing to commit");
        return Ok(super::steps::KindPreview { lines, done: Some(done) });
    }
    if !prepared.unpushed_own.is_empty() {
        lines.push(format!(
            "an earlier cockpit commit is not pushed yet ({}): the run pushes it",
            prepared.unpushed_own.iter().map(|c| short(c)).collect::<Vec<_>>().join(", ")
        ));
    }
    lines.push(format!("commit on {}: {:?}", repo.branch(), message(env, step)));
    lines.push(format!("  trailers {TRAILER_STEP}: {}, {TRAILER_STAGE}: {}", step.id, stage_of(step).number()));
    lines.push(format!("then push to {branch} (never forced)"));
    for f in &diff.files {
        let word = match f.change {
            Change::Unchanged => "unchanged",
            Change::Created => "create",
            Change::Changed => "change",
        };
        lines.push(format!("{word} {}", f.path));
        lines.extend(f.diff.lines().map(str::to_string));
    }
    Ok(super::steps::KindPreview { lines, done: None })
}

fn exec_err(e: GitError) -> ExecError {
    match e {
        GitError::ReadOnly { .. } => ExecError::ReadOnly,
        GitError::Timeout { .. } => ExecError::Timeout(e.to_string()),
        e @ (GitError::NotARepo { .. }
        | GitError::InvalidName { .. }
        | GitError::WrongBranch { .. }
        | GitError::Dirty { .. }
        | GitError::NoUpstream { .. }
        | GitError::Diverged { .. }
        | GitError::Fetch { .. }
        | GitError::NotOnBranch { .. }
        | GitError::Spawn { .. }
        | GitError::Journal { .. }
        | GitError::BadPath { .. }) => ExecError::Refused(format!("{e}; nothing was committed or pushed")),
        e => ExecError::Failed(e.to_string()),
    }
}

/// Commits and pushes the stage's files, or reverts the stage's own commit.
pub async fn run(
    env: &StepEnv,
    read: &kube::Client,
    step: &Step,
    journal: &dyn StepJournal,
    progress: &Progress,
) -> Result<String, ExecError> {
    let bridge = Bridge { journal, open: Mutex::new(Vec::new()) };
    let repo = open(env, false).await.map_err(exec_err)?;
    let branch = format!("{REMOTE}/{}", repo.branch());
    let stage = stage_of(step).number().to_string();
    let trailers = [(TRAILER_STEP, step.id.as_str()), (TRAILER_STAGE, stage.as_str())];
    if step.undo {
        let Some(forward) = forward_of(env, step) else {
            return Err(ExecError::Refused(format!("no step names {} as its rollback; nothing was changed", step.id)));
        };
        let own = repo.find_own_commit(&forward.id).await.map_err(exec_err)?;
        let Some(own) = own else {
            return Ok(format!("no commit of {} on {branch}: nothing to revert, nothing sent", forward.id));
        };
        let subject = format!("cutover: roll back Stage {stage} — revert {} ({})", short(&own.commit), own.subject);
        progress.say(format!("reverting {} on {branch}", short(&own.commit)));
        let pushed = repo.revert_and_push(&own.commit, &subject, &trailers, &bridge).await.map_err(exec_err)?;
        return Ok(if pushed.unchanged {
            format!("{} already reverted on {branch} by {}; nothing sent", short(&own.commit), short(&pushed.commit))
        } else {
            format!("reverted {} as {} on {branch}{}", short(&own.commit), short(&pushed.commit), notes(&pushed))
        });
    }
    if let Some(c) = repo.find_own_commit(&step.id).await.map_err(exec_err)?.filter(|c| c.reverted_by.is_none()) {
        return Ok(format!(
            "the Stage {stage} commit is on {branch} already as {}; nothing committed",
            short(&c.commit)
        ));
    }
    let files = files(env, read, step).await.map_err(ExecError::Refused)?;
    progress.say(format!("fetching {branch} and checking the clone {}", repo.root().display()));
    let pushed = repo.commit_and_push(&files, &body(env, step), &trailers, &bridge).await.map_err(exec_err)?;
    Ok(if pushed.unchanged {
        format!("the Stage {stage} files are on {branch} already at {}; nothing committed", short(&pushed.commit))
    } else {
        format!("pushed {} to {branch} ({} file(s)){}", short(&pushed.commit), files.len(), notes(&pushed))
    })
}

fn notes(p: &crate::gitops::Pushed) -> String {
    let mut n = String::new();
    if p.rebased {
        n.push_str("; the remote had moved: rebased onto it");
    }
    if p.resumed {
        n.push_str("; an earlier unpushed commit was pushed");
    }
    n
}

/// The branch head on the remote now (what a wait after a push waits for).
pub async fn wait_target(env: &StepEnv) -> Result<String, String> {
    let repo = open(env, true).await.map_err(|e| e.to_string())?;
    repo.remote_head().await.map_err(|e| e.to_string())
}

/// Whether one of `revs` (an Application's revisions) contains `want`. A revision the clone
/// does not know yet is fetched once.
pub async fn contains(env: &StepEnv, revs: &[String], want: &str) -> Result<bool, String> {
    let repo = open(env, true).await.map_err(|e| e.to_string())?;
    let mut fetched = false;
    for r in revs {
        let mut known = repo.contains(r, want).await.map_err(|e| e.to_string())?;
        if known.is_none() && !fetched && r.len() >= 7 && r.chars().all(|c| c.is_ascii_hexdigit()) {
            fetched = true;
            repo.remote_head().await.map_err(|e| e.to_string())?;
            known = repo.contains(r, want).await.map_err(|e| e.to_string())?;
        }
        if known == Some(true) {
            return Ok(true);
        }
    }
    Ok(false)
}
