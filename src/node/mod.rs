//! Commands on the cluster's nodes, for the runbook's `node-cutover` step: write, read back and
//! remove the stage's k3s config drop-in, restart k3s or reboot, and read the k3s journal, each
//! through the operator's system `ssh` ([`ssh::SshClient`]) with the command lines of the
//! `[ssh.commands]` templates.
//!
//! Read-only mode is the runbook's to enforce: the methods that change a node take a
//! [`NodeWrite`], which only the runbook executor creates (after its lock and the operator's
//! confirmation). Read paths (`read_dropin`, `logs`, `preview`) need none.

pub mod ssh;

use std::time::Duration;

use serde::Serialize;

pub use crate::manifests::render::Stage;
use crate::settings::{SshCommands, SshSettings};
pub use ssh::{Output, SshClient, SshError, SshTarget};

/// A node's k3s role (decides the systemd unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    Server,
    Agent,
}

impl NodeRole {
    /// The k3s systemd unit: `k3s` on servers, `k3s-agent` on agents.
    pub fn unit(self) -> &'static str {
        match self {
            NodeRole::Server => "k3s",
            NodeRole::Agent => "k3s-agent",
        }
    }
}

/// Permission to change a node. Only the runbook executor creates one, after it holds the lock
/// and the operator confirmed the step; read-only code paths never have one. `clippy.toml`
/// disallows [`NodeWrite::confirmed_by_runbook`] elsewhere (CI fails on another call site).
#[derive(Debug)]
pub struct NodeWrite {
    _private: (),
}

impl NodeWrite {
    /// For the runbook executor only (the lock is held, the step confirmed, read-only is off).
    pub fn confirmed_by_runbook() -> NodeWrite {
        NodeWrite { _private: () }
    }
}

/// One command of the node step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeCommand {
    WriteDropin { stage: Stage },
    ReadDropin { stage: Stage },
    RemoveDropin { stage: Stage },
    Restart,
    Reboot,
    Logs { lines: u32 },
}

impl NodeCommand {
    /// Whether the command changes the node.
    pub fn writes(self) -> bool {
        matches!(
            self,
            NodeCommand::WriteDropin { .. }
                | NodeCommand::RemoveDropin { .. }
                | NodeCommand::Restart
                | NodeCommand::Reboot
        )
    }
}

/// The journal lines the runbook asks for when a node does not come back (the sudoers line
/// names this number).
pub const LOG_LINES: u32 = 200;

/// Commands on one node.
#[derive(Debug, Clone)]
pub struct NodeShell {
    client: SshClient,
    node: String,
    role: NodeRole,
    target: SshTarget,
    commands: SshCommands,
    timeout: Duration,
    sudoers: String,
}

