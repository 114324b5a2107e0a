//! The simulated nodes' SSH servers: each node listens on its own loopback port with a real SSH
//! server (russh), so the runbook's node commands go through the operator's real `ssh` binary,
//! exactly as against a real host.
//!
//! Per start: an ed25519 host key per node (and a second one, presented while the
//! `ssh-host-key-changed` fault holds), one ed25519 client key (the only key accepted, for the
//! user `cutover`), and three files in `sim-ssh/` next to the kubeconfig: the client key
//! (`id_ed25519`, 0600), `known_hosts` (`[127.0.0.1]:PORT ssh-ed25519 …` per node) and
//! `ssh_config` (one `Host <node> <InternalIP>` entry per node: the node's name and its simulated
//! address both lead to its loopback port, never to the address itself), so that
//! `ssh -F …/sim-ssh/ssh_config homelab-w1 sudo -n systemctl restart k3s-agent` works by hand.
//!
//! Exec requests run through [`shell`], which applies node operations to the world
//! ([`crate::sim::world::node_op`]). A node whose SSH is faulted unreachable, or that is
//! rebooting, closes its listener (connections are refused) and ends its sessions; the session
//! that ran the reboot ends without an exit status (the client's ssh exits 255).

pub mod shell;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::keys::ssh_key::{LineEnding, private::Ed25519Keypair};
use russh::keys::{HashAlg, PrivateKey, PublicKey};
use russh::server::{Auth, Msg, Session};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::world::{self, NodeRole};
use super::{SimError, SimShared};

/// The login user the simulated nodes accept.
pub const USER: &str = "cutover";

/// One node's SSH endpoint, as `cutover sim` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct SshNodeInfo {
    pub name: String,
    pub port: u16,
    /// `SHA256:…` of the node's host key (what `ssh-keyscan | ssh-keygen -lf -` shows).
    pub host_key_fingerprint: String,
}

/// The sim's SSH set-up: the files a client needs and the nodes' endpoints.
#[derive(Debug, Clone, Serialize)]
pub struct SshInfo {
    /// `ssh -F <this>`: one `Host <node>` entry per node.
    pub config: PathBuf,
    pub known_hosts: PathBuf,
    /// The client's private key (OpenSSH format, mode 0600).
    pub identity: PathBuf,
    pub user: String,
    pub nodes: Vec<SshNodeInfo>,
}

/// One node's server state.
struct NodeServer {
    name: String,
    unit: &'static str,
    addr: SocketAddr,
    shared: Arc<SimShared>,
    /// Presents the node's host key.
    config: Arc<russh::server::Config>,
    /// Presents another host key (fault `ssh-host-key-changed`).
    changed: Arc<russh::server::Config>,
    client_key: PublicKey,
    scratch: Mutex<BTreeMap<String, Vec<u8>>>,
    sessions: Mutex<Vec<(u64, russh::server::Handle)>>,
    next_session: AtomicU64,
    /// The last answer to "is the node rebooting".
    rebooting: AtomicBool,
}

impl NodeServer {
    fn sessions(&self) -> std::sync::MutexGuard<'_, Vec<(u64, russh::server::Handle)>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends every open session (the node went away or changed its key).
    async fn disconnect_all(&self, why: &str) {
        let handles: Vec<russh::server::Handle> = self.sessions().drain(..).map(|(_, h)| h).collect();
        for h in handles {
            let _ = h.disconnect(russh::Disconnect::ByApplication, why.to_string(), "en".to_string()).await;
        }
    }

    /// The node does not answer SSH: faulted unreachable, or rebooting. Never waits for the
    /// world's lock (a busy world keeps the last answer).
    fn down(&self) -> bool {
        if self.shared.faults.borrow().ssh_unreachable.contains(&self.name) {
            return true;
        }
        match world::node_rebooting_now(&self.shared, &self.name) {
            Some(r) => {
                self.rebooting.store(r, Ordering::Relaxed);
                r
            }
            None => self.rebooting.load(Ordering::Relaxed),
        }
    }

    fn key_changed(&self) -> bool {
        self.shared.faults.borrow().ssh_host_key_changed.contains(&self.name)
    }
}

/// A fresh ed25519 key from the OS's random source.
fn ed25519_key() -> Result<PrivateKey, SimError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| SimError::Other(format!("no random source for the sim's SSH keys: {e}")))?;
    Ok(PrivateKey::from(Ed25519Keypair::from_seed(&seed)))
}

