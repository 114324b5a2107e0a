//! The `node-cutover` steps: per node, one at a time, servers first (the `--cluster-init` one
//! first, then the other servers, then agents; `[runbook] node_order` overrides), cordon →
//! drain (the executor's one-door drain) → write the stage's k3s drop-in over SSH → read it
//! back → restart k3s (or reboot, `[ssh] reboot`) → wait (NotReady or a new config hash, then
//! Ready with the new flags, the cilium agent on the node Ready and its `agent-not-ready` taint
//! gone; then the pods newly started there have CiliumEndpoints, each wait with its own
//! `wait_timeout`) → uncordon → soak (Hubble flows to and from the node for `[runbook] soak`,
//! [`super::soak`]: any drop other than policy-denied, too many policy drops, or an unknown soak
//! stops the runbook; its figures are journaled as a `note`). The undo steps remove the drop-in
//! and restart (or reboot), without a soak. Every node write is journaled as a `change` before
//! it is made. A node that does not come back, or fails its soak, stops the step, is left as it
//! is, and the next node is never touched. The phases go to the cockpit as
//! [`super::node_work::NodeWork`] events.

use std::time::{Duration, Instant};

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use tokio_util::sync::CancellationToken;

use super::executor::{ExecError, Executor, Progress};
use super::journal::{Entry, Record};
use super::node_work::NodePhase;
use super::plan::Step;
use super::soak::{SoakLimits, SoakStop};
use super::steps::{StepEnv, StepJournal};
use crate::checks::k3s;
use crate::manifests::render::{Stage, render};
use crate::node::{NodeCommand, NodeRole, NodeShell, NodeWrite, SshClient, SshError};

/// The cilium agent's taint while it is not ready on a node.
pub const AGENT_NOT_READY_TAINT: &str = "node.cilium.io/agent-not-ready";
/// How often the node waits look.
const POLL: Duration = Duration::from_secs(1);
/// How long the first wait looks for the restart to show (NotReady or a new config hash)
/// before it accepts a node that stayed Ready through a quick restart.
const RESTART_SEEN: Duration = Duration::from_secs(60);
/// The journal lines shown when a node does not come back.
const LOG_TAIL: u32 = 20;

/// One node of the step.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub role: NodeRole,
    pub ip: String,
    /// Evidence that the node is already switched (then it is skipped).
    pub done: Option<String>,
}

fn stage_of(step: &Step) -> Stage {
    if step.stage == Some(2) { Stage::Two } else { Stage::One }
}

/// Whether SSH is usable as configured (the `node-step-available` gate): `Ok(evidence)` or
/// `Err(what to set)`.
pub fn ssh_available(settings: &crate::settings::Settings) -> Result<String, String> {
    let ssh = on_path("ssh").ok_or_else(|| {
        "`ssh` is not on PATH: install the OpenSSH client (Debian: apt-get install openssh-client)".to_string()
    })?;
    if let Some(f) = &settings.ssh.config_file
        && !f.is_file()
    {
        return Err(format!(
            "[ssh] config_file {} does not exist: set it to your ssh_config or remove it",
            f.display()
        ));
    }
    Ok(format!(
        "ssh at {}{}",
        ssh.display(),
        match &settings.ssh.config_file {
            Some(f) => format!(", -F {}", f.display()),
            None => ", the operator's ~/.ssh/config".to_string(),
        }
    ))
}

fn on_path(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

/// The flags that say on a server's `k3s.io/node-args` that the step is done.
fn flags_done(args: &k3s::NodeArgs, stage: Stage, undo: bool) -> bool {
    match (stage, undo) {
        (Stage::One, false) => !args.flannel_enabled() && args.bool("disable-network-policy"),
        (Stage::One, true) => args.flannel_enabled() && !args.bool("disable-network-policy"),
        (Stage::Two, false) => args.bool("disable-kube-proxy"),
        (Stage::Two, true) => !args.bool("disable-kube-proxy"),
    }
}

fn flags_wanted(stage: Stage, undo: bool) -> &'static str {
    match (stage, undo) {
        (Stage::One, false) => "--flannel-backend none and --disable-network-policy",
        (Stage::One, true) => "no --flannel-backend none and no --disable-network-policy",
        (Stage::Two, false) => "--disable-kube-proxy",
        (Stage::Two, true) => "no --disable-kube-proxy",
    }
}

fn internal_ip(n: &Node) -> Option<String> {
    n.status.as_ref()?.addresses.as_ref()?.iter().find(|a| a.type_ == "InternalIP").map(|a| a.address.clone())
}

fn is_cordoned(n: &Node) -> bool {
    n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false)
}

fn has_taint(n: &Node, key: &str) -> bool {
    n.spec.as_ref().and_then(|s| s.taints.as_ref()).is_some_and(|t| t.iter().any(|t| t.key == key))
}

fn config_hash(n: &Node) -> Option<String> {
    n.metadata.annotations.as_ref()?.get("k3s.io/node-config-hash").cloned()
}

/// The drop-in content for the stage: the rendered file at `settings.git.k3s_config_path`.
async fn content(env: &StepEnv, read: &kube::Client, stage: Stage) -> Result<String, String> {
    let ctx = crate::checks::gather::render_context(read).await;
    let files =
        render(stage, &env.settings, &ctx).map_err(|e| format!("cannot render stage {}: {e}", stage.number()))?;
    let want = std::path::PathBuf::from(&env.settings.git.k3s_config_path);
    files
        .into_iter()
        .find(|f| f.path == want)
        .map(|f| f.contents)
        .ok_or_else(|| format!("the render has no {}", want.display()))
}