impl NodeShell {
    /// `node` is the Kubernetes node name, `internal_ip` its InternalIP (the host unless
    /// `[ssh.nodes.<node>] host` says otherwise). Settings were validated at load; the host and
    /// user are checked again here (they become ssh arguments).
    pub fn new(
        client: &SshClient,
        settings: &SshSettings,
        node: &str,
        internal_ip: &str,
        role: NodeRole,
    ) -> Result<NodeShell, SshError> {
        let over = settings.nodes.get(node);
        let host = over.and_then(|n| n.host.clone()).unwrap_or_else(|| internal_ip.to_string());
        let user = over.and_then(|n| n.user.clone()).or_else(|| settings.user.clone());
        let port = over.and_then(|n| n.port).or(settings.port);
        crate::settings::check_ssh_word(&host).map_err(|m| SshError::Invalid(format!("{node}: ssh host {m}")))?;
        if let Some(u) = &user {
            crate::settings::check_ssh_word(u).map_err(|m| SshError::Invalid(format!("{node}: ssh user {m}")))?;
        }
        for (key, template, allowed) in settings.commands.templates() {
            crate::settings::check_template(template, allowed)
                .map_err(|m| SshError::Invalid(format!("[ssh.commands] {key}: {m}")))?;
        }
        Ok(NodeShell {
            client: client.clone(),
            node: node.to_string(),
            role,
            target: SshTarget { host, user: user.clone(), port },
            commands: settings.commands.clone(),
            timeout: client.command_timeout(),
            sudoers: sudoers_line(&settings.commands, user.as_deref().unwrap_or("<user>")),
        })
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn role(&self) -> NodeRole {
        self.role
    }

    pub fn target(&self) -> &SshTarget {
        &self.target
    }

    /// The stage's drop-in path on the node.
    pub fn dropin_path(&self, stage: Stage) -> String {
        dropin_path(&self.commands, stage)
    }

    /// The command line sent to the node (what its shell runs).
    pub fn remote_command(&self, cmd: NodeCommand) -> String {
        remote_command(&self.commands, self.role, cmd)
    }

    /// The local `ssh` command line for each command, quoted, as the operator's confirmation
    /// shows them; a write says what goes to stdin.
    pub fn preview(&self, cmds: &[NodeCommand], content: Option<&str>) -> Vec<String> {
        cmds.iter()
            .map(|c| {
                let line = self.client.command_line(&self.target, &self.remote_command(*c));
                match (c, content) {
                    (NodeCommand::WriteDropin { .. }, Some(text)) => {
                        format!("{line}  # stdin: {} bytes, {} lines", text.len(), text.lines().count())
                    }
                    (NodeCommand::Reboot, _) => {
                        format!(
                            "{line}  # recommended over a restart: clears flannel.1, cni0 and the old iptables rules"
                        )
                    }
                    _ => line,
                }
            })
            .collect()
    }

    async fn run(&self, cmd: NodeCommand, stdin: Option<&[u8]>) -> Result<Output, SshError> {
        let line = self.remote_command(cmd);
        self.client.run(&self.target, &line, stdin, self.timeout, &self.sudoers).await
    }

    /// Writes `content` to the stage's drop-in (through stdin).
    pub async fn write_dropin(&self, _write: &NodeWrite, stage: Stage, content: &str) -> Result<Output, SshError> {
        self.run(NodeCommand::WriteDropin { stage }, Some(content.as_bytes())).await
    }

    /// The drop-in's content (compare `stdout` with what was written).
    pub async fn read_dropin(&self, stage: Stage) -> Result<Output, SshError> {
        self.run(NodeCommand::ReadDropin { stage }, None).await
    }

    /// Removes the stage's drop-in (rollback; absent is fine with the default `rm -f`).
    pub async fn remove_dropin(&self, _write: &NodeWrite, stage: Stage) -> Result<Output, SshError> {
        self.run(NodeCommand::RemoveDropin { stage }, None).await
    }

    /// Restarts the node's k3s unit.
    pub async fn restart(&self, _write: &NodeWrite) -> Result<Output, SshError> {
        self.run(NodeCommand::Restart, None).await
    }

    /// Reboots the node. The connection ending because the node went down counts as done.
    pub async fn reboot(&self, _write: &NodeWrite) -> Result<Output, SshError> {
        let line = self.remote_command(NodeCommand::Reboot);
        match self.client.run(&self.target, &line, None, self.timeout, &self.sudoers).await {
            Err(SshError::Unreachable { reason, .. }) if dropped_by_reboot(&reason) => Ok(rebooting(&reason)),
            // ssh exits 255 when the connection drops under it, often with no words at all.
            Err(SshError::Ssh { message, .. }) if message.trim().is_empty() || dropped_by_reboot(&message) => {
                Ok(rebooting(if message.trim().is_empty() { "dropped (ssh exit 255)" } else { message.trim() }))
            }
            other => other,
        }
    }

    /// The last `lines` lines of the k3s unit's journal.
    pub async fn logs(&self, lines: u32) -> Result<Output, SshError> {
        self.run(NodeCommand::Logs { lines }, None).await
    }

    /// The sudoers line these commands need (for this node's user).
    pub fn sudoers_line(&self) -> &str {
        &self.sudoers
    }
}

/// Fills a template's placeholders (all values are the tool's own: numbers, fixed unit names,
/// the validated drop-in path).
fn render(template: &str, stage: Option<Stage>, path: Option<&str>, unit: &str, lines: Option<u32>) -> String {
    let mut s = template.replace("{unit}", unit);
    if let Some(st) = stage {
        s = s.replace("{stage}", &st.number().to_string());
    }
    if let Some(p) = path {
        s = s.replace("{path}", p);
    }
    if let Some(n) = lines {
        s = s.replace("{lines}", &n.to_string());
    }
    s
}

/// The stage's drop-in path.
pub fn dropin_path(commands: &SshCommands, stage: Stage) -> String {
    render(&commands.dropin_path, Some(stage), None, "", None)
}

/// The command line sent for `cmd` on a node of `role`.
pub fn remote_command(commands: &SshCommands, role: NodeRole, cmd: NodeCommand) -> String {
    let unit = role.unit();
    let with_path = |t: &str, stage: Stage| render(t, Some(stage), Some(&dropin_path(commands, stage)), unit, None);
    match cmd {
        NodeCommand::WriteDropin { stage } => with_path(&commands.write_dropin, stage),
        NodeCommand::ReadDropin { stage } => with_path(&commands.read_dropin, stage),
        NodeCommand::RemoveDropin { stage } => with_path(&commands.remove_dropin, stage),
        NodeCommand::Restart => render(&commands.restart, None, None, unit, None),
        NodeCommand::Reboot => render(&commands.reboot, None, None, unit, None),
        NodeCommand::Logs { lines } => render(&commands.logs, None, None, unit, Some(lines)),
    }
}

/// Every command line the node step sends (both stages, both roles; logs with [`LOG_LINES`]).
pub fn all_commands(commands: &SshCommands) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for role in [NodeRole::Server, NodeRole::Agent] {
        for stage in [Stage::One, Stage::Two] {
            for c in [
                NodeCommand::WriteDropin { stage },
                NodeCommand::ReadDropin { stage },
                NodeCommand::RemoveDropin { stage },
            ] {
                out.push(remote_command(commands, role, c));
            }
        }
        for c in [NodeCommand::Restart, NodeCommand::Reboot, NodeCommand::Logs { lines: LOG_LINES }] {
            out.push(remote_command(commands, role, c));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|l| seen.insert(l.clone()));
    out
}

/// The sudoers rule that lets `user` run exactly the commands the templates send with `sudo`,
/// without a password: `user ALL=(root) NOPASSWD: /usr/bin/tee /etc/…, …` (programs under
/// /usr/bin, as on Debian and Ubuntu; shell redirections are not part of the rule).
pub fn sudoers_line(commands: &SshCommands, user: &str) -> String {
    let mut rules: Vec<String> = Vec::new();
    for line in all_commands(commands) {
        let mut words: Vec<&str> = line.split_whitespace().collect();
        if words.first() != Some(&"sudo") {
            continue;
        }
        words.remove(0);
        while words.first().is_some_and(|w| w.starts_with('-')) {
            words.remove(0);
        }
        let mut kept: Vec<String> = Vec::new();
        let mut skip_next = false;
        for w in words {
            if skip_next {
                skip_next = false;
                continue;
            }
            if w == ">" {
                skip_next = true;
                continue;
            }
            if w.starts_with('>') || w.starts_with("2>") {
                continue;
            }
            kept.push(w.to_string());
        }
        let Some(prog) = kept.first_mut() else { continue };
        if !prog.starts_with('/') {
            *prog = format!("/usr/bin/{prog}");
        }
        let rule = kept.join(" ");
        if !rules.contains(&rule) {
            rules.push(rule);
        }
    }
    format!("{user} ALL=(root) NOPASSWD: {}", rules.join(", "))
}

/// Settings that lead every node of the simulated homelab to its SSH server: the sim's
/// `ssh_config` (whose `Host` entries name each node and its simulated InternalIP, so the
/// default host never leaves loopback).
#[cfg(feature = "sim")]
pub fn sim_settings(info: &crate::sim::ssh::SshInfo) -> SshSettings {
    SshSettings { config_file: Some(info.config.clone()), ..SshSettings::default() }
}

/// Whether what ssh said means the connection dropped (as it does under a `reboot`).
fn dropped_by_reboot(why: &str) -> bool {
    ["closed", "reset", "broken pipe", "Broken pipe"].iter().any(|w| why.contains(w))
}

/// The outcome of a reboot whose connection dropped: sent, the node going down.
fn rebooting(why: &str) -> Output {
    Output {
        code: 0,
        stdout: Vec::new(),
        stdout_truncated: false,
        stderr: format!("connection {why} (the node is rebooting)"),
        stderr_truncated: false,
        duration: Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_dropped_connection_is_what_a_reboot_looks_like() {
        assert!(super::dropped_by_reboot("connection closed by the node"));
        assert!(super::dropped_by_reboot("Connection to 10.0.0.1 closed by remote host."));
        assert!(super::dropped_by_reboot("client_loop: send disconnect: Broken pipe"));
        assert!(!super::dropped_by_reboot("connection refused"));
        assert_eq!(super::rebooting("dropped (ssh exit 255)").code, 0);
    }

    use super::*;

    #[test]
    fn default_commands_are_the_documented_ones() {
        let c = SshCommands::default();
        assert_eq!(dropin_path(&c, Stage::One), "/etc/rancher/k3s/config.yaml.d/90-cutover-stage1.yaml");
        let p = "/etc/rancher/k3s/config.yaml.d/90-cutover-stage2.yaml";
        assert_eq!(
            remote_command(&c, NodeRole::Server, NodeCommand::WriteDropin { stage: Stage::Two }),
            format!("sudo -n tee {p} >/dev/null")
        );
        assert_eq!(
            remote_command(&c, NodeRole::Agent, NodeCommand::ReadDropin { stage: Stage::Two }),
            format!("sudo -n cat {p}")
        );
        assert_eq!(
            remote_command(&c, NodeRole::Agent, NodeCommand::RemoveDropin { stage: Stage::Two }),
            format!("sudo -n rm -f {p}")
        );
        assert_eq!(remote_command(&c, NodeRole::Server, NodeCommand::Restart), "sudo -n systemctl restart k3s");
        assert_eq!(remote_command(&c, NodeRole::Agent, NodeCommand::Restart), "sudo -n systemctl restart k3s-agent");
        assert_eq!(remote_command(&c, NodeRole::Agent, NodeCommand::Reboot), "sudo -n systemctl reboot");
        assert_eq!(
            remote_command(&c, NodeRole::Agent, NodeCommand::Logs { lines: 50 }),
            "sudo -n journalctl -u k3s-agent -n 50 --no-pager"
        );
    }

    #[test]
    fn sudoers_line_names_exactly_the_commands() {
        let line = sudoers_line(&SshCommands::default(), "cutover");
        let d = "/etc/rancher/k3s/config.yaml.d/90-cutover-stage";
        assert_eq!(
            line,
            format!(
                "cutover ALL=(root) NOPASSWD: /usr/bin/tee {d}1.yaml, /usr/bin/cat {d}1.yaml, /usr/bin/rm -f {d}1.yaml, \
                 /usr/bin/tee {d}2.yaml, /usr/bin/cat {d}2.yaml, /usr/bin/rm -f {d}2.yaml, /usr/bin/systemctl restart k3s, \
                 /usr/bin/systemctl reboot, /usr/bin/journalctl -u k3s -n 200 --no-pager, \
                 /usr/bin/systemctl restart k3s-agent, /usr/bin/journalctl -u k3s-agent -n 200 --no-pager"
            )
        );
    }

    #[test]
    fn node_overrides_and_preview() {
        let tmp = crate::tempdir::TempDir::new().expect("temp dir");
        let mut s =
            SshSettings { control_dir: Some(tmp.path.join("ssh")), user: Some("ops".into()), ..SshSettings::default() };
        s.nodes.insert(
            "homelab-w1".into(),
            crate::settings::SshNodeSettings { host: Some("w1.lan".into()), user: None, port: Some(2222) },
        );
        let client = SshClient::new(&s).expect("client");
        let w1 = NodeShell::new(&client, &s, "homelab-w1", "192.168.20.12", NodeRole::Agent).expect("shell");
        assert!(w1.sudoers_line().starts_with("ops ALL=(root) NOPASSWD: /usr/bin/tee "));
        assert_eq!(w1.target(), &SshTarget { host: "w1.lan".into(), user: Some("ops".into()), port: Some(2222) });
        let cp = NodeShell::new(&client, &s, "homelab-cp1", "192.168.20.11", NodeRole::Server).expect("shell");
        assert_eq!(cp.target().host, "192.168.20.11");
        let p =
            w1.preview(&[NodeCommand::WriteDropin { stage: Stage::One }, NodeCommand::Restart], Some("a: 1\nb: 2\n"));
        assert_eq!(p.len(), 2);
        assert!(p[0].ends_with("w1.lan 'sudo -n tee /etc/rancher/k3s/config.yaml.d/90-cutover-stage1.yaml >/dev/null'  # stdin: 10 bytes, 2 lines"), "{}", p[0]);
        assert!(p[1].ends_with("'sudo -n systemctl restart k3s-agent'"), "{}", p[1]);
        s.nodes.insert(
            "bad".into(),
            crate::settings::SshNodeSettings { host: Some("-oProxyCommand=x".into()), ..Default::default() },
        );
        assert!(NodeShell::new(&client, &s, "bad", "1.2.3.4", NodeRole::Agent).is_err());
        assert!(NodeCommand::Restart.writes() && !NodeCommand::Logs { lines: 1 }.writes());
    }
}
