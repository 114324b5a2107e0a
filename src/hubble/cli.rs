//! `cutover flows`: `hubble observe` for the cockpit's relay (same flags, same output), built on
//! the shared client, filters and formatter. Streams to stdout through a buffer (flushed per
//! batch, per line on a terminal), keeps memory flat, exits 0 on a closed pipe, Ctrl-C or the end
//! of the stream, and reports bad input or an unreachable relay as one line on stderr.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::SystemTime;

use futures::FutureExt;

use crate::cli::GlobalArgs;
use crate::hubble::client::{self, HubbleError, RelayTarget};
use crate::hubble::filter::{CompiledRequest, FilterArgs};
use crate::hubble::format::{FormatOptions, Formatter, OutputFormat};
use crate::hubble::proto::observer::GetFlowsRequest;
use crate::hubble::time::{TimeFormat, parse_time_arg, rfc3339, timestamp_nanos};

/// Flows printed when no selector is given (hubble's default).
pub const DEFAULT_LAST: u64 = 20;

/// Arguments of `cutover flows` (a `hubble observe` subset with the same names).
#[derive(Debug, Clone, clap::Args)]
pub struct FlowsArgs {
    /// Keep streaming new flows.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Get the last N flows stored in the relay's buffers (per node). Default 20 without other selectors.
    #[arg(long, value_name = "N", conflicts_with_all = ["first", "all"])]
    pub last: Option<u64>,
    /// Get the first (oldest) N flows stored in the relay's buffers (per node).
    #[arg(long, value_name = "N", conflicts_with_all = ["all", "follow"])]
    pub first: Option<u64>,
    /// Get all flows stored in the relay's buffers.
    #[arg(long)]
    pub all: bool,
    /// Flows since this time: RFC 3339 (2024-05-04T13:23:40Z), a date, or a duration ago (5m, 1h30m).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Flows until this time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Compact)]
    pub output: OutputFormat,
    /// Print the node that observed each flow.
    #[arg(long)]
    pub print_node_name: bool,
    /// Time format: StampMilli, Stamp, StampMicro, StampNano, RFC3339, RFC3339Milli, RFC3339Micro, RFC3339Nano, RFC1123Z.
    #[arg(long, value_name = "FORMAT", default_value = "StampMilli")]
    pub time_format: String,
    /// Translate IPs to pod, service and DNS names.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub ip_translation: bool,
    /// Also print informational relay events (nodes connected).
    #[arg(long)]
    pub debug: bool,
    /// Namespace of the hubble-relay Service when port-forwarding.
    #[arg(long, value_name = "NS", default_value = "kube-system")]
    pub relay_namespace: String,
    #[command(flatten)]
    pub filters: FilterArgs,
}

/// Why `cutover flows` stopped early.
#[derive(Debug, thiserror::Error)]
pub enum FlowsError {
    /// Bad flags or values (exit code 2).
    #[error("{0}")]
    Input(String),
    /// The relay or the way to it (exit code 1).
    #[error("{0}")]
    Relay(#[from] HubbleError),
    #[error("cannot write output: {0}")]
    Io(std::io::Error),
}

impl FlowsError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            FlowsError::Input(_) => ExitCode::from(2),
            _ => ExitCode::from(1),
        }
    }
}

/// Runs `cutover flows` on the real stdout/stderr until the stream ends, Ctrl-C, or the reader of
/// stdout goes away. Errors are printed as one line; the exit code says what happened.
pub async fn run(args: FlowsArgs, global: &GlobalArgs) -> color_eyre::Result<ExitCode> {
    let tty = std::io::stdout().is_terminal();
    let stdout = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    Ok(run_to(args, global, stdout, std::io::stderr(), tty, interrupt).await)
}

/// [`run`] with explicit outputs and stop signal (for tests and embedding).
pub async fn run_to<W: Write, E: Write>(
    args: FlowsArgs,
    global: &GlobalArgs,
    mut out: W,
    mut err: E,
    line_buffered: bool,
    interrupt: impl Future<Output = ()>,
) -> ExitCode {
    match stream(args, global, &mut out, &mut err, line_buffered, interrupt).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(FlowsError::Io(e)) if is_closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = out.flush();
            let _ = writeln!(err, "cutover flows: {e}");
            e.exit_code()
        }
    }
}