/// The nodes in step order, each with its evidence of being done (agents: the drop-in read back
/// over SSH, read-only).
async fn targets(
    env: &StepEnv,
    read: &kube::Client,
    client: &SshClient,
    stage: Stage,
    undo: bool,
    content: Option<&str>,
) -> Result<Vec<Target>, String> {
    let nodes = Api::<Node>::all(read.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("cannot list nodes: {e}"))?;
    let order: Vec<String> = if env.settings.runbook.node_order.is_empty() {
        let (servers, agents) = crate::checks::gather::node_order(&nodes.items);
        servers.into_iter().chain(agents).collect()
    } else {
        let known: Vec<&str> = nodes.items.iter().map(k3s::node_name).collect();
        if let Some(bad) = env.settings.runbook.node_order.iter().find(|n| !known.contains(&n.as_str())) {
            return Err(format!("[runbook] node_order names {bad}, which is not a node; nodes: {}", known.join(", ")));
        }
        if let Some(missing) = known.iter().find(|k| !env.settings.runbook.node_order.iter().any(|n| n == *k)) {
            return Err(format!("[runbook] node_order does not name node {missing}: list every node"));
        }
        env.settings.runbook.node_order.clone()
    };
    let mut out = Vec::new();
    for name in order {
        let Some(n) = nodes.items.iter().find(|n| k3s::node_name(n) == name) else { continue };
        let role = if k3s::is_server(n) { NodeRole::Server } else { NodeRole::Agent };
        let ip = internal_ip(n).unwrap_or_default();
        let done = match role {
            NodeRole::Server => match k3s::node_args(n) {
                Some(Ok(a)) if flags_done(&a, stage, undo) => {
                    Some(format!("k3s.io/node-args shows {}", flags_wanted(stage, undo)))
                }
                _ => None,
            },
            NodeRole::Agent => {
                let shell = NodeShell::new(client, &env.settings.ssh, &name, &ip, role).map_err(|e| e.to_string())?;
                match (shell.read_dropin(stage).await, undo, content) {
                    (Ok(o), false, Some(c)) if o.stdout_text() == c => Some("its drop-in reads back equal".into()),
                    (Err(SshError::CommandFailed { stderr_tail, .. }), true, _)
                        if stderr_tail.contains("No such file") =>
                    {
                        Some("its drop-in is absent".into())
                    }
                    _ => None,
                }
            }
        };
        out.push(Target { name, role, ip, done });
    }
    Ok(out)
}

fn ssh_client(env: &StepEnv) -> Result<SshClient, String> {
    SshClient::new(&env.settings.ssh).map_err(|e| format!("ssh: {e}"))
}

/// Read-only: the node order and, per node, the exact commands.
pub async fn preview(
    env: &StepEnv,
    read: &kube::Client,
    exec_drain: &super::executor::DrainOptions,
    step: &Step,
) -> Result<super::steps::KindPreview, String> {
    let stage = stage_of(step);
    let client = ssh_client(env)?;
    let text = if step.undo { None } else { Some(content(env, read, stage).await?) };
    let targets = targets(env, read, &client, stage, step.undo, text.as_deref()).await?;
    let mut lines = vec![format!(
        "Node order (one at a time, servers first): {}",
        targets.iter().map(|t| format!("{} ({})", t.name, t.role.unit())).collect::<Vec<_>>().join(", ")
    )];
    if let Some(c) = &text {
        lines.push(format!("Drop-in content ({}), the same on every node:", env.settings.git.k3s_config_path));
        lines.extend(
            c.lines().filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty()).map(|l| format!("    {l}")),
        );
    }
    let mut unsoaked: Option<&str> = None;
    for t in &targets {
        if let Some(d) = &t.done {
            lines.push(format!("{}: done ({d}); skipped", t.name));
            if !step.undo {
                unsoaked = Some(&t.name);
            }
            continue;
        }
        if let Some(prev) = unsoaked.take() {
            lines.push(format!("{prev}: switched before; it soaks again before {} is touched", t.name));
        }
        let shell = match NodeShell::new(&client, &env.settings.ssh, &t.name, &t.ip, t.role) {
            Ok(s) => s,
            Err(e) => {
                lines.push(format!("{}: {e}", t.name));
                continue;
            }
        };
        lines.push(format!("{} ({}):", t.name, t.role.unit()));
        lines.push(format!(
            "  gates: node Ready, no other node cordoned, ssh and sudo -n work (reads {})",
            shell.dropin_path(stage)
        ));
        match super::executor::plan_drain(read, &t.name).await {
            Ok(plan) => {
                lines.extend(super::executor::drain_preview(&plan, exec_drain).into_iter().map(|l| format!("  {l}")))
            }
            Err(e) => lines.push(format!("  drain plan unreadable: {e}")),
        }
        let bounce = if env.settings.ssh.reboot { NodeCommand::Reboot } else { NodeCommand::Restart };
        let cmds: Vec<NodeCommand> = if step.undo {
            vec![NodeCommand::RemoveDropin { stage }, bounce]
        } else {
            vec![NodeCommand::WriteDropin { stage }, NodeCommand::ReadDropin { stage }, bounce]
        };
        lines.extend(shell.preview(&cmds, text.as_deref()).into_iter().map(|l| format!("  {l}")));
        if !env.settings.ssh.reboot {
            lines.push(
                "  ([ssh] reboot = true reboots instead: recommended, it clears flannel.1, cni0 and the old iptables rules)"
                    .into(),
            );
        }
        lines.push(format!(
            "  wait up to {} each: NotReady (or a new k3s.io/node-config-hash), then Ready{}; the cilium agent on it Ready; taint {AGENT_NOT_READY_TAINT} gone",
            crate::duration::format_short(env.wait_timeout),
            if t.role == NodeRole::Server { format!(", k3s.io/node-args with {}", flags_wanted(stage, step.undo)) } else { String::new() }
        ));
        lines.push(format!(
            "  then, up to {} more: the pods newly started on it (not hostNetwork, not there before the restart) have CiliumEndpoints",
            crate::duration::format_short(env.wait_timeout)
        ));
        if stage == Stage::One && !step.undo {
            lines.push(
                "  then POST pods/eviction for its pods without a CiliumEndpoint that have a controller (DaemonSet pods a drain leaves keep their flannel address through a restart), and wait until every pod on it has one".into(),
            );
        }
        lines.push(format!("  PATCH node {}: spec.unschedulable=false (uncordon)", t.name));
        lines.push(format!("  {}", soak_preview(env, step.undo)));
    }
    let mut done = if !targets.is_empty() && targets.iter().all(|t| t.done.is_some()) {
        Some(format!("all {} node(s) switched", targets.len()))
    } else {
        None
    };
    // The last node(s) in the order switched before: the step is not done until the last one's
    // soak passed (a soak that stopped the last run, or a run that died before its verdict).
    if let Some(prev) = unsoaked
        && let Some(why) = unsettled_soak(env, &step.id, prev)
    {
        lines.push(format!("{prev}: {why}; it soaks again before the step is done"));
        done = None;
    }
    Ok(super::steps::KindPreview { lines, done })
}

/// What the journal says of `node`'s soak, as far as runs of one node step go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LastSoak {
    /// No run of the step changed the node, and none soaked it (switched elsewhere, or before
    /// this journal).
    Nothing,
    /// A run of the step changed the node at this time, and no soak verdict came after it (the
    /// run stopped, or died, before its soak ended).
    NoVerdict { changed: String },
    /// The last soak verdict journaled (after the last change): its time and text (`passed: …`,
    /// `off …`, `stopped: …`, `unknown: …`, `stopped by the operator: …`).
    Verdict { time: String, detail: String },
}

