//! `cutover validate`: the plan's validation checklist as checks with evidence. The **passive**
//! checks read the cluster (pods, Services, nodes) and the Hubble flow stream over a window, and
//! create nothing. The **active** checks (armed mode only) create probe pods, a probe Service
//! and probe Jobs through the runner, read the Jobs' logs and the flows between the probes, and
//! delete everything again ([`active`], [`probes`]); the Longhorn volume check also creates a
//! PVC, written by a Job on one node and read back by Jobs on the others.
//!
//! Split by seam: [`observe`] reads (one list of nodes, pods and Services, the flow stream over
//! the window) into an [`observe::Observation`]; [`checks`] evaluates it (pure functions, unit
//! tested on hand-built inputs); [`output`] writes text, JSON and JUnit XML. [`run_passive`] is the
//! one entry the CLI, the runbook's `validate` step and a cockpit overlay call for the passive
//! checks, [`active::run_active`] for the active ones.

pub mod active;
pub mod checks;
pub mod observe;
pub mod output;
pub mod probes;

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

use crate::cli::GlobalArgs;
use crate::hubble::client::RelayTarget;

/// State of a check or of one of its subjects. Ordered by severity: Green < Unknown < Red.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Green,
    /// The data could not be read, or too little was seen to decide. Never shown as green.
    Unknown,
    Red,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Green => "green",
            State::Unknown => "unknown",
            State::Red => "red",
        }
    }
}

/// The passive checks, in report order. Ids are stable (kebab-case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PassiveCheck {
    CrossNodeFlows,
    DnsAnswers,
    Drops,
    LonghornCsi,
    LoadBalancerIp,
}

impl PassiveCheck {
    pub const ALL: [PassiveCheck; 5] = [
        PassiveCheck::CrossNodeFlows,
        PassiveCheck::DnsAnswers,
        PassiveCheck::Drops,
        PassiveCheck::LonghornCsi,
        PassiveCheck::LoadBalancerIp,
    ];

    pub fn id(self) -> &'static str {
        match self {
            PassiveCheck::CrossNodeFlows => "cross-node-flows",
            PassiveCheck::DnsAnswers => "dns-answers",
            PassiveCheck::Drops => "drops",
            PassiveCheck::LonghornCsi => "longhorn-csi",
            PassiveCheck::LoadBalancerIp => "loadbalancer-ip",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            PassiveCheck::CrossNodeFlows => "Flows between pods on different nodes are forwarded, none dropped",
            PassiveCheck::DnsAnswers => "DNS answers from CoreDNS reach pods on every node",
            PassiveCheck::Drops => "No drops other than policy denials",
            PassiveCheck::LonghornCsi => "Longhorn's CSI plugin pod is Ready on every node",
            PassiveCheck::LoadBalancerIp => "LoadBalancer Services have their MetalLB IP",
        }
    }

    pub fn from_id(id: &str) -> Option<PassiveCheck> {
        PassiveCheck::ALL.into_iter().find(|c| c.id() == id)
    }
}

/// The active checks (probe objects, armed mode only), (id, title). All run in `cutover
/// validate` when armed; see [`active`].
pub const ACTIVE_CHECKS: &[(&str, &str)] = &[
    ("probe-pod-to-pod", "Probe pods on every ordered node pair reach each other (ICMP, TCP)"),
    ("probe-clusterip", "A probe Service with a backend on every node answers from every node"),
    ("probe-nodeport", "The HAProxy ingress answers on its NodePort on every node"),
    ("probe-loadbalancer", "The HAProxy ingress answers on its MetalLB IP from every node"),
    ("probe-dns-egress", "Probes resolve a cluster and an external name and fetch an external URL"),
    ("probe-longhorn-volume", "A Longhorn volume written on one node reads back on another"),
    ("probe-hubble-flows", "Probe traffic appears in Hubble between the probes' identities, none dropped"),
];

