//! End to end: `cutover demo` in a pseudo-terminal, read the screen like a person would, quit.
#![cfg(feature = "sim")] // drives the simulated cluster

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, PtySize, native_pty_system};

fn screen_until(parser: &Arc<Mutex<vt100::Parser>>, want: &[&str], timeout: Duration) -> String {
    let start = Instant::now();
    loop {
        let text = parser.lock().map(|p| p.screen().contents()).unwrap_or_default();
        if want.iter().all(|w| text.contains(w)) || start.elapsed() > timeout {
            return text;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn demo_shows_the_homelab_and_quits_cleanly() {
    let pty = native_pty_system();
    let pair = pty.openpty(PtySize { rows: 30, cols: 120, pixel_width: 0, pixel_height: 0 }).expect("pty");
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_cutover"));
    cmd.args(["demo", "--speed", "5", "--log-file", "/dev/null"]);
    cmd.env("NO_COLOR", "1");
    cmd.env("TERM", "xterm-256color");
    let mut child = pair.slave.spawn_command(cmd).expect("spawn cutover demo");
    drop(pair.slave);
    let mut reader = pair.master.try_clone_reader().expect("reader");
    let mut writer = pair.master.take_writer().expect("writer");
    let parser = Arc::new(Mutex::new(vt100::Parser::new(
        std::num::NonZeroU16::new(30).expect("rows"),
        std::num::NonZeroU16::new(120).expect("cols"),
        0,
    )));
    let p2 = parser.clone();
    let reading = std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut p) = p2.lock() {
                p.process(&buf[..n]);
            }
        }
    });

    let screen = screen_until(&parser, &["ARMED", "Nodes", "homelab", "Argo CD", "Flows"], Duration::from_secs(60));
    assert!(screen.contains("ARMED"), "{screen}");
    assert!(screen.contains("Nodes") && screen.contains("Argo CD") && screen.contains("Flows"), "{screen}");

    // Help overlay from the keymap, then close it and quit.
    writer.write_all(b"?").expect("write");
    let screen = screen_until(&parser, &["Keys (any key closes)"], Duration::from_secs(10));
    assert!(screen.contains("drain the selected node"), "{screen}");
    writer.write_all(b"x").expect("write");

    // The pre-flight overlay runs the read-only checks against the sim.
    writer.write_all(b"p").expect("write");
    let screen = screen_until(&parser, &["pre-flight (read-only)", "k3s-flannel"], Duration::from_secs(30));
    assert!(screen.contains("k3s-flannel"), "{screen}");
    writer.write_all(b"x").expect("write");

    // The manifest preview renders Stage 1 for this cluster (fresh: no Cilium app yet).
    writer.write_all(b"m").expect("write");
    let screen = screen_until(&parser, &["stage 1 manifests", "cilium-app.yaml"], Duration::from_secs(30));
    assert!(screen.contains("NEVER roll back by deleting"), "{screen}");
    // q quits from an overlay too.
    writer.write_all(b"q").expect("write");

    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "cutover did not quit on q");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "exit status {status:?}");
    drop(writer);
    let _ = reading.join();
}
