//! The runbook as the cockpit shows it: every stage's steps with their state (from the journal
//! and the live gates, read in the background), the next step, the current stage's rollback, and
//! where the journal and the cluster disagree.

use jiff::Timestamp;

use crate::runbook::journal::Entry;
use crate::runbook::plan::{Runbook, StepKind};
use crate::runbook::steps::{Position, StepPreview, StepState};

/// One background read of the runbook: each step's preview against the cluster now, and the
/// journal's position.
#[derive(Debug, Clone)]
pub struct RunbookRead {
    pub at: Timestamp,
    /// In runbook order: the stages' steps, then the rollbacks'.
    pub previews: Vec<StepPreview>,
    pub position: Position,
}

/// A stage or rollback sequence's place in the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunbookRow {
    pub stage: String,
    pub stage_title: String,
    pub optional: bool,
    pub rollback: bool,
    pub id: String,
    pub title: String,
    pub kind: StepKind,
    /// `done`, `ready`, `blocked`, `skip`, `unavailable`, `running`, `failed`, `interrupted`.
    pub state: String,
    /// Why, in a line (the red gate, the journal's message).
    pub why: String,
}

impl RunbookRow {
    /// It failed, was stopped or interrupted, or cannot run now: the states after which the
    /// operator retries, skips (when its kind allows) or rolls back.
    pub fn stopped(&self) -> bool {
        matches!(self.state.as_str(), "failed" | "cancelled" | "interrupted" | "blocked" | "unavailable")
    }
}

/// The cockpit's runbook view state.
#[derive(Debug, Clone, Default)]
pub struct RunbookView {
    pub open: bool,
    pub selected: usize,
    pub offset: usize,
    /// The last read, or why it failed.
    pub read: Option<Result<RunbookRead, String>>,
    pub reading: bool,
    /// The runbook in use.
    pub runbook: Option<std::sync::Arc<Runbook>>,
    /// Previews, but confirming a step runs nothing (`--dry-run`).
    pub dry_run: bool,
    /// A step preview being read for a confirmation (its id).
    pub previewing: Option<String>,
}

impl RunbookView {
    /// Every row, in order, with the state the journal and the live read give.
    pub fn rows(&self, running: Option<&str>) -> Vec<RunbookRow> {
        let (Some(rb), Some(Ok(read))) = (&self.runbook, &self.read) else { return Vec::new() };
        let mut rows = Vec::new();
        let seqs = rb.stages.iter().map(|s| (s, false)).chain(rb.rollbacks.iter().map(|s| (s, true)));
        for (st, rollback) in seqs {
            for step in &st.steps {
                let pre = read.previews.iter().find(|p| p.step.id == step.id);
                let journal = read.position.last.get(&step.id);
                let (state, why) = if running == Some(step.id.as_str()) {
                    ("running".to_string(), "running now (x stops it at the next safe point)".to_string())
                } else if read.position.interrupted.as_ref().is_some_and(|(s, _)| s == &step.id) {
                    let at = read.position.interrupted.as_ref().map(|(_, t)| t.clone()).unwrap_or_default();
                    ("interrupted".into(), format!("interrupted (started {at}); its gates are re-checked first"))
                } else if let Some(j) = journal.filter(|j| j.outcome == "ok") {
                    match pre.map(|p| &p.state) {
                        // A commit's truth is the branch: done in the journal, gone from Git.
                        Some(s @ StepState::Ready) if step.kind == StepKind::GitCommit => (
                            "changed".into(),
                            format!("the journal says done at {}, but Git says otherwise: {}", j.time, s.why()),
                        ),
                        _ => ("done".into(), format!("{} · {}", j.time, j.message)),
                    }
                } else if let Some(j) = journal.filter(|j| j.outcome != "ok") {
                    (j.outcome.clone(), format!("{} · {}", j.time, j.message))
                } else {
                    match pre {
                        Some(p) => (p.state.word().to_string(), p.state.why().to_string()),
                        None => ("unknown".into(), "not read yet".into()),
                    }
                };
                rows.push(RunbookRow {
                    stage: st.id.clone(),
                    stage_title: st.title.clone(),
                    optional: st.optional,
                    rollback,
                    id: step.id.clone(),
                    title: step.title.clone(),
                    kind: step.kind,
                    state,
                    why,
                });
            }
        }
        rows
    }

    /// The next forward step to run: the first not done (a failed or interrupted one is next
    /// again). An optional stage comes next only once the others are done.
    pub fn next(&self, running: Option<&str>) -> Option<RunbookRow> {
        let rows = self.rows(running);
        let pending = |r: &&RunbookRow| !r.rollback && !matches!(r.state.as_str(), "done" | "skip" | "skipped");
        rows.iter().filter(|r| !r.optional).find(pending).or_else(|| rows.iter().find(pending)).cloned()
    }