fn server_config(host_key: PrivateKey) -> Arc<russh::server::Config> {
    Arc::new(russh::server::Config {
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        auth_rejection_time: Duration::from_millis(50),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![host_key],
        inactivity_timeout: Some(Duration::from_secs(600)),
        nodelay: true,
        ..Default::default()
    })
}

fn openssh_public(key: &PrivateKey) -> Result<String, SimError> {
    key.public_key().to_openssh().map_err(|e| SimError::Other(format!("encoding an SSH public key: {e}")))
}

/// A path as an `ssh_config` argument: quoted, `%` escaped (ssh expands %-tokens in paths).
fn config_path(p: &Path) -> String {
    format!("\"{}\"", p.display().to_string().replace('%', "%%"))
}

/// Starts one SSH server per node of the running world and writes the client files into
/// `dir` (created 0700).
pub async fn start(shared: Arc<SimShared>, dir: &Path) -> Result<(SshInfo, Vec<JoinHandle<()>>), SimError> {
    let write_err = |path: &Path, e: std::io::Error| SimError::Other(format!("cannot write {}: {e}", path.display()));
    crate::paths::create_private_dir(dir).map_err(|e| write_err(dir, e))?;
    let client = ed25519_key()?;
    let identity = dir.join("id_ed25519");
    let pem = client
        .to_openssh(LineEnding::LF)
        .map_err(|e| SimError::Other(format!("encoding the sim's client key: {e}")))?;
    super::write_private(&identity, pem.as_bytes()).map_err(|e| write_err(&identity, e))?;
    let pub_path = dir.join("id_ed25519.pub");
    std::fs::write(&pub_path, format!("{} cutover-sim\n", openssh_public(&client)?))
        .map_err(|e| write_err(&pub_path, e))?;

    let mut nodes = Vec::new();
    let mut tasks = Vec::new();
    let mut known_hosts = String::new();
    let known_hosts_path = dir.join("known_hosts");
    let config_file = dir.join("ssh_config");
    let mut config = String::from(
        "# ssh_config for the simulated homelab's nodes, written by cutover's simulator for this run\n\
         # (ports and keys are new at every start). Use: ssh -F <this file> <node> COMMAND\n",
    );
    for rt in world::node_runtimes(&shared) {
        let lo = SocketAddr::from(([127, 0, 0, 1], 0));
        let listener = TcpListener::bind(lo).await.map_err(|source| SimError::Listen { addr: lo, source })?;
        let addr = listener.local_addr().map_err(|source| SimError::Listen { addr: lo, source })?;
        let host_key = ed25519_key()?;
        let fingerprint = host_key.fingerprint(HashAlg::Sha256).to_string();
        known_hosts.push_str(&format!("[127.0.0.1]:{} {}\n", addr.port(), openssh_public(&host_key)?));
        config.push_str(&format!(
            "\nHost {name} {ip}\n    HostName 127.0.0.1\n    Port {port}\n    User {USER}\n    IdentityFile {id}\n    IdentitiesOnly yes\n    UserKnownHostsFile {kh}\n    GlobalKnownHostsFile /dev/null\n    StrictHostKeyChecking yes\n",
            name = rt.name,
            ip = rt.ip,
            port = addr.port(),
            id = config_path(&identity),
            kh = config_path(&known_hosts_path),
        ));
        let server = Arc::new(NodeServer {
            name: rt.name.clone(),
            unit: if rt.role == NodeRole::Server { "k3s" } else { "k3s-agent" },
            addr,
            shared: shared.clone(),
            config: server_config(host_key),
            changed: server_config(ed25519_key()?),
            client_key: client.public_key().clone(),
            scratch: Mutex::new(BTreeMap::new()),
            sessions: Mutex::new(Vec::new()),
            next_session: AtomicU64::new(1),
            rebooting: AtomicBool::new(false),
        });
        nodes.push(SshNodeInfo { name: rt.name.clone(), port: addr.port(), host_key_fingerprint: fingerprint });
        tasks.push(tokio::spawn(serve(server, listener)));
    }
    std::fs::write(&known_hosts_path, known_hosts).map_err(|e| write_err(&known_hosts_path, e))?;
    std::fs::write(&config_file, config).map_err(|e| write_err(&config_file, e))?;
    let info = SshInfo { config: config_file, known_hosts: known_hosts_path, identity, user: USER.to_string(), nodes };
    Ok((info, tasks))
}

