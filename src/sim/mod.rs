//! The simulated k3s homelab: a loopback Kubernetes API (`api`), the controllers that make it
//! live (`world`), and a loopback hubble-relay (`relay`), all sharing one object store.
//!
//! `cutover sim`, `cutover demo` and the tests start it through [`Sim::start`]; clients reach it
//! only over real sockets (kube-rs over HTTP, tonic over HTTP/2), exactly as a real cluster.

pub mod api;
pub mod faults;
pub mod probes;
pub mod registry;
pub mod relay;
pub mod ssh;
pub mod store;
pub mod topology;
pub mod world;
pub mod yaml;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use crate::tempdir::TempDir;
pub use faults::{ActiveFaults, Fault};
pub use store::Store;
pub use topology::{RoutingMode, Topology};

/// Errors starting or driving the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("cannot write kubeconfig {path}: {source}")]
    Kubeconfig { path: PathBuf, source: std::io::Error },
    #[error("unknown scenario {0:?} (built-in: fresh, cilium-installed, migrated, kpr; or a path to a scenario file)")]
    UnknownScenario(String),
    #[error("scenario file {path}: {message}")]
    ScenarioFile { path: PathBuf, message: String },
    #[error("{0}")]
    Other(String),
}

/// Who a bearer token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Identity {
    /// May do everything.
    Admin,
    /// May only get, list and watch (403 otherwise, like an RBAC view role).
    Viewer,
}

/// The bearer tokens the sim accepts. Random per start; never logged.
#[derive(Clone)]
pub struct Tokens {
    pub admin: String,
    pub viewer: String,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens { admin: <redacted>, viewer: <redacted> }")
    }
}

impl Tokens {
    pub fn random(rng: &mut fastrand::Rng) -> Self {
        let mut tok = |who: &str| {
            let hex: String = (0..32).map(|_| char::from_digit(rng.u32(0..16), 16).unwrap_or('0')).collect();
            format!("sim-{who}.{hex}")
        };
        Tokens { admin: tok("admin"), viewer: tok("viewer") }
    }

    pub fn identify(&self, bearer: &str) -> Option<Identity> {
        if bearer == self.admin {
            Some(Identity::Admin)
        } else if bearer == self.viewer {
            Some(Identity::Viewer)
        } else {
            None
        }
    }
}

/// One request the API server answered (for tests and the read-only audit).
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    /// Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection,
    /// or `connect` for portforward; `discovery` for /api, /apis, /version; `review` for
    /// SelfSubjectAccessReview / SelfSubjectRulesReview (answered, never stored); `simulator` for
    /// the `/simulator/v1` control surface.
    pub verb: String,
    pub method: String,
    pub path: String,
    /// The raw query string, without `?` (watch detection; an exec's command).
    pub query: Option<String>,
    /// The client's `User-Agent` header.
    pub user_agent: Option<String>,
    pub identity: Option<Identity>,
    pub code: u16,
}

impl RequestRecord {
    /// Whether the request could change the cluster: whatever the cockpit's read-only mode would
    /// refuse ([`crate::cluster::request_info`]), decided from method, path and query alone, so
    /// that an exec, attach or proxy counts even where the sim does not serve it.
    pub fn is_mutating(&self) -> bool {
        let Ok(method) = http::Method::from_bytes(self.method.as_bytes()) else { return true };
        !crate::cluster::request_info::is_read_request(&method, &self.path, self.query.as_deref())
    }
}

/// Log of every API request, in arrival order.
#[derive(Debug, Default)]
pub struct RequestLog(Mutex<Vec<RequestRecord>>);

impl RequestLog {
    pub fn push(&self, r: RequestRecord) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(r);
    }
    pub fn all(&self) -> Vec<RequestRecord> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Everything the sim's components share.