    /// The stage the rollback key undoes: the last forward stage with a step done (from the
    /// journal), and its rollback's first step not yet done.
    pub fn rollback_next(&self, running: Option<&str>) -> Option<RunbookRow> {
        let rb = self.runbook.as_ref()?;
        let rows = self.rows(running);
        let current = rows
            .iter()
            .filter(|r| !r.rollback && r.state == "done" && r.stage != "stage0")
            .map(|r| r.stage.clone())
            .next_back()?;
        let seq = crate::runbook::steps::rollback_for(rb, &current)?;
        rows.into_iter()
            .find(|r| r.rollback && r.stage == seq.id && !matches!(r.state.as_str(), "done" | "skip" | "skipped"))
    }

    /// The steps the journal says are done and the cluster (Git) says are not.
    pub fn disagreements(&self) -> Vec<String> {
        self.rows(None).into_iter().filter(|r| r.state == "changed").map(|r| r.id).collect()
    }

    /// The header's position: the last step the journal has done, and disagreements.
    pub fn position_text(&self) -> Option<String> {
        let rows = self.rows(None);
        if rows.is_empty() {
            return None;
        }
        let changed: Vec<&str> = rows.iter().filter(|r| r.state == "changed").map(|r| r.id.as_str()).collect();
        let last_done = rows.iter().filter(|r| !r.rollback && r.state == "done").map(|r| r.id.as_str()).next_back();
        let mut t = match last_done {
            Some(s) => format!("runbook: after {s}"),
            None => "runbook: not started".to_string(),
        };
        if let Some(row) = rows.iter().find(|r| r.state == "interrupted") {
            t = format!("runbook: interrupted at {}", row.id);
        }
        if !changed.is_empty() {
            t.push_str(&format!(" · journal and cluster disagree on {} (changed by hand?)", changed.join(", ")));
        }
        Some(t)
    }
}

/// The position the journal's entries give for `runbook`.
pub fn position(runbook: &Runbook, entries: &[Entry]) -> Position {
    Position::from_journal(runbook, entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook::plan::{GateResult, Step};
    use std::sync::Arc;

    fn preview(step: &Step, stage: &str, state: StepState) -> StepPreview {
        StepPreview { stage: stage.into(), step: step.clone(), gates: Vec::<GateResult>::new(), state, changes: vec![] }
    }

    fn view(states: &[(&str, StepState)], position: Position) -> RunbookView {
        let rb = Runbook::built_in();
        let mut previews = Vec::new();
        for st in rb.stages.iter().chain(&rb.rollbacks) {
            for s in &st.steps {
                let state =
                    states.iter().find(|(id, _)| *id == s.id).map(|(_, st)| st.clone()).unwrap_or(StepState::Ready);
                previews.push(preview(s, &st.id, state));
            }
        }
        RunbookView {
            runbook: Some(Arc::new(rb)),
            read: Some(Ok(RunbookRead { at: Timestamp::UNIX_EPOCH, previews, position })),
            ..Default::default()
        }
    }

    fn done(step: &str, seq: u64) -> (String, crate::runbook::steps::JournaledStep) {
        (
            step.to_string(),
            crate::runbook::steps::JournaledStep {
                seq,
                time: format!("t{seq}"),
                outcome: "ok".into(),
                message: "m".into(),
            },
        )
    }

    #[test]
    fn next_is_the_first_forward_step_not_done_and_rollback_follows_the_current_stage() {
        let v = view(&[], Position::default());
        assert_eq!(v.next(None).map(|r| r.id), Some("preflight".into()));
        assert!(v.rollback_next(None).is_none(), "nothing done: nothing to roll back");
        let pos = Position {
            last: [done("preflight", 1), done("stage1-commit", 2)].into_iter().collect(),
            interrupted: None,
        };
        let v = view(&[("stage1-commit", StepState::Done("on the branch".into()))], pos.clone());
        assert_eq!(v.next(None).map(|r| r.id), Some("stage1-refresh".into()));
        assert_eq!(v.rollback_next(None).map(|r| r.id), Some("stage1-nodes-back".into()));
        assert_eq!(v.position_text().as_deref(), Some("runbook: after stage1-commit"));
        // Git says the commit is gone: the journal and the cluster disagree, and it is next again.
        let v = view(&[("stage1-commit", StepState::Ready)], pos);
        assert!(v.position_text().is_some_and(|t| t.contains("disagree on stage1-commit")), "{:?}", v.position_text());
        assert_eq!(v.next(None).map(|r| r.id), Some("stage1-commit".into()));
        assert_eq!(
            v.rows(Some("stage1-commit")).iter().find(|r| r.id == "stage1-commit").map(|r| r.state.clone()),
            Some("running".into())
        );
    }
}
