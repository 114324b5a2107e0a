//! `cutover flows` against the simulated relay over loopback: output formats, filters, follow with
//! Ctrl-C, a closed pipe, node-status on stderr, and one-line errors with the right exit codes.
//! `run_to` is exercised in-process; the built binary is exercised too once `flows` is wired into
//! `main.rs` (checked at run time with `cutover flows --help`).
#![cfg(feature = "sim")] // drives the simulated cluster

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use cutover::cli::GlobalArgs;
use cutover::hubble::cli::{FlowsArgs, run_to};
use cutover::hubble::proto::observer::{GetFlowsResponse, get_flows_response::ResponseTypes};
use cutover::sim::relay::{RelayConfig, sample::homelab_topology, serve_with};
use cutover::sim::{ActiveFaults, Fault, RequestLog, SimShared, Store, Tokens};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

struct Relay {
    addr: SocketAddr,
    shared: Arc<SimShared>,
    task: JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(cfg: RelayConfig) -> Relay {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shared = Arc::new(SimShared {
        store: Store::default(),
        faults: watch::channel(ActiveFaults::default()).0,
        topology: watch::channel(homelab_topology("homelab")).0,
        requests: RequestLog::default(),
        tokens: Tokens::random(&mut fastrand::Rng::with_seed(1)),
        seed: 7,
        speed: 1.0,
        relay_addr: std::sync::OnceLock::from(addr),
        api_ca_pem: std::sync::OnceLock::new(),
        volumes: Default::default(),
    });
    let task = serve_with(listener, shared.clone(), cfg);
    let relay = Relay { addr, shared, task };
    // Wait until the prefill is in place.
    let ch = cutover::hubble::client::connect(&addr.to_string()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = cutover::hubble::client::server_status(&ch, &addr.to_string()).await.unwrap();
        if st.num_flows >= 3 * 50 {
            break;
        }
        assert!(Instant::now() < deadline, "relay never filled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    relay
}

fn quiet() -> RelayConfig {
    RelayConfig { flows_per_sec: 0.0, prefill_per_node: 50, burst_every: None, ..Default::default() }
}

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    flows: FlowsArgs,
}

fn flows_args(a: &[&str]) -> FlowsArgs {
    let mut v = vec!["flows"];
    v.extend_from_slice(a);
    Cli::try_parse_from(v).unwrap_or_else(|e| panic!("{e}")).flows
}

fn globals(addr: &str) -> GlobalArgs {
    GlobalArgs { hubble_server: Some(addr.to_string()), ..Default::default() }
}

/// Runs `cutover flows` in-process; returns (exit code, stdout, stderr).
async fn run(addr: &str, a: &[&str]) -> (ExitCode, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_to(flows_args(a), &globals(addr), &mut out, &mut err, false, std::future::pending()).await;
    (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
}

fn is_stamp_milli(s: &str) -> bool {
    // "Jan _2 15:04:05.000"
    let b = s.as_bytes();
    s.len() == 19 && b[3] == b' ' && b[6] == b' ' && b[9] == b':' && b[12] == b':' && b[15] == b'.'
}

#[tokio::test]
async fn compact_json_and_dict_output() {
    let relay = start(quiet()).await;
    let addr = relay.addr.to_string();

    let (code, out, err) = run(&addr, &["--last", "3"]).await;
    assert_eq!(code, ExitCode::SUCCESS, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 9, "3 flows per node:\n{out}");
    for l in &lines {
        let (time, rest) = l.split_once(": ").unwrap();
        assert!(is_stamp_milli(time), "{l}");
        assert!([" -> ", " <- ", " <> "].iter().any(|a| rest.contains(a)), "{l}");
        assert!(l.ends_with(')'), "{l}");
    }
    assert!(err.is_empty(), "informational node events stay hidden: {err}");

    let (code, out, _) = run(&addr, &["--last", "2", "-o", "json"]).await;
    assert_eq!(code, ExitCode::SUCCESS);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6);
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v["flow"].is_object(), "{l}");
        assert!(v["node_name"].as_str().is_some_and(|n| n.starts_with("homelab/")));
        assert!(v["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{l}");
        let back: GetFlowsResponse = serde_json::from_str(l).unwrap();
        assert!(matches!(back.response_types, Some(ResponseTypes::Flow(_))));
    }

    let (code, out, _) = run(&addr, &["--last", "1", "-o", "dict", "--print-node-name"]).await;
    assert_eq!(code, ExitCode::SUCCESS);
    assert_eq!(out.matches("------------\n").count(), 2);
    assert_eq!(out.matches("  TIMESTAMP: ").count(), 3);
    assert_eq!(out.matches("       NODE: homelab/").count(), 3);

    let (code, out, _) = run(&addr, &["--last", "1", "--print-node-name", "--time-format", "RFC3339"]).await;
    assert_eq!(code, ExitCode::SUCCESS);
    for l in out.lines() {
        assert!(l.contains("Z [homelab/homelab-"), "{l}");
    }
}

#[tokio::test]
async fn filters_select_flows() {
    let relay = start(quiet()).await;
    let addr = relay.addr.to_string();
    let (code, out, _) = run(&addr, &["--all", "--to-port", "53"]).await;
    assert_eq!(code, ExitCode::SUCCESS);
    assert!(!out.is_empty());
    for l in out.lines() {
        assert!(l.contains(":53 ") || l.contains("dns-"), "{l}");
    }
    let (_, all, _) = run(&addr, &["--all"]).await;
    let (_, not_dns, _) = run(&addr, &["--all", "--not", "--port", "53"]).await;
    let (_, dns, _) = run(&addr, &["--all", "--port", "53"]).await;
    assert_eq!(all.lines().count(), not_dns.lines().count() + dns.lines().count());
    let (_, w1, _) = run(&addr, &["--all", "--node-name", "homelab-w1", "--print-node-name"]).await;
    assert!(w1.lines().count() > 0 && w1.lines().all(|l| l.contains("[homelab/homelab-w1]")));
}

#[tokio::test]
async fn follow_until_interrupted_and_closed_pipe() {
    let relay = start(RelayConfig { flows_per_sec: 500.0, ..quiet() }).await;
    let addr = relay.addr.to_string();

    // Ctrl-C after some lines: exit 0 with everything written so far flushed.
    let lines = Arc::new(AtomicUsize::new(0));
    let sink = Arc::new(Mutex::new(Vec::new()));
    struct Counting(Arc<AtomicUsize>, Arc<Mutex<Vec<u8>>>);
    impl Write for Counting {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.fetch_add(b.iter().filter(|c| **c == b'\n').count(), Ordering::Relaxed);
            self.1.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let counter = lines.clone();
    let interrupt = async move {
        while counter.load(Ordering::Relaxed) < 200 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let out = Counting(lines.clone(), sink.clone());
    let code = tokio::time::timeout(
        Duration::from_secs(60),
        run_to(flows_args(&["-f"]), &globals(&addr), out, Vec::new(), false, interrupt),
    )
    .await
    .expect("follow never stopped");
    assert_eq!(code, ExitCode::SUCCESS);
    let text = String::from_utf8(sink.lock().unwrap().clone()).unwrap();
    assert!(text.lines().count() >= 200);
    assert!(text.ends_with('\n'));

    // `| head`: the reader goes away, the command exits 0 at once.
    struct ClosesAfter(usize);
    impl Write for ClosesAfter {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
            }
            self.0 -= 1;
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            if self.0 == 0 { Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe)) } else { Ok(()) }
        }
    }
    let mut err = Vec::new();
    let code = tokio::time::timeout(
        Duration::from_secs(60),
        run_to(flows_args(&["-f"]), &globals(&addr), ClosesAfter(5), &mut err, true, std::future::pending()),
    )
    .await
    .expect("closed pipe not noticed");
    assert_eq!(code, ExitCode::SUCCESS);
    assert!(err.is_empty(), "{}", String::from_utf8_lossy(&err));
}

