//! Running one command on a node through the operator's system OpenSSH client (`ssh`), so their
//! `~/.ssh/config`, agent, ProxyJump and known_hosts apply; and reading what went wrong from
//! OpenSSH's own messages.
//!
//! Every call runs `ssh` with `BatchMode=yes` (never a prompt hidden behind the TUI),
//! `StrictHostKeyChecking=yes` (an unknown or changed host key stops; never accept-new), a
//! connect timeout, keep-alives and ControlMaster (one connection per node reused, sockets in a
//! private 0700 directory). Content to write goes to the remote command's stdin, never into its
//! command line. stdout and stderr are read to a bound; the command has a deadline after which
//! ssh is killed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::settings::SshSettings;

/// stdout kept per command; the rest is read and dropped (`stdout_truncated`).
pub const STDOUT_MAX: usize = 1024 * 1024;
/// stderr kept per command.
pub const STDERR_MAX: usize = 64 * 1024;
/// A ControlPath directory longer than this leaves no room for `%C` (40 characters) and ssh's
/// temporary suffix in a Unix socket path (at most 107 bytes).
const CONTROL_DIR_MAX: usize = 48;
/// After ssh exits, its pipes get this long to drain (a background ControlMaster must not hold
/// the call).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// What went wrong reaching a node or running a command on it. Each message is one line and
/// says what to do.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error(
        "{host}: host key not in known_hosts{} (StrictHostKeyChecking=yes): check the node's fingerprint out of band (on its console: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), then add it with {}",
        fingerprint.as_ref().map(|f| format!(", it offers {f}")).unwrap_or_default(),
        add.clone().unwrap_or_else(|| format!(
            "ssh-keyscan{} {host} >> ~/.ssh/known_hosts",
            port.map(|p| format!(" -p {p}")).unwrap_or_default()
        ))
    )]
    HostKeyUnknown {
        host: String,
        port: Option<u16>,
        /// What the node offers now (`ED25519 SHA256:…`), read with `ssh-keyscan`; `None` when
        /// it could not be read (a ProxyJump host, say).
        fingerprint: Option<String>,
        /// The command that adds the key, with the address, port and known_hosts file the ssh
        /// config resolves to (`ssh -G`); `None`: the generic one.
        add: Option<String>,
    },
    #[error(
        "{host}: HOST KEY CHANGED{}{}: the node was reinstalled or someone is intercepting the connection; stop, compare the fingerprint with the node's console (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub), and only then replace the entry (ssh-keygen -R '{host}')",
        fingerprint.as_ref().map(|f| format!(" (it now offers {f})")).unwrap_or_default(),
        known_hosts.as_ref().map(|k| format!(", old key at {k}")).unwrap_or_default()
    )]
    HostKeyChanged { host: String, fingerprint: Option<String>, known_hosts: Option<String> },
    #[error(
        "{host}: ssh authentication refused ({detail}): load the key into the agent (ssh-add) or set IdentityFile for this host in the ssh config, and check the user ([ssh] user or [ssh.nodes.<node>] user)"
    )]
    AuthFailed { host: String, detail: String },
    #[error(
        "{host}{}: cannot connect ({reason}): check that the node is up and that host and port in [ssh.nodes.<node>] are right",
        port.map(|p| format!(" port {p}")).unwrap_or_default()
    )]
    Unreachable { host: String, port: Option<u16>, reason: String },
    #[error(
        "{host}: sudo wants a password (BatchMode cannot type one): give the user NOPASSWD for these commands: {sudoers}"
    )]
    SudoPassword { host: String, sudoers: String },
    #[error("{host}: `{command}` exited {code}{}", if stderr_tail.is_empty() { String::new() } else { format!(": {stderr_tail}") })]
    CommandFailed { host: String, command: String, code: i32, stderr_tail: String },
    #[error(
        "{host}: `{command}` did not finish within {}s; ssh was stopped (the command may still be running on the node: look at it there)",
        after.as_secs()
    )]
    Timeout { host: String, command: String, after: Duration },
    #[error(
        "cannot run {program}: {source}; install the OpenSSH client (Debian/Ubuntu: apt-get install openssh-client)"
    )]
    Spawn { program: String, source: std::io::Error },
    #[error("cannot create the ControlMaster directory {dir}: {source}")]
    ControlDir { dir: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
    /// ssh failed (exit 255) with a message not recognized above.
    #[error("{host}: ssh failed: {message}")]
    Ssh { host: String, message: String },
}