/// Every check id `--only` accepts, passive first.
pub fn known_ids() -> Vec<&'static str> {
    PassiveCheck::ALL.iter().map(|c| c.id()).chain(ACTIVE_CHECKS.iter().map(|(id, _)| *id)).collect()
}

/// Which checks to run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// `None` = all.
    only: Option<BTreeSet<&'static str>>,
}

impl Selection {
    pub fn all() -> Selection {
        Selection { only: None }
    }

    /// From `--only` values (each may hold several ids separated by commas). An unknown id is an
    /// error whose message is one line listing the known ids.
    pub fn only<S: AsRef<str>>(ids: &[S]) -> Result<Selection, String> {
        if ids.is_empty() {
            return Ok(Selection::all());
        }
        let known = known_ids();
        let mut set = BTreeSet::new();
        for raw in ids {
            for id in raw.as_ref().split(',').map(str::trim).filter(|s| !s.is_empty()) {
                match known.iter().find(|k| **k == id) {
                    Some(k) => {
                        set.insert(*k);
                    }
                    None => return Err(format!("unknown check {id:?}; known checks: {}", known.join(", "))),
                }
            }
        }
        if set.is_empty() {
            return Err(format!("--only needs a check id; known checks: {}", known.join(", ")));
        }
        Ok(Selection { only: Some(set) })
    }

    pub fn includes(&self, id: &str) -> bool {
        self.only.as_ref().is_none_or(|s| s.contains(id))
    }

    pub fn passive(&self) -> Vec<PassiveCheck> {
        PassiveCheck::ALL.into_iter().filter(|c| self.includes(c.id())).collect()
    }
}

/// Why the active checks did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActiveSkip {
    /// `--passive` was given.
    PassiveRequested,
    /// The connection is read-only (`--read-only` or the context's setting).
    ReadOnly,
    /// Armed, but this run reads only (the cockpit's `v`; its `a` runs the active checks).
    NotBuilt,
    /// Armed: the active checks ran (none is skipped).
    Ran,
}

impl ActiveSkip {
    pub fn reason(self) -> &'static str {
        match self {
            ActiveSkip::PassiveRequested => "--passive",
            ActiveSkip::ReadOnly => "read-only mode",
            ActiveSkip::NotBuilt => "this run reads only; a in the cockpit's overlay (or `cutover validate`) runs them",
            ActiveSkip::Ran => "",
        }
    }
}

/// One subject of a check: a node, an ordered node pair (`a → b`), a Service, or `cluster` when
/// the check could not get as far as subjects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubResult {
    pub subject: String,
    pub state: State,
    /// What was seen: counts, object states, flow lines as `cutover flows` prints them.
    pub evidence: Vec<String>,
    /// How long the data behind it took to gather (the flow window for flow checks).
    #[serde(rename = "duration_ms", serialize_with = "millis")]
    pub duration: Duration,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One check: its state is the worst of its subjects' (a check without subjects is unknown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    pub id: String,
    pub title: String,
    pub state: State,
    pub results: Vec<SubResult>,
    /// Check-level notes (what was not judged and why, e.g. node pairs without traffic).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl CheckResult {
    pub fn new(check: PassiveCheck, results: Vec<SubResult>, notes: Vec<String>) -> CheckResult {
        CheckResult::from_parts(check.id(), check.title(), results, notes)
    }

    /// Any check (the active ones too) by id and title.
    pub fn from_parts(id: &str, title: &str, results: Vec<SubResult>, notes: Vec<String>) -> CheckResult {
        let state = results.iter().map(|r| r.state).max().unwrap_or(State::Unknown);
        CheckResult { id: id.into(), title: title.into(), state, results, notes }
    }
}

/// A check that did not run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub id: String,
    pub title: String,
    pub reason: String,
}

/// What one validation run found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub checks: Vec<CheckResult>,
    pub skipped: Vec<Skipped>,
    /// The flow window asked for.
    #[serde(rename = "window_ms", serialize_with = "millis")]
    pub window: Duration,
    /// Flows read from the relay in the window (`None` when no flow check ran or the relay could
    /// not be read).
    pub flows_seen: Option<u64>,
    /// How long the whole run took (lists, the flow window, evaluation).
    #[serde(rename = "elapsed_ms", serialize_with = "millis")]
    pub elapsed: Duration,
}