pub struct SimShared {
    pub store: Store,
    pub faults: watch::Sender<ActiveFaults>,
    pub topology: watch::Sender<Topology>,
    pub requests: RequestLog,
    pub tokens: Tokens,
    pub seed: u64,
    /// Simulated time runs this many times faster than wall time (controller delays shrink).
    pub speed: f64,
    /// Where the sim's hubble-relay listens: the API's port-forward to the hubble-relay pod
    /// connects here. Set once by [`Sim::start`].
    pub relay_addr: std::sync::OnceLock<SocketAddr>,
    /// PEM of the CA of the API server's per-start TLS certificate (set by `api::serve`; the API
    /// port speaks both plain HTTP and TLS). Public data, not a secret.
    pub api_ca_pem: std::sync::OnceLock<String>,
    /// Longhorn volume contents and the volume probes' output (see [`probes::VolumeData`]).
    pub volumes: probes::Volumes,
}

impl SimShared {
    pub fn inject(&self, fault: &Fault) {
        if matches!(fault, Fault::ExpireResourceVersions) {
            self.store.compact();
        }
        let speed = self.speed;
        self.faults.send_modify(|f| f.apply(fault, speed));
    }
}

/// How to start the sim.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Where the API listens (port 0 = any free port).
    pub api_listen: SocketAddr,
    /// Where hubble-relay listens (port 0 = any free port).
    pub relay_listen: SocketAddr,
    /// Built-in scenario name or path to a scenario file.
    pub scenario: String,
    pub seed: u64,
    pub speed: f64,
    /// Where to write the kubeconfig; `None` = a file in a fresh temp directory.
    pub kubeconfig_out: Option<PathBuf>,
    /// The simulated relay's tuning (ring size, backlog, flow rate).
    pub relay: relay::RelayConfig,
}

impl Default for SimOptions {
    fn default() -> Self {
        let lo = SocketAddr::from(([127, 0, 0, 1], 0));
        SimOptions {
            api_listen: lo,
            relay_listen: lo,
            scenario: "fresh".into(),
            seed: 1,
            relay: relay::RelayConfig::default(),
            speed: 1.0,
            kubeconfig_out: None,
        }
    }
}

/// What `cutover sim` prints as its one JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct SimInfo {
    pub api_url: String,
    /// https kubeconfig (kubectl, kube-rs); falls back to the http one without TLS.
    pub kubeconfig: PathBuf,
    /// http kubeconfig (kube-rs only: kubectl will not send a token over http).
    pub kubeconfig_http: PathBuf,
    pub hubble_relay: String,
    pub contexts: Vec<String>,
    pub tokens: Vec<String>,
    pub scenario: String,
    pub seed: u64,
    /// The simulated Git origin the sim's Argo CD reads: a bare repository (clone it, commit,
    /// push to `main` to deploy).
    pub git_repo: Option<PathBuf>,
    /// The same origin as a `file://` URL.
    pub git_url: Option<String>,
    /// The nodes' SSH servers: `ssh -F <ssh.config> <node> COMMAND`.
    pub ssh: ssh::SshInfo,
}

/// A running simulated cluster. Dropping it stops every task.
pub struct Sim {
    pub shared: Arc<SimShared>,
    pub api_addr: SocketAddr,
    pub relay_addr: SocketAddr,
    /// kubeconfig over plain http (what the cockpit, `demo` and the tests use).
    pub kubeconfig: PathBuf,
    /// kubeconfig over https with the per-start CA (`ca.crt` beside it), for kubectl.
    pub kubeconfig_tls: Option<PathBuf>,
    pub scenario: String,
    /// The nodes' SSH servers and the client files (`sim-ssh/` next to the kubeconfig).
    pub ssh: ssh::SshInfo,
    tasks: Vec<JoinHandle<()>>,
    _tmp: Option<TempDir>,
}

