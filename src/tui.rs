//! The cockpit's event loop: terminal set-up and restore (also on panic), one `select!` over keys,
//! source events, a housekeeping tick and a capped frame rate. Sources → events → `update` →
//! state → `ui::draw`; operations run in the executor and come back as events.

use std::io::{self, Stdout};
use std::time::Duration;

use color_eyre::eyre::{Result, WrapErr};
use crossterm::event::{DisableBracketedPaste, EnableBracketedPaste, Event as TermEvent, EventStream};
use crossterm::terminal::{
    Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use crossterm::{cursor, execute};
use futures::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use tokio::sync::mpsc;

use crate::app::state::{AppState, Mode};
use crate::app::update::{AppEvent, Command, update};
use crate::cluster::client::ClusterConn;
use crate::cluster::watch::{self, WatchTargets};
use crate::runbook::journal::Journal;
use crate::runbook::runner::{RunEvent, RunRequest, Runner};
use crate::ui::{self, Theme};

/// Restores the terminal when dropped (normal exit, error, or unwinding panic).
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Whether the cockpit took over the terminal (raw mode, alternate screen).
static TERMINAL_TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Leaves raw mode and the alternate screen if the cockpit entered them; safe to call more than
/// once, and a no-op for the headless commands (no stray escape codes in their output).
pub fn restore_terminal() {
    if TERMINAL_TAKEN.swap(false, std::sync::atomic::Ordering::SeqCst) {
        let _ = disable_raw_mode();
        let _ = execute!(io::stdout(), DisableBracketedPaste, LeaveAlternateScreen, cursor::Show);
    }
}

/// Installs a panic hook that restores the terminal before the report is printed.
pub fn install_panic_hook() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        prev(info);
    }));
}

/// How the cockpit runs.
#[derive(Debug, Clone)]
pub struct TuiOptions {
    pub targets: WatchTargets,
    pub flow_buffer: usize,
    /// Frames per second at most (SSH links are slow).
    pub max_fps: u32,
    pub cilium_app: String,
    pub root_app: String,
    /// For the pre-flight checks run from the cockpit.
    pub settings: std::sync::Arc<crate::settings::Settings>,
    /// The journal file (default: `$XDG_STATE_HOME/cutover/journal/<cluster>.jsonl`).
    pub journal: Option<std::path::PathBuf>,
    /// The runbook `n` and `R` walk (the built-in one unless the settings name a file).
    pub runbook: std::sync::Arc<crate::runbook::plan::Runbook>,
    /// Previews only: confirming sends nothing (`--dry-run`).
    pub dry_run: bool,
    /// Where the runbook's `validate` step reads flows.
    pub relay_target: Option<crate::hubble::client::RelayTarget>,
}

impl Default for TuiOptions {
    fn default() -> Self {
        TuiOptions {
            targets: WatchTargets::default(),
            flow_buffer: 10_000,
            max_fps: 5,
            cilium_app: "cilium-app".into(),
            root_app: "root".into(),
            settings: Default::default(),
            journal: None,
            runbook: std::sync::Arc::new(crate::runbook::plan::Runbook::built_in()),
            dry_run: false,
            relay_target: None,
        }
    }
}

/// A function that starts the Hubble source, sending into the cockpit's channel.
pub type RelayStarter = Box<dyn FnOnce(mpsc::Sender<AppEvent>) -> tokio::task::JoinHandle<()> + Send>;

/// Starts the Hubble flow source for the cockpit: follow, with the last `backlog` flows per node
/// first, sending straight into the cockpit's channel.
pub fn hubble_source(target: crate::hubble::client::RelayTarget, backlog: u64) -> RelayStarter {
    Box::new(move |tx: mpsc::Sender<AppEvent>| {
        let query = crate::hubble::client::FlowQuery::follow_last(backlog);
        crate::hubble::client::spawn_flow_source(target, query, tx).task
    })
}

