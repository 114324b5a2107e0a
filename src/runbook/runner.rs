//! The runner: the one door every change goes through. It runs one operation at a time in a
//! supervised task, under the cluster lock, with a journal entry before anything is sent:
//!
//! 1. refuse at once in read-only mode, or while another operation runs (naming it);
//! 2. journal the `intent` (operation, preview, who confirmed, mode) — if that fails, refuse;
//! 3. take the Lease `kube-system/cutover-lock` (refuse if someone else holds it) and renew it
//!    while the operation runs;
//! 4. run it in the executor, whose write client journals each mutating request;
//! 5. release the Lease and journal the `result`.
//!
//! Progress and results travel on an unbounded channel of their own: unlike flows, they are
//! never dropped. The cockpit and the headless commands (`cutover drain …`) drive the same runner.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::executor::{ExecError, Executor, Progress};
use super::journal::{Journal, Outcome, Record};
use super::lease::{LeaseConfig, LeaseError};
use crate::app::action::Operation;
use crate::cluster::client::{ClusterConn, redact};
use crate::cluster::write::{RequestJournal, WriteClient};

/// What the runner reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEvent {
    /// A line of progress (an eviction, a retry, elapsed time).
    Progress { op: Operation, text: String },
    /// The node step's node in work and its phase; `None` when no node is in work any more.
    Node { op: Operation, work: Option<super::node_work::NodeWork> },
    /// A validation report the operation produced (`Operation::Validate`), sent before `Done`.
    Report { op: Operation, report: Box<crate::validate::Report> },
    /// The operation ended. `result` is the summary or why it stopped; the message says what is
    /// true when it is printed.
    Done { op: Operation, result: Result<String, ExecError> },
}

/// A confirmed operation, as the runner receives it.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub op: Operation,
    /// The confirmation text the operator saw (journaled).
    pub preview: Vec<String>,
    /// How it was confirmed (`pressed y`, `typed the node's name`, `--yes`).
    pub confirmed: String,
    /// The operator confirmed taking over a stale cluster lock.
    pub take_over_stale_lock: bool,
}

/// The journal hook of the write client: the running operation's id, or none (then every
/// mutating request is refused: no change without its operation's record).
struct OpJournal {
    journal: Journal,
    current: Mutex<Option<String>>,
}

