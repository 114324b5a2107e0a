//! Options shared by every subcommand (where the cluster and the relay are, read-only, settings).

use std::path::PathBuf;

/// Global options, resolved like kubectl's (`--kubeconfig`, `$KUBECONFIG`, `~/.kube/config`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GlobalArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, env = "KUBECONFIG", value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use (default: the current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// hubble-relay address (host:port). Without it, cutover port-forwards to the
    /// `hubble-relay` Service through the Kubernetes API.
    #[arg(long, global = true, value_name = "HOST:PORT")]
    pub hubble_server: Option<String>,
    /// Read-only watch mode: every request that could change the cluster or the Git repo is refused.
    #[arg(long, global = true)]
    pub read_only: bool,
    /// Settings file. Without it: $CUTOVER_CONFIG, then $XDG_CONFIG_HOME/cutover/cutover.toml
    /// (~/.config/cutover/cutover.toml), then ./cutover.toml; none = built-in defaults (the plan).
    /// `cutover config path` shows which is in use.
    #[arg(long, global = true, value_name = "PATH")]
    pub settings: Option<PathBuf>,
    /// Log file (tracing; never the terminal). Default: $XDG_STATE_HOME/cutover/cutover.log.
    #[arg(long, global = true, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
}

/// Writes a headless command's whole output to stdout. A reader that went away (`| head`) ends
/// the output quietly: `Ok(false)`; any other write error is returned.
pub fn write_stdout(text: &str) -> std::io::Result<bool> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if is_closed_pipe(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A write error that only means the reader has gone (`| head`, a closed socket).
pub fn is_closed_pipe(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset)
}
