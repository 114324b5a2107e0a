//! `cutover status`: one snapshot of Argo apps, each node's Cilium readiness, the relay and the
//! stage, through the same watchers and state as the cockpit. Exit 0 only when all is ready.
//! Always read-only (it needs get/list/watch, no `pods/exec`).

use std::process::ExitCode;
use std::time::Duration;

use color_eyre::eyre::{Result, WrapErr};
use tokio::sync::mpsc;

use crate::app::readiness::{Report, evaluate};
use crate::app::state::{AppState, Mode};
use crate::app::update::{AppEvent, update};
use crate::cli::GlobalArgs;
use crate::cluster::watch::{self, Change, KubeEvent, SourceId, WatchTargets};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// `cutover status` options.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Output,
    /// Wait until everything is ready (like `cilium status --wait`).
    #[arg(long)]
    pub wait: bool,
    /// How long to wait with --wait (e.g. 5m, 90s).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
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

/// Parses `90s`, `5m`, `1h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('s') => (&s[..s.len() - 1], 1),
        Some('m') => (&s[..s.len() - 1], 60),
        Some('h') => (&s[..s.len() - 1], 3600),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .map(|n| Duration::from_secs(n * mult))
        .map_err(|_| format!("invalid duration {s:?} (use e.g. 90s, 5m, 1h)"))
}

/// Runs `cutover status`.
pub async fn run(args: StatusArgs, global: &GlobalArgs) -> Result<ExitCode> {
    let mut global = global.clone();
    global.read_only = true;
    let conn = crate::cluster::client::connect(&global, |_| true).await.wrap_err("cannot connect to the cluster")?;
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
    let first_deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut settled: std::collections::BTreeSet<SourceId> = Default::default();
    while settled.len() < SourceId::ALL.len() && tokio::time::Instant::now() < first_deadline {
        match tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
            Ok(Some(ev)) => {
                if let AppEvent::Kube(k) = &ev {
                    match k.as_ref() {
                        KubeEvent::Problem(id, _) => {
                            settled.insert(*id);
                        }
                        other if is_init_done(other) => {
                            settled.insert(other.source());
                        }
                        _ => {}
                    }
                }
                update(&mut state, ev);
            }
            Ok(None) => break,
            Err(_) => {}
        }
    }
    let mut report = evaluate(&state, relay_checked);
    if args.wait {
        let deadline = tokio::time::Instant::now() + args.wait_duration;
        while !report.ready && tokio::time::Instant::now() < deadline {
            if let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
                update(&mut state, ev);
                while let Ok(ev) = rx.try_recv() {
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
    print_report(&report, args.output)?;
    Ok(if report.ready { ExitCode::SUCCESS } else { ExitCode::FAILURE })
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
