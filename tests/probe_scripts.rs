//! The probe pods' programs run for real, outside the simulator: the client script
//! ([`probes::SCRIPT`]) under the system `sh` with the real `ping` (iputils), `nc`
//! (netcat-openbsd), `nslookup` (BIND 9) and `curl`, the tools the default image (netshoot) ships;
//! the server pods' own command (socat, taken from the manifest the product creates); and the
//! volume script ([`probes::VOLUME_SCRIPT`]) on a real directory. The client's environment is the
//! one the product's Job manifest sets ([`probes::client_objects`]). Their output is read by the
//! product's parser and judged by the product's evaluation, so a change to the script that the
//! real tools do not answer as the parser expects turns this red — the sim cannot catch that, it
//! works the results out from the probe's environment.
//!
//! The network probes run in a network and mount namespace this test creates (`unshare`): only
//! its loopback exists there, with its own `/etc/resolv.conf` pointing at a DNS responder this test
//! serves inside it. Nothing is sent outside that namespace; an "unreachable peer" is an address
//! from the documentation range (192.0.2.0/24) that has no route there. Needs root (CI and the
//! project's machines are) and the packages `.ci/run` installs: iputils-ping, netcat-openbsd,
//! bind9-dnsutils, curl, socat, util-linux.
#![cfg(target_os = "linux")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cutover::validate::State;
use cutover::validate::probes::{
    self, ClientOutcome, ProbeConfig, ProbeKind, ProbeNode, StepOutcome, Targets, VolumeRole, VolumeStep,
};

/// The tools the scripts call, and the Debian package of each (`.ci/run` installs them).
const TOOLS: [(&str, &str); 7] = [
    ("ping", "iputils-ping"),
    ("nc", "netcat-openbsd"),
    ("nslookup", "bind9-dnsutils"),
    ("curl", "curl"),
    ("socat", "socat"),
    ("unshare", "util-linux"),
    ("nsenter", "util-linux"),
];

