//! `cutover`: the command line. Subcommands map onto library calls; errors are reported with
//! color-eyre at this edge, the terminal is restored on every exit path, logs go to a file.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use color_eyre::eyre::{Result, WrapErr};
use cutover::cli::GlobalArgs;
use cutover::runbook::cli::Headless;

#[derive(Debug, Parser)]
#[command(
    name = "cutover",
    version,
    about = "Terminal cockpit for moving a k3s cluster from flannel to Cilium under Argo CD"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// The cockpit against the cluster of the current (or --context) kubeconfig context (default).
    Tui(TuiArgs),
    /// The cockpit against the built-in simulated homelab (nothing to install, nothing real touched).
    #[cfg(feature = "sim")]
    Demo(DemoArgs),
    /// Run the simulated cluster (loopback Kubernetes API + hubble-relay) until Ctrl-C.
    #[cfg(feature = "sim")]
    Sim(SimArgs),
    /// One snapshot of Argo apps, per-node Cilium readiness and the relay (exit 0 ready, 1 not ready, 3 unreachable).
    Status(cutover::status::StatusArgs),
    /// Read-only pre-flight checks of the cluster against the plan (exit 0 pass, 1 fail, 2 warn).
    Preflight(cutover::checks::PreflightArgs),
    /// The validation checklist: passive checks from the flow stream and the cluster's state
    /// (exit 0 all green, 1 red or unknown, 2 bad input, 3 unreachable).
    Validate(cutover::validate::ValidateArgs),
    /// Render the Argo CD Application, Cilium values, Hubble UI Ingress and k3s config for a stage.
    Render(cutover::manifests::render::RenderArgs),
    /// Check a Cilium values file against the pinned chart (removed keys, invalid values, crashes).
    Lint(cutover::manifests::lint::LintArgs),
    /// Stream or dump flows from hubble-relay, like `hubble observe` (same client and filters as the cockpit).
    Flows(cutover::hubble::cli::FlowsArgs),
    /// Cordon a node (same runner, cluster lock and journal as the cockpit's `c`).
    Cordon(cutover::runbook::cli::NodeArgs),
    /// Uncordon a node.
    Uncordon(cutover::runbook::cli::NodeArgs),
    /// Drain a node: shows the plan, asks for the node's name on a terminal (or --yes).
    Drain(cutover::runbook::cli::DrainArgs),
    /// Ask Argo CD to sync an Application.
    Sync(cutover::runbook::cli::AppArgs),
    /// Ask Argo CD to refresh an Application (re-compare with Git).
    Refresh(cutover::runbook::cli::AppArgs),
    /// Print the journal of operations (`--verify` checks its hash chain).
    Journal(cutover::runbook::cli::JournalArgs),
    /// The runbook (the plan's stages as steps) with every gate evaluated on the cluster (read-only).
    Plan(cutover::runbook::plan::PlanArgs),
    /// Run the runbook's next steps (or the stages/steps named), each after its preview and confirmation.
    Run(cutover::runbook::run_cli::RunArgs),
    /// Roll a stage back, in the runbook's reverse order (Stage 2 before Stage 1).
    Rollback(cutover::runbook::run_cli::RollbackArgs),
    /// Where the settings come from (`config path`: the cutover.toml in use).
    Config(cutover::settings::ConfigArgs),
}

#[derive(Debug, Clone, clap::Args)]
struct TuiArgs {
    /// Flows kept in the cockpit's ring buffer.
    #[arg(long, default_value_t = cutover::tui::TuiOptions::default().flow_buffer)]
    flow_buffer: usize,
    /// Frames per second at most (keys are answered at once regardless). Low by default: a
    /// flow stream redraws most of the screen each frame, and SSH links are slow.
    #[arg(long, default_value_t = cutover::tui::TuiOptions::default().max_fps)]
    max_fps: u32,
    /// The runbook's previews only: confirming a step (or any operation) sends nothing.
    #[arg(long)]
    dry_run: bool,
    /// A runbook file that replaces the built-in one (default: `runbook.file` in the settings).
    #[arg(long, value_name = "PATH")]
    runbook: Option<std::path::PathBuf>,
}

/// `cutover` alone runs the cockpit with the same defaults as `cutover tui`.
impl Default for TuiArgs {
    fn default() -> Self {
        let o = cutover::tui::TuiOptions::default();
        TuiArgs { flow_buffer: o.flow_buffer, max_fps: o.max_fps, dry_run: false, runbook: None }
    }
}