/// How often a node re-checks whether it is down (rebooting) while nothing else happens.
const POLL: Duration = Duration::from_millis(250);

/// The node's accept loop: closes the listener while the node is down, re-opens it on the same
/// port when it is back, and ends open sessions when the host key changes.
async fn serve(node: Arc<NodeServer>, listener: TcpListener) {
    let mut listener = Some(listener);
    let mut faults = node.shared.faults.subscribe();
    let mut key_changed = node.key_changed();
    loop {
        if node.down() {
            if listener.take().is_some() {
                tracing::info!(node = %node.name, "sim ssh: node unreachable, listener closed");
                node.disconnect_all("node unreachable").await;
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = faults.changed() => {}
            }
            continue;
        }
        if listener.is_none() {
            match TcpListener::bind(node.addr).await {
                Ok(l) => {
                    tracing::info!(node = %node.name, addr = %node.addr, "sim ssh: listening again");
                    listener = Some(l);
                }
                Err(e) => {
                    tracing::warn!(node = %node.name, error = %e, "sim ssh: cannot listen again; retrying");
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            }
        }
        let changed = node.key_changed();
        if changed != key_changed {
            key_changed = changed;
            node.disconnect_all("host key changed").await;
        }
        let Some(l) = listener.as_ref() else { continue };
        tokio::select! {
            r = l.accept() => match r {
                Ok((stream, _)) => {
                    let config = if key_changed { node.changed.clone() } else { node.config.clone() };
                    tokio::spawn(session(node.clone(), config, stream));
                }
                Err(e) => {
                    tracing::warn!(node = %node.name, error = %e, "sim ssh: accept failed");
                    tokio::time::sleep(POLL).await;
                }
            },
            _ = faults.changed() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

async fn session(node: Arc<NodeServer>, config: Arc<russh::server::Config>, stream: tokio::net::TcpStream) {
    let id = node.next_session.fetch_add(1, Ordering::Relaxed);
    let handler = Conn { node: node.clone(), channels: HashMap::new() };
    let running = match russh::server::run_stream(config, stream, handler).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(node = %node.name, error = %e, "sim ssh: handshake failed");
            return;
        }
    };
    node.sessions().push((id, running.handle()));
    if let Err(e) = running.await {
        tracing::debug!(node = %node.name, error = %e, "sim ssh: session ended");
    }
    node.sessions().retain(|(i, _)| *i != id);
}

/// One channel's exec request while its stdin is still coming.
#[derive(Default)]
struct Chan {
    command: Option<String>,
    stdin: Vec<u8>,
    overflow: bool,
}

/// One SSH connection.
struct Conn {
    node: Arc<NodeServer>,
    channels: HashMap<ChannelId, Chan>,
}

impl Conn {
    fn key_ok(&self, user: &str, key: &PublicKey) -> bool {
        user == USER && key.key_data() == self.node.client_key.key_data()
    }
}

impl russh::server::Handler for Conn {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(if self.key_ok(user, offer.public_key) { Auth::Accept } else { Auth::reject() })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let ok = self.key_ok(user, key.public_key);
        tracing::info!(node = %self.node.name, %user, accepted = ok, "sim ssh: publickey authentication");
        Ok(if ok { Auth::Accept } else { Auth::reject() })
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), Chan::default());
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let line = String::from_utf8_lossy(data).into_owned();
        session.channel_success(channel)?;
        if shell::reads_stdin(&line) {
            self.channels.entry(channel).or_default().command = Some(line);
        } else {
            self.channels.remove(&channel);
            tokio::spawn(run(self.node.clone(), session.handle(), channel, line, Vec::new()));
        }
        Ok(())
    }

    /// No terminals on the simulated nodes: OpenSSH then says "PTY allocation request failed"
    /// and goes on without one.
    #[allow(clippy::too_many_arguments)] // the trait's signature
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        let msg = format!(
            "{}: the simulated node runs single commands, not a login shell: ssh {} COMMAND\r\n",
            self.node.name, self.node.name
        );
        session.extended_data(channel, 1, msg.into_bytes())?;
        session.exit_status_request(channel, 1)?;
        session.eof(channel)?;
        session.close(channel)?;
        Ok(())
    }

    async fn data(&mut self, channel: ChannelId, data: &[u8], _session: &mut Session) -> Result<(), Self::Error> {
        if let Some(c) = self.channels.get_mut(&channel)
            && c.command.is_some()
        {
            if c.stdin.len() + data.len() > shell::STDIN_MAX {
                c.overflow = true;
            } else {
                c.stdin.extend_from_slice(data);
            }
        }
        Ok(())
    }

    async fn channel_eof(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        if let Some(c) = self.channels.remove(&channel)
            && let Some(line) = c.command
        {
            if c.overflow {
                let handle = session.handle();
                tokio::spawn(async move {
                    let _ = handle
                        .extended_data(channel, 1, &b"bash: standard input too large for the simulated node\n"[..])
                        .await;
                    finish(&handle, channel, 1).await;
                });
            } else {
                tokio::spawn(run(self.node.clone(), session.handle(), channel, line, c.stdin));
            }
        }
        Ok(())
    }

    async fn channel_close(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        Ok(())
    }
}

