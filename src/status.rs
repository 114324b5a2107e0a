//! `cutover status`: one snapshot of Argo apps, each node's Cilium readiness, the relay and the
//! stage, through the same watchers and state as the cockpit. Exit 0 only when all is ready, 1
//! when the cluster answered but is not ready, 3 when it could not be read at all (2 stays
//! clap's code for bad flags). Always read-only (it needs get/list/watch, no `pods/exec`).

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::Duration;

use color_eyre::eyre::{Result, WrapErr};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::app::readiness::{Report, evaluate};
use crate::app::state::{AppState, Mode};
use crate::app::update::{AppEvent, update};
use crate::cli::GlobalArgs;
use crate::cluster::watch::{self, Change, KubeEvent, SourceId, SourceProblem, WatchTargets};

/// Exit code: everything is ready.
pub const EXIT_READY: u8 = 0;
/// Exit code: the cluster answered and something is not ready (the report says what).
pub const EXIT_NOT_READY: u8 = 1;
/// Exit code: the cluster could not be read at all (no kubeconfig, API unreachable, every list
/// refused), so there is no report. Distinct from [`EXIT_NOT_READY`] so that a script waiting for
/// readiness can tell "not yet" from "cannot tell"; 2 is clap's code for bad flags.
pub const EXIT_UNREACHABLE: u8 = 3;

/// How long the first snapshot waits for every source to list (or fail).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// `cutover status` options.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Exit codes:\n  \
    0  ready\n  \
    1  not ready (the cluster answered; the report says what is missing)\n  \
    2  invalid flags\n  \
    3  cannot read the cluster (no kubeconfig, API unreachable, every list refused); one line on stderr")]
pub struct StatusArgs {
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Output,
    /// Wait until everything is ready (like `cilium status --wait`).
    #[arg(long)]
    pub wait: bool,
    /// How long to wait with --wait: a Go duration (e.g. 5m, 90s, 1h30m).
    #[arg(long, default_value = "5m", value_parser = crate::duration::parse_non_negative)]
    pub wait_duration: Duration,
    /// Cilium namespace.
    #[arg(long, default_value = "kube-system")]
    pub cilium_namespace: String,
    /// Argo CD namespace.
    #[arg(long, default_value = "argocd")]
    pub argo_namespace: String,
    /// Name of the Cilium Argo CD Application.
    #[arg(long, default_value = "cilium-app")]
    pub cilium_app: String,
}

/// When `--wait` gives up. `None` = never: a wait longer than the clock can represent is a wait
/// without deadline (rather than a panic adding it to `now`).
pub fn wait_deadline(start: Instant, wait: Duration) -> Option<Instant> {
    start.checked_add(wait)
}

/// What the Kubernetes sources have shown so far: which listed, and the first failure.
#[derive(Debug, Default)]
struct Seen {
    settled: BTreeSet<SourceId>,
    listed: BTreeSet<SourceId>,
    problem: Option<SourceProblem>,
}

impl Seen {
    fn observe(&mut self, ev: &AppEvent) {
        let AppEvent::Kube(k) = ev else { return };
        match k.as_ref() {
            KubeEvent::Problem(id, p) => {
                self.settled.insert(*id);
                // Prefer a connection failure over a 403/404 for the message.
                let better = matches!(p, SourceProblem::Unreachable(_))
                    && !matches!(self.problem, Some(SourceProblem::Unreachable(_)));
                if self.problem.is_none() || better {
                    self.problem = Some(p.clone());
                }
            }
            other if is_init_done(other) => {
                self.settled.insert(other.source());
                self.listed.insert(other.source());
            }
            _ => {}
        }
    }

    /// The one line for [`EXIT_UNREACHABLE`] when no source ever listed.
    fn unreadable(&self, server: &str, context: &str) -> Option<String> {
        if !self.listed.is_empty() {
            return None;
        }
        Some(match &self.problem {
            Some(SourceProblem::Forbidden(m)) => {
                format!("cannot read the cluster through context {context}: every list was refused ({m})")
            }
            Some(p) => format!("cannot reach the Kubernetes API at {server} (context {context}): {}", p.message()),
            None => format!(
                "cannot reach the Kubernetes API at {server} (context {context}): no answer within {}s",
                SETTLE_TIMEOUT.as_secs()
            ),
        })
    }
}