impl Report {
    /// The worst state of the checks that ran; `None` when none ran.
    pub fn state(&self) -> Option<State> {
        self.checks.iter().map(|c| c.state).max()
    }

    /// 0 every check that ran is green, 1 any red or unknown — or no check ran at all (only
    /// skipped ones were selected): nothing was shown to be green.
    pub fn exit_code(&self) -> u8 {
        match self.state() {
            Some(State::Green) => EXIT_GREEN,
            _ => EXIT_NOT_GREEN,
        }
    }
}

/// Exit code: every check that ran is green.
pub const EXIT_GREEN: u8 = 0;
/// Exit code: a check is red or unknown, or no check ran.
pub const EXIT_NOT_GREEN: u8 = 1;
/// Exit code: bad input (unknown check id, bad window).
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code: the cluster could not be read at all.
pub const EXIT_UNREACHABLE: u8 = 3;

/// Default flow window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30);

/// Options of a passive run.
#[derive(Debug, Clone)]
pub struct PassiveOptions {
    pub selection: Selection,
    /// How long to read the live flow stream.
    pub window: Duration,
    /// Why the active checks are skipped.
    pub active_skip: ActiveSkip,
}

impl Default for PassiveOptions {
    fn default() -> Self {
        PassiveOptions { selection: Selection::all(), window: DEFAULT_WINDOW, active_skip: ActiveSkip::NotBuilt }
    }
}

/// Why a run produced no report.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ValidateError {
    /// Nothing could be read from the Kubernetes API (exit 3).
    #[error("{0}")]
    Unreachable(String),
}

/// Runs the selected passive checks: lists nodes, pods and Services through `client` (which
/// should be the read-only client; nothing here writes) and reads the live flow stream from
/// `relay` for `opts.window` when a flow check is selected. The active checks are listed as
/// skipped with `opts.active_skip`'s reason.
pub async fn run_passive(
    client: &kube::Client,
    relay: &RelayTarget,
    opts: &PassiveOptions,
) -> Result<Report, ValidateError> {
    let start = std::time::Instant::now();
    let selected = opts.selection.passive();
    let needs_flows = selected.iter().any(|c| checks::uses_flows(*c));
    let observation = observe::observe(client, needs_flows.then_some(relay), opts.window).await?;
    let mut report = report_from(&observation, opts);
    report.elapsed = start.elapsed();
    Ok(report)
}

/// The report for an observation (what [`run_passive`] does after reading).
pub fn report_from(observation: &observe::Observation, opts: &PassiveOptions) -> Report {
    let selected = opts.selection.passive();
    let checks = selected.iter().map(|c| checks::evaluate(*c, observation)).collect();
    let skipped = ACTIVE_CHECKS
        .iter()
        .filter(|(id, _)| opts.selection.includes(id))
        .filter(|_| opts.active_skip != ActiveSkip::Ran)
        .map(|(id, title)| Skipped {
            id: (*id).into(),
            title: (*title).into(),
            reason: opts.active_skip.reason().into(),
        })
        .collect();
    let flows_seen = observation.flows.as_ref().and_then(|f| f.as_ref().ok()).map(|w| w.seen);
    Report { checks, skipped, window: opts.window, flows_seen, elapsed: Duration::ZERO }
}

// ---------------------------------------------------------------------------------------------
// CLI

/// Output format of `cutover validate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Output {
    #[default]
    Text,
    Json,
    /// JUnit XML: one testsuite `cutover-validate`, a testcase per check and subject.
    Junit,
}

/// `cutover validate` options.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Exit codes:\n  \
    0  every check that ran is green\n  \
    1  a check is red or unknown, or no check ran (only skipped ones selected)\n  \
    2  bad input (unknown check id, bad --window)\n  \
    3  cannot read the cluster (no kubeconfig, API unreachable); one line on stderr")]