/// One command's result (any exit status of the remote command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The remote command's exit status.
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr: String,
    pub stderr_truncated: bool,
    pub duration: Duration,
}

impl Output {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Where to connect: what is given to ssh as the destination, and the overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// A `Host` from the ssh config, a DNS name or an address.
    pub host: String,
    pub user: Option<String>,
    pub port: Option<u16>,
}

/// The operator's `ssh`, configured once for every node.
#[derive(Debug, Clone)]
pub struct SshClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    program: OsString,
    config_file: Option<PathBuf>,
    connect_timeout: Duration,
    server_alive_interval: Duration,
    command_timeout: Duration,
    control_dir: Option<PathBuf>,
    /// Keeps a fallback temp directory for the sockets alive (removed on drop).
    _control_tmp: Option<Arc<crate::tempdir::TempDir>>,
}

impl SshClient {
    /// From the `[ssh]` settings: `ssh` on `$PATH`, the ControlMaster directory created 0700
    /// (`control_dir`, else `ssh/` in the state directory, else a private temp directory).
    pub fn new(settings: &SshSettings) -> Result<SshClient, SshError> {
        let (control_dir, tmp) = match &settings.control_dir {
            Some(d) => {
                let d = expand_tilde(d);
                if d.as_os_str().len() > CONTROL_DIR_MAX {
                    return Err(SshError::Invalid(format!(
                        "[ssh] control_dir {} is longer than {CONTROL_DIR_MAX} characters: no room for the socket names",
                        d.display()
                    )));
                }
                crate::paths::create_private_dir(&d)
                    .map_err(|source| SshError::ControlDir { dir: d.clone(), source })?;
                (d, None)
            }
            None => match crate::paths::state_dir()
                .map(|s| s.join("ssh"))
                .filter(|d| d.as_os_str().len() <= CONTROL_DIR_MAX)
            {
                Some(d) if crate::paths::create_private_dir(&d).is_ok() => (d, None),
                _ => {
                    let t = crate::tempdir::TempDir::new()
                        .map_err(|source| SshError::ControlDir { dir: std::env::temp_dir(), source })?;
                    (t.path.clone(), Some(Arc::new(t)))
                }
            },
        };
        Ok(SshClient {
            inner: Arc::new(Inner {
                program: OsString::from("ssh"),
                config_file: settings.config_file.as_deref().map(expand_tilde),
                connect_timeout: Duration::from_secs(settings.connect_timeout),
                server_alive_interval: Duration::from_secs(settings.server_alive_interval),
                command_timeout: Duration::from_secs(settings.command_timeout),
                control_dir: Some(control_dir),
                _control_tmp: tmp,
            }),
        })
    }

    /// The same client running another OpenSSH-compatible program (a path, or a name on `$PATH`).
    pub fn with_program(&self, program: impl Into<OsString>) -> SshClient {
        let i = &self.inner;
        SshClient {
            inner: Arc::new(Inner {
                program: program.into(),
                config_file: i.config_file.clone(),
                connect_timeout: i.connect_timeout,
                server_alive_interval: i.server_alive_interval,
                command_timeout: i.command_timeout,
                control_dir: i.control_dir.clone(),
                _control_tmp: i._control_tmp.clone(),
            }),
        }
    }