impl LastSoak {
    /// Nothing more to soak: a passed (or deliberately off) soak, or nothing this step did.
    pub fn settled(&self) -> bool {
        match self {
            LastSoak::Nothing => true,
            LastSoak::NoVerdict { .. } => false,
            LastSoak::Verdict { detail, .. } => detail.starts_with("passed") || detail.starts_with("off"),
        }
    }
}

/// `node`'s last soak in `entries` by runs of `step`: the last `soak` note on `node/NAME`, unless a
/// change on it comes after that note.
pub fn last_soak(entries: &[Entry], step: &str, node: &str) -> LastSoak {
    let target = format!("node/{node}");
    let ops: BTreeSet<&str> = entries
        .iter()
        .filter_map(|e| match &e.record {
            Record::Intent { op, step: Some(s), .. } if s == step => Some(op.as_str()),
            _ => None,
        })
        .collect();
    let mut last = LastSoak::Nothing;
    for e in entries {
        match &e.record {
            Record::Change { op, target: t, .. } if *t == target && ops.contains(op.as_str()) => {
                last = LastSoak::NoVerdict { changed: e.time.clone() };
            }
            Record::Note { op, target: t, what, detail }
                if *t == target && what == "soak" && ops.contains(op.as_str()) =>
            {
                last = LastSoak::Verdict { time: e.time.clone(), detail: detail.clone() };
            }
            _ => {}
        }
    }
    last
}

/// Why `node` (switched before this run, last in the order) must soak again before `step` is
/// done, from the journal; `None` when its soak is settled or there is no journal to read.
fn unsettled_soak(env: &StepEnv, step: &str, node: &str) -> Option<String> {
    let journal = env.journal.as_ref()?;
    let entries = match journal.read() {
        Ok(v) => v.entries,
        Err(e) => return Some(format!("switched; the journal cannot be read ({e}), so its soak's verdict is unknown")),
    };
    let last = last_soak(&entries, step, node);
    if last.settled() {
        return None;
    }
    match last {
        LastSoak::NoVerdict { changed } => {
            Some(format!("switched by this step at {changed} with no soak verdict after it (the run stopped first)"))
        }
        LastSoak::Verdict { time, detail } => Some(format!(
            "switched; its soak at {time} did not pass: {}",
            crate::validate::probes::cut_evidence(&detail)
        )),
        LastSoak::Nothing => None,
    }
}

/// The preview's soak line.
fn soak_preview(env: &StepEnv, undo: bool) -> String {
    let limits = SoakLimits::from_settings(&env.settings.runbook);
    if undo {
        "soak: none on a rollback".into()
    } else if limits.duration.is_zero() {
        "soak: off ([runbook] soak = \"0s\")".into()
    } else {
        format!(
            "soak {}: Hubble flows to and from the node from {}; stops on any drop other than policy-denied, more than {} policy-denied drops per minute, or fewer than {} flows (unknown)",
            crate::duration::format_short(limits.duration),
            env.relay
                .as_ref()
                .map_or_else(|| "no relay (the soak will be unknown and stop)".to_string(), |r| r.describe()),
            limits.max_policy_drops_per_minute,
            super::soak::MIN_FLOWS
        )
    }
}

/// What has been changed on the node in work, for messages.
#[derive(Default)]
struct Written(Vec<String>);

impl Written {
    fn err(&self, name: &str, what: String) -> ExecError {
        if self.0.is_empty() {
            ExecError::Refused(format!("{name}: {what}; nothing was changed on {name}"))
        } else {
            ExecError::Failed(format!("{name}: {what}; done on {name} so far: {}", self.0.join(", ")))
        }
    }
}

/// Runs the step (the lock is held, the intent journaled).
pub async fn run(
    exec: &Executor,
    env: &StepEnv,
    step: &Step,
    journal: &dyn StepJournal,
    progress: &Progress,
    cancel: &CancellationToken,
) -> Result<String, ExecError> {
    let stage = stage_of(step);
    let read = exec.read_client();
    let client = ssh_client(env).map_err(|e| ExecError::Refused(format!("{}: {e}; nothing was changed", step.id)))?;
    let text = if step.undo {
        None
    } else {
        Some(
            content(env, read, stage)
                .await
                .map_err(|e| ExecError::Refused(format!("{}: {e}; nothing was changed", step.id)))?,
        )
    };
    let targets = targets(env, read, &client, stage, step.undo, text.as_deref())
        .await
        .map_err(|e| ExecError::Refused(format!("{}: {e}; nothing was changed", step.id)))?;
    let total = targets.len();
    let mut switched = Vec::new();
    let mut skipped = Vec::new();
    // The node switched before this run just ahead of the next one to work on: its soak may
    // have stopped the last run, so it soaks again before the next node is touched.
    let mut unsoaked: Option<&Target> = None;
    for (i, t) in targets.iter().enumerate() {
        if let Some(d) = &t.done {
            progress.say(format!("{}: already done ({d}); skipped", t.name));
            skipped.push(t.name.clone());
            if !step.undo {
                unsoaked = Some(t);
            }
            continue;
        }
        if cancel.is_cancelled() {
            return Err(ExecError::Cancelled(format!(
                "{}: stopped before {}; switched: {}",
                step.id,
                t.name,
                list(&switched)
            )));
        }
        if let Some(prev) = unsoaked.take() {
            progress
                .say(format!("{}: switched before this run; it soaks again before {} is touched", prev.name, t.name));
            let w = Written(vec!["switched before this run".into()]);
            let res = soak(env, read, &prev.name, journal, &progress.for_node(&prev.name), cancel, &w).await;
            progress.work(None);
            res.map_err(|e| match e {
                ExecError::Failed(m) => ExecError::Failed(format!("{m}; {} is not touched", t.name)),
                ExecError::Cancelled(m) => ExecError::Cancelled(format!("{m}; {} is not touched", t.name)),
                other => other,
            })?;
        }
        progress.say(format!("{}: node {}/{total} ({})", t.name, i + 1, t.role.unit()));
        let shell = NodeShell::new(&client, &env.settings.ssh, &t.name, &t.ip, t.role)
            .map_err(|e| ExecError::Refused(format!("{}: {e}; nothing was changed on it", t.name)))?;
        let node_progress = progress.for_node(&t.name);
        let res = one_node(exec, env, step, stage, &shell, text.as_deref(), journal, &node_progress, cancel).await;
        progress.work(None);
        res.map_err(|e| {
            let before = if switched.is_empty() {
                String::new()
            } else {
                format!(" (switched before it: {})", switched.join(", "))
            };
            match e {
                ExecError::Refused(m) => ExecError::Refused(format!("{m}{before}")),
                ExecError::Failed(m) => ExecError::Failed(format!("{m}{before}; the next node is not touched")),
                ExecError::Timeout(m) => ExecError::Timeout(format!("{m}{before}; the next node is not touched")),
                ExecError::Cancelled(m) => ExecError::Cancelled(format!("{m}{before}")),
                other => other,
            }
        })?;
        switched.push(t.name.clone());
    }
    // The order ends with node(s) switched before this run: the last one soaks again when the
    // journal has no passed soak of it (its soak stopped the last run, or that run died first).
    let mut soaked_again = String::new();
    if let Some(prev) = unsoaked
        && let Some(why) = unsettled_soak(env, &step.id, &prev.name)
    {
        progress.say(format!("{}: {why}; it soaks again before the step is done", prev.name));
        let w = Written(vec!["switched before this run".into()]);
        let res = soak(env, read, &prev.name, journal, &progress.for_node(&prev.name), cancel, &w).await;
        progress.work(None);
        res?;
        soaked_again = format!("; {} soaked again and passed", prev.name);
    }
    Ok(format!(
        "{}: {} node(s) switched ({}){}{soaked_again}",
        step.id,
        switched.len(),
        list(&switched),
        if skipped.is_empty() {
            String::new()
        } else {
            format!(", {} already done: {}", skipped.len(), skipped.join(", "))
        }
    ))
}

