//! End to end: `cutover demo` in a pseudo-terminal, read the screen like a person would, quit; and
//! the same cockpit ended by SIGHUP (the SSH session dropped) or SIGTERM, which must leave the
//! terminal as it found it (raw mode off, main screen, cursor shown, bracketed paste off).
#![cfg(feature = "sim")] // drives the simulated cluster

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use portable_pty::{Child, CommandBuilder, ExitStatus, MasterPty, PtyPair, PtySize, native_pty_system};

const ROWS: u16 = 30;
const COLS: u16 = 120;

/// What the cockpit writes when it gives the terminal back (crossterm's sequences).
const LEAVE_ALTERNATE_SCREEN: &[u8] = b"\x1b[?1049l";
const ENTER_ALTERNATE_SCREEN: &[u8] = b"\x1b[?1049h";
const SHOW_CURSOR: &[u8] = b"\x1b[?25h";
const BRACKETED_PASTE_OFF: &[u8] = b"\x1b[?2004l";

/// `cutover demo` running in a pty: the screen as a person sees it, and every byte it wrote.
struct Demo {
    child: Box<dyn Child + Send + Sync>,
    master: Box<dyn MasterPty + Send>,
    writer: Box<dyn Write + Send>,
    parser: Arc<Mutex<vt100::Parser>>,
    bytes: Arc<Mutex<Vec<u8>>>,
    reading: JoinHandle<()>,
}

fn open_pty() -> PtyPair {
    native_pty_system().openpty(PtySize { rows: ROWS, cols: COLS, pixel_width: 0, pixel_height: 0 }).expect("pty")
}

/// The pty's line-discipline modes (input, output and local flags: what raw mode changes), read
/// from the test's side of the pty.
fn tty_modes(master: &dyn MasterPty) -> Option<impl PartialEq + std::fmt::Debug + use<>> {
    master.get_termios().map(|t| (t.input_flags, t.output_flags, t.local_flags))
}