    /// The same client without connection reuse (each command opens its own connection).
    pub fn without_control_master(&self) -> SshClient {
        let i = &self.inner;
        SshClient {
            inner: Arc::new(Inner {
                program: i.program.clone(),
                config_file: i.config_file.clone(),
                connect_timeout: i.connect_timeout,
                server_alive_interval: i.server_alive_interval,
                command_timeout: i.command_timeout,
                control_dir: None,
                _control_tmp: None,
            }),
        }
    }

    /// The per-command deadline from the settings.
    pub fn command_timeout(&self) -> Duration {
        self.inner.command_timeout
    }

    pub fn control_dir(&self) -> Option<&Path> {
        self.inner.control_dir.as_deref()
    }

    /// ssh's arguments (after the program name) for `command` on `target`.
    pub fn args(&self, target: &SshTarget, command: &str) -> Vec<OsString> {
        let i = &self.inner;
        let mut a: Vec<OsString> = Vec::new();
        if let Some(f) = &i.config_file {
            a.push("-F".into());
            a.push(f.clone().into_os_string());
        }
        // No tty, no agent or X11 forwarding to the node, whatever the ssh config says.
        for flag in ["-T", "-a", "-x"] {
            a.push(flag.into());
        }
        let mut opt = |o: String| {
            a.push("-o".into());
            a.push(o.into());
        };
        opt("BatchMode=yes".into());
        opt("StrictHostKeyChecking=yes".into());
        opt(format!("ConnectTimeout={}", i.connect_timeout.as_secs().max(1)));
        opt(format!("ServerAliveInterval={}", i.server_alive_interval.as_secs().max(1)));
        opt("ServerAliveCountMax=3".into());
        opt("ClearAllForwardings=yes".into());
        match &i.control_dir {
            Some(d) => {
                opt("ControlMaster=auto".into());
                opt(format!("ControlPath={}/%C", d.display().to_string().replace('%', "%%")));
                opt("ControlPersist=60".into());
            }
            None => opt("ControlMaster=no".into()),
        }
        if let Some(p) = target.port {
            a.push("-p".into());
            a.push(p.to_string().into());
        }
        if let Some(u) = &target.user {
            a.push("-l".into());
            a.push(u.into());
        }
        a.push("--".into());
        a.push(target.host.clone().into());
        a.push(command.into());
        a
    }

    /// The local command line, quoted as a shell would need it (for previews and the journal).
    pub fn command_line(&self, target: &SshTarget, command: &str) -> String {
        let mut words = vec![shell_quote(&self.inner.program.to_string_lossy())];
        words.extend(self.args(target, command).iter().map(|a| shell_quote(&a.to_string_lossy())));
        words.join(" ")
    }