fn list(v: &[String]) -> String {
    if v.is_empty() { "none".into() } else { v.join(", ") }
}

async fn get_node(read: &kube::Client, name: &str) -> Result<Node, String> {
    Api::<Node>::all(read.clone()).get(name).await.map_err(|e| format!("cannot read node {name}: {e}"))
}

#[allow(clippy::too_many_arguments)]
async fn one_node(
    exec: &Executor,
    env: &StepEnv,
    step: &Step,
    stage: Stage,
    shell: &NodeShell,
    text: Option<&str>,
    journal: &dyn StepJournal,
    progress: &Progress,
    cancel: &CancellationToken,
) -> Result<(), ExecError> {
    let name = shell.node().to_string();
    let read = exec.read_client();
    let mut w = Written::default();
    progress.phase(NodePhase::Gates);
    // Gates: the node Ready, no other node cordoned, SSH and sudo usable.
    let nodes = Api::<Node>::all(read.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| w.err(&name, format!("cannot list nodes: {e}")))?;
    let Some(node) = nodes.items.iter().find(|n| k3s::node_name(n) == name) else {
        return Err(w.err(&name, "the node is gone".into()));
    };
    if !k3s::is_ready(node) {
        return Err(w.err(&name, "gate: the node is not Ready".into()));
    }
    let others: Vec<&str> =
        nodes.items.iter().filter(|n| k3s::node_name(n) != name && is_cordoned(n)).map(k3s::node_name).collect();
    if !others.is_empty() {
        return Err(w.err(&name, format!("gate: another node is cordoned ({}): one node at a time", others.join(", "))));
    }
    // Gate: SSH and `sudo -n` work on the node (its drop-in read: present or absent), so that
    // an unreachable node, a host key that changed or a sudo that wants a password stop the
    // step before the node is cordoned.
    progress.say(format!("{name}: checking ssh and sudo (reading {})", shell.dropin_path(stage)));
    match shell.read_dropin(stage).await {
        Ok(_) => {}
        Err(SshError::CommandFailed { stderr_tail, .. }) if stderr_tail.contains("No such file") => {}
        Err(e) => return Err(w.err(&name, format!("gate: {e}"))),
    }
    let hash_before = config_hash(node);
    // Cordon, drain.
    progress.say(format!("{name}: cordoning"));
    progress.phase(NodePhase::Cordoning);
    exec.set_unschedulable(&name, true).await.map_err(|e| w.err(&name, format!("cordon: {e}")))?;
    w.0.push("cordoned".into());
    progress.say(format!("{name}: draining"));
    exec.drain(&name, progress, cancel).await.map_err(|e| match e {
        ExecError::Cancelled(m) => ExecError::Cancelled(format!("{name}: {m}; no drop-in written")),
        ExecError::Timeout(m) => ExecError::Timeout(format!("{name}: {m}; no drop-in written")),
        other => ExecError::Failed(format!("{name}: {other}; left cordoned, no drop-in written")),
    })?;
    w.0.push("drained".into());
    stop_if_cancelled(cancel, &name, &w)?;
    #[allow(clippy::disallowed_methods)] // the runbook's node step, under the lock, confirmed
    let write = NodeWrite::confirmed_by_runbook();
    let path = shell.dropin_path(stage);
    // Write (or remove) the drop-in, journaled before.
    match text {
        Some(c) => {
            progress.say(format!("{name}: writing {path}"));
            progress.phase(NodePhase::WritingDropin);
            let token = journal
                .change(&format!("node/{name}"), "write-dropin", &format!("{path}: {} bytes on stdin", c.len()))
                .map_err(|e| w.err(&name, format!("journal: {e}; the drop-in is not written")))?;
            let res = shell.write_dropin(&write, stage, c).await;
            journal.change_done(token, res.is_ok(), &outcome(&res));
            res.map_err(|e| ssh_err(&w, &name, "write the drop-in", e))?;
            w.0.push(format!("{path} written"));
            let back = shell.read_dropin(stage).await.map_err(|e| ssh_err(&w, &name, "read the drop-in back", e))?;
            if back.stdout_text() != c {
                return Err(ExecError::Failed(format!(
                    "{name}: {path} reads back different from what was written ({} bytes, wrote {}); not restarted; {}",
                    back.stdout.len(),
                    c.len(),
                    w.0.join(", ")
                )));
            }
            progress.say(format!("{name}: {path} reads back equal"));
        }
        None => {
            progress.say(format!("{name}: removing {path}"));
            progress.phase(NodePhase::RemovingDropin);
            let token = journal
                .change(&format!("node/{name}"), "remove-dropin", &path)
                .map_err(|e| w.err(&name, format!("journal: {e}; the drop-in is not removed")))?;
            let res = shell.remove_dropin(&write, stage).await;
            journal.change_done(token, res.is_ok(), &outcome(&res));
            res.map_err(|e| ssh_err(&w, &name, "remove the drop-in", e))?;
            w.0.push(format!("{path} removed"));
        }
    }
    stop_if_cancelled(cancel, &name, &w)?;
    // The pods there now: the endpoints wait looks at the ones started after the restart.
    let before = pod_uids(read, &name).await.map_err(|e| w.err(&name, format!("{e}; not restarted")))?;
    // Restart, or reboot.
    if env.settings.ssh.reboot {
        progress.say(format!("{name}: rebooting"));
        progress.phase(NodePhase::Rebooting);
        let token = journal
            .change(
                &format!("node/{name}"),
                "reboot",
                &format!("{} (the connection dropping is expected)", shell.remote_command(NodeCommand::Reboot)),
            )
            .map_err(|e| w.err(&name, format!("journal: {e}; not rebooted")))?;
        let res = shell.reboot(&write).await;
        journal.change_done(token, res.is_ok(), &outcome(&res));
        res.map_err(|e| ssh_err(&w, &name, "reboot", e))?;
        w.0.push("rebooted".into());
    } else {
        progress.say(format!("{name}: restarting {}", shell.role().unit()));
        progress.phase(NodePhase::Restarting);
        let token = journal
            .change(&format!("node/{name}"), "restart", &format!("systemctl restart {}", shell.role().unit()))
            .map_err(|e| w.err(&name, format!("journal: {e}; not restarted")))?;
        let res = shell.restart(&write).await;
        journal.change_done(token, res.is_ok(), &outcome(&res));
        if let Err(e) = res {
            // The unit did not start (a critical-flag mismatch, say): its journal says why.
            let failed = ssh_err(&w, &name, "restart", e);
            let look = look(shell).await;
            return Err(match failed {
                ExecError::Failed(m) => ExecError::Failed(format!("{m}; {look}")),
                other => other,
            });
        }
        w.0.push(format!("{} restarted", shell.role().unit()));
    }
    // Wait for it to come back.
    progress.say(format!("{name}: waiting for NotReady"));
    progress.phase(NodePhase::WaitingReady);
    let back = match wait_back(env, read, shell, stage, step.undo, hash_before, progress, cancel).await {
        Ok(()) => wait_endpoints(env, read, &name, &before, progress, cancel).await,
        Err(e) => Err(e),
    };
    if let Err(why) = back {
        let msg =
            format!("{name} did not come back: {why}; it is left as it is ({}); {}", w.0.join(", "), look(shell).await);
        return Err(if cancel.is_cancelled() { ExecError::Cancelled(msg) } else { ExecError::Timeout(msg) });
    }
    // Stage 1: the pods a drain leaves (DaemonSet pods) kept their flannel addresses through
    // the restart; re-create them on Cilium and wait until every pod there has an endpoint.
    if stage == Stage::One && !step.undo {
        onto_cilium(exec, env, &name, progress, cancel).await.map_err(|e| {
            let msg = format!("{name}: {e}; it is left cordoned ({})", w.0.join(", "));
            match e {
                Moved::Cancelled(_) => ExecError::Cancelled(msg),
                Moved::Timeout(_) => ExecError::Timeout(msg),
                Moved::Failed(_) => ExecError::Failed(msg),
            }
        })?;
    }
    // Uncordon.
    progress.say(format!("{name}: uncordoning"));
    progress.phase(NodePhase::Uncordoning);
    exec.set_unschedulable(&name, false)
        .await
        .map_err(|e| ExecError::Failed(format!("{name}: uncordon: {e}; {}", w.0.join(", "))))?;
    w.0.push("uncordoned".into());
    if step.undo {
        progress.say(format!("{name}: back (no soak on a rollback)"));
        return Ok(());
    }
    soak(env, read, &name, journal, progress, cancel, &w).await
}

