//! Node commands through the real OpenSSH client (`ssh`) against the simulated nodes' SSH
//! servers: the drop-in written through `NodeShell` is read back, a server restarted with the
//! Stage 1 drop-in shows its flags in `k3s.io/node-args`, `ssh -F <sim ssh_config>` works by
//! hand, and each failure (unreachable, unknown or changed host key, refused key, sudo password,
//! a failing command, an unknown command, a timeout) comes back as its own typed error.
#![cfg(feature = "sim")] // drives the simulated cluster
#![allow(clippy::disallowed_methods)] // the tests play the runbook executor's part (NodeWrite)

mod common;

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;

use cutover::node::{self, NodeRole, NodeShell, NodeWrite, SshClient, SshError, SshTarget, Stage};
use cutover::settings::SshSettings;
use cutover::sim::{Fault, Sim, TempDir, world};

/// Generous: the machine may be loaded; every wait polls a condition.
const WAIT: Duration = Duration::from_secs(120);
const STAGE1: &str = "flannel-backend: none\ndisable-network-policy: true\n";

async fn start() -> Sim {
    common::sim("fresh", 7, 20.0).await
}

/// Settings for the sim, with a control directory of the test's own and generous timeouts.
fn settings(sim: &Sim, tmp: &TempDir) -> SshSettings {
    SshSettings {
        control_dir: Some(tmp.path.join("ctl")),
        connect_timeout: 30,
        command_timeout: 60,
        ..node::sim_settings(&sim.ssh)
    }
}

fn shell(sim: &Sim, s: &SshSettings, ssh: &SshClient, name: &str) -> NodeShell {
    let rt = world::node_runtime(&sim.shared, name).expect("node exists");
    let role = if rt.role == world::NodeRole::Server { NodeRole::Server } else { NodeRole::Agent };
    NodeShell::new(ssh, s, name, &rt.ip, role).expect("node shell")
}

fn node_args(n: &Node) -> Vec<String> {
    serde_json::from_str(&common::node_args_raw(n)).expect("node-args is a JSON array")
}