pub struct ValidateArgs {
    /// Run only these checks (repeatable, or comma-separated).
    #[arg(long, value_name = "CHECK", num_args = 1..)]
    pub only: Vec<String>,
    /// Passive checks only (no probe objects, no change at all). Read-only mode implies it.
    #[arg(long)]
    pub passive: bool,
    /// Remove the probe objects earlier runs left behind (listed at the start) without asking.
    #[arg(long)]
    pub yes: bool,
    /// Take over the cluster lock if it is stale (e.g. a killed run held it).
    #[arg(long)]
    pub take_over_stale_lock: bool,
    /// How long to read the live flow stream: a Go duration (e.g. 30s, 2m).
    #[arg(long, default_value = "30s", value_name = "DUR")]
    pub window: String,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// `cutover validate`: exit 0 all green, 1 red or unknown, 2 bad input, 3 cluster unreachable.
pub async fn run(args: ValidateArgs, global: &GlobalArgs) -> color_eyre::Result<ExitCode> {
    use color_eyre::eyre::WrapErr;
    let bad = |m: String| {
        eprintln!("cutover validate: {m}");
        Ok(ExitCode::from(EXIT_BAD_INPUT))
    };
    let selection = match Selection::only(&args.only) {
        Ok(s) => s,
        Err(m) => return bad(m),
    };
    let window = match crate::duration::parse_non_negative(args.window.trim()) {
        Ok(w) if w.is_zero() => return bad("--window must be longer than 0s".into()),
        Ok(w) => w,
        Err(e) => return bad(format!("--window: {e}")),
    };
    if let Some(addr) = &global.hubble_server
        && let Err(e) = crate::hubble::client::relay_uri(addr)
    {
        return bad(format!("--hubble-server: {e}"));
    }
    let settings = match crate::settings::Settings::load(global.settings.as_deref()) {
        Ok(s) => s,
        Err(e) => return bad(format!("cannot load the settings: {e}")),
    };
    // The one connection path; whatever the mode, the checks read through the read-only client.
    let conn = match crate::cluster::client::connect(global, |ctx| settings.read_only_for(Some(ctx))).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cutover validate: cannot connect to the cluster: {e}");
            return Ok(ExitCode::from(EXIT_UNREACHABLE));
        }
    };
    let active_skip = if args.passive {
        ActiveSkip::PassiveRequested
    } else if conn.read_only {
        ActiveSkip::ReadOnly
    } else {
        ActiveSkip::Ran
    };
    let relay = match &global.hubble_server {
        Some(addr) => RelayTarget::Address(addr.clone()),
        None => RelayTarget::Kube { client: conn.client.clone(), namespace: settings.cilium.namespace.clone() },
    };
    let armed = active_skip == ActiveSkip::Ran;
    let want_active = armed && !active::runnable(&selection).is_empty();
    let opts = PassiveOptions { selection: selection.clone(), window, active_skip };
    let mut report = match run_passive(&conn.client, &relay, &opts).await {
        Ok(r) => r,
        Err(ValidateError::Unreachable(m)) => {
            eprintln!("cutover validate: {m}");
            return Ok(ExitCode::from(EXIT_UNREACHABLE));
        }
    };
    // Leftovers of earlier runs (listing reads only), after the passive checks could read.
    let leftovers = Leftovers::find(&conn.client, settings.validate.timeout()).await;
    let mut door = None;
    if armed && (want_active || (args.yes && leftovers.as_ref().is_ok_and(|l| !l.objects.is_empty()))) {
        let journal =
            crate::runbook::journal::Journal::for_cluster(&conn.cluster).wrap_err("cannot place the journal")?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut runner = crate::runbook::runner::Runner::new(&conn, &settings.argo.namespace, journal, tx)
            .map_err(|e| color_eyre::eyre::eyre!(e))?;
        runner.lease_config_mut().duration = settings.runbook.lock_duration();
        door = Some(RunnerDoor {
            runner,
            rx,
            confirmed: "ran `cutover validate`".into(),
            take_over_stale_lock: args.take_over_stale_lock,
        });
    }
    match &leftovers {
        Ok(left) if !left.objects.is_empty() => {
            eprintln!("cutover validate: {} probe object(s) of earlier runs are left:", left.objects.len());
            for l in &left.objects {
                eprintln!("  {l}");
            }
            if !left.recent.is_empty() {
                eprintln!(
                    "cutover validate: run {} created objects less than {} ago: it may be in progress in another session{}",
                    left.recent.join(", "),
                    crate::duration::format_short(left.quiet),
                    if args.yes && armed { " (--yes removes it too)" } else { "" }
                );
            }
            match door.as_mut() {
                Some(d) if args.yes => {
                    d.confirmed = "--yes on the command line".into();
                    match active::Door::run(
                        d,
                        crate::app::action::Operation::ProbeDelete {
                            run: None,
                            why: "leftovers of earlier validation runs".into(),
                        },
                    )
                    .await
                    {
                        Ok(m) => eprintln!("cutover validate: {m}"),
                        Err(e) => eprintln!("cutover validate: removing them failed: {e}"),
                    }
                    d.confirmed = "ran `cutover validate`".into();
                }
                _ if conn.read_only => eprintln!("cutover validate: read-only mode: listed only, nothing removed"),
                _ if args.passive => eprintln!("cutover validate: --passive: listed only, nothing removed"),
                _ => eprintln!("cutover validate: pass --yes to remove them"),
            }
        }
        Ok(_) => {}
        Err(e) => eprintln!("cutover validate: cannot look for probe objects of earlier runs: {e}"),
    }
    if let (true, Some(door)) = (want_active, door.as_mut()) {
        let cfg = probe_config(&settings);
        let run = probes::new_run_id();
        let cancel = tokio_util::sync::CancellationToken::new();
        let say = |m: String| eprintln!("cutover validate: {m}");
        let start = std::time::Instant::now();
        let mut signals = crate::tui::Signals::new().wrap_err("cannot watch for signals")?;
        let fut = active::run_active(&conn.client, door, &relay, &cfg, &selection, &run, &say, &cancel);
        tokio::pin!(fut);
        let mut interrupted = false;
        let outcome = loop {
            tokio::select! {
                o = &mut fut => break o,
                why = signals.next() => {
                    if interrupted {
                        eprintln!("cutover validate: {why} again: stopping now; the probes of run {run} are left (the next run lists them)");
                        return Ok(ExitCode::from(4));
                    }
                    interrupted = true;
                    eprintln!("cutover validate: {why}: stopping the probes of run {run} and removing them (again to stop at once)");
                    cancel.cancel();
                }
            }
        };
        if let Err(e) = &outcome.cleanup {
            eprintln!("cutover validate: cleanup of run {run}: {e}");
        }
        report.checks.extend(outcome.checks);
        report.elapsed += start.elapsed();
    }
    let text = match args.output {
        Output::Text => output::text(&report),
        Output::Json => format!("{}\n", serde_json::to_string_pretty(&report).wrap_err("encoding the report")?),
        Output::Junit => output::junit(&report),
    };
    crate::cli::write_stdout(&text).wrap_err("writing the report to stdout")?;
    Ok(ExitCode::from(report.exit_code()))
}