/// What one `cutover status` run found.
#[derive(Debug)]
pub enum Outcome {
    /// The cluster answered: the report, and the state it was derived from (the same state the
    /// cockpit would draw, e.g. its header).
    Report { report: Report, state: Box<AppState> },
    /// The cluster could not be read at all ([`EXIT_UNREACHABLE`]); the one line why.
    Unreadable(String),
}

impl Outcome {
    /// One of [`EXIT_READY`], [`EXIT_NOT_READY`], [`EXIT_UNREACHABLE`].
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Report { report, .. } if report.ready => EXIT_READY,
            Outcome::Report { .. } => EXIT_NOT_READY,
            Outcome::Unreadable(_) => EXIT_UNREACHABLE,
        }
    }
}

/// Runs `cutover status`; the exit code is one of [`EXIT_READY`], [`EXIT_NOT_READY`],
/// [`EXIT_UNREACHABLE`].
pub async fn run(args: StatusArgs, global: &GlobalArgs) -> Result<ExitCode> {
    let outcome = collect(&args, global).await;
    match &outcome {
        Outcome::Unreadable(message) => eprintln!("cutover status: {message}"),
        Outcome::Report { report, .. } => print_report(report, args.output)?,
    }
    Ok(ExitCode::from(outcome.exit_code()))
}

/// Reads the cluster once (and waits with `--wait`) and evaluates readiness, printing nothing:
/// the library entry behind [`run`].
pub async fn collect(args: &StatusArgs, global: &GlobalArgs) -> Outcome {
    let mut global = global.clone();
    global.read_only = true;
    let conn = match crate::cluster::client::connect(&global, |_| true).await {
        Ok(c) => c,
        Err(e) => return Outcome::Unreadable(format!("cannot connect to the cluster: {e}")),
    };
    let targets =
        WatchTargets { cilium_namespace: args.cilium_namespace.clone(), argo_namespace: args.argo_namespace.clone() };
    let (tx, mut rx) = mpsc::channel::<AppEvent>(4096);
    let tasks = watch::spawn_all(conn.client.clone(), &targets, tx.clone());
    let mut state = AppState::new(jiff::Timestamp::now(), Mode::ReadOnly, 1);
    state.context = conn.context.clone();
    state.cilium_app = args.cilium_app.clone();

    let relay_checked = global.hubble_server.is_some();
    if let Some(addr) = &global.hubble_server {
        query_relay(addr, &mut state).await;
    }

    // First: every source has listed (InitDone) or failed.
    let first_deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut seen = Seen::default();
    while seen.settled.len() < SourceId::ALL.len() && Instant::now() < first_deadline {
        match tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
            Ok(Some(ev)) => {
                seen.observe(&ev);
                update(&mut state, ev);
            }
            Ok(None) => break,
            Err(_) => {}
        }
    }
    let mut report = evaluate(&state, relay_checked);
    if args.wait {
        // Keep going while the API is down too: during the migration a k3s server restarts, and
        // `--wait` is how one waits for it to come back ready.
        let deadline = wait_deadline(Instant::now(), args.wait_duration);
        while !report.ready && deadline.is_none_or(|d| Instant::now() < d) {
            if let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
                seen.observe(&ev);
                update(&mut state, ev);
                while let Ok(ev) = rx.try_recv() {
                    seen.observe(&ev);
                    update(&mut state, ev);
                }
            }
            if relay_checked && let Some(addr) = &global.hubble_server {
                query_relay(addr, &mut state).await;
            }
            report = evaluate(&state, relay_checked);
        }
    }
    for t in tasks {
        t.abort();
    }
    if let Some(message) = seen.unreadable(&conn.server, &conn.context) {
        return Outcome::Unreadable(message);
    }
    Outcome::Report { report, state: Box::new(state) }
}

fn is_init_done(ev: &KubeEvent) -> bool {
    matches!(
        ev,
        KubeEvent::Nodes(Change::InitDone)
            | KubeEvent::Pods(Change::InitDone)
            | KubeEvent::CiliumDaemonSet(Change::InitDone)
            | KubeEvent::CiliumOperator(Change::InitDone)
            | KubeEvent::CiliumNodes(Change::InitDone)
            | KubeEvent::Applications(Change::InitDone)
            | KubeEvent::Pdbs(Change::InitDone)
            | KubeEvent::NodeStarts(Change::InitDone)
            | KubeEvent::CiliumEndpoints(Change::InitDone)
    )
}