/// What the simulated cluster replays.
#[cfg(feature = "sim")]
#[derive(Debug, Clone, clap::Args)]
struct ScenarioArgs {
    /// Scenario: fresh, cilium-installed, migrated, kpr, a bundled example (ha-servers,
    /// servicemonitor-crd, flaky-homelab, broken-plan-values) or a scenario file.
    #[arg(long, default_value = "fresh")]
    scenario: String,
    /// Same seed, same history.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Simulated time runs this many times faster.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
}

#[cfg(feature = "sim")]
#[derive(Debug, Clone, clap::Args)]
struct DemoArgs {
    #[command(flatten)]
    sim: ScenarioArgs,
    /// Connect as the sim's viewer identity (get/list/watch only) — implies --read-only.
    #[arg(long)]
    viewer: bool,
    #[command(flatten)]
    tui: TuiArgs,
}

#[cfg(feature = "sim")]
#[derive(Debug, Clone, clap::Args)]
struct SimArgs {
    /// Kubernetes API listen address (port 0 = any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// hubble-relay listen address (port 0 = any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    relay_listen: std::net::SocketAddr,
    #[command(flatten)]
    sim: ScenarioArgs,
    /// Where to write the kubeconfig (default: a temp file, printed in the JSON line).
    #[arg(long)]
    kubeconfig_out: Option<std::path::PathBuf>,
    /// Flows each node's Hubble ring buffer holds (Hubble's default: 4095).
    #[arg(long, default_value_t = 4095)]
    relay_ring: usize,
    /// Flows put in each node's ring when its agent appears (a backlog for `--last N`, benchmarks).
    #[arg(long, default_value_t = 200)]
    relay_prefill: usize,
    /// Flows per second over all nodes at speed 1.
    #[arg(long, default_value_t = 300.0)]
    relay_rate: f64,
}

/// Stack of each tokio worker thread.
const WORKER_STACK: usize = 8 * 1024 * 1024;

fn main() -> ExitCode {
    // Errors for operators: the chain of what failed, no source locations; colour only when
    // NO_COLOR is unset. RUST_BACKTRACE=1 still adds backtraces for bug reports.
    // (A stderr redirected to a file gets no colour codes either.)
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) || !std::io::stderr().is_terminal();
    let hook = color_eyre::config::HookBuilder::default()
        .display_location_section(false)
        .display_env_section(false)
        .theme(if no_color { color_eyre::config::Theme::new() } else { color_eyre::config::Theme::dark() });
    if let Err(e) = hook.install() {
        eprintln!("cutover: {e}");
        return ExitCode::FAILURE;
    }
    cutover::tui::install_panic_hook();
    let cli = Cli::parse();
    // Worker threads get 8 MiB of stack (tokio's default is 2 MiB): the runbook's step futures
    // (a rollback walks Git, Argo CD and every node) are deep, and a debug build overflowed 2 MiB.
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_stack_size(WORKER_STACK).build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cutover: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _log_guard = init_logging(&cli.global);
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            cutover::tui::restore_terminal();
            eprint!("{}", operator_error(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error as the operator reads it: `cutover: <what failed>` on the first line, then each cause
/// on its own line. `RUST_BACKTRACE=1` adds color-eyre's full report (backtrace) for bug reports.
fn operator_error(e: &color_eyre::Report) -> String {
    use std::fmt::Write;
    let mut out = format!("cutover: {e}\n");
    for cause in e.chain().skip(1) {
        let _ = writeln!(out, "  caused by: {cause}");
    }
    if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
        let _ = writeln!(out, "{e:?}");
    }
    out
}

/// Logs to a file (never the terminal the TUI draws on).
fn init_logging(global: &GlobalArgs) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let path = match global.log_file.clone() {
        Some(p) => p,
        None => {
            // The same state directory as the journal, private to the operator.
            let dir = cutover::paths::state_dir()?;
            cutover::paths::create_private_dir(&dir).ok()?;
            dir.join("cutover.log")
        }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).ok()?;
    }
    let file = std::fs::OpenOptions::new().create(true).append(true).open(&path).ok()?;
    let (writer, guard) = tracing_appender::non_blocking(file);
    let filter = tracing_subscriber::EnvFilter::try_from_env("CUTOVER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn,hyper=warn,h2=warn,tower=warn"));
    tracing_subscriber::fmt().with_writer(writer).with_ansi(false).with_env_filter(filter).try_init().ok()?;
    Some(guard)
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let global = cli.global;
    match cli.command.unwrap_or(Cmd::Tui(TuiArgs::default())) {
        Cmd::Tui(args) => {
            let settings = load_settings(&global)?;
            let conn = cutover::cluster::client::connect(&global, |ctx| settings.read_only_for(Some(ctx)))
                .await
                .wrap_err("cannot connect to the cluster")?;
            let relay = relay_starter(&global, &conn, &settings);
            let mut opts = tui_options(&args, &settings)?;
            opts.relay_target = Some(relay_target(&global, &conn, &settings));
            cutover::tui::run(conn, Some(relay), opts).await?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "sim")]
        Cmd::Demo(args) => demo(global, args).await,
        #[cfg(feature = "sim")]
        Cmd::Sim(args) => sim(args).await,
        Cmd::Status(args) => cutover::status::run(args, &global).await,
        Cmd::Preflight(args) => cutover::checks::run(args, &global).await,
        Cmd::Validate(args) => cutover::validate::run(args, &global).await,
        Cmd::Render(args) => cutover::manifests::render::run(args, &global).await,
        Cmd::Lint(args) => cutover::manifests::lint::run(args, &global).await,
        Cmd::Flows(args) => cutover::hubble::cli::run(args, &global).await,
        Cmd::Cordon(a) => cutover::runbook::cli::run(Headless::Cordon(a), &global).await,
        Cmd::Uncordon(a) => cutover::runbook::cli::run(Headless::Uncordon(a), &global).await,
        Cmd::Drain(a) => cutover::runbook::cli::run(Headless::Drain(a), &global).await,
        Cmd::Sync(a) => cutover::runbook::cli::run(Headless::Sync(a), &global).await,
        Cmd::Refresh(a) => cutover::runbook::cli::run(Headless::Refresh(a), &global).await,
        Cmd::Journal(a) => cutover::runbook::cli::run_journal(a, &global),
        Cmd::Plan(a) => cutover::runbook::plan::run_plan(a, &global).await,
        Cmd::Run(a) => cutover::runbook::run_cli::run(a, &global).await,
        Cmd::Rollback(a) => cutover::runbook::run_cli::rollback(a, &global).await,
        Cmd::Config(args) => cutover::settings::run_config(args, &global),
    }
}