    /// Runs `command` on `target`; `stdin` (if any) is written to the command's stdin and
    /// closed. Ok for any exit status of the remote command; Err for ssh's own failures (exit
    /// 255 with a recognized message), the deadline and a missing `ssh`.
    pub async fn exec(
        &self,
        target: &SshTarget,
        command: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Output, SshError> {
        let started = Instant::now();
        let program = self.inner.program.to_string_lossy().into_owned();
        let mut cmd = tokio::process::Command::new(&self.inner.program);
        cmd.args(self.args(target, command))
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| SshError::Spawn { program, source })?;
        let mut out_pipe = child.stdout.take();
        let mut err_pipe = child.stderr.take();
        let stdout_task = tokio::spawn(async move { read_bounded(out_pipe.as_mut(), STDOUT_MAX).await });
        let stderr_task = tokio::spawn(async move { read_bounded(err_pipe.as_mut(), STDERR_MAX).await });
        if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
            let bytes = bytes.to_vec();
            // A command that exits without reading its stdin closes the pipe: not an error here.
            tokio::spawn(async move {
                let _ = pipe.write_all(&bytes).await;
                let _ = pipe.shutdown().await;
            });
        }
        let status = match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(SshError::Ssh { host: target.host.clone(), message: format!("waiting for ssh: {e}") });
            }
            Err(_) => {
                let _ = child.kill().await;
                return Err(SshError::Timeout {
                    host: target.host.clone(),
                    command: command.to_string(),
                    after: timeout,
                });
            }
        };
        let drain = |t: tokio::task::JoinHandle<(Vec<u8>, bool)>| async move {
            match tokio::time::timeout(DRAIN_AFTER_EXIT, t).await {
                Ok(Ok(r)) => r,
                _ => (Vec::new(), false),
            }
        };
        let (stdout, stdout_truncated) = drain(stdout_task).await;
        let (stderr_bytes, stderr_truncated) = drain(stderr_task).await;
        let stderr = String::from_utf8_lossy(&stderr_bytes).into_owned();
        let Some(code) = status.code() else {
            return Err(SshError::Ssh {
                host: target.host.clone(),
                message: format!("ssh ended by a signal ({status})"),
            });
        };
        if code == 255
            && let Some(e) = classify(&target.host, target.port, &stderr)
        {
            return Err(match e {
                SshError::HostKeyUnknown { host, port, fingerprint: None, .. } => {
                    let (fingerprint, add) = self.offered_key(target).await;
                    SshError::HostKeyUnknown { host, port, fingerprint, add }
                }
                other => other,
            });
        }
        Ok(Output { code, stdout, stdout_truncated, stderr, stderr_truncated, duration: started.elapsed() })
    }

    /// [`exec`](Self::exec), then: exit 0 or an error (sudo's password prompt, the command's
    /// failure with the tail of its stderr, or ssh's unrecognized failure at 255).
    pub async fn run(
        &self,
        target: &SshTarget,
        command: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
        sudoers: &str,
    ) -> Result<Output, SshError> {
        let out = self.exec(target, command, stdin, timeout).await?;
        check(target, command, out, sudoers)
    }
}

impl SshClient {
    /// For an unknown host key: the key the node offers (its fingerprint, read with
    /// `ssh-keyscan` and `ssh-keygen -lf -`, both from the OpenSSH client) and the command that
    /// adds it, at the address, port and known_hosts file `ssh -G` resolves for `target`.
    /// Nothing is written; anything that fails gives `None`.
    async fn offered_key(&self, target: &SshTarget) -> (Option<String>, Option<String>) {
        let Some(r) = self.resolve(target).await else { return (None, None) };
        let add = format!(
            "ssh-keyscan -p {} {} >> {}",
            r.port,
            shell_quote(&r.hostname),
            r.known_hosts.as_deref().map(shell_quote).unwrap_or_else(|| "~/.ssh/known_hosts".into())
        );
        let scan = tool_output(
            "ssh-keyscan",
            &["-T", "5", "-p", &r.port.to_string(), "--", &r.hostname].map(OsString::from),
            None,
        )
        .await;
        let fingerprint = match scan {
            Some(keys) if !keys.trim().is_empty() => {
                tool_output("ssh-keygen", &["-l", "-f", "-"].map(OsString::from), Some(keys.into_bytes()))
                    .await
                    .and_then(|t| fingerprints(&t))
            }
            _ => None,
        };
        (fingerprint, Some(add))
    }

    /// `ssh -G` for `target`: what the ssh config resolves (HostName, Port, UserKnownHostsFile).
    async fn resolve(&self, target: &SshTarget) -> Option<Resolved> {
        let mut args: Vec<OsString> = Vec::new();
        if let Some(f) = &self.inner.config_file {
            args.push("-F".into());
            args.push(f.clone().into_os_string());
        }
        if let Some(p) = target.port {
            args.push("-p".into());
            args.push(p.to_string().into());
        }
        args.push("-G".into());
        args.push("--".into());
        args.push(target.host.clone().into());
        let text = tool_output(&self.inner.program.to_string_lossy(), &args, None).await?;
        parse_resolved(&text)
    }
}