/// Runs the cockpit until the operator quits.
pub async fn run(conn: ClusterConn, relay: Option<RelayStarter>, opts: TuiOptions) -> Result<()> {
    let mode = if conn.read_only { Mode::ReadOnly } else { Mode::Armed };
    let mut state = AppState::new(jiff::Timestamp::now(), mode, opts.flow_buffer);
    state.context = conn.context.clone();
    state.cluster = conn.cluster.clone();
    state.server = conn.server.clone();
    state.cilium_app = opts.cilium_app.clone();
    state.root_app = opts.root_app.clone();
    state.runbook.runbook = Some(opts.runbook.clone());
    state.runbook.dry_run = opts.dry_run;
    state.log(
        crate::app::state::Level::Info,
        format!("connected to {} ({}){}", conn.context, conn.server, if conn.read_only { ", read-only" } else { "" }),
    );

    let (tx, mut rx) = mpsc::channel::<AppEvent>(8192);
    let mut tasks = watch::spawn_all(conn.client.clone(), &opts.targets, tx.clone());
    if let Some(start) = relay {
        tasks.push(start(tx.clone()));
    } else {
        state.log(crate::app::state::Level::Warn, "no hubble-relay configured: flows unknown");
    }
    let journal = match &opts.journal {
        Some(p) => Journal::at(p.clone()),
        None => Journal::for_cluster(&conn.cluster).wrap_err("cannot place the journal")?,
    };
    report_journal(&mut state, &journal);
    let step_journal = journal.clone();
    let (run_tx, mut run_rx) = mpsc::unbounded_channel::<RunEvent>();
    let mut runner = Runner::new(&conn, &opts.targets.argo_namespace, journal, run_tx)
        .map_err(|e| color_eyre::eyre::eyre!(e))
        .wrap_err("cannot build the write client")?;
    runner.lease_config_mut().duration = opts.settings.runbook.lock_duration();
    let mut step_env =
        crate::runbook::steps::StepEnv::new(opts.settings.clone(), opts.runbook.clone()).with_journal(step_journal);
    if let Some(t) = opts.relay_target.clone() {
        step_env = step_env.with_relay(t);
    }
    runner.enable_runbook(step_env.clone());
    let mut signals = Signals::new().wrap_err("cannot watch for SIGHUP/SIGTERM")?;

    TERMINAL_TAKEN.store(true, std::sync::atomic::Ordering::SeqCst);
    enable_raw_mode().wrap_err("cannot switch the terminal to raw mode (is stdin a terminal?)")?;
    let _guard = TerminalGuard;
    // Clear with a plain escape: ratatui's `clear()` asks the terminal for the cursor position,
    // which some terminals (and SSH/tmux set-ups) never answer.
    execute!(io::stdout(), EnterAlternateScreen, EnableBracketedPaste, cursor::Hide, Clear(ClearType::All))
        .wrap_err("cannot enter the alternate screen")?;
    let mut terminal: Terminal<CrosstermBackend<Stdout>> =
        Terminal::new(CrosstermBackend::new(io::stdout())).wrap_err("cannot initialise the terminal")?;
    let theme = Theme::from_env();

    let mut keys = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let frame_every = Duration::from_millis(1000 / u64::from(opts.max_fps.max(1)));
    let mut frame = tokio::time::interval(frame_every);
    frame.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut dirty = true;
    let mut last_second = 0;

    loop {
        tokio::select! {
            Some(ev) = keys.next() => {
                match ev {
                    Ok(TermEvent::Key(k)) => {
                        state.now = jiff::Timestamp::now();
                        let cmds = update(&mut state, AppEvent::Key(k));
                        if run_commands(cmds, &mut state, &mut runner, &conn, &step_env, &tx) { break; }
                        // Keys are answered at once, not at the next frame.
                        draw(&mut terminal, &mut state, &theme)?;
                        dirty = false;
                    }
                    Ok(TermEvent::Paste(text)) => {
                        let _ = update(&mut state, AppEvent::Paste(text));
                        draw(&mut terminal, &mut state, &theme)?;
                        dirty = false;
                    }
                    Ok(TermEvent::Resize(..)) => {
                        terminal.autoresize().wrap_err("resize")?;
                        dirty = true;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("terminal event error: {e}"),
                }
            }
            Some(ev) = run_rx.recv() => {
                let cmds = update(&mut state, AppEvent::Run(ev));
                if run_commands(cmds, &mut state, &mut runner, &conn, &step_env, &tx) { break; }
                dirty = true;
            }
            why = signals.next() => {
                state.log(crate::app::state::Level::Warn, format!("{why}: ending"));
                break;
            }
            Some(ev) = rx.recv() => {
                let _ = update(&mut state, ev);
                // Drain what is already queued so a burst costs one frame.
                let mut n = 0;
                while let Ok(ev) = rx.try_recv() {
                    let _ = update(&mut state, ev);
                    n += 1;
                    if n > 20_000 { break; }
                }
                dirty = true;
            }
            _ = tick.tick() => {
                let now = jiff::Timestamp::now();
                let _ = update(&mut state, AppEvent::Tick(now));
                // Ages and the clock change once a second.
                if now.as_second() != last_second {
                    last_second = now.as_second();
                    dirty = true;
                }
            }
            _ = frame.tick() => {
                if dirty {
                    draw(&mut terminal, &mut state, &theme)?;
                    dirty = false;
                }
            }
        }
        if state.ui.quit {
            break;
        }
    }
    if let Some(op) = runner.interrupt("the cockpit ended while it ran (quit, SIGHUP or SIGTERM)").await {
        tracing::warn!("{} interrupted by the end of the cockpit", op.title());
        restore_terminal();
        eprintln!("cutover: {} was interrupted; see `cutover journal`", op.title());
    }
    for t in tasks {
        t.abort();
    }
    Ok(())
}

/// One read of the runbook: the journal's position and every step's preview now.
async fn read_runbook(
    env: &crate::runbook::steps::StepEnv,
    client: &kube::Client,
    journal: Journal,
) -> Result<crate::app::runbook::RunbookRead, String> {
    let entries = tokio::task::spawn_blocking(move || journal.read())
        .await
        .map_err(|e| format!("journal task: {e}"))?
        .map_err(|e| e.to_string())?
        .entries;
    let position = crate::runbook::steps::Position::from_journal(&env.runbook, &entries);
    let snap = crate::checks::gather(client, &env.settings).await;
    let checks = crate::checks::evaluate(&snap, &env.settings);
    let mut previews = Vec::new();
    for st in env.runbook.stages.iter().chain(&env.runbook.rollbacks) {
        for step in &st.steps {
            previews.push(crate::runbook::steps::preview(env, client, &st.id, step, &snap, &checks).await);
        }
    }
    Ok(crate::app::runbook::RunbookRead { at: jiff::Timestamp::now(), previews, position })
}

/// Tells the operator what the journal holds that needs attention: a chain that does not verify,
/// operations an earlier cockpit started and never finished.
fn report_journal(state: &mut AppState, journal: &Journal) {
    use crate::app::state::Level;
    match journal.read() {
        Err(e) => state.log(Level::Error, format!("journal: {e}")),
        Ok(v) => {
            if let Some(bad) = &v.bad {
                state.log(
                    Level::Error,
                    format!(
                        "journal {} does not verify at {bad}: run `cutover journal --verify`",
                        journal.path().display()
                    ),
                );
            }
            for u in crate::runbook::journal::unfinished(&v.entries) {
                let did = if u.requests.is_empty() { "nothing sent".to_string() } else { u.requests.join(", ") };
                state.log(
                    Level::Warn,
                    format!("interrupted earlier: {} (started {}; had sent: {did})", u.title, u.time),
                );
            }
        }
    }
}

/// SIGHUP (the SSH session dropped), SIGTERM and SIGINT: the cockpit ends cleanly on any; the
/// headless operations cancel at the first and stop at the second.
pub struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    pub async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.hup.recv() => "SIGHUP",
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Draws a frame and tells the state what it showed: the lists' offsets and the highlighted rows,
/// which are what the next keys act on.
fn draw(terminal: &mut Terminal<CrosstermBackend<Stdout>>, state: &mut AppState, theme: &Theme) -> Result<()> {
    let mut drawn = None;
    terminal.draw(|f| drawn = Some(ui::draw(f, state, theme))).wrap_err("cannot draw to the terminal")?;
    if let Some(d) = drawn {
        let _ = update(state, AppEvent::Drawn(Box::new(d)));
    }
    Ok(())
}

/// Runs commands; returns true to quit.
fn run_commands(
    cmds: Vec<Command>,
    state: &mut AppState,
    runner: &mut Runner,
    conn: &ClusterConn,
    env: &crate::runbook::steps::StepEnv,
    tx: &mpsc::Sender<AppEvent>,
) -> bool {
    let settings = &env.settings;
    for c in cmds {
        match c {
            Command::Quit => return true,
            Command::ReadRunbook => {
                // Reads only: the journal file, the cluster through the read-only client, the
                // operator's clone (a fetch at most).
                let client = conn.client.clone();
                let env = env.clone();
                let journal = runner.journal().clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let result = read_runbook(&env, &client, journal).await;
                    let _ = tx.send(AppEvent::Runbook(result.map(Box::new))).await;
                });
            }
            Command::RunValidate => {
                // The same code as `cutover validate --passive` (and the runbook's validate step).
                let client = conn.client.clone();
                let relay = env.relay.clone();
                let window = env.validate_window;
                let probe_timeout = env.settings.validate.timeout();
                let read_only = conn.read_only;
                let tx = tx.clone();
                tokio::spawn(async move {
                    use crate::validate::{ActiveSkip, PassiveOptions};
                    // What interrupted earlier runs left: listed (reads only); an armed `a`
                    // deletes them first, after its confirmation.
                    let left = crate::validate::Leftovers::find(&client, probe_timeout).await.map(Box::new);
                    let _ = tx.send(AppEvent::ProbeLeftovers(left)).await;
                    let result = match relay {
                        None => Err("no hubble-relay configured: the flow checks cannot run".to_string()),
                        Some(relay) => {
                            let skip = if read_only { ActiveSkip::ReadOnly } else { ActiveSkip::NotBuilt };
                            let opts = PassiveOptions { window, active_skip: skip, ..Default::default() };
                            crate::validate::run_passive(&client, &relay, &opts)
                                .await
                                .map(Box::new)
                                .map_err(|e| e.to_string())
                        }
                    };
                    let _ = tx.send(AppEvent::Validated(result)).await;
                });
            }
            Command::PreviewStep(id) => {
                let client = conn.client.clone();
                let env = env.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let result = match env.find(&id) {
                        None => Err(format!("no step {id} in the runbook")),
                        Some((stage, step)) => {
                            let snap = crate::checks::gather(&client, &env.settings).await;
                            let checks = crate::checks::evaluate(&snap, &env.settings);
                            Ok(Box::new(
                                crate::runbook::steps::preview(&env, &client, &stage.id, step, &snap, &checks).await,
                            ))
                        }
                    };
                    let _ = tx.send(AppEvent::StepPreviewed { id, result }).await;
                });
            }
            Command::RenderPreview(stage) => {
                let client = conn.client.clone();
                let settings = settings.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    use crate::manifests::render::{Stage, render};
                    let ctx = crate::checks::gather::render_context(&client).await;
                    let st = if stage == 2 { Stage::Two } else { Stage::One };
                    let result = render(st, &settings, &ctx)
                        .map(|files| files.into_iter().map(|f| (f.path.display().to_string(), f.contents)).collect())
                        .map_err(|e| e.to_string());
                    let _ = tx.send(AppEvent::Rendered { stage, result }).await;
                });
            }
            Command::RunPreflight => {
                // Reads only (lists and access reviews), through the read-only client.
                let client = conn.client.clone();
                let settings = settings.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let snapshot = crate::checks::gather(&client, &settings).await;
                    let checks = crate::checks::evaluate(&snapshot, &settings);
                    let _ = tx.send(AppEvent::Preflight(Ok(checks))).await;
                });
            }
            Command::PlanDrain(node) => {
                let client = conn.client.clone();
                let opts = runner.executor_mut().map(|e| e.drain.clone()).unwrap_or_default();
                let tx = tx.clone();
                tokio::spawn(async move {
                    use crate::runbook::executor::{drain_preview, plan_drain};
                    let (result, refused) = match plan_drain(&client, &node).await {
                        Ok(plan) => (Ok(drain_preview(&plan, &opts)), !plan.refuse.is_empty()),
                        Err(e) => (Err(e.to_string()), false),
                    };
                    let _ = tx.send(AppEvent::DrainPlanned { node, result, refused }).await;
                });
            }
            Command::Cancel => {
                runner.cancel();
            }
            Command::Execute { op, preview, confirmed, take_over_stale_lock } => {
                let req = RunRequest { op: op.clone(), preview, confirmed, take_over_stale_lock };
                let ev = match runner.start(req) {
                    Ok(()) => AppEvent::Started(op),
                    Err(e) => AppEvent::Refused { op, reason: e.to_string() },
                };
                let _ = update(state, ev);
            }
        }
    }
    false
}