impl Demo {
    fn spawn(pair: PtyPair) -> Demo {
        let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_cutover"));
        cmd.args(["demo", "--speed", "5", "--log-file", "/dev/null"]);
        cmd.env("NO_COLOR", "1");
        cmd.env("TERM", "xterm-256color");
        let child = pair.slave.spawn_command(cmd).expect("spawn cutover demo");
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().expect("reader");
        let writer = pair.master.take_writer().expect("writer");
        let parser = Arc::new(Mutex::new(vt100::Parser::new(
            std::num::NonZeroU16::new(ROWS).expect("rows"),
            std::num::NonZeroU16::new(COLS).expect("cols"),
            0,
        )));
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let (p2, b2) = (parser.clone(), bytes.clone());
        let reading = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            // Ends at EOF, or EIO once the child and everything it started closed the pty.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut b) = b2.lock() {
                    b.extend_from_slice(&buf[..n]);
                }
                if let Ok(mut p) = p2.lock() {
                    p.process(&buf[..n]);
                }
            }
        });
        Demo { child, master: pair.master, writer, parser, bytes, reading }
    }

    fn screen_until(&self, want: &[&str], timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let text = self.parser.lock().map(|p| p.screen().contents()).unwrap_or_default();
            if want.iter().all(|w| text.contains(w)) || start.elapsed() > timeout {
                return text;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the cockpit's first full screen.
    fn wait_for_cockpit(&self) {
        let screen = self.screen_until(&["ARMED", "Nodes", "homelab", "Argo CD", "Flows"], Duration::from_secs(90));
        assert!(screen.contains("ARMED"), "{screen}");
        assert!(screen.contains("Nodes") && screen.contains("Argo CD") && screen.contains("Flows"), "{screen}");
    }

    fn press(&mut self, keys: &[u8]) {
        self.writer.write_all(keys).expect("write to the pty");
    }

    fn bytes_len(&self) -> usize {
        self.bytes.lock().map(|b| b.len()).unwrap_or(0)
    }

    /// Waits for the child to exit (generous: a loaded machine, a sim shutting down).
    fn wait_exit(&mut self, what: &str) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "cutover did not end on {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Everything written from `from` on, once the reader has it all (the pty closed) or after a
    /// grace period when something the child started still holds the pty open.
    fn bytes_since(&self, from: usize) -> Vec<u8> {
        let start = Instant::now();
        while !self.reading.is_finished() && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.bytes.lock().map(|b| b.get(from..).unwrap_or_default().to_vec()).unwrap_or_default()
    }
}

impl Drop for Demo {
    /// A failed assertion must not leave a cockpit running (portable-pty's `kill` is SIGHUP, then
    /// SIGKILL after a grace period).
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Where `needle` last occurs in `haystack`.
fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

#[test]
fn demo_shows_the_homelab_and_quits_cleanly() {
    let mut demo = Demo::spawn(open_pty());
    demo.wait_for_cockpit();

    // Help overlay from the keymap, then close it and quit.
    demo.press(b"?");
    let screen = demo.screen_until(&["Keys (any key closes)"], Duration::from_secs(10));
    assert!(screen.contains("drain the selected node"), "{screen}");
    demo.press(b"x");

    // The pre-flight overlay runs the read-only checks against the sim.
    demo.press(b"p");
    let screen = demo.screen_until(&["pre-flight (read-only)", "k3s-flannel"], Duration::from_secs(30));
    assert!(screen.contains("k3s-flannel"), "{screen}");
    demo.press(b"x");

    // The manifest preview renders Stage 1 for this cluster (fresh: no Cilium app yet).
    demo.press(b"m");
    let screen = demo.screen_until(&["stage 1 manifests", "cilium-app.yaml"], Duration::from_secs(30));
    assert!(screen.contains("NEVER roll back by deleting"), "{screen}");
    // q quits from an overlay too.
    demo.press(b"q");

    let status = demo.wait_exit("q");
    assert!(status.success(), "exit status {status:?}");
}

/// Sends `signal` to the running cockpit and checks that it ends and gives the terminal back.
fn ends_cleanly_on(signal: &str) {
    let pair = open_pty();
    // Before the child starts: the pty as a shell would leave it (cooked, echoing).
    let cooked = tty_modes(&*pair.master);
    assert!(cooked.is_some(), "the pty's modes cannot be read from the test side");
    let mut demo = Demo::spawn(pair);
    demo.wait_for_cockpit();
    // The probe sees raw mode, so the check after the signal means something.
    assert_ne!(tty_modes(&*demo.master), cooked, "the cockpit runs without raw mode?");

    let pid = demo.child.process_id().expect("child pid").to_string();
    let mark = demo.bytes_len();
    let sent = std::process::Command::new("kill").args([&format!("-{signal}"), &pid]).status().expect("run kill");
    assert!(sent.success(), "kill -{signal} {pid}: {sent:?}");

    let status = demo.wait_exit(&format!("SIG{signal}"));
    assert!(status.success(), "SIG{signal}: exit status {status:?}");
    let tail = demo.bytes_since(mark);
    let shown = String::from_utf8_lossy(&tail).escape_debug().to_string();
    for (what, seq) in [
        ("leave the alternate screen", LEAVE_ALTERNATE_SCREEN),
        ("show the cursor", SHOW_CURSOR),
        ("turn bracketed paste off", BRACKETED_PASTE_OFF),
    ] {
        assert!(
            rfind(&tail, seq).is_some(),
            "SIG{signal}: the cockpit did not {what}; it wrote after the signal: {shown}"
        );
    }
    // Nothing is drawn after the terminal was given back.
    let left = rfind(&tail, LEAVE_ALTERNATE_SCREEN).unwrap_or(0);
    assert!(
        rfind(&tail[left..], ENTER_ALTERNATE_SCREEN).is_none(),
        "SIG{signal}: the alternate screen was entered again: {shown}"
    );
    assert_eq!(tty_modes(&*demo.master), cooked, "SIG{signal}: raw mode is still on");
}

#[test]
fn sighup_gives_the_terminal_back() {
    ends_cleanly_on("HUP");
}

#[test]
fn sigterm_gives_the_terminal_back() {
    ends_cleanly_on("TERM");
}