/// What `ssh -G` prints for a host, the parts used here.
#[derive(Debug, PartialEq, Eq)]
struct Resolved {
    hostname: String,
    port: u16,
    /// The first UserKnownHostsFile (`None`: ssh's default).
    known_hosts: Option<String>,
}

fn parse_resolved(text: &str) -> Option<Resolved> {
    let value = |key: &str| {
        text.lines().find_map(|l| l.split_once(' ').filter(|(k, _)| *k == key).map(|(_, v)| v.trim().to_string()))
    };
    let hostname = value("hostname")?;
    let port = value("port")?.parse().ok()?;
    let known_hosts = value("userknownhostsfile")
        .and_then(|v| v.split_whitespace().next().map(str::to_string))
        .filter(|f| f != "~/.ssh/known_hosts");
    Some(Resolved { hostname, port, known_hosts })
}

/// `ssh-keygen -l` lines (`256 SHA256:… [127.0.0.1]:2222 (ED25519)`) as `ED25519 SHA256:…`,
/// one per key type, joined with `, `.
fn fingerprints(text: &str) -> Option<String> {
    let keys: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let fp = words.iter().find(|w| w.starts_with("SHA256:"))?;
            let kind = words.last().filter(|w| w.starts_with('(')).map(|w| w.trim_matches(|c| c == '(' || c == ')'));
            Some(match kind {
                Some(k) => format!("{k} {fp}"),
                None => fp.to_string(),
            })
        })
        .collect();
    if keys.is_empty() { None } else { Some(keys.join(", ")) }
}

/// How long each helper program (`ssh -G`, `ssh-keyscan`, `ssh-keygen`) may run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(8);
/// How much of a helper program's output is read.
const TOOL_MAX: usize = 64 * 1024;

/// Runs a local OpenSSH helper program; its stdout on exit 0, else `None`.
async fn tool_output(program: &str, args: &[OsString], stdin: Option<Vec<u8>>) -> Option<String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd.spawn().ok()?;
    let mut out = child.stdout.take();
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        tokio::spawn(async move {
            let _ = pipe.write_all(&bytes).await;
            let _ = pipe.shutdown().await;
        });
    }
    let run = async {
        let (bytes, _) = read_bounded(out.as_mut(), TOOL_MAX).await;
        let status = child.wait().await.ok()?;
        status.success().then(|| String::from_utf8_lossy(&bytes).into_owned())
    };
    tokio::time::timeout(TOOL_TIMEOUT, run).await.ok().flatten()
}

/// Exit 0 → Ok; otherwise the error the exit status and stderr mean.
pub fn check(target: &SshTarget, command: &str, out: Output, sudoers: &str) -> Result<Output, SshError> {
    if out.code == 0 {
        return Ok(out);
    }
    if is_sudo_password(&out.stderr) {
        return Err(SshError::SudoPassword { host: target.host.clone(), sudoers: sudoers.to_string() });
    }
    if out.code == 255 {
        return Err(SshError::Ssh { host: target.host.clone(), message: tail(&out.stderr, 300) });
    }
    Err(SshError::CommandFailed {
        host: target.host.clone(),
        command: command.to_string(),
        code: out.code,
        stderr_tail: tail(&out.stderr, 300),
    })
}

/// sudo's own words when it would need to prompt.
pub fn is_sudo_password(stderr: &str) -> bool {
    stderr.contains("sudo: a password is required")
        || stderr.contains("sudo: a terminal is required to read the password")
}

/// The last non-empty lines of `text`, joined with ` / `, at most about `max` characters.
pub fn tail(text: &str, max: usize) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let mut out: Vec<&str> = Vec::new();
    let mut len = 0;
    for l in lines.iter().rev() {
        if len + l.len() > max && !out.is_empty() {
            break;
        }
        len += l.len() + 3;
        out.push(l);
    }
    out.reverse();
    let s = out.join(" / ");
    if s.chars().count() > max {
        let cut: String = s.chars().rev().take(max).collect::<Vec<_>>().into_iter().rev().collect();
        format!("…{cut}")
    } else {
        s
    }
}