async fn finish(handle: &russh::server::Handle, channel: ChannelId, code: u32) {
    let _ = handle.exit_status_request(channel, code).await;
    let _ = handle.eof(channel).await;
    let _ = handle.close(channel).await;
}

/// Runs one command line and sends its output and exit status.
async fn run(node: Arc<NodeServer>, handle: russh::server::Handle, channel: ChannelId, line: String, stdin: Vec<u8>) {
    // Node ops take the world's lock: off the async workers.
    let (n, l) = (node.clone(), line.clone());
    let Ok(out) = tokio::task::spawn_blocking(move || shell::run(&SimMachine { node: &n }, &l, &stdin)).await else {
        finish(&handle, channel, 1).await;
        return;
    };
    // The command line is the tool's (templates with fixed values); stdin (file contents) is
    // never logged.
    tracing::info!(node = %node.name, command = %line, code = out.code, "sim ssh: exec");
    if let Some(d) = out.sleep {
        tokio::time::sleep(d).await;
    }
    if out.reboot {
        // The node goes down under the session, as a real reboot takes sshd with it before
        // it answers: no exit status, the connection drops (the client's ssh exits 255).
        node.disconnect_all("the node is rebooting").await;
        return;
    }
    for chunk in out.stdout.chunks(16 * 1024) {
        if handle.data(channel, chunk.to_vec()).await.is_err() {
            return;
        }
    }
    for chunk in out.stderr.chunks(16 * 1024) {
        if handle.extended_data(channel, 1, chunk.to_vec()).await.is_err() {
            return;
        }
    }
    finish(&handle, channel, out.code).await;
}

/// The world as the interpreter sees it from one node.
struct SimMachine<'a> {
    node: &'a NodeServer,
}

impl shell::Machine for SimMachine<'_> {
    fn node(&self) -> &str {
        &self.node.name
    }

    fn unit(&self) -> &'static str {
        self.node.unit
    }

    fn sudo_needs_password(&self) -> bool {
        self.node.shared.faults.borrow().sudo_password.contains(&self.node.name)
    }

    fn injected_failure(&self, command: &str) -> bool {
        self.node
            .shared
            .faults
            .borrow()
            .failing_commands
            .iter()
            .any(|(n, c)| *n == self.node.name && command.starts_with(c.as_str()))
    }

    fn op(&self, op: world::NodeOp) -> Result<String, String> {
        world::node_op(&self.node.shared, &self.node.name, &op).map_err(|e| e.to_string())
    }

    fn scratch_read(&self, path: &str) -> Option<Vec<u8>> {
        self.node.scratch.lock().unwrap_or_else(|e| e.into_inner()).get(path).cloned()
    }

    fn scratch_write(&self, path: &str, bytes: Vec<u8>, append: bool) {
        let mut s = self.node.scratch.lock().unwrap_or_else(|e| e.into_inner());
        let e = s.entry(path.to_string()).or_default();
        if !append {
            e.clear();
        }
        e.extend(bytes);
        e.truncate(shell::STDIN_MAX);
    }

    fn scratch_remove(&self, path: &str) -> bool {
        self.node.scratch.lock().unwrap_or_else(|e| e.into_inner()).remove(path).is_some()
    }
}