/// Asks the relay for its nodes once (ServerStatus + GetNodes), with the shared Hubble client.
async fn query_relay(addr: &str, state: &mut AppState) {
    use crate::hubble::client::{connect, get_nodes, server_status};
    let result = async {
        let channel = connect(addr).await?;
        Ok::<_, crate::hubble::client::HubbleError>((
            server_status(&channel, addr).await?,
            get_nodes(&channel, addr).await?,
        ))
    }
    .await;
    match result {
        Ok((status, nodes)) => {
            if state.relay.connected_since.is_none() {
                state.on_relay_connected(addr);
            }
            state.relay.version = status.version;
            state.on_relay_nodes(&nodes);
        }
        Err(e) => state.on_relay_disconnected(&e.to_string(), 1, Duration::ZERO),
    }
}

fn print_report(report: &Report, output: Output) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match output {
        Output::Json => {
            serde_json::to_writer_pretty(&mut out, report).wrap_err("cannot write JSON")?;
            writeln!(out)?;
        }
        Output::Text => {
            writeln!(
                out,
                "context {} · stage {} · {}",
                report.context,
                report.stage,
                if report.ready { "READY" } else { "NOT READY" }
            )?;
            for i in &report.items {
                let mark = match i.status {
                    "ready" => "ok  ",
                    "not-ready" => "FAIL",
                    _ => "??  ",
                };
                writeln!(
                    out,
                    "{mark} {}{}",
                    i.what,
                    if i.detail.is_empty() { String::new() } else { format!(" — {}", i.detail) }
                )?;
            }
            let bad: Vec<&str> = report.items.iter().filter(|i| i.status != "ready").map(|i| i.what.as_str()).collect();
            if !bad.is_empty() {
                writeln!(out, "not ready: {}", bad.join(", "))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_deadline_never_overflows() {
        let now = Instant::now();
        assert_eq!(wait_deadline(now, Duration::from_secs(5)), Some(now + Duration::from_secs(5)));
        assert_eq!(wait_deadline(now, Duration::MAX), None);
        // The longest --wait-duration the parser accepts: a deadline or none, never a panic.
        let longest = crate::duration::parse_non_negative("2562047h47m16.854775807s").unwrap();
        let _ = wait_deadline(now, longest);
    }

    #[test]
    fn wait_duration_flag() {
        use clap::Parser;
        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(flatten)]
            status: StatusArgs,
        }
        let parse = |v: &str| Cli::try_parse_from(["status", "--wait-duration", v]).map(|c| c.status.wait_duration);
        assert_eq!(parse("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("1.5m").unwrap(), Duration::from_secs(90));
        for bad in ["9223372036854775807s", "99999999999999999999h", "-1s", "90", "5x", ""] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let err = parse("9223372036854775807s").unwrap_err().to_string();
        assert!(err.contains("duration out of range"), "{err}");
        assert_eq!(Cli::try_parse_from(["status"]).unwrap().status.wait_duration, Duration::from_secs(300));
    }

    #[test]
    fn no_listing_means_unreadable() {
        let kube = |k: KubeEvent| AppEvent::Kube(Box::new(k));
        let mut seen = Seen::default();
        assert!(seen.unreadable("https://x:6443", "c").is_some_and(|m| m.contains("no answer")));
        seen.observe(&kube(KubeEvent::Problem(SourceId::Applications, SourceProblem::NotInstalled("nope".into()))));
        seen.observe(&kube(KubeEvent::Problem(SourceId::Nodes, SourceProblem::Unreachable("refused".into()))));
        let m = seen.unreadable("https://x:6443", "c").unwrap_or_default();
        assert!(m.contains("cannot reach the Kubernetes API at https://x:6443") && m.contains("refused"), "{m}");
        seen.observe(&kube(KubeEvent::Pods(Change::InitDone)));
        assert_eq!(seen.unreadable("https://x:6443", "c"), None);
    }
}