/// Reads up to `max` bytes, then drains the rest; (bytes, truncated).
async fn read_bounded<R: AsyncRead + Unpin>(pipe: Option<&mut R>, max: usize) -> (Vec<u8>, bool) {
    let Some(pipe) = pipe else { return (Vec::new(), false) };
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut truncated = false;
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = max.saturating_sub(buf.len());
                if n > room {
                    truncated = true;
                }
                buf.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
    (buf, truncated)
}

/// What OpenSSH's stderr says went wrong (ssh exits 255 for its own errors). `None`: not one of
/// the failures recognized here (the remote command may itself have exited 255).
pub fn classify(host: &str, port: Option<u16>, stderr: &str) -> Option<SshError> {
    let host = host.to_string();
    let fingerprint =
        stderr.split_whitespace().find(|w| w.starts_with("SHA256:")).map(|w| w.trim_end_matches('.').to_string());
    if stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || stderr.contains("has changed and you have requested strict checking")
    {
        let known_hosts = stderr.lines().find_map(|l| {
            l.trim()
                .strip_prefix("Offending ")
                .and_then(|r| r.split_once(" key in "))
                .map(|(_, f)| f.trim().to_string())
        });
        return Some(SshError::HostKeyChanged { host, fingerprint, known_hosts });
    }
    if stderr.contains("host key is known for")
        || stderr.contains("Host key verification failed.")
        || stderr.contains("No matching host key")
    {
        return Some(SshError::HostKeyUnknown { host, port, fingerprint, add: None });
    }
    if let Some(line) = stderr.lines().find(|l| l.contains("Permission denied (")) {
        let detail = line.find("Permission denied (").map(|i| line[i..].trim().to_string()).unwrap_or_default();
        return Some(SshError::AuthFailed { host, detail });
    }
    if stderr.contains("Too many authentication failures") {
        return Some(SshError::AuthFailed { host, detail: "Too many authentication failures".into() });
    }
    let unreachable =
        |reason: &str| Some(SshError::Unreachable { host: host.clone(), port, reason: reason.to_string() });
    for (needle, reason) in [
        ("Connection refused", "connection refused"),
        ("Connection timed out", "connection timed out"),
        ("Operation timed out", "connection timed out"),
        ("No route to host", "no route to host"),
        ("Network is unreachable", "network is unreachable"),
        ("Could not resolve hostname", "name unknown"),
        ("Name or service not known", "name unknown"),
        ("Temporary failure in name resolution", "name unknown (DNS failure)"),
        ("Connection reset by peer", "connection reset by the node"),
        ("closed by remote host", "connection closed by the node"),
        ("Connection closed by", "connection closed by the node during the handshake"),
        ("kex_exchange_identification", "the node's SSH server closed the connection during the handshake"),
    ] {
        if stderr.contains(needle) {
            return unreachable(reason);
        }
    }
    None
}

/// `~/x` → `$HOME/x` (settings paths are written as operators type them).
fn expand_tilde(p: &Path) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => p.to_path_buf(),
    }
}

/// A word quoted for a POSIX shell (unquoted when it holds only safe characters).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OpenSSH 9.x texts, as printed by the real client.
    const CHANGED: &str = "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
Someone could be eavesdropping on you right now (man-in-the-middle attack)!
It is also possible that a host key has just been changed.
The fingerprint for the ED25519 key sent by the remote host is
SHA256:4OeB0Hq0XnQvTWlJ8sD8Y8m7aXkKqXqvJmSm3bdPy0c.
Please contact your system administrator.
Add correct host key in /home/ops/.ssh/known_hosts to get rid of this message.
Offending ED25519 key in /home/ops/.ssh/known_hosts:7
  remove with:
  ssh-keygen -f \"/home/ops/.ssh/known_hosts\" -R \"192.168.20.21\"