/// The probes' settings.
pub fn probe_config(settings: &crate::settings::Settings) -> probes::ProbeConfig {
    let v = &settings.validate;
    probes::ProbeConfig {
        namespace: v.namespace.clone(),
        image: v.image.clone(),
        timeout: v.timeout(),
        url: v.url.clone(),
        cluster_name: v.cluster_name.clone(),
        ingress_service: v.ingress_service.clone(),
        storage_class: v.storage_class.clone(),
    }
}

/// The first few leftovers in a line (`pod default/x (run a), …, and 7 more`).
pub fn leftover_summary(left: &[String]) -> String {
    const SHOWN: usize = 4;
    let mut s = left.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if left.len() > SHOWN {
        s.push_str(&format!(", and {} more", left.len() - SHOWN));
    }
    s
}

/// A probe object an earlier validation run left behind (or one still in progress elsewhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    /// Its run id (the `cutover.io/probe-run` label).
    pub run: String,
    /// When it was created (`None`: the API did not say).
    pub created: Option<jiff::Timestamp>,
}

impl std::fmt::Display for Leftover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{} (run {})", self.kind, self.namespace, self.name, self.run)
    }
}

/// What earlier runs left, as an implicit cleanup (the runbook's `validate` step, the cockpit's
/// `a`) sees it: which runs it deletes first and which it leaves alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftovers {
    pub objects: Vec<Leftover>,
    /// Runs idle for longer than `quiet`: deleted first.
    pub idle: Vec<String>,
    /// Runs with a recent object (maybe in progress in another session): left alone.
    pub recent: Vec<String>,
    pub quiet: Duration,
}