impl Sim {
    /// Starts the API server, the world's controllers and the relay.
    pub async fn start(opts: SimOptions) -> Result<Sim, SimError> {
        let api_listener = TcpListener::bind(opts.api_listen)
            .await
            .map_err(|source| SimError::Listen { addr: opts.api_listen, source })?;
        let relay_listener = TcpListener::bind(opts.relay_listen)
            .await
            .map_err(|source| SimError::Listen { addr: opts.relay_listen, source })?;
        let api_addr =
            api_listener.local_addr().map_err(|source| SimError::Listen { addr: opts.api_listen, source })?;
        let relay_addr =
            relay_listener.local_addr().map_err(|source| SimError::Listen { addr: opts.relay_listen, source })?;

        let mut rng = fastrand::Rng::with_seed(opts.seed);
        let shared = Arc::new(SimShared {
            store: Store::default(),
            faults: watch::channel(ActiveFaults::default()).0,
            topology: watch::channel(Topology::default()).0,
            requests: RequestLog::default(),
            tokens: Tokens::random(&mut rng),
            seed: opts.seed,
            speed: opts.speed,
            relay_addr: std::sync::OnceLock::from(relay_addr),
            api_ca_pem: std::sync::OnceLock::new(),
            volumes: probes::Volumes::default(),
        });

        let scenario = world::Scenario::load(&opts.scenario)?;
        let mut tasks = world::start(shared.clone(), &scenario)?;
        tasks.push(api::serve(api_listener, shared.clone()));
        tasks.push(relay::serve_with(relay_listener, shared.clone(), opts.relay.clone()));

        let (kubeconfig, tmp) = match opts.kubeconfig_out {
            Some(p) => (p, None),
            None => {
                let dir =
                    TempDir::new().map_err(|source| SimError::Kubeconfig { path: std::env::temp_dir(), source })?;
                (dir.path.join("kubeconfig"), Some(dir))
            }
        };
        write_kubeconfig(&kubeconfig, &format!("http://{api_addr}"), &shared.tokens)
            .map_err(|source| SimError::Kubeconfig { path: kubeconfig.clone(), source })?;
        // Also an https:// one (same port, per-start CA): kubectl never sends a bearer token over
        // plain http, so off-the-shelf clients use this one.
        let kubeconfig_tls = kubeconfig.with_file_name("kubeconfig-tls");
        let kubeconfig_tls = match shared.api_ca_pem.get() {
            Some(_) => {
                api::tls::write_kubeconfig(&kubeconfig_tls, api_addr, &shared)
                    .map_err(|source| SimError::Kubeconfig { path: kubeconfig_tls.clone(), source })?;
                Some(kubeconfig_tls)
            }
            None => None,
        };
        // Absolute: the ssh_config names the key and known_hosts files by these paths.
        let kube_dir = kubeconfig.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        let kube_dir = std::path::absolute(kube_dir).unwrap_or_else(|_| kube_dir.to_path_buf());
        let ssh_dir = kube_dir.join("sim-ssh");
        let (ssh, ssh_tasks) = ssh::start(shared.clone(), &ssh_dir).await?;
        tasks.extend(ssh_tasks);
        Ok(Sim {
            shared,
            api_addr,
            relay_addr,
            kubeconfig,
            kubeconfig_tls,
            scenario: opts.scenario.clone(),
            ssh,
            tasks,
            _tmp: tmp,
        })
    }

    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    pub fn info(&self) -> SimInfo {
        SimInfo {
            api_url: self.api_url(),
            kubeconfig: self.kubeconfig_tls.clone().unwrap_or_else(|| self.kubeconfig.clone()),
            kubeconfig_http: self.kubeconfig.clone(),
            hubble_relay: self.relay_addr.to_string(),
            contexts: vec!["sim".into(), "sim-viewer".into()],
            tokens: vec!["sim-admin".into(), "sim-viewer".into()],
            scenario: self.scenario.clone(),
            seed: self.shared.seed,
            git_repo: world::git_repo(&self.shared),
            git_url: world::git_url(&self.shared),
            ssh: self.ssh.clone(),
        }
    }

    /// Clones the sim's Git origin into `dest` (created private, 0700; must be empty) on `main`,
    /// with a local git identity and `commit.gpgsign=false`, so that the cockpit can commit and
    /// push there as an operator does to their homelab repo. Returns the clone's path.
    pub fn clone_origin(&self, dest: &std::path::Path) -> Result<PathBuf, SimError> {
        let origin = world::git_repo(&self.shared)
            .ok_or_else(|| SimError::Other("the simulated world is not running".into()))?;
        world::git_clone_origin(&origin, dest)
    }