Host key for 192.168.20.21 has changed and you have requested strict checking.
Host key verification failed.
";

    #[test]
    fn host_key_changed_with_fingerprint_and_file() {
        let e = classify("192.168.20.21", None, CHANGED).expect("recognized");
        match &e {
            SshError::HostKeyChanged { fingerprint, known_hosts, .. } => {
                assert_eq!(fingerprint.as_deref(), Some("SHA256:4OeB0Hq0XnQvTWlJ8sD8Y8m7aXkKqXqvJmSm3bdPy0c"));
                assert_eq!(known_hosts.as_deref(), Some("/home/ops/.ssh/known_hosts:7"));
            }
            other => panic!("{other:?}"),
        }
        let m = e.to_string();
        assert!(m.contains("HOST KEY CHANGED") && !m.contains('\n'), "{m}");
    }

    #[test]
    fn host_key_unknown() {
        let text = "No ED25519 host key is known for [127.0.0.1]:40123 and you have requested strict checking.\nHost key verification failed.\n";
        let e = classify("homelab-w1", Some(40123), text).expect("recognized");
        assert!(matches!(e, SshError::HostKeyUnknown { .. }), "{e:?}");
        let m = e.to_string();
        assert!(m.contains("ssh-keyscan -p 40123 homelab-w1") && m.contains("out of band"), "{m}");
        let e = classify("h", None, "Host key verification failed.\n").expect("recognized");
        assert!(matches!(e, SshError::HostKeyUnknown { .. }));
    }

    #[test]
    fn resolved_host_and_offered_fingerprints() {
        let g = "host homelab-w1\nuser cutover\nhostname 127.0.0.1\nport 40123\nuserknownhostsfile /tmp/sim/known_hosts /tmp/sim/known_hosts2\n";
        assert_eq!(
            parse_resolved(g),
            Some(Resolved {
                hostname: "127.0.0.1".into(),
                port: 40123,
                known_hosts: Some("/tmp/sim/known_hosts".into())
            })
        );
        let default = "hostname 192.168.20.21\nport 22\nuserknownhostsfile ~/.ssh/known_hosts ~/.ssh/known_hosts2\n";
        assert_eq!(parse_resolved(default).and_then(|r| r.known_hosts), None);
        assert_eq!(parse_resolved("port 22\n"), None);
        let l = "256 SHA256:4OeB0Hq0XnQvTWlJ8sD8Y8m7aXkKqXqvJmSm3bdPy0c [127.0.0.1]:40123 (ED25519)\n3072 SHA256:abc [127.0.0.1]:40123 (RSA)\n";
        assert_eq!(
            fingerprints(l).as_deref(),
            Some("ED25519 SHA256:4OeB0Hq0XnQvTWlJ8sD8Y8m7aXkKqXqvJmSm3bdPy0c, RSA SHA256:abc")
        );
        assert_eq!(fingerprints("garbage\n"), None);
        let e = SshError::HostKeyUnknown {
            host: "homelab-w1".into(),
            port: None,
            fingerprint: Some("ED25519 SHA256:x".into()),
            add: Some("ssh-keyscan -p 40123 127.0.0.1 >> /tmp/kh".into()),
        };
        let m = e.to_string();
        assert!(
            m.contains("it offers ED25519 SHA256:x")
                && m.ends_with("add it with ssh-keyscan -p 40123 127.0.0.1 >> /tmp/kh"),
            "{m}"
        );
    }

    #[test]
    fn auth_and_connection_failures() {
        let e = classify("h", None, "cutover@127.0.0.1: Permission denied (publickey).\n").expect("auth");
        match &e {
            SshError::AuthFailed { detail, .. } => assert_eq!(detail, "Permission denied (publickey)."),
            other => panic!("{other:?}"),
        }
        for (text, reason) in [
            ("ssh: connect to host 127.0.0.1 port 40123: Connection refused\n", "connection refused"),
            ("ssh: connect to host 192.168.20.21 port 22: Connection timed out\n", "connection timed out"),
            ("ssh: connect to host 192.168.20.21 port 22: No route to host\n", "no route to host"),
            ("ssh: Could not resolve hostname homelab-w9: Name or service not known\n", "name unknown"),
            ("ssh: Could not resolve hostname x: Temporary failure in name resolution\n", "name unknown"),
            (
                "kex_exchange_identification: read: Connection reset by peer\nConnection reset by 127.0.0.1 port 2222\n",
                "connection reset by the node",
            ),
        ] {
            match classify("h", Some(22), text) {
                Some(SshError::Unreachable { reason: r, .. }) => assert_eq!(r, reason, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(classify("h", None, "some remote program's own output\n").is_none());
    }

    #[test]
    fn sudo_and_command_failures() {
        let t = SshTarget { host: "homelab-w1".into(), user: None, port: None };
        let out = |code: i32, stderr: &str| Output {
            code,
            stdout: Vec::new(),
            stdout_truncated: false,
            stderr: stderr.into(),
            stderr_truncated: false,
            duration: Duration::ZERO,
        };
        let e = check(&t, "sudo -n systemctl restart k3s-agent", out(1, "sudo: a password is required\n"), "LINE")
            .expect_err("sudo");
        assert!(matches!(e, SshError::SudoPassword { .. }));
        assert!(e.to_string().ends_with("NOPASSWD for these commands: LINE"), "{e}");
        let job = "Job for k3s-agent.service failed because the control process exited with error code.\nSee \"systemctl status k3s-agent.service\" and \"journalctl -xeu k3s-agent.service\" for details.\n";
        let e = check(&t, "sudo -n systemctl restart k3s-agent", out(1, job), "").expect_err("fails");
        match &e {
            SshError::CommandFailed { code, stderr_tail, .. } => {
                assert_eq!(*code, 1);
                assert!(stderr_tail.starts_with("Job for k3s-agent.service failed"), "{stderr_tail}");
            }
            other => panic!("{other:?}"),
        }
        assert!(!e.to_string().contains('\n'));
        assert!(check(&t, "true", out(0, ""), "").is_ok());
    }

    #[test]
    fn args_are_batch_strict_and_reuse_connections() {
        let tmp = crate::tempdir::TempDir::new().expect("temp dir");
        let settings = SshSettings { control_dir: Some(tmp.path.join("ssh")), ..SshSettings::default() };
        let c = SshClient::new(&settings).expect("client");
        let t = SshTarget { host: "homelab-w1".into(), user: Some("ops".into()), port: Some(2222) };
        let line = c.command_line(&t, "sudo -n cat /etc/x");
        for part in [
            "-o BatchMode=yes",
            "-o StrictHostKeyChecking=yes",
            "-o ConnectTimeout=10",
            "-o ControlMaster=auto",
            "-o ControlPersist=60",
            "-p 2222 -l ops -- homelab-w1 'sudo -n cat /etc/x'",
        ] {
            assert!(line.contains(part), "{line} lacks {part}");
        }
        let dir = c.control_dir().expect("a control dir");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir).expect("exists").permissions().mode() & 0o777;
            assert_eq!(mode, 0o700);
        }
        assert!(c.without_control_master().command_line(&t, "true").contains("ControlMaster=no"));
        let missing = c.with_program("/nonexistent/ssh");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        match rt.block_on(missing.exec(&t, "true", None, Duration::from_secs(5))) {
            Err(e @ SshError::Spawn { .. }) => assert!(e.to_string().contains("apt-get install openssh-client"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(tail("a\n\nb\nc\n", 100), "a / b / c");
    }
}