impl Leftovers {
    /// Looks (reads only); `timeout`: `[validate] timeout`, which bounds a run's quiet time.
    pub async fn find(read: &kube::Client, timeout: Duration) -> Result<Leftovers, String> {
        let objects = find_leftovers(read).await?;
        let quiet = quiet_period(timeout);
        let (idle, recent) = split_runs(&objects, jiff::Timestamp::now(), quiet);
        Ok(Leftovers { objects, idle, recent, quiet })
    }

    /// The objects of `runs`, as lines.
    pub fn of(&self, runs: &[String]) -> Vec<String> {
        self.objects.iter().filter(|o| runs.contains(&o.run)).map(ToString::to_string).collect()
    }

    /// For a preview or a confirmation: what is deleted first, and what is left alone.
    pub fn describe(&self) -> Vec<String> {
        let mut v = Vec::new();
        if !self.idle.is_empty() {
            let o = self.of(&self.idle);
            v.push(format!(
                "First DELETE the {} probe object(s) earlier validation runs left behind (run {}): {}",
                o.len(),
                self.idle.join(", "),
                leftover_summary(&o)
            ));
        }
        if !self.recent.is_empty() {
            let o = self.of(&self.recent);
            v.push(format!(
                "Left alone: {} probe object(s) of run {} created less than {} ago (maybe a run in progress in another session): {}",
                o.len(),
                self.recent.join(", "),
                crate::duration::format_short(self.quiet),
                leftover_summary(&o)
            ));
        }
        v
    }
}

/// The probe objects of every run there is, by label, in every namespace. Reads only (metadata).
pub async fn find_leftovers(read: &kube::Client) -> Result<Vec<Leftover>, String> {
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
    let lp = kube::api::ListParams::default().labels(&probes::selector(None));
    let mut out = Vec::new();
    out.extend(leftovers_of::<Job>(read, &lp, "job", "jobs").await?);
    out.extend(leftovers_of::<Pod>(read, &lp, "pod", "pods").await?);
    out.extend(leftovers_of::<Service>(read, &lp, "service", "services").await?);
    out.extend(
        leftovers_of::<PersistentVolumeClaim>(read, &lp, "persistentvolumeclaim", "persistentvolumeclaims").await?,
    );
    Ok(out)
}

async fn leftovers_of<K>(
    read: &kube::Client,
    lp: &kube::api::ListParams,
    kind: &'static str,
    plural: &str,
) -> Result<Vec<Leftover>, String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let list = tokio::time::timeout(Duration::from_secs(30), kube::api::Api::<K>::all(read.clone()).list_metadata(lp))
        .await
        .map_err(|_| format!("listing {plural}: no answer within 30s"))?
        .map_err(|e| crate::cluster::client::redact(&e.to_string()))?;
    Ok(list
        .items
        .into_iter()
        .map(|o| {
            let m = o.metadata;
            Leftover {
                kind,
                run: m.labels.as_ref().and_then(|l| l.get(probes::RUN_LABEL)).cloned().unwrap_or_default(),
                namespace: m.namespace.unwrap_or_default(),
                name: m.name.unwrap_or_default(),
                created: m.creation_timestamp.map(|t| t.0),
            }
        })
        .collect())
}