    /// Points `settings.git` at a clone made by [`Sim::clone_origin`]: `repo_path`, branch `main`,
    /// and the repo URL and paths the sim's Applications use (the rendered Cilium app's `$values`
    /// source names the same repo as the root app).
    pub fn point_settings_at(&self, settings: &mut crate::settings::Settings, clone: PathBuf) {
        settings.git.repo_path = clone;
        settings.git.branch = "main".into();
        if let Some(g) = world::git_options(&self.shared) {
            settings.git.repo_url = g.repo_url;
            settings.git.apps_path = g.apps_path;
            settings.git.values_path = g.values_path;
        }
    }

    pub fn inject(&self, fault: &Fault) {
        self.shared.inject(fault);
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.requests.all()
    }

    pub fn stop(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Writes a kubeconfig with two contexts: `sim` (admin) and `sim-viewer` (read-only identity).
pub fn write_kubeconfig(path: &std::path::Path, server: &str, tokens: &Tokens) -> std::io::Result<()> {
    write_kubeconfig_with_ca(path, server, None, tokens)
}

/// As [`write_kubeconfig`], trusting the CA file `ca` for an https server.
pub fn write_kubeconfig_with_ca(
    path: &std::path::Path,
    server: &str,
    ca: Option<&std::path::Path>,
    tokens: &Tokens,
) -> std::io::Result<()> {
    let mut cluster = serde_json::json!({ "server": server });
    if let Some(ca) = ca {
        cluster["certificate-authority"] = serde_json::json!(ca);
    }
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "sim",
        "clusters": [{"name": "sim", "cluster": cluster}],
        "users": [
            {"name": "sim-admin", "user": {"token": tokens.admin}},
            {"name": "sim-viewer", "user": {"token": tokens.viewer}},
        ],
        "contexts": [
            {"name": "sim", "context": {"cluster": "sim", "user": "sim-admin"}},
            {"name": "sim-viewer", "context": {"cluster": "sim", "user": "sim-viewer"}},
        ],
    });
    // JSON is valid YAML; kubectl and kube-rs both read it.
    let text = serde_json::to_string_pretty(&doc).map_err(std::io::Error::other)?;
    write_private(path, text.as_bytes())
}

/// Writes a file readable by the owner only (it holds tokens).
pub(crate) fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    o.mode(0o600);
    let mut f = o.open(path)?;
    f.write_all(bytes)
}
#[cfg(test)]
mod tests {
    use super::*;

    fn record(verb: &str, method: &str, uri: &str) -> RequestRecord {
        let (path, query) = uri.split_once('?').map_or((uri, None), |(p, q)| (p, Some(q.to_string())));
        RequestRecord {
            verb: verb.into(),
            method: method.into(),
            path: path.into(),
            query,
            user_agent: None,
            identity: Some(Identity::Viewer),
            code: 404,
        }
    }

    #[test]
    fn mutating_by_kubernetes_verb() {
        // Connect subresources mutate whatever the method, served or not.
        for (method, uri) in [
            ("GET", "/api/v1/namespaces/a/pods/p/exec?command=true&stdout=true"),
            ("POST", "/api/v1/namespaces/a/pods/p/exec?command=true&stdout=true"),
            ("GET", "/api/v1/namespaces/a/pods/p/attach?stdout=true"),
            ("GET", "/api/v1/namespaces/a/services/s/proxy/"),
            ("GET", "/api/v1/nodes/n/proxy/metrics"),
            ("POST", "/api/v1/namespaces/a/pods/p/eviction"),
            ("PATCH", "/api/v1/nodes/n"),
            ("BREW", "/api/v1/nodes"),
        ] {
            assert!(record("unknown", method, uri).is_mutating(), "{method} {uri}");
        }
        for (verb, method, uri) in [
            ("watch", "GET", "/api/v1/pods?watch=true"),
            ("get", "GET", "/api/v1/namespaces/a/pods/p/log"),
            ("connect", "POST", "/api/v1/namespaces/a/pods/p/portforward"),
            ("connect", "GET", "/api/v1/namespaces/a/pods/p/portforward?ports=80"),
            ("review", "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"),
            ("discovery", "GET", "/apis"),
        ] {
            assert!(!record(verb, method, uri).is_mutating(), "{method} {uri}");
        }
    }
}