/// The soak after the uncordon, journaled as a `note` with its figures and verdict.
async fn soak(
    env: &StepEnv,
    read: &kube::Client,
    name: &str,
    journal: &dyn StepJournal,
    progress: &Progress,
    cancel: &CancellationToken,
    w: &Written,
) -> Result<(), ExecError> {
    let limits = SoakLimits::from_settings(&env.settings.runbook);
    let target = format!("node/{name}");
    let note = |detail: String| {
        journal.note(&target, "soak", &detail).map_err(|e| {
            ExecError::Failed(format!("{name}: journal: {e}; the soak's figures are not recorded; {}", w.0.join(", ")))
        })
    };
    if limits.duration.is_zero() {
        progress.say(format!("{name}: back; soak off ([runbook] soak = \"0s\"): no flows were watched"));
        return note("off ([runbook] soak = \"0s\"): no flows were watched".into());
    }
    progress.say(format!(
        "{name}: back; soaking {} (Hubble flows to and from it)",
        crate::duration::format_short(limits.duration)
    ));
    let done = w.0.join(", ");
    match super::soak::soak(env.relay.as_ref(), read, name, &limits, progress, cancel).await {
        Ok(fig) => {
            note(format!("passed: {}", fig.summary()))?;
            progress.say(format!("{name}: soak passed: {}", fig.summary()));
            Ok(())
        }
        Err(stop) => {
            let fig = stop.figures().clone();
            let examples = if fig.examples.is_empty() {
                String::new()
            } else {
                format!("\nfor example:\n{}", fig.examples.join("\n"))
            };
            let look = format!("look: cutover flows --node-name {name} --verdict DROPPED -f");
            match stop {
                SoakStop::Drops { why, .. } => {
                    note(format!("stopped: {why}: {}", fig.summary()))?;
                    Err(ExecError::Failed(format!(
                        "{name}: the soak stopped the runbook: {why}; {}; {name} is switched and left as it is ({done}); {look}{examples}",
                        fig.summary()
                    )))
                }
                SoakStop::Unknown { why, .. } => {
                    note(format!("unknown: {why}: {}", fig.summary()))?;
                    Err(ExecError::Failed(format!(
                        "{name}: the soak is unknown (never green): {why}; {}; {name} is switched and left as it is ({done})",
                        fig.summary()
                    )))
                }
                SoakStop::Cancelled { .. } => {
                    note(format!("stopped by the operator: {}", fig.summary()))?;
                    Err(ExecError::Cancelled(format!(
                        "{name}: soak stopped by the operator after {}; {name} is switched ({done})",
                        fig.summary()
                    )))
                }
            }
        }
    }
}