/// How long a validation run in progress can go without creating an object: each of its phases
/// ends within `[validate] timeout`, and the next one creates its objects. A run whose newest
/// object is older than twice that (and 30 s) is no longer running anywhere.
pub fn quiet_period(timeout: Duration) -> Duration {
    timeout.saturating_mul(2) + Duration::from_secs(30)
}

/// The runs of `left`, split: `(idle, recent)`. Idle: the newest object is older than `quiet`
/// (left behind by a run that was killed). Recent: it may be a run in progress in another session
/// (`cutover validate` takes the cluster lock only for its creates and deletes), or a creation
/// time is missing: left alone by an implicit cleanup.
pub fn split_runs(left: &[Leftover], now: jiff::Timestamp, quiet: Duration) -> (Vec<String>, Vec<String>) {
    // Per run, its newest creation time; `None` once any of its objects has none.
    let mut newest: BTreeMap<&str, Option<jiff::Timestamp>> = BTreeMap::new();
    for l in left {
        let e = newest.entry(&l.run).or_insert(l.created);
        *e = match (*e, l.created) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }
    let quiet = jiff::SignedDuration::try_from(quiet).unwrap_or(jiff::SignedDuration::MAX);
    let (mut idle, mut recent) = (Vec::new(), Vec::new());
    for (run, t) in newest {
        let old = t.is_some_and(|t| now.duration_since(t) >= quiet);
        if old { idle.push(run.to_string()) } else { recent.push(run.to_string()) }
    }
    (idle, recent)
}

/// The runner as the active checks' door: starts one operation and waits for its result,
/// printing its progress on stderr.
struct RunnerDoor {
    runner: crate::runbook::runner::Runner,
    rx: tokio::sync::mpsc::UnboundedReceiver<crate::runbook::runner::RunEvent>,
    confirmed: String,
    take_over_stale_lock: bool,
}