fn load_settings(global: &GlobalArgs) -> Result<cutover::settings::Settings> {
    cutover::settings::Settings::load(global.settings.as_deref()).wrap_err("cannot load the settings")
}

fn tui_options(args: &TuiArgs, settings: &cutover::settings::Settings) -> Result<cutover::tui::TuiOptions> {
    let runbook = cutover::runbook::run_cli::load_runbook(args.runbook.as_deref(), settings)
        .wrap_err("cannot load the runbook")?;
    Ok(cutover::tui::TuiOptions {
        flow_buffer: args.flow_buffer.max(1),
        max_fps: args.max_fps.clamp(1, 60),
        targets: cutover::cluster::watch::WatchTargets {
            cilium_namespace: settings.cilium.namespace.clone(),
            argo_namespace: settings.argo.namespace.clone(),
        },
        cilium_app: settings.argo.cilium_app.clone(),
        root_app: settings.argo.root_app.clone(),
        settings: std::sync::Arc::new(settings.clone()),
        journal: None,
        runbook: std::sync::Arc::new(runbook),
        dry_run: args.dry_run,
        relay_target: None,
    })
}

/// The relay: `--hubble-server`, else a port-forward through the API to Service hubble-relay.
fn relay_target(
    global: &GlobalArgs,
    conn: &cutover::cluster::client::ClusterConn,
    settings: &cutover::settings::Settings,
) -> cutover::hubble::client::RelayTarget {
    use cutover::hubble::client::RelayTarget;
    match &global.hubble_server {
        Some(addr) => RelayTarget::Address(addr.clone()),
        None => RelayTarget::Kube { client: conn.client.clone(), namespace: settings.cilium.namespace.clone() },
    }
}

fn relay_starter(
    global: &GlobalArgs,
    conn: &cutover::cluster::client::ClusterConn,
    settings: &cutover::settings::Settings,
) -> cutover::tui::RelayStarter {
    cutover::tui::hubble_source(relay_target(global, conn, settings), 200)
}