fn require_tools() {
    let missing: Vec<String> = TOOLS
        .iter()
        .filter(|(tool, _)| {
            !Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| o.status.success())
        })
        .map(|(tool, pkg)| format!("{tool} ({pkg})"))
        .collect();
    assert!(missing.is_empty(), "the probe script test needs {} — `.ci/run` installs them", missing.join(", "));
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("probe-scripts-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A network and mount namespace of this test's own, held open by a `sleep`: loopback up, and
/// `/etc/resolv.conf` bind-mounted (inside it only) to name `nameserver`.
struct Netns {
    holder: Child,
    stop: Arc<AtomicBool>,
    servers: Vec<Child>,
}

impl Netns {
    fn new(dir: &Path, nameserver: &str) -> Netns {
        let resolv = dir.join("resolv.conf");
        std::fs::write(&resolv, format!("nameserver {nameserver}\noptions timeout:2 attempts:1\n"))
            .expect("resolv.conf");
        let mut holder = Command::new("unshare")
            .args(["--net", "--mount", "--propagation", "private", "sh", "-c"])
            .arg("ip link set lo up && mount --bind \"$1\" /etc/resolv.conf && echo ready && exec sleep 600")
            .arg("sh")
            .arg(&resolv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("unshare runs");
        let mut line = String::new();
        let stdout = holder.stdout.take().expect("stdout");
        let _ = BufReader::new(stdout).read_line(&mut line);
        if line.trim() != "ready" {
            let _ = holder.kill();
            let mut err = String::new();
            if let Some(mut e) = holder.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("could not create the test's network namespace (needs root): {}", err.trim());
        }
        Netns { holder, stop: Arc::new(AtomicBool::new(false)), servers: Vec::new() }
    }

    fn pid(&self) -> String {
        self.holder.id().to_string()
    }

    /// A command inside the namespace (network and mount), with a pod-like bare environment.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["--target", &self.pid(), "--net", "--mount", "--", program]);
        c.env_clear().env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        c
    }

    /// Runs `f` on a thread that has joined the namespace's network: the sockets it opens are
    /// the namespace's.
    fn in_net<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/proc/{}/ns/net", self.pid());
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("the namespace's handle");
            // SAFETY: setns on this thread only (a new one that ends after `f`), with a valid fd.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("namespace thread")
    }

    /// The server pods' command, as the product's manifest has it, started inside the namespace.
    fn start_probe_server(&mut self) {
        let cfg = probe_config();
        let objects =
            probes::server_objects(&cfg, "t1", &[ProbeNode { name: "n".into(), internal_ip: "127.0.0.1".into() }]);
        let command: Vec<String> = objects[0]["spec"]["containers"][0]["command"]
            .as_array()
            .expect("the server pod's command")
            .iter()
            .map(|v| v.as_str().expect("a string").to_string())
            .collect();
        let child = self
            .command(&command[0])
            .args(&command[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat starts");
        self.servers.push(child);
        let port = probes::SERVER_PORT;
        let greeting = self.in_net(move || {
            for _ in 0..100 {
                if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                    s.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
                    let mut got = String::new();
                    let _ = s.read_to_string(&mut got);
                    return got;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            String::new()
        });
        assert_eq!(greeting.trim(), "cutover-probe", "the probe server's command answers on port {port}");
    }

    /// A TCP listener inside the namespace that accepts and closes (a NodePort, a LoadBalancer).
    fn tcp_listener(&self, addr: &'static str) {
        let l = self.in_net(move || TcpListener::bind(addr).expect("listener in the namespace"));
        l.set_nonblocking(true).expect("nonblocking");
        let stop = self.stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((s, _)) => drop(s),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
    }

    /// An HTTP server inside the namespace answering every request `200 OK`.
    fn http_server(&self, addr: &'static str) {
        let l = self.in_net(move || TcpListener::bind(addr).expect("HTTP listener in the namespace"));
        l.set_nonblocking(true).expect("nonblocking");
        let stop = self.stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut req = Vec::new();
                        let mut buf = [0u8; 1024];
                        while req.len() < 16 * 1024 && !req.windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => req.extend_from_slice(&buf[..n]),
                            }
                        }
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
    }

    /// A DNS responder inside the namespace on UDP `addr`: A records from `names`, an empty
    /// NOERROR for other types of those names, NXDOMAIN for any other name.
    fn dns_server(&self, addr: &'static str, names: BTreeMap<String, [u8; 4]>) {
        let sock = self.in_net(move || UdpSocket::bind(addr).expect("DNS socket in the namespace"));
        sock.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
        let stop = self.stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, peer)) = sock.recv_from(&mut buf) else { continue };
                if let Some(reply) = dns_reply(&buf[..n], &names) {
                    let _ = sock.send_to(&reply, peer);
                }
            }
        });
    }

    /// Runs the client script inside the namespace as the product's Job for `cp1` would: with the
    /// environment its manifest sets from `cfg` and `targets` (`timeout` overrides the per-command
    /// seconds); its stdout.
    fn run_client(&self, cfg: &ProbeConfig, targets: &Targets, timeout: Option<&str>) -> String {
        let jobs = probes::client_objects(cfg, "t1", &nodes(), targets);
        let job = jobs.iter().find(|j| j["spec"]["template"]["spec"]["nodeName"] == "cp1").expect("cp1's Job");
        let container = &job["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["command"][2], probes::SCRIPT, "the Job runs the script");
        let mut env: Vec<(String, String)> = container["env"]
            .as_array()
            .expect("env")
            .iter()
            .map(|e| (e["name"].as_str().expect("name").into(), e["value"].as_str().expect("value").into()))
            .collect();
        if let Some(t) = timeout {
            env.retain(|(k, _)| k != "PROBE_TIMEOUT");
            env.push(("PROBE_TIMEOUT".into(), t.into()));
        }
        let out = self.command("/bin/sh").args(["-c", probes::SCRIPT]).envs(env).output().expect("sh runs");
        assert!(
            out.status.success(),
            "the script always exits 0: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// One DNS answer to a one-question query (RFC 1035 §4.1): the question copied back, and for an
/// A question of a known name one A record; `None` for what is not a query.
fn dns_reply(q: &[u8], names: &BTreeMap<String, [u8; 4]>) -> Option<Vec<u8>> {
    if q.len() < 12 || q[2] & 0x80 != 0 || u16::from_be_bytes([q[4], q[5]]) != 1 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let question = &q[12..i + 4];
    let name = labels.join(".");
    let known = names.get(&name);
    let rcode = if known.is_some() { 0 } else { 3 };
    let answer = known.filter(|_| qtype == 1);
    let mut r = Vec::with_capacity(64);
    r.extend_from_slice(&q[0..2]);
    r.push(0x80 | 0x04 | (q[2] & 0x01)); // QR, AA, RD copied
    r.push(0x80 | rcode); // RA, RCODE
    r.extend_from_slice(&1u16.to_be_bytes());
    r.extend_from_slice(&(answer.is_some() as u16).to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(question);
    if let Some(ip) = answer {
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4]);
        r.extend_from_slice(ip);
    }
    Some(r)
}

fn probe_config() -> ProbeConfig {
    ProbeConfig {
        namespace: "cutover-probes".into(),
        image: "nicolaka/netshoot:v0.13".into(),
        timeout: Duration::from_secs(60),
        url: "http://egress.example/".into(),
        cluster_name: "kubernetes.default.svc.cluster.local".into(),
        ingress_service: "ingress/haproxy".into(),
        storage_class: "longhorn".into(),
    }
}

fn nodes() -> Vec<ProbeNode> {
    ["cp1", "w1", "w2"].iter().map(|n| ProbeNode { name: n.to_string(), internal_ip: String::new() }).collect()
}

/// Every check kind of one client's log, judged by the product: (kind, state, subject → state).
fn judge(log: &str, targets: &Targets) -> BTreeMap<ProbeKind, (State, BTreeMap<String, State>)> {
    let parsed = probes::parse_log(log);
    assert!(parsed.malformed.is_empty(), "malformed lines: {:?}\n{log}", parsed.malformed);
    assert!(parsed.complete, "the log has its end line:\n{log}");
    let outcome = ClientOutcome { node: "cp1".into(), log: Ok(parsed), took: Duration::from_secs(1) };
    ProbeKind::ALL
        .into_iter()
        .map(|kind| {
            let c =
                probes::evaluate_kind(kind, kind.tag(), &nodes(), targets, std::slice::from_ref(&outcome), Vec::new());
            (kind, (c.state, c.results.iter().map(|r| (r.subject.clone(), r.state)).collect()))
        })
        .collect()
}

fn names() -> BTreeMap<String, [u8; 4]> {
    BTreeMap::from([
        ("kubernetes.default.svc.cluster.local".to_string(), [10, 43, 0, 1]),
        ("egress.example".to_string(), [127, 0, 0, 80]),
    ])
}

/// The network the client on `cp1` sees when everything works: its peers' servers answer ICMP
/// and TCP, the probe Service, every NodePort and the LoadBalancer accept, both names resolve
/// and the URL answers 200. Every line is ok, and every check is green.
#[test]
fn client_script_with_the_real_tools_all_green() {
    require_tools();
    let dir = scratch("green");
    let mut ns = Netns::new(&dir, "127.0.0.53");
    ns.start_probe_server();
    ns.tcp_listener("0.0.0.0:30080");
    ns.http_server("127.0.0.80:80");
    ns.dns_server("127.0.0.53:53", names());

    let targets = Targets {
        servers: BTreeMap::from([
            ("cp1".into(), "127.0.0.1".into()),
            ("w1".into(), "127.0.0.2".into()),
            ("w2".into(), "127.0.0.3".into()),
        ]),
        service: "127.0.0.9:8080".into(),
        node_ports: BTreeMap::from([
            ("cp1".into(), "127.0.1.1:30080".into()),
            ("w1".into(), "127.0.1.2:30080".into()),
            ("w2".into(), "127.0.1.3:30080".into()),
        ]),
        load_balancer: "127.0.2.1:30080".into(),
    };
    let log = ns.run_client(&probe_config(), &targets, None);

    let parsed = probes::parse_log(&log);
    let fails: Vec<_> = parsed.lines.iter().filter(|l| !l.ok).collect();
    assert!(fails.is_empty(), "every line ok:\n{log}");
    // ICMP and TCP per peer, the Service, three NodePorts, the LB, two names and the fetch.
    assert_eq!(parsed.lines.len(), 2 * 2 + 1 + 3 + 1 + 3, "{log}");
    let evidence: Vec<&str> = parsed.lines.iter().map(|l| l.evidence.as_str()).collect();
    assert!(evidence.contains(&"icmp 127.0.0.2: 3 packets transmitted, 3 received"), "ping's summary: {evidence:?}");
    assert!(evidence.contains(&"tcp 127.0.0.3:8080 connected"), "{evidence:?}");
    assert!(evidence.contains(&"nslookup kubernetes.default.svc.cluster.local: 10.43.0.1"), "{evidence:?}");
    assert!(evidence.contains(&"nslookup egress.example: 127.0.0.80"), "{evidence:?}");
    assert!(evidence.contains(&"fetch http://egress.example/: HTTP 200"), "{evidence:?}");

    for (kind, (state, subjects)) in judge(&log, &targets) {
        assert_eq!(state, State::Green, "{kind:?}: {subjects:?}\n{log}");
        assert!(!subjects.is_empty(), "{kind:?} judged something");
    }
}

/// The same script where things are broken: one peer has no route (ICMP and TCP fail), one
/// NodePort is closed, the external name does not exist (so neither does the URL's host), and no
/// LoadBalancer IP is assigned (not probed). Exactly those subjects are red.
#[test]
fn client_script_with_the_real_tools_fails_exactly_what_is_broken() {
    require_tools();
    let dir = scratch("red");
    let mut ns = Netns::new(&dir, "127.0.0.53");
    ns.start_probe_server();
    ns.tcp_listener("127.0.1.1:30080");
    ns.dns_server("127.0.0.53:53", names());

    let targets = Targets {
        servers: BTreeMap::from([
            ("cp1".into(), "127.0.0.1".into()),
            ("w1".into(), "127.0.0.2".into()),
            ("w2".into(), "192.0.2.9".into()),
        ]),
        service: "127.0.0.9:8080".into(),
        node_ports: BTreeMap::from([("cp1".into(), "127.0.1.1:30080".into()), ("w1".into(), "127.0.1.2:30081".into())]),
        load_balancer: String::new(),
    };
    let cfg = ProbeConfig { url: "http://nowhere.example/".into(), ..probe_config() };
    let log = ns.run_client(&cfg, &targets, Some("2"));

    let judged = judge(&log, &targets);
    let red = |kind: ProbeKind| -> Vec<String> {
        judged[&kind].1.iter().filter(|(_, s)| **s == State::Red).map(|(k, _)| k.clone()).collect()
    };
    let green = |kind: ProbeKind| -> Vec<String> {
        judged[&kind].1.iter().filter(|(_, s)| **s == State::Green).map(|(k, _)| k.clone()).collect()
    };
    assert_eq!(red(ProbeKind::PodToPod), ["cp1 → w2"], "{log}");
    assert_eq!(green(ProbeKind::PodToPod), ["cp1 → w1"], "{log}");
    assert_eq!(judged[&ProbeKind::ClusterIp].0, State::Green, "{log}");
    assert_eq!(red(ProbeKind::NodePort), ["cp1 → w1"], "{log}");
    assert_eq!(green(ProbeKind::NodePort), ["cp1 → cp1"], "{log}");
    assert_eq!(red(ProbeKind::DnsEgress), ["cp1"], "{log}");
    assert!(judged[&ProbeKind::LoadBalancer].1.is_empty(), "no LoadBalancer IP, nothing probed: {log}");

    // What the operator reads for each failure is the tools' own words.
    let parsed = probes::parse_log(&log);
    let failed: Vec<&str> = parsed.lines.iter().filter(|l| !l.ok).map(|l| l.evidence.as_str()).collect();
    let has = |needle: &str| failed.iter().any(|e| e.contains(needle));
    assert!(has("icmp 192.0.2.9: ") && has("unreachable"), "ping's reason: {failed:?}");
    assert!(has("tcp 192.0.2.9:8080 no connection within 2s"), "{failed:?}");
    assert!(has("tcp 127.0.1.2:30081 no connection"), "{failed:?}");
    assert!(has("nslookup nowhere.example: ") && has("NXDOMAIN"), "nslookup's answer: {failed:?}");
    assert!(has("fetch http://nowhere.example/: ") && has("resolve"), "curl's error: {failed:?}");
    // The cluster name still resolves: DNS itself works, only the external name is missing.
    let ok: Vec<&str> = parsed.lines.iter().filter(|l| l.ok).map(|l| l.evidence.as_str()).collect();
    assert!(ok.contains(&"nslookup kubernetes.default.svc.cluster.local: 10.43.0.1"), "{ok:?}");
}

fn run_volume(dir: &Path, env: &[(&str, &str)]) -> String {
    let out = Command::new("sh")
        .args(["-c", probes::VOLUME_SCRIPT])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .expect("sh runs");
    assert!(out.status.success(), "the volume script always exits 0: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn volume_step(node: &str, role: VolumeRole, log: &str) -> VolumeStep {
    let parsed = probes::parse_log(log);
    assert!(parsed.malformed.is_empty() && parsed.complete, "{log}");
    VolumeStep { node: node.into(), role, outcome: StepOutcome::Log(parsed), took: Duration::from_millis(10) }
}

/// The volume script on a real directory standing in for the mounted PVC: written on one node,
/// read back on the next (green); a reader that finds another token, or no file, and a writer
/// whose mount is missing are red, with the tools' words as evidence.
#[test]
fn volume_script_writes_reads_back_and_fails_on_a_wrong_or_missing_token() {
    let dir = scratch("volume");
    let mount = dir.join("mount");
    std::fs::create_dir_all(&mount).expect("mount dir");
    let file = mount.join("token");
    let file = file.to_str().expect("utf-8 path");
    let common = [("PROBE_TOKEN", "ab12cd34"), ("PROBE_CLAIM", "cutover-probe-ab12cd34-vol"), ("PROBE_WRITER", "cp1")];
    let with = |node: &'static str, role: &'static str, path: &str| -> Vec<(&'static str, String)> {
        let mut v: Vec<(&str, String)> = common.iter().map(|(k, v)| (*k, v.to_string())).collect();
        v.extend([
            ("PROBE_VOLUME_NODE", node.to_string()),
            ("PROBE_VOLUME_ROLE", role.to_string()),
            ("PROBE_FILE", path.to_string()),
        ]);
        v
    };
    let run = |env: Vec<(&'static str, String)>| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run_volume(&dir, &env)
    };

    let wrote = run(with("cp1", "write", file));
    assert_eq!(std::fs::read_to_string(file).expect("the token was written"), "ab12cd34\n");
    let read = run(with("w1", "read", file));
    let steps = [volume_step("cp1", VolumeRole::Write, &wrote), volume_step("w1", VolumeRole::Read, &read)];
    let c = probes::evaluate_volume("volume", &steps, Vec::new());
    assert_eq!(c.state, State::Green, "{wrote}{read}");
    assert!(
        c.results[1].evidence[0].contains("read token ab12cd34 back from cutover-probe-ab12cd34-vol (written on cp1)")
    );

    // Another run's token on the volume: the reader says what it expected and what it found.
    std::fs::write(file, "ffff0000\n").expect("stale token");
    let stale = run(with("w2", "read", file));
    // The volume not there at all on a node: nothing to read.
    let missing_path = dir.join("not-mounted").join("token");
    let missing = run(with("w2", "read", missing_path.to_str().expect("utf-8")));
    // A writer whose mount point does not exist cannot write.
    let unwritable = run(with("cp1", "write", missing_path.to_str().expect("utf-8")));

    for (log, role, needle) in [
        (&stale, VolumeRole::Read, "expected token ab12cd34 (written on cp1), got: ffff0000"),
        (&missing, VolumeRole::Read, "No such file or directory"),
        (&unwritable, VolumeRole::Write, "writing to cutover-probe-ab12cd34-vol: "),
    ] {
        let node = if role == VolumeRole::Write { "cp1" } else { "w2" };
        let c = probes::evaluate_volume("volume", &[volume_step(node, role, log)], Vec::new());
        assert_eq!(c.state, State::Red, "{log}");
        assert!(c.results[0].evidence[0].contains(needle), "{needle:?} in {:?}", c.results[0].evidence);
    }
}