impl active::Door for RunnerDoor {
    async fn run(&mut self, op: crate::app::action::Operation) -> Result<String, crate::runbook::executor::ExecError> {
        use crate::runbook::executor::ExecError;
        use crate::runbook::runner::{RunEvent, RunRequest};
        let preview = op.explain();
        let take_over = self.take_over_stale_lock;
        let confirmed =
            if take_over { format!("{}; --take-over-stale-lock", self.confirmed) } else { self.confirmed.clone() };
        self.runner.start(RunRequest { op, preview, confirmed, take_over_stale_lock: take_over })?;
        loop {
            match self.rx.recv().await {
                Some(RunEvent::Progress { op, text }) => eprintln!("cutover validate: {}: {text}", op.title()),
                Some(RunEvent::Done { result, .. }) => return result,
                // Node phases come only from the runbook's node step.
                Some(RunEvent::Node { .. } | RunEvent::Report { .. }) => {}
                None => return Err(ExecError::Failed("the runner stopped without a result".into())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_kebab_case_and_unique() {
        let ids = known_ids();
        let set: BTreeSet<_> = ids.iter().collect();
        assert_eq!(set.len(), ids.len());
        for id in ids {
            assert!(id.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'), "{id}");
        }
        for c in PassiveCheck::ALL {
            assert_eq!(PassiveCheck::from_id(c.id()), Some(c));
        }
    }

    #[test]
    fn only_parses_lists_and_refuses_unknown_ids_in_one_line() {
        let s = Selection::only(&["drops,dns-answers", "probe-clusterip"]).unwrap();
        assert_eq!(s.passive(), [PassiveCheck::DnsAnswers, PassiveCheck::Drops]);
        assert!(s.includes("probe-clusterip") && !s.includes("longhorn-csi"));
        assert_eq!(Selection::only::<&str>(&[]).unwrap(), Selection::all());
        let e = Selection::only(&["drops", "dns"]).unwrap_err();
        assert!(e.starts_with("unknown check \"dns\"; known checks: cross-node-flows, dns-answers, drops,"), "{e}");
        assert!(!e.contains('\n'));
        assert!(Selection::only(&[","]).is_err());
    }

    #[test]
    fn exit_codes_follow_the_worst_state() {
        let sub = |state| SubResult { subject: "n".into(), state, evidence: vec![], duration: Duration::ZERO };
        let report = |states: &[State]| Report {
            checks: states.iter().map(|s| CheckResult::new(PassiveCheck::Drops, vec![sub(*s)], vec![])).collect(),
            skipped: vec![],
            window: DEFAULT_WINDOW,
            flows_seen: None,
            elapsed: Duration::ZERO,
        };
        assert_eq!(report(&[State::Green, State::Green]).exit_code(), 0);
        assert_eq!(report(&[State::Green, State::Unknown]).exit_code(), 1);
        assert_eq!(report(&[State::Red, State::Green]).exit_code(), 1);
        // Only skipped checks selected: nothing was shown green.
        assert_eq!(report(&[]).exit_code(), 1);
        // A check without subjects is unknown, never green.
        assert_eq!(CheckResult::new(PassiveCheck::Drops, vec![], vec![]).state, State::Unknown);
    }

    #[test]
    fn skip_reasons() {
        assert!(ActiveSkip::NotBuilt.reason().starts_with("this run reads only"));
        assert_eq!(ActiveSkip::Ran.reason(), "");
        assert_eq!(ActiveSkip::PassiveRequested.reason(), "--passive");
        assert_eq!(ActiveSkip::ReadOnly.reason(), "read-only mode");
    }

    fn leftover(kind: &'static str, name: &str, run: &str, created: Option<i64>) -> Leftover {
        Leftover {
            kind,
            namespace: "default".into(),
            name: name.into(),
            run: run.into(),
            created: created.map(|s| jiff::Timestamp::from_second(s).expect("time")),
        }
    }

    #[test]
    fn leftover_runs_split_into_idle_and_recent_by_their_newest_object() {
        let now = 10_000;
        let quiet = quiet_period(Duration::from_secs(120));
        assert_eq!(quiet, Duration::from_secs(270));
        let left = vec![
            // Killed long ago: every object older than the quiet period.
            leftover("pod", "cutover-probe-old1-s0", "old1", Some(now - 3600)),
            leftover("job", "cutover-probe-old1-c0", "old1", Some(now - 600)),
            // Its servers are old, but it created a Job 60 s ago: maybe still running.
            leftover("pod", "cutover-probe-live-s0", "live", Some(now - 3600)),
            leftover("job", "cutover-probe-live-c0", "live", Some(now - 60)),
            // Exactly the quiet period: idle.
            leftover("service", "cutover-probe-edge", "edge", Some(now - 270)),
            // No creation time: unknown is never old.
            leftover("pod", "cutover-probe-nots-s0", "nots", Some(now - 3600)),
            leftover("pod", "cutover-probe-nots-s1", "nots", None),
            // Created "in the future" (the cluster's clock ahead of ours): recent.
            leftover("pod", "cutover-probe-skew-s0", "skew", Some(now + 30)),
        ];
        let at = jiff::Timestamp::from_second(now).expect("now");
        let (idle, recent) = split_runs(&left, at, quiet);
        assert_eq!(idle, ["edge", "old1"]);
        assert_eq!(recent, ["live", "nots", "skew"]);

        let l = Leftovers { objects: left, idle, recent, quiet };
        let d = l.describe();
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(
            d[0].starts_with(
                "First DELETE the 3 probe object(s) earlier validation runs left behind (run edge, old1): "
            ),
            "{d:?}"
        );
        assert!(
            d[1].starts_with("Left alone: 5 probe object(s) of run live, nots, skew created less than 4m30s ago"),
            "{d:?}"
        );
        assert!(d[1].ends_with(", and 1 more"), "{d:?}");
        let none = Leftovers { objects: vec![], idle: vec![], recent: vec![], quiet };
        assert!(none.describe().is_empty());
    }
}