/// The uids of the pods on the node now.
async fn pod_uids(read: &kube::Client, node: &str) -> Result<BTreeSet<String>, String> {
    let lp = ListParams::default().fields(&format!("spec.nodeName={node}"));
    let pods =
        Api::<Pod>::all(read.clone()).list(&lp).await.map_err(|e| format!("cannot list the pods on {node}: {e}"))?;
    Ok(pods.items.into_iter().filter_map(|p| p.metadata.uid).collect())
}

fn cilium_endpoints(read: &kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("cilium.io", "v2", "CiliumEndpoint");
    Api::all_with(read.clone(), &ApiResource::from_gvk_with_plural(&gvk, "ciliumendpoints"))
}

/// The pods newly started on the node: not hostNetwork, not there before the restart, Running,
/// not terminating (namespace, name).
fn newly_started(pods: &[Pod], before: &BTreeSet<String>) -> Vec<(String, String)> {
    pods.iter()
        .filter(|p| !p.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false))
        .filter(|p| p.metadata.uid.as_ref().is_some_and(|u| !before.contains(u)))
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .map(|p| (p.metadata.namespace.clone().unwrap_or_default(), p.metadata.name.clone().unwrap_or_default()))
        .collect()
}

/// Of the pods newly started on the node: how many, and the ones without a CiliumEndpoint.
async fn endpoints_missing(
    read: &kube::Client,
    node: &str,
    before: &BTreeSet<String>,
) -> Result<(usize, Vec<String>), String> {
    let lp = ListParams::default().fields(&format!("spec.nodeName={node}"));
    let pods =
        Api::<Pod>::all(read.clone()).list(&lp).await.map_err(|e| format!("cannot list the pods on {node}: {e}"))?;
    let new = newly_started(&pods.items, before);
    if new.is_empty() {
        return Ok((0, Vec::new()));
    }
    let ceps = cilium_endpoints(read)
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("CiliumEndpoints unreadable: {e}"))?;
    let have: BTreeSet<(String, String)> = ceps
        .items
        .iter()
        .map(|c| (c.metadata.namespace.clone().unwrap_or_default(), c.metadata.name.clone().unwrap_or_default()))
        .collect();
    let missing = new.iter().filter(|k| !have.contains(*k)).map(|(ns, n)| format!("{ns}/{n}")).collect();
    Ok((new.len(), missing))
}

/// After Ready: waits (its own `wait_timeout`) until every pod newly started on the node has a
/// CiliumEndpoint.
async fn wait_endpoints(
    env: &StepEnv,
    read: &kube::Client,
    name: &str,
    before: &BTreeSet<String>,
    progress: &Progress,
    cancel: &CancellationToken,
) -> Result<(), String> {
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let now = match endpoints_missing(read, name, before).await {
            Ok((want, missing)) if missing.is_empty() => {
                progress.say(format!("{name}: {want} pod(s) newly started there, every one with a CiliumEndpoint"));
                return Ok(());
            }
            Ok((want, missing)) => {
                progress.phase(NodePhase::WaitingEndpoints { have: want - missing.len(), want });
                format!(
                    "{} of {want} pod(s) newly started there without a CiliumEndpoint: {}",
                    missing.len(),
                    missing.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
                )
            }
            Err(e) => e,
        };
        if now != last {
            progress.say(format!("{name}: waiting: {now}"));
            last = now.clone();
        }
        if started.elapsed() >= env.wait_timeout {
            return Err(format!("after {} more: {now}", crate::duration::format_short(env.wait_timeout)));
        }
        sleep(cancel).await?;
    }
}

/// Why the move of a node's pods onto Cilium stopped.
#[derive(Debug, thiserror::Error)]
enum Moved {
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Cancelled(String),
}

/// A pod on the node that needs a CNI (not hostNetwork, not finished, not terminating) and has
/// no CiliumEndpoint: it still holds an address of the old network, or has none yet.
struct Unmanaged {
    pod: crate::checks::drain::PodRef,
    /// It has a controller that creates it again when it is evicted.
    controlled: bool,
}

/// The node's pods without a CiliumEndpoint (read-only).
async fn unmanaged(read: &kube::Client, node: &str) -> Result<Vec<Unmanaged>, String> {
    let pods = Api::<Pod>::all(read.clone())
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await
        .map_err(|e| format!("cannot list the pods on {node}: {e}"))?;
    let ar = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("cilium.io", "v2", "CiliumEndpoint"),
        "ciliumendpoints",
    );
    let endpoints: std::collections::BTreeSet<(String, String)> =
        Api::<kube::api::DynamicObject>::all_with(read.clone(), &ar)
            .list_metadata(&ListParams::default())
            .await
            .map_err(|e| format!("cannot list CiliumEndpoints: {e}"))?
            .items
            .into_iter()
            .filter_map(|m| Some((m.metadata.namespace?, m.metadata.name?)))
            .collect();
    Ok(pods
        .items
        .iter()
        .filter(|p| {
            let spec = p.spec.as_ref();
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
            !spec.and_then(|s| s.host_network).unwrap_or(false)
                && p.metadata.deletion_timestamp.is_none()
                && !matches!(phase, "Succeeded" | "Failed")
        })
        .filter_map(|p| {
            let namespace = p.metadata.namespace.clone()?;
            let name = p.metadata.name.clone()?;
            if endpoints.contains(&(namespace.clone(), name.clone())) {
                return None;
            }
            let owner = p
                .metadata
                .owner_references
                .as_ref()
                .and_then(|o| o.iter().find(|o| o.controller == Some(true)))
                .map(|o| format!("{}/{}", o.kind, o.name));
            Some(Unmanaged {
                controlled: owner.is_some(),
                pod: crate::checks::drain::PodRef {
                    namespace,
                    name,
                    uid: p.metadata.uid.clone().unwrap_or_default(),
                    owner: owner.unwrap_or_else(|| "none".into()),
                },
            })
        })
        .collect())
}