#[cfg(feature = "sim")]
async fn demo(mut global: GlobalArgs, args: DemoArgs) -> Result<ExitCode> {
    let opts = cutover::sim::SimOptions {
        scenario: args.sim.scenario.clone(),
        seed: args.sim.seed,
        speed: args.sim.speed,
        ..Default::default()
    };
    let sim = cutover::sim::Sim::start(opts).await.wrap_err("cannot start the simulated cluster")?;
    // Over TLS with the per-start CA, as against a real k3s API server.
    global.kubeconfig = Some(sim.kubeconfig_tls.clone().unwrap_or_else(|| sim.kubeconfig.clone()));
    global.context = Some(if args.viewer { "sim-viewer".into() } else { "sim".into() });
    global.read_only |= args.viewer;
    global.hubble_server = Some(sim.relay_addr.to_string());
    let mut settings = load_settings(&global)?;
    // The operator's clone of the homelab repo: a private clone of the sim's bare origin, alive as
    // long as the demo, so what the runbook commits and pushes is what the sim's Argo CD syncs.
    let clone_dir = cutover::tempdir::TempDir::new().wrap_err("cannot create the demo's Git clone directory")?;
    let clone = sim.clone_origin(&clone_dir.path.join("k8s-homelab")).wrap_err("cannot clone the sim's Git origin")?;
    sim.point_settings_at(&mut settings, clone);
    // The node step's SSH goes to the sim's nodes (their loopback SSH servers), never elsewhere.
    settings.ssh = cutover::node::sim_settings(&sim.ssh);
    let conn = cutover::cluster::client::connect(&global, |_| false)
        .await
        .wrap_err("cannot connect to the simulated cluster")?;
    let relay = relay_starter(&global, &conn, &settings);
    let mut opts = tui_options(&args.tui, &settings)?;
    opts.relay_target = Some(relay_target(&global, &conn, &settings));
    cutover::tui::run(conn, Some(relay), opts).await?;
    sim.stop();
    drop(clone_dir);
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "sim")]
async fn sim(args: SimArgs) -> Result<ExitCode> {
    let opts = cutover::sim::SimOptions {
        api_listen: args.listen,
        relay_listen: args.relay_listen,
        scenario: args.sim.scenario.clone(),
        seed: args.sim.seed,
        speed: args.sim.speed,
        kubeconfig_out: args.kubeconfig_out.clone(),
        relay: cutover::sim::relay::RelayConfig {
            ring_capacity: args.relay_ring.max(1),
            prefill_per_node: args.relay_prefill.min(args.relay_ring),
            flows_per_sec: args.relay_rate.max(0.0),
            ..Default::default()
        },
    };
    let sim = cutover::sim::Sim::start(opts).await.wrap_err("cannot start the simulated cluster")?;
    // A settings file for cutover against this sim, as `demo` uses: a clone of its Git origin
    // (alive as long as the sim) and its nodes' SSH on loopback. Without it the node step's ssh
    // would go to the sim's made-up node addresses (a private range that may be someone's LAN).
    let clone_dir = cutover::tempdir::TempDir::new().wrap_err("cannot create the sim's Git clone directory")?;
    let clone = sim.clone_origin(&clone_dir.path.join("k8s-homelab")).wrap_err("cannot clone the sim's Git origin")?;
    let mut settings = cutover::settings::Settings::default();
    sim.point_settings_at(&mut settings, clone);
    settings.ssh = cutover::node::sim_settings(&sim.ssh);
    let settings_path = clone_dir.path.join("cutover.toml");
    let text = toml::to_string(&settings).wrap_err("cannot encode the sim's settings")?;
    std::fs::write(&settings_path, text)
        .wrap_err_with(|| format!("cannot write the sim's settings to {}", settings_path.display()))?;
    let mut info = serde_json::to_value(sim.info()).wrap_err("cannot encode the sim info")?;
    info["settings"] = serde_json::Value::String(settings_path.display().to_string());
    println!("{}", serde_json::to_string(&info).wrap_err("cannot encode the sim info")?);
    tokio::signal::ctrl_c().await.wrap_err("cannot wait for Ctrl-C")?;
    sim.stop();
    drop(clone_dir);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use color_eyre::eyre::{WrapErr, eyre};

    #[test]
    fn operator_error_puts_the_message_on_the_first_line_and_causes_below() {
        let e = Err::<(), _>(eyre!("connection refused")).wrap_err("cannot connect to the cluster").unwrap_err();
        let text = super::operator_error(&e);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("cutover: cannot connect to the cluster"));
        assert_eq!(lines.next(), Some("  caused by: connection refused"));
    }
}