use crate::cli::is_closed_pipe;

/// Builds the request from the flags (validating filters and times locally).
pub fn build_request(args: &FlowsArgs, now: SystemTime) -> Result<GetFlowsRequest, FlowsError> {
    let (whitelist, blacklist) = args.filters.build().map_err(|e| FlowsError::Input(format!("invalid filter: {e}")))?;
    CompiledRequest::new(&whitelist, &blacklist).map_err(|e| FlowsError::Input(format!("invalid filter: {e}")))?;
    let time = |flag: &str, v: &Option<String>| -> Result<_, FlowsError> {
        v.as_deref()
            .map(|s| parse_time_arg(s, now).map_err(|e| FlowsError::Input(format!("--{flag}: {e}"))))
            .transpose()
    };
    let since = time("since", &args.since)?;
    let until = time("until", &args.until)?;
    // An inverted window matches nothing; the relay would answer with an empty stream and the
    // command would exit 0 as if there were no traffic.
    if let (Some(s), Some(u)) = (&since, &until)
        && timestamp_nanos(s) > timestamp_nanos(u)
    {
        let shown = |raw: &Option<String>, t| {
            let (raw, t) = (raw.as_deref().unwrap_or_default().trim(), rfc3339(t));
            if raw == t { t } else { format!("{raw} = {t}") }
        };
        return Err(FlowsError::Input(format!(
            "--since ({}) is after --until ({}): no flow can match",
            shown(&args.since, s),
            shown(&args.until, u)
        )));
    }
    let number = if args.all {
        u64::MAX
    } else if let Some(n) = args.first {
        n
    } else if let Some(n) = args.last {
        n
    } else if args.follow || since.is_some() || until.is_some() {
        0
    } else {
        DEFAULT_LAST
    };
    Ok(GetFlowsRequest {
        number,
        first: args.first.is_some(),
        follow: args.follow,
        blacklist,
        whitelist,
        since,
        until,
        field_mask: None,
        experimental: None,
    })
}

/// Where `cutover flows` reads from: `--hubble-server`, else a port-forward via the kubeconfig.
pub async fn target_from_globals(global: &GlobalArgs, relay_namespace: &str) -> Result<RelayTarget, FlowsError> {
    if let Some(addr) = &global.hubble_server {
        client::relay_uri(addr)?;
        return Ok(RelayTarget::Address(addr.clone()));
    }
    let client = kube_client(global).await.map_err(|e| FlowsError::Relay(HubbleError::Kube(e)))?;
    Ok(RelayTarget::Kube { client, namespace: relay_namespace.to_string() })
}

/// The cockpit's one connection path, read-only: `flows` never changes the cluster (the relay
/// port-forward is a GET upgrade, which the read-only layer lets through).
async fn kube_client(global: &GlobalArgs) -> Result<kube::Client, String> {
    crate::cluster::client::connect(global, |_| true).await.map(|c| c.client).map_err(|e| e.to_string())
}