/// Stage 1, after the restart: evicts the node's pods that have a controller and no
/// CiliumEndpoint (their controllers create them again, now on Cilium), then waits until every
/// pod there has one. A pod without a controller is never evicted (it would be gone): it is
/// named and the wait leaves it out.
async fn onto_cilium(
    exec: &Executor,
    env: &StepEnv,
    name: &str,
    progress: &Progress,
    cancel: &CancellationToken,
) -> Result<(), Moved> {
    let read = exec.read_client();
    let first = unmanaged(read, name).await.map_err(Moved::Failed)?;
    let bare: Vec<String> = first.iter().filter(|u| !u.controlled).map(|u| u.pod.key()).collect();
    if !bare.is_empty() {
        progress.say(format!(
            "{name}: not re-created (no controller; re-create by hand): {}; the Nodes pane keeps the node unswitched until they are",
            bare.join(", ")
        ));
    }
    let move_now: Vec<crate::checks::drain::PodRef> =
        first.into_iter().filter(|u| u.controlled).map(|u| u.pod).collect();
    if !move_now.is_empty() {
        progress.say(format!(
            "{name}: re-creating {} pod(s) still on the old network: {}",
            move_now.len(),
            move_now.iter().map(|p| p.key()).collect::<Vec<_>>().join(", ")
        ));
        let done = exec.recreate(name, move_now, progress, cancel).await.map_err(|e| match e {
            ExecError::Cancelled(m) => Moved::Cancelled(m),
            ExecError::Timeout(m) => Moved::Timeout(m),
            other => Moved::Failed(other.to_string()),
        })?;
        progress.say(format!("{name}: {done}"));
    }
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let now = match unmanaged(read, name).await {
            Ok(u) => {
                let waiting: Vec<String> = u.iter().filter(|u| u.controlled).map(|u| u.pod.key()).collect();
                if waiting.is_empty() {
                    progress.say(format!("{name}: every pod on it has a CiliumEndpoint"));
                    return Ok(());
                }
                format!("{} pod(s) without a CiliumEndpoint: {}", waiting.len(), waiting.join(", "))
            }
            Err(e) => e,
        };
        if now != last {
            progress.say(format!("{name}: waiting: {now}"));
            last = now.clone();
        }
        if started.elapsed() >= env.wait_timeout {
            return Err(Moved::Timeout(format!("after {}: {now}", crate::duration::format_short(env.wait_timeout))));
        }
        sleep(cancel).await.map_err(Moved::Cancelled)?;
    }
}

/// What to look at on a node that did not come back: the `journalctl` command line and the
/// last [`LOG_TAIL`] lines of its k3s journal, read over the same SSH (read-only).
async fn look(shell: &NodeShell) -> String {
    let logs = match shell.logs(LOG_TAIL).await {
        Ok(o) => {
            let t = o.stdout_text();
            let lines: Vec<&str> = t.lines().collect();
            lines[lines.len().saturating_sub(LOG_TAIL as usize)..].join("\n")
        }
        Err(e) => format!("(cannot read its journal: {e})"),
    };
    let cmd = shell.preview(&[NodeCommand::Logs { lines: crate::node::LOG_LINES }], None).join("");
    format!("look: {cmd}\nlast {LOG_TAIL} journal lines:\n{logs}")
}

fn stop_if_cancelled(cancel: &CancellationToken, name: &str, w: &Written) -> Result<(), ExecError> {
    if cancel.is_cancelled() {
        return Err(ExecError::Cancelled(format!("{name}: stopped by the operator; done on it: {}", w.0.join(", "))));
    }
    Ok(())
}

/// The journaled outcome of an SSH command: exit status and stderr tail (never stdout, never stdin).
fn outcome(res: &Result<crate::node::Output, SshError>) -> String {
    match res {
        Ok(o) => format!("exit {}{}", o.code, {
            let t = crate::node::ssh::tail(&o.stderr, 300);
            if t.is_empty() { String::new() } else { format!("; stderr: {t}") }
        }),
        Err(e) => e.to_string(),
    }
}

fn ssh_err(w: &Written, name: &str, what: &str, e: SshError) -> ExecError {
    if w.0.iter().any(|s| s.contains("written") || s.contains("removed") || s.contains("restarted")) {
        ExecError::Failed(format!("{name}: cannot {what}: {e}; done on {name}: {}", w.0.join(", ")))
    } else {
        ExecError::Failed(format!(
            "{name}: cannot {what}: {e}; nothing written on {name}; it is left {}",
            w.0.join(" and ")
        ))
    }
}

#[allow(clippy::too_many_arguments)]
async fn wait_back(
    env: &StepEnv,
    read: &kube::Client,
    shell: &NodeShell,
    stage: Stage,
    undo: bool,
    hash_before: Option<String>,
    progress: &Progress,
    cancel: &CancellationToken,
) -> Result<(), String> {
    let name = shell.node();
    let started = Instant::now();
    let timeout = env.wait_timeout;
    // 1: the restart shows (NotReady, or a new config hash); a node that stayed Ready through
    // a quick restart is accepted after RESTART_SEEN.
    loop {
        let n = get_node(read, name).await;
        if let Ok(n) = &n {
            if !k3s::is_ready(n) {
                progress.say(format!("{name}: NotReady; waiting for Ready"));
                break;
            }
            if config_hash(n) != hash_before {
                progress.say(format!("{name}: restarted (new k3s.io/node-config-hash); waiting for Ready"));
                break;
            }
        }
        if started.elapsed() >= RESTART_SEEN.min(timeout) {
            progress.say(format!("{name}: never seen NotReady; waiting for Ready"));
            break;
        }
        sleep(cancel).await?;
    }
    // 2: Ready, the flags, the cilium agent Ready, the taint gone.
    let mut last = String::new();
    loop {
        let now = match get_node(read, name).await {
            Err(e) => e,
            Ok(n) => {
                let mut missing = Vec::new();
                if !k3s::is_ready(&n) {
                    missing.push("not Ready".to_string());
                }
                if shell.role() == NodeRole::Server {
                    match k3s::node_args(&n) {
                        Some(Ok(a)) if flags_done(&a, stage, undo) => {}
                        _ => missing.push(format!("k3s.io/node-args without {}", flags_wanted(stage, undo))),
                    }
                }
                if has_taint(&n, AGENT_NOT_READY_TAINT) {
                    missing.push(format!("taint {AGENT_NOT_READY_TAINT}"));
                }
                match cilium_ready(env, read, name).await {
                    Ok(true) => {}
                    Ok(false) => missing.push("cilium agent not Ready".into()),
                    Err(e) => missing.push(e),
                }
                if missing.is_empty() {
                    progress.say(format!("{name}: Ready after {}", crate::duration::format_short(started.elapsed())));
                    return Ok(());
                }
                if k3s::is_ready(&n) {
                    progress.phase(NodePhase::WaitingAgent);
                }
                missing.join(", ")
            }
        };
        if now != last {
            progress.say(format!("{name}: waiting: {now}"));
            last = now.clone();
        }
        if started.elapsed() >= timeout {
            return Err(format!("after {}: {now}", crate::duration::format_short(timeout)));
        }
        sleep(cancel).await?;
    }
}