impl OpJournal {
    fn set(&self, op: Option<String>) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = op;
    }

    fn current(&self) -> Option<String> {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl RequestJournal for OpJournal {
    fn before(&self, verb: &str, path: &str) -> Result<u64, String> {
        let op = self
            .current()
            .ok_or_else(|| "no operation is running: a change needs its journal intent first".to_string())?;
        self.journal
            .append(&Record::Request { op, verb: verb.into(), path: path.into() })
            .map_err(|e| format!("cannot write the journal: {e}"))
    }

    fn after(&self, token: u64, code: u16) {
        let Some(op) = self.current() else { return };
        if let Err(e) = self.journal.append(&Record::Response { op, request: token, code }) {
            tracing::error!("journal: cannot record the response to entry {token}: {e}");
        }
    }
}

impl super::steps::StepJournal for OpJournal {
    fn ack(&self, what: &str, by: &str) -> Result<(), String> {
        let op =
            self.current().ok_or_else(|| "no operation is running: an acknowledgement needs its intent".to_string())?;
        self.journal
            .append(&Record::Ack { op, what: what.into(), by: by.into() })
            .map(|_| ())
            .map_err(|e| format!("cannot write the journal: {e}"))
    }

    fn change(&self, target: &str, action: &str, detail: &str) -> Result<u64, String> {
        let op = self
            .current()
            .ok_or_else(|| "no operation is running: a change needs its journal intent first".to_string())?;
        self.journal
            .append(&Record::Change { op, target: target.into(), action: action.into(), detail: redact(detail) })
            .map_err(|e| format!("cannot write the journal: {e}"))
    }

    fn note(&self, target: &str, what: &str, detail: &str) -> Result<(), String> {
        let op = self.current().ok_or_else(|| "no operation is running: a note needs its intent".to_string())?;
        self.journal
            .append(&Record::Note { op, target: target.into(), what: what.into(), detail: redact(detail) })
            .map(|_| ())
            .map_err(|e| format!("cannot write the journal: {e}"))
    }

    fn change_done(&self, token: u64, ok: bool, detail: &str) {
        let Some(op) = self.current() else { return };
        if let Err(e) = self.journal.append(&Record::ChangeDone { op, change: token, ok, detail: redact(detail) }) {
            tracing::error!("journal: cannot record how change {token} went: {e}");
        }
    }
}

struct Running {
    op: Operation,
    op_id: String,
    cancel: CancellationToken,
    task: JoinHandle<()>,
    /// Set just before the task reports `Done`: once a caller has the result, the operation no
    /// longer counts as running (the task may take a moment more to return).
    ended: Arc<std::sync::atomic::AtomicBool>,
}

impl Running {
    fn is_running(&self) -> bool {
        !self.ended.load(std::sync::atomic::Ordering::SeqCst) && !self.task.is_finished()
    }
}

/// See the module docs.
pub struct Runner {
    executor: Option<Executor>,
    hook: Arc<OpJournal>,
    lease: LeaseConfig,
    who: String,
    events: mpsc::UnboundedSender<RunEvent>,
    running: Option<Running>,
}

impl Runner {
    /// A runner for `conn`, journaling to `journal`, reporting on `events`. A read-only
    /// connection gets a runner that refuses everything (it holds no write client).
    pub fn new(
        conn: &ClusterConn,
        argo_namespace: &str,
        journal: Journal,
        events: mpsc::UnboundedSender<RunEvent>,
    ) -> Result<Runner, String> {
        let hook = Arc::new(OpJournal { journal, current: Mutex::new(None) });
        let executor = match WriteClient::new(conn, hook.clone()) {
            None => None,
            Some(w) => Some(Executor::new(w?, conn.client.clone(), argo_namespace)),
        };
        Ok(Runner { executor, hook, lease: LeaseConfig::default(), who: super::journal::who(), events, running: None })
    }

    /// The executor's options (drain deadline and retry delays), to adjust before running.
    pub fn executor_mut(&mut self) -> Option<&mut Executor> {
        self.executor.as_mut()
    }

    /// Lets the runner run the runbook's steps ([`Operation::Step`]); their acknowledgements and
    /// Git writes go to this runner's journal. Does nothing for a read-only runner.
    pub fn enable_runbook(&mut self, env: super::steps::StepEnv) {
        let hook: Arc<dyn super::steps::StepJournal> = self.hook.clone();
        if let Some(exec) = self.executor.as_mut() {
            exec.drain.timeout = env.settings.runbook.drain_timeout();
            exec.set_steps(Arc::new(env), hook);
        }
    }

    /// Who this runner acts as (the Lease holder and the journal's `confirmed_by`); by default
    /// `user@host pid N`.
    pub fn set_identity(&mut self, who: impl Into<String>) {
        self.who = who.into();
    }

    pub fn lease_config_mut(&mut self) -> &mut LeaseConfig {
        &mut self.lease
    }

    pub fn journal(&self) -> &Journal {
        &self.hook.journal
    }

    /// The operation running now.
    pub fn running(&self) -> Option<&Operation> {
        self.running.as_ref().filter(|r| r.is_running()).map(|r| &r.op)
    }

    /// Starts an operation, or refuses at once (nothing journaled, nothing sent).
    pub fn start(&mut self, req: RunRequest) -> Result<(), ExecError> {
        let Some(executor) = self.executor.clone() else { return Err(ExecError::ReadOnly) };
        if let Some(op) = self.running() {
            let same = op.target() == req.op.target();
            return Err(ExecError::Refused(format!(
                "{} refused: {} is running{} (one operation at a time; `x` cancels it)",
                req.op.title(),
                op.title(),
                if same { " on the same object" } else { "" }
            )));
        }
        let op_id = super::journal::new_op_id();
        let cancel = CancellationToken::new();
        let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task = tokio::spawn(run_one(
            executor,
            self.hook.clone(),
            self.lease.clone(),
            self.who.clone(),
            op_id.clone(),
            req.clone(),
            cancel.clone(),
            self.events.clone(),
            ended.clone(),
        ));
        self.running = Some(Running { op: req.op, op_id, cancel, task, ended });
        Ok(())
    }

    /// Asks the running operation to stop at its next safe point. Returns it, if any.
    pub fn cancel(&self) -> Option<Operation> {
        let r = self.running.as_ref().filter(|r| r.is_running())?;
        r.cancel.cancel();
        Some(r.op.clone())
    }

    /// The process is ending while an operation runs (quit confirmed, SIGTERM, SIGHUP): stop it
    /// now, release the lock if it can within a few seconds, and journal it as `interrupted`.
    pub async fn interrupt(&mut self, why: &str) -> Option<Operation> {
        let r = self.running.take().filter(|r| r.is_running())?;
        r.cancel.cancel();
        r.task.abort();
        let _ = r.task.await;
        if let Some(exec) = &self.executor {
            let held = super::lease::Held { config: self.lease.clone(), who: self.who.clone() };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(3), held.release(exec.write_client())).await;
        }
        let journal = self.hook.journal.clone();
        let record = Record::Result { op: r.op_id.clone(), outcome: Outcome::Interrupted, message: why.to_string() };
        self.hook.set(None);
        let written = tokio::task::spawn_blocking(move || journal.append(&record)).await;
        if !matches!(written, Ok(Ok(_))) {
            tracing::error!("journal: cannot record the interruption of {}", r.op.title());
        }
        Some(r.op)
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_one(
    executor: Executor,
    hook: Arc<OpJournal>,
    lease: LeaseConfig,
    who: String,
    op_id: String,
    req: RunRequest,
    cancel: CancellationToken,
    events: mpsc::UnboundedSender<RunEvent>,
    ended: Arc<std::sync::atomic::AtomicBool>,
) {
    let op = req.op.clone();
    let result = run_journaled(&executor, &hook, &lease, &who, &op_id, &req, &cancel, &events).await;
    ended.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = events.send(RunEvent::Done { op, result });
}

#[allow(clippy::too_many_arguments)]
async fn run_journaled(
    executor: &Executor,
    hook: &Arc<OpJournal>,
    lease: &LeaseConfig,
    who: &str,
    op_id: &str,
    req: &RunRequest,
    cancel: &CancellationToken,
    events: &mpsc::UnboundedSender<RunEvent>,
) -> Result<String, ExecError> {
    let append = |record: Record| {
        let journal = hook.journal.clone();
        async move {
            tokio::task::spawn_blocking(move || journal.append(&record))
                .await
                .map_err(|e| format!("journal task: {e}"))?
                .map_err(|e| e.to_string())
        }
    };
    let intent = Record::Intent {
        op: op_id.to_string(),
        title: req.op.title(),
        preview: req.preview.clone(),
        confirmed_by: format!("{who}, {}", req.confirmed),
        mode: "armed".into(),
        step: match &req.op {
            Operation::Step { id, .. } | Operation::SkipStep { id, .. } => Some(id.clone()),
            _ => None,
        },
    };
    append(intent).await.map_err(|e| ExecError::Refused(format!("{e}; nothing was sent")))?;
    hook.set(Some(op_id.to_string()));
    let result = run_locked(executor, lease, who, req, cancel, events).await;
    hook.set(None);
    let (outcome, message) = match &result {
        Ok(m) if matches!(req.op, Operation::SkipStep { .. }) => (Outcome::Skipped, m.clone()),
        Ok(m) => (Outcome::Ok, m.clone()),
        Err(ExecError::Cancelled(m)) => (Outcome::Cancelled, m.clone()),
        Err(e) => (Outcome::Failed, e.to_string()),
    };
    let record = Record::Result { op: op_id.to_string(), outcome, message: redact(&message) };
    if let Err(e) = append(record).await {
        tracing::error!("journal: cannot record the result of {}: {e}", req.op.title());
        let _ =
            events.send(RunEvent::Progress { op: req.op.clone(), text: format!("journal: result not recorded: {e}") });
    }
    result
}

async fn run_locked(
    executor: &Executor,
    lease: &LeaseConfig,
    who: &str,
    req: &RunRequest,
    cancel: &CancellationToken,
    events: &mpsc::UnboundedSender<RunEvent>,
) -> Result<String, ExecError> {
    let client = executor.write_client();
    let held = lease.acquire(client, who, req.take_over_stale_lock).await.map_err(|e| match e {
        LeaseError::Api { .. } => ExecError::Api(e.to_string()),
        LeaseError::Stale { .. } => ExecError::StaleLock(e.to_string()),
        other => ExecError::Refused(other.to_string()),
    })?;
    let progress = Progress::new(events.clone(), req.op.clone());
    let lost = Mutex::new(None::<String>);
    let renew = async {
        loop {
            tokio::time::sleep(lease.renew_every()).await;
            if let Err(e) = held.renew(client).await {
                // Transient API errors are retried at the next beat; a lost lock stops the run.
                if matches!(e, LeaseError::Lost { .. }) {
                    *lost.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                    // Stop at the next safe point; the executor's own result then ends the run.
                    cancel.cancel();
                    return std::future::pending::<()>().await;
                }
                progress.say(format!("cannot renew the cluster lock: {e}"));
            }
        }
    };
    let result = tokio::select! {
        r = executor.run(&req.op, &progress, cancel) => r,
        () = renew => Err(ExecError::Failed("the cluster lock renewal stopped".into())),
    };
    let result = match (result, lost.lock().unwrap_or_else(|p| p.into_inner()).take()) {
        (Err(ExecError::Cancelled(m)), Some(why)) => Err(ExecError::Failed(format!("{why}; {m}"))),
        (r, _) => r,
    };
    if let Err(e) = held.release(client).await {
        progress.say(format!("cannot release the cluster lock (it expires by itself): {e}"));
    }
    result
}