async fn stream<W: Write, E: Write>(
    args: FlowsArgs,
    global: &GlobalArgs,
    out: &mut W,
    err: &mut E,
    line_buffered: bool,
    interrupt: impl Future<Output = ()>,
) -> Result<(), FlowsError> {
    let time_format = TimeFormat::from_name(&args.time_format).ok_or_else(|| {
        FlowsError::Input(format!(
            "invalid --time-format {:?}: one of {}",
            args.time_format,
            TimeFormat::NAMES.join(", ")
        ))
    })?;
    let req = build_request(&args, SystemTime::now())?;
    let opts = FormatOptions {
        output: args.output,
        time_format,
        print_node_name: args.print_node_name,
        ip_translation: args.ip_translation,
        identities: true,
        debug: args.debug,
    };
    let target = target_from_globals(global, &args.relay_namespace).await?;
    let label = target.describe();
    let mut interrupt = std::pin::pin!(interrupt);
    let channel = tokio::select! {
        c = target.connect() => c?,
        _ = &mut interrupt => return Ok(()),
    };
    let mut flows = tokio::select! {
        s = client::get_flows(&channel, &label, req) => s?,
        _ = &mut interrupt => return Ok(()),
    };
    let mut fmt = Formatter::new(opts);
    let (mut obuf, mut ebuf) = (Vec::with_capacity(1024), Vec::with_capacity(256));
    loop {
        // Flush whenever we would wait for the network: batches stay batched, nothing lingers.
        let next = match flows.message().now_or_never() {
            Some(r) => r,
            None => {
                out.flush().map_err(FlowsError::Io)?;
                tokio::select! {
                    r = flows.message() => r,
                    _ = &mut interrupt => break,
                }
            }
        };
        let Some(resp) = next? else { break };
        obuf.clear();
        ebuf.clear();
        fmt.write_response(&resp, &mut obuf, &mut ebuf);
        if !ebuf.is_empty() {
            out.flush().map_err(FlowsError::Io)?;
            err.write_all(&ebuf).map_err(FlowsError::Io)?;
        }
        if !obuf.is_empty() {
            out.write_all(&obuf).map_err(FlowsError::Io)?;
            if line_buffered {
                out.flush().map_err(FlowsError::Io)?;
            }
        }
    }
    out.flush().map_err(FlowsError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        flows: FlowsArgs,
    }

    fn args(a: &[&str]) -> FlowsArgs {
        let mut v = vec!["flows"];
        v.extend_from_slice(a);
        Cli::try_parse_from(v).unwrap_or_else(|e| panic!("{e}")).flows
    }

    #[test]
    fn run_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let global = GlobalArgs::default();
        let fut = run(args(&[]), &global);
        assert_send(&fut);
    }

    #[test]
    fn request_selectors() {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        assert_eq!(build_request(&args(&[]), now).unwrap().number, 20);
        let r = build_request(&args(&["-f"]), now).unwrap();
        assert!(r.follow && r.number == 0);
        let r = build_request(&args(&["--last", "5", "-f"]), now).unwrap();
        assert!(r.follow && r.number == 5 && !r.first);
        let r = build_request(&args(&["--first", "7"]), now).unwrap();
        assert!(r.first && r.number == 7);
        assert_eq!(build_request(&args(&["--all"]), now).unwrap().number, u64::MAX);
        let r = build_request(&args(&["--since", "5m", "--until", "1970-01-12T13:46:00Z"]), now).unwrap();
        assert_eq!(r.number, 0);
        assert_eq!(r.since.map(|t| t.seconds), Some(1_000_000 - 300));
        assert!(r.until.is_some());
        let r = build_request(&args(&["--pod", "media/jellyfin", "--not", "--verdict", "FORWARDED"]), now).unwrap();
        assert_eq!(r.whitelist.len(), 2);
        assert_eq!(r.blacklist.len(), 1);
        assert!(
            matches!(build_request(&args(&["--since", "yesterday"]), now), Err(FlowsError::Input(m)) if m.contains("--since"))
        );
        assert!(
            matches!(build_request(&args(&["--ip", "10.0.0.0/99"]), now), Err(FlowsError::Input(m)) if m.contains("invalid filter"))
        );
        assert!(matches!(build_request(&args(&["--not"]), now), Err(FlowsError::Input(_))));
        // An inverted window is an input error (exit 2), an empty one at a single instant is not.
        let inverted = build_request(&args(&["--since", "1m", "--until", "2h"]), now);
        assert!(
            matches!(&inverted, Err(FlowsError::Input(m))
                if m == "--since (1m = 1970-01-12T13:45:40Z) is after --until (2h = 1970-01-12T11:46:40Z): no flow can match"),
            "{inverted:?}"
        );
        assert!(inverted.is_err_and(|e| e.exit_code() == ExitCode::from(2)));
        let m = build_request(&args(&["--since", "1970-01-12T13:46:00Z", "--until", "1970-01-01"]), now).unwrap_err();
        assert!(m.to_string().starts_with("--since (1970-01-12T13:46:00Z) is after --until (1970-01-01 = "), "{m}");
        assert!(build_request(&args(&["--since", "1970-01-01", "--until", "1970-01-01T00:00:00Z"]), now).is_ok());
        assert!(build_request(&args(&["--since", "2h", "--until", "1m"]), now).is_ok());
        assert!(Cli::try_parse_from(["flows", "--first", "3", "-f"]).is_err());
        assert!(Cli::try_parse_from(["flows", "-o", "table"]).is_err());
        assert_eq!(args(&["-o", "jsonpb"]).output, OutputFormat::Json);
        assert!(!args(&["--ip-translation", "false"]).ip_translation);
    }
}