async fn sleep(cancel: &CancellationToken) -> Result<(), String> {
    tokio::select! {
        () = cancel.cancelled() => Err("stopped by the operator while waiting".into()),
        () = tokio::time::sleep(POLL) => Ok(()),
    }
}

/// Whether the cilium agent pod on the node is Ready.
async fn cilium_ready(env: &StepEnv, read: &kube::Client, node: &str) -> Result<bool, String> {
    let pods: Api<Pod> = Api::namespaced(read.clone(), &env.settings.cilium.namespace);
    let lp = ListParams::default().labels("k8s-app=cilium").fields(&format!("spec.nodeName={node}"));
    let list = pods.list(&lp).await.map_err(|e| format!("cilium pods unreadable: {e}"))?;
    Ok(list.items.iter().any(|p| {
        p.metadata.deletion_timestamp.is_none()
            && p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_say_done_per_stage_and_undo() {
        let on = k3s::NodeArgs::parse(r#"["server","--flannel-backend","none","--disable-network-policy","true"]"#)
            .expect("args");
        let off = k3s::NodeArgs::parse(r#"["server","--cluster-init","true"]"#).expect("args");
        assert!(flags_done(&on, Stage::One, false) && !flags_done(&on, Stage::One, true));
        assert!(flags_done(&off, Stage::One, true) && !flags_done(&off, Stage::One, false));
        assert!(!flags_done(&on, Stage::Two, false) && flags_done(&on, Stage::Two, true));
        let kp = k3s::NodeArgs::parse(r#"["server","--disable-kube-proxy","true"]"#).expect("args");
        assert!(flags_done(&kp, Stage::Two, false));
    }

    #[test]
    fn only_pods_newly_started_there_need_an_endpoint() {
        let pod = |name: &str, uid: &str, phase: &str, host: bool| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": "media", "name": name, "uid": uid},
                "spec": {"containers": [], "hostNetwork": host},
                "status": {"phase": phase},
            }))
            .expect("pod")
        };
        let pods = [
            pod("old", "u1", "Running", false),
            pod("new", "u2", "Running", false),
            pod("host", "u3", "Running", true),
            pod("pending", "u4", "Pending", false),
        ];
        let before: BTreeSet<String> = ["u1".to_string()].into();
        assert_eq!(newly_started(&pods, &before), [("media".to_string(), "new".to_string())]);
    }

    #[test]
    fn ssh_is_unavailable_with_a_missing_config_file() {
        let mut s = crate::settings::Settings::default();
        s.ssh.config_file = Some("/nonexistent/ssh_config".into());
        let e = ssh_available(&s).expect_err("missing file");
        assert!(e.contains("/nonexistent/ssh_config"), "{e}");
    }
}

#[cfg(test)]
mod soak_verdict_tests {
    use super::*;

    fn entry(seq: u64, record: Record) -> Entry {
        Entry { seq, time: format!("t{seq}"), prev: String::new(), record }
    }

    fn intent(op: &str, step: &str) -> Record {
        Record::Intent {
            op: op.into(),
            title: format!("run {step}"),
            preview: vec![],
            confirmed_by: "test".into(),
            mode: "armed".into(),
            step: Some(step.into()),
        }
    }

    fn change(op: &str, node: &str) -> Record {
        Record::Change {
            op: op.into(),
            target: format!("node/{node}"),
            action: "write-dropin".into(),
            detail: String::new(),
        }
    }

    fn soak(op: &str, node: &str, detail: &str) -> Record {
        Record::Note { op: op.into(), target: format!("node/{node}"), what: "soak".into(), detail: detail.into() }
    }

    #[test]
    fn the_last_soak_after_the_last_change_of_the_step_is_its_verdict() {
        let j = |records: Vec<Record>| -> Vec<Entry> {
            records.into_iter().enumerate().map(|(i, r)| entry(i as u64 + 1, r)).collect()
        };
        // Nothing this step did: switched elsewhere.
        assert_eq!(last_soak(&j(vec![]), "stage1-nodes", "w2"), LastSoak::Nothing);
        assert!(LastSoak::Nothing.settled());

        // Changed, then the run died (or stopped) before its soak's verdict.
        let e = j(vec![intent("a", "stage1-nodes"), change("a", "w2")]);
        assert_eq!(last_soak(&e, "stage1-nodes", "w2"), LastSoak::NoVerdict { changed: "t2".into() });
        assert!(!last_soak(&e, "stage1-nodes", "w2").settled());

        // The soak stopped the run: not settled; a later run's passed soak settles it.
        let mut records = vec![
            intent("a", "stage1-nodes"),
            change("a", "w2"),
            soak("a", "w2", "stopped: 3 drop(s) other than policy-denied"),
        ];
        let stopped = last_soak(&j(records.clone()), "stage1-nodes", "w2");
        assert_eq!(
            stopped,
            LastSoak::Verdict { time: "t3".into(), detail: "stopped: 3 drop(s) other than policy-denied".into() }
        );
        assert!(!stopped.settled());
        records.extend([intent("b", "stage1-nodes"), soak("b", "w2", "passed: 900 flows, 0 drops")]);
        assert!(last_soak(&j(records.clone()), "stage1-nodes", "w2").settled());

        // A soak that was off settles it too (the operator chose that).
        assert!(
            last_soak(
                &j(vec![
                    intent("a", "stage1-nodes"),
                    change("a", "w2"),
                    soak("a", "w2", "off ([runbook] soak = \"0s\")")
                ]),
                "stage1-nodes",
                "w2"
            )
            .settled()
        );

        // A later change by the step (after a rollback, the stage again) needs a new soak.
        records.extend([intent("c", "stage1-nodes"), change("c", "w2")]);
        assert_eq!(last_soak(&j(records.clone()), "stage1-nodes", "w2"), LastSoak::NoVerdict { changed: "t7".into() });

        // Other steps' and other nodes' records do not count.
        let e = j(vec![
            intent("a", "stage1-nodes"),
            change("a", "w2"),
            soak("a", "w2", "passed: ok"),
            intent("r", "rollback1-nodes"),
            change("r", "w2"),
            intent("s", "stage2-nodes"),
            change("s", "w2"),
            soak("s", "w1", "stopped: drops"),
        ]);
        assert!(last_soak(&e, "stage1-nodes", "w2").settled());
        assert_eq!(last_soak(&e, "stage2-nodes", "w2"), LastSoak::NoVerdict { changed: "t7".into() });
        assert!(!last_soak(&e, "stage2-nodes", "w1").settled());
    }
}