fn ssh_by_hand(config: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new("ssh")
        .arg("-F")
        .arg(config)
        .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=30"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("ssh runs (openssh-client installed)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropin_written_through_ssh_reads_back_and_takes_effect_on_restart() {
    let sim = start().await;
    let tmp = TempDir::new().expect("tmp");
    let s = settings(&sim, &tmp);
    let ssh = SshClient::new(&s).expect("ssh client");
    let write = NodeWrite::confirmed_by_runbook();

    // The default host is the InternalIP: the sim's ssh_config leads it to loopback.
    let w1 = shell(&sim, &s, &ssh, "homelab-w1");
    assert!(w1.target().host.starts_with("192.168."), "{:?}", w1.target());
    w1.write_dropin(&write, Stage::One, STAGE1).await.expect("write");
    let back = w1.read_dropin(Stage::One).await.expect("read");
    assert_eq!(back.stdout_text(), STAGE1);
    assert_eq!(back.code, 0);

    // A server restarted with the Stage 1 drop-in runs (and says) the new flags.
    let cp1 = shell(&sim, &s, &ssh, "homelab-cp1");
    cp1.write_dropin(&write, Stage::One, STAGE1).await.expect("write on the server");
    assert_eq!(cp1.read_dropin(Stage::One).await.expect("read").stdout_text(), STAGE1);
    cp1.restart(&write).await.expect("restart k3s");
    let nodes: Api<Node> = Api::all(common::admin(&sim).await);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        // The API may be briefly down while its only server restarts: retry.
        if let Ok(n) = nodes.get("homelab-cp1").await {
            let args = node_args(&n);
            let has_pair = args.windows(2).any(|w| w[0] == "--flannel-backend" && w[1] == "none");
            if has_pair && args.iter().any(|a| a == "--disable-network-policy") {
                break;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "node-args never showed the Stage 1 flags");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rt = world::node_runtime(&sim.shared, "homelab-cp1").expect("runtime");
    assert_eq!(rt.flannel_backend, None, "flannel is off after the restart");

    // The journal says what happened, over the same SSH.
    let logs = cp1.logs(50).await.expect("journal");
    let text = logs.stdout_text();
    assert!(text.contains("Stopped k3s.service") && text.contains("Starting k3s v"), "{text}");

    // Rollback: the drop-in removed (and removing again is fine with -f).
    cp1.remove_dropin(&write, Stage::One).await.expect("remove");
    cp1.remove_dropin(&write, Stage::One).await.expect("remove again");
    match cp1.read_dropin(Stage::One).await {
        Err(SshError::CommandFailed { code: 1, stderr_tail, .. }) => {
            assert!(stderr_tail.contains("No such file or directory"), "{stderr_tail}");
        }
        other => panic!("read after remove: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sim_ssh_config_works_by_hand() {
    let sim = start().await;
    let cfg = &sim.ssh.config;
    let out = ssh_by_hand(cfg, &["homelab-w1", "hostname"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "homelab-w1\n");

    let path = "/etc/rancher/k3s/config.yaml.d/10-by-hand.yaml";
    let mut child = std::process::Command::new("ssh")
        .arg("-F")
        .arg(cfg)
        .args(["-o", "BatchMode=yes", "homelab-w1", "sudo", "-n", "tee", path, ">/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ssh runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"node-label:\n  - by-hand=yes\n").expect("write stdin");
    }
    let out = child.wait_with_output().expect("ssh ends");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty(), ">/dev/null discards tee's copy");

    let out = ssh_by_hand(cfg, &["homelab-w1", "cat", path]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "node-label:\n  - by-hand=yes\n");
    let out = ssh_by_hand(cfg, &["homelab-w1", "sudo -n systemctl restart k3s-agent"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = ssh_by_hand(cfg, &["homelab-w1", "sudo", "-n", "systemctl", "status", "k3s-agent"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("k3s-agent.service - Lightweight Kubernetes"));
    // Without sudo the k3s directory is not writable.
    let out = ssh_by_hand(cfg, &["homelab-w1", "rm", path]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));
    // A login shell is not offered, and says so.
    let out = ssh_by_hand(cfg, &["homelab-w1"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("runs single commands"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Pipes are not run.
    let out = ssh_by_hand(cfg, &["homelab-w1", "cat /etc/hostname | tr a-z A-Z"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(world::node_runtime(&sim.shared, "homelab-w1").is_some());
}

/// Polls `f` until it gives an error `want` accepts (a fault takes effect within a moment).
async fn until_error<F, Fut>(what: &str, mut f: F, want: impl Fn(&SshError) -> bool) -> SshError
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<node::Output, SshError>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match f().await {
            Err(e) if want(&e) => return e,
            other => {
                assert!(tokio::time::Instant::now() < deadline, "{what}: last result {other:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_and_host_key_failures_are_typed() {
    let sim = start().await;
    let tmp = TempDir::new().expect("tmp");
    let s = settings(&sim, &tmp);
    let ssh = SshClient::new(&s).expect("ssh client");

    // A connection first, so that a ControlMaster exists: the faults must still show.
    let w2 = shell(&sim, &s, &ssh, "homelab-w2");
    w2.logs(5).await.expect("reachable at first");
    sim.inject(&Fault::SshUnreachable { node: "homelab-w2".into() });
    let e = until_error("unreachable", || w2.logs(5), |e| matches!(e, SshError::Unreachable { .. })).await;
    assert!(e.to_string().contains("connection refused"), "{e}");
    sim.inject(&Fault::Clear);
    until_ok(|| w2.logs(5)).await;

    // The host key changed: refused, with the new key's fingerprint.
    let w1 = shell(&sim, &s, &ssh, "homelab-w1");
    w1.logs(5).await.expect("reachable at first");
    sim.inject(&Fault::SshHostKeyChanged { node: "homelab-w1".into() });
    let e = until_error("changed key", || w1.logs(5), |e| matches!(e, SshError::HostKeyChanged { .. })).await;
    match &e {
        SshError::HostKeyChanged { fingerprint, .. } => {
            let f = fingerprint.as_deref().expect("OpenSSH prints the new fingerprint");
            assert!(f.starts_with("SHA256:"), "{f}");
            let known = sim.ssh.nodes.iter().find(|n| n.name == "homelab-w1").expect("w1").host_key_fingerprint.clone();
            assert_ne!(f, known, "the offered key is not the known one");
        }
        other => panic!("{other:?}"),
    }

    // An empty known_hosts: the key is unknown, and nothing is accepted.
    let empty = tmp.path.join("empty_known_hosts");
    std::fs::write(&empty, "").expect("write");
    let text = std::fs::read_to_string(&sim.ssh.config).expect("read ssh_config");
    let kh = format!("\"{}\"", sim.ssh.known_hosts.display());
    let cfg2 = tmp.path.join("ssh_config_empty_kh");
    std::fs::write(&cfg2, text.replace(&kh, &format!("\"{}\"", empty.display()))).expect("write");
    let s2 = SshSettings { config_file: Some(cfg2), ..s.clone() };
    let ssh2 = SshClient::new(&s2).expect("client").without_control_master();
    let cp1 = shell(&sim, &s2, &ssh2, "homelab-cp1");
    match cp1.logs(5).await {
        Err(e @ SshError::HostKeyUnknown { .. }) => {
            // The fingerprint the node offers (ssh-keyscan), and the add command at the address,
            // port and known_hosts file the ssh config resolves to.
            let m = e.to_string();
            let node = sim.ssh.nodes.iter().find(|n| n.name == "homelab-cp1").expect("cp1");
            assert!(m.contains(&node.host_key_fingerprint), "shows the offered key: {m}");
            assert!(m.contains(&format!("ssh-keyscan -p {} 127.0.0.1 >> {}", node.port, empty.display())), "{m}");
        }
        other => panic!("empty known_hosts: {other:?}"),
    }
    assert_eq!(std::fs::read_to_string(&empty).expect("read"), "", "StrictHostKeyChecking=yes added nothing");

    // A user the node does not accept.
    let s3 = SshSettings { user: Some("root".into()), ..s.clone() };
    let ssh3 = SshClient::new(&s3).expect("client").without_control_master();
    let cp1 = shell(&sim, &s3, &ssh3, "homelab-cp1");
    match cp1.logs(5).await {
        Err(SshError::AuthFailed { detail, .. }) => {
            assert!(detail.starts_with("Permission denied (publickey"), "{detail}")
        }
        other => panic!("wrong user: {other:?}"),
    }
}

async fn until_ok<F, Fut>(mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<node::Output, SshError>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match f().await {
            Ok(_) => return,
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "never recovered: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_failures_are_typed() {
    let sim = start().await;
    let tmp = TempDir::new().expect("tmp");
    let s = settings(&sim, &tmp);
    let ssh = SshClient::new(&s).expect("ssh client");
    let write = NodeWrite::confirmed_by_runbook();
    let w1 = shell(&sim, &s, &ssh, "homelab-w1");

    // sudo wants a password: the error gives the sudoers line.
    let starts = world::node_runtime(&sim.shared, "homelab-w1").expect("rt").k3s_starts;
    sim.inject(&Fault::SudoPassword { node: "homelab-w1".into() });
    match w1.restart(&write).await {
        Err(e @ SshError::SudoPassword { .. }) => {
            let m = e.to_string();
            assert!(m.contains("NOPASSWD") && m.contains("/usr/bin/systemctl restart k3s-agent"), "{m}");
        }
        other => panic!("sudo password: {other:?}"),
    }
    assert_eq!(world::node_runtime(&sim.shared, "homelab-w1").expect("rt").k3s_starts, starts, "nothing restarted");
    sim.inject(&Fault::Clear);

    // A command that fails: its exit status and stderr tail.
    sim.inject(&Fault::CommandFails { node: "homelab-w1".into(), command: "systemctl restart".into() });
    match w1.restart(&write).await {
        Err(SshError::CommandFailed { code, stderr_tail, command, .. }) => {
            assert_eq!(code, 1);
            assert_eq!(command, "sudo -n systemctl restart k3s-agent");
            assert!(stderr_tail.starts_with("Job for k3s-agent.service failed"), "{stderr_tail}");
        }
        other => panic!("failing command: {other:?}"),
    }
    sim.inject(&Fault::Clear);
    w1.restart(&write).await.expect("restarts once the fault is gone");

    // An unknown command: 127 from the node's shell.
    let target: SshTarget = w1.target().clone();
    let t = Duration::from_secs(60);
    match ssh.run(&target, "kubectl get nodes", None, t, "").await {
        Err(SshError::CommandFailed { code: 127, stderr_tail, .. }) => {
            assert_eq!(stderr_tail, "bash: kubectl: command not found");
        }
        other => panic!("unknown command: {other:?}"),
    }

    // A command that outlives its deadline: ssh is stopped.
    match ssh.run(&target, "sleep 30", None, Duration::from_secs(2), "").await {
        Err(SshError::Timeout { after, command, .. }) => {
            assert_eq!((after, command.as_str()), (Duration::from_secs(2), "sleep 30"));
        }
        other => panic!("timeout: {other:?}"),
    }

    // A reboot ends the connection; the node answers again once it is back.
    let boot = world::node_runtime(&sim.shared, "homelab-w1").expect("rt").boot_id;
    w1.reboot(&write).await.expect("reboot");
    let deadline = tokio::time::Instant::now() + WAIT;
    while world::node_runtime(&sim.shared, "homelab-w1").expect("rt").boot_id == boot {
        assert!(tokio::time::Instant::now() < deadline, "the node never came back from the reboot");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    until_ok(|| w1.logs(5)).await;
    let text = w1.logs(20).await.expect("journal").stdout_text();
    assert!(text.contains("-- Boot "), "{text}");
}

/// `cutover sim` prints a settings file next to its kubeconfig: its Git clone and its nodes'
/// SSH on loopback, so `cutover --settings …` against it never sends ssh to the sim's made-up
/// node addresses. `cutover plan` with it reads every node's drop-in through that ssh_config;
/// the file and the clone go when the sim stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sims_settings_file_points_ssh_and_git_at_the_sim() {
    use tokio::io::AsyncBufReadExt;
    // A short state directory: the ssh ControlMaster sockets live in it (a long one gets a
    // private temporary directory instead, gone when cutover exits).
    let state = std::path::PathBuf::from(format!("/tmp/cs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["--log-file", "/dev/null", "sim", "--scenario", "fresh"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("cutover sim starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line()).await.expect("in time").expect("reads").expect("a line");
    let info: serde_json::Value = serde_json::from_str(&line).expect("one JSON line");
    let path = std::path::PathBuf::from(info["settings"].as_str().expect("settings"));
    let s = cutover::settings::Settings::load(Some(&path)).expect("the settings file reads back");
    assert_eq!(s.ssh.config_file.as_deref().and_then(Path::to_str), info["ssh"]["config"].as_str(), "{s:?}");
    assert!(s.git.repo_path.join(".git").is_dir(), "a clone of the sim's origin: {}", s.git.repo_path.display());

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["--kubeconfig", info["kubeconfig"].as_str().expect("kubeconfig"), "--context", "sim"])
        .args(["--log-file", "/dev/null", "--hubble-server", info["hubble_relay"].as_str().expect("relay")])
        .arg("--settings")
        .arg(&path)
        .arg("plan")
        .env("XDG_STATE_HOME", &state)
        .output()
        .await
        .expect("cutover plan runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let config = info["ssh"]["config"].as_str().expect("config");
    assert!(text.contains("ok  node-step-available: ssh at "), "{text}");
    assert!(text.contains(&format!("ssh -F {config} ")), "{text}");
    // The agents' drop-ins were read over that ssh: their connection masters (ControlPersist)
    // are there, one per agent.
    let masters = std::fs::read_dir(state.join("cutover").join("ssh")).map(|d| d.count()).unwrap_or(0);
    assert!(masters >= 2, "{masters} ssh connection(s) to the sim's agents:\n{text}");

    // Ctrl-C: the sim stops and its settings file and clone go with it.
    let pid = child.id().expect("pid").to_string();
    assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().expect("kill").success());
    let status = tokio::time::timeout(WAIT, child.wait()).await.expect("stops").expect("status");
    assert!(status.success(), "{status:?}");
    assert!(!path.exists(), "{} removed", path.display());
    let _ = std::fs::remove_dir_all(&state);
}