#[tokio::test]
async fn node_status_goes_to_stderr() {
    let relay = start(quiet()).await;
    relay.shared.inject(&Fault::RelayNodeUnavailable { node: "homelab-w2".into() });
    let addr = relay.addr.to_string();
    let ch = cutover::hubble::client::connect(&addr).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while cutover::hubble::client::server_status(&ch, &addr).await.unwrap().num_unavailable_nodes.map(|v| v.value)
        != Some(1)
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, out, err) = run(&addr, &["--last", "2"]).await;
    assert_eq!(code, ExitCode::SUCCESS);
    assert_eq!(out.lines().count(), 4);
    assert!(err.contains("]: 1 nodes are unavailable: homelab/homelab-w2\n"), "{err}");
    let (_, _, err) = run(&addr, &["--last", "1", "-o", "json"]).await;
    let v: serde_json::Value = serde_json::from_str(err.lines().next().unwrap()).unwrap();
    assert_eq!(v["node_status"]["state_change"], "NODE_UNAVAILABLE");
    let (_, _, err) = run(&addr, &["--last", "1", "--debug"]).await;
    assert!(err.contains("Receiving flows from 2 nodes"), "{err}");
}

#[tokio::test]
async fn errors_are_one_line_with_exit_codes() {
    let relay = start(quiet()).await;
    let addr = relay.addr.to_string();
    let one_line = |err: &str| {
        assert_eq!(err.lines().count(), 1, "{err:?}");
        assert!(err.starts_with("cutover flows: "), "{err}");
    };

    let (code, out, err) = run(&addr, &["--ip", "10.0.0.0/99"]).await;
    assert_eq!(code, ExitCode::from(2));
    assert!(out.is_empty());
    one_line(&err);
    assert!(err.contains("invalid filter") && err.contains("10.0.0.0/99"), "{err}");

    let (code, _, err) = run(&addr, &["--since", "last tuesday"]).await;
    assert_eq!(code, ExitCode::from(2));
    one_line(&err);
    assert!(err.contains("--since"), "{err}");

    let (code, _, err) = run(&addr, &["--type", "bogus"]).await;
    assert_eq!(code, ExitCode::from(2));
    one_line(&err);

    let (code, _, err) = run(&addr, &["--time-format", "Kitchen"]).await;
    assert_eq!(code, ExitCode::from(2));
    one_line(&err);

    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = closed.local_addr().unwrap().to_string();
    drop(closed);
    let (code, _, err) = run(&dead, &[]).await;
    assert_eq!(code, ExitCode::from(1));
    one_line(&err);
    assert!(err.contains("unreachable") && err.contains(&dead), "{err}");

    let (code, _, err) = run("https://relay.example:443", &[]).await;
    assert_eq!(code, ExitCode::from(1));
    one_line(&err);
    assert!(err.contains("TLS"), "{err}");

    let http1 = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http1_addr = http1.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut sock, _)) = http1.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = sock.read(&mut buf).await;
                let _ =
                    sock.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
            });
        }
    });
    let (code, _, err) = run(&http1_addr, &[]).await;
    assert_eq!(code, ExitCode::from(1));
    one_line(&err);
    assert!(err.contains("not a hubble-relay") && err.contains("HTTP/1"), "{err}");
    server.abort();

    // The relay going down during --follow ends the command with an error.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let shared = relay.shared.clone();
    let fault = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        shared.inject(&Fault::RelayDown { seconds: 5 });
        let _ = tx.send(());
    });
    let mut err = Vec::new();
    let code = tokio::time::timeout(
        Duration::from_secs(60),
        run_to(flows_args(&["-f"]), &globals(&addr), Vec::new(), &mut err, false, std::future::pending()),
    )
    .await
    .expect("relay outage not noticed");
    let _ = rx.await;
    fault.await.unwrap();
    let err = String::from_utf8(err).unwrap();
    assert_eq!(code, ExitCode::from(1));
    one_line(&err);
}

/// The built binary: `cutover flows` end to end, and a bad filter's exit code.
#[tokio::test]
async fn binary_end_to_end() {
    let exe = env!("CARGO_BIN_EXE_cutover");
    let help = tokio::process::Command::new(exe).args(["flows", "--help"]).output().await.unwrap();
    assert!(help.status.success(), "`cutover flows --help` failed: {}", String::from_utf8_lossy(&help.stderr));
    let relay = start(quiet()).await;
    let addr = relay.addr.to_string();
    let out = tokio::process::Command::new(exe)
        .args(["--hubble-server", &addr, "flows", "--last", "2"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 6);
    let bad = tokio::process::Command::new(exe)
        .args(["--hubble-server", &addr, "flows", "--verdict", "MAYBE"])
        .output()
        .await
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("MAYBE"), "{err}");
}
