//! The journal: a durable, append-only record of every operation the runner carries out, one
//! file per cluster at `$XDG_STATE_HOME/cutover/journal/<cluster>.jsonl`.
//!
//! Each line is one JSON object with at least `seq` (1, 2, …), `time` (RFC 3339, UTC), `kind` and
//! `prev`, the lowercase hex SHA-256 of the previous line's exact bytes without its newline (64
//! zeros on the first line). The chain makes a changed, removed, reordered or truncated line
//! visible to [`verify`]. Entries are written in one `write` and fsynced before the request they
//! announce is sent; an exclusive file lock keeps two cockpits on one bastion from interleaving.
//!
//! Kinds: `intent` (before the first request of an operation: what, its preview, who confirmed,
//! the mode), `request` (before each mutating request: verb and path), `response` (its status
//! code), `result` (`ok`, `failed`, `cancelled` or `interrupted`, with the message) and `ack`
//! (an operator's explicit acknowledgement). Nothing secret is ever written: operations are named
//! by object, messages pass through [`crate::cluster::client::redact`].

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `prev` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// No journal line is longer than this (a preview of a large drain is a few KiB).
pub const MAX_LINE: usize = 1 << 20;
/// How long an append waits for another cockpit's lock before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("no journal directory: neither $XDG_STATE_HOME nor $HOME is set")]
    NoStateDir,
    #[error("journal {path} is locked by another cutover for more than {secs} s", secs = LOCK_WAIT.as_secs())]
    Locked { path: PathBuf },
    #[error(
        "journal {path}, line {line}: {reason}; not appending to a journal that does not verify (run `cutover journal --verify`, then move the file aside)"
    )]
    Corrupt { path: PathBuf, line: u64, reason: String },
    #[error("journal {path}: entry of {len} bytes exceeds the {MAX_LINE}-byte line limit")]
    TooLong { path: PathBuf, len: usize },
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Failed,
    Cancelled,
    Interrupted,
    /// The operator skipped a step that had failed or was blocked (a [`Record::Ack`] before it
    /// says who and why); the runbook goes on after it.
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
            Outcome::Interrupted => "interrupted",
            Outcome::Skipped => "skipped",
        }
    }
}

/// What one journal line says (besides `seq`, `time` and `prev`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    /// Before the first request of an operation.
    Intent {
        /// The operation's id, shared by its later entries.
        op: String,
        /// What it does, in the operator's words (`drain homelab-w1`).
        title: String,
        /// The confirmation text the operator saw.
        preview: Vec<String>,
        /// Who confirmed, and how (`root@bastion pid 4242, typed the node's name`).
        confirmed_by: String,
        /// `armed` or `read-only` (a read-only intent is refused before any request).
        mode: String,
        /// The runbook step this operation runs, if it is one (how the position is recomputed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<String>,
    },
    /// Before a mutating request is sent.
    Request { op: String, verb: String, path: String },
    /// The answer to the request journaled as entry `request` (0: no answer, e.g. the
    /// connection was lost).
    Response { op: String, request: u64, code: u16 },
    /// Before a change that is not a Kubernetes request: a Git commit or push (`target` `git`),
    /// a command on a node (`node/NAME`).
    Change { op: String, target: String, action: String, detail: String },
    /// How the change journaled as entry `change` went.
    ChangeDone { op: String, change: u64, ok: bool, detail: String },
    /// How the operation ended.
    Result { op: String, outcome: Outcome, message: String },
    /// An operator's explicit acknowledgement (a pre-flight warning, an interrupted operation).
    Ack { op: String, what: String, by: String },
    /// What an operation observed, changing nothing (a node's soak: its flow figures and
    /// verdict).
    Note { op: String, target: String, what: String, detail: String },
}

impl Record {
    pub fn op(&self) -> &str {
        match self {
            Record::Intent { op, .. }
            | Record::Request { op, .. }
            | Record::Response { op, .. }
            | Record::Change { op, .. }
            | Record::ChangeDone { op, .. }
            | Record::Result { op, .. }
            | Record::Ack { op, .. }
            | Record::Note { op, .. } => op,
        }
    }
}

/// One line: the chain fields and the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    pub time: String,
    pub prev: String,
    #[serde(flatten)]
    pub record: Record,
}

/// The journal of one cluster.
#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
}

/// A file name for a cluster: kubeconfig cluster names may hold `/`, `:` and `@`.
pub fn file_name(cluster: &str) -> String {
    let safe: String = cluster
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .collect();
    let safe = safe.trim_start_matches('.');
    format!("{}.jsonl", if safe.is_empty() { "cluster" } else { safe })
}

/// `$XDG_STATE_HOME/cutover/journal`.
pub fn default_dir() -> Result<PathBuf, JournalError> {
    crate::paths::state_dir().map(|d| d.join("journal")).ok_or(JournalError::NoStateDir)
}

/// An operation id: unique enough across bastions and restarts, and short.
pub fn new_op_id() -> String {
    format!("{}-{:08x}", jiff::Timestamp::now().as_second(), fastrand::u32(..))
}

/// Who is acting: `user@host pid N` (journaled with every intent; also the Lease holder).
pub fn who() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into());
    format!("{user}@{host} pid {}", std::process::id())
}

fn hex_sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        use std::fmt::Write as _;
        let _ = write!(out, "{b:02x}");
    }
    out
}

impl Journal {
    /// The journal of `cluster` in the default directory (created 0700 on first write).
    pub fn for_cluster(cluster: &str) -> Result<Journal, JournalError> {
        Ok(Journal { path: default_dir()?.join(file_name(cluster)) })
    }

    /// A journal at an explicit path (tests, `cutover journal --file`).
    pub fn at(path: impl Into<PathBuf>) -> Journal {
        Journal { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> JournalError {
        JournalError::Io { path: self.path.clone(), source }
    }

    /// Appends one record under the file lock, fsynced before returning. Returns its `seq`.
    /// Refuses (and writes nothing) if the last line does not verify.
    pub fn append(&self, record: &Record) -> Result<u64, JournalError> {
        if let Some(dir) = self.path.parent() {
            crate::paths::create_private_dir(dir).map_err(|e| self.io(e))?;
        }
        let mut opts = OpenOptions::new();
        opts.read(true).append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut file = opts.open(&self.path).map_err(|e| self.io(e))?;
        self.lock(&file)?;
        let result = self.append_locked(&mut file, record);
        let _ = file.unlock();
        result
    }

    fn lock(&self, file: &File) -> Result<(), JournalError> {
        let start = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(()),
                Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(std::fs::TryLockError::WouldBlock) => return Err(JournalError::Locked { path: self.path.clone() }),
                Err(std::fs::TryLockError::Error(e)) => return Err(self.io(e)),
            }
        }
    }

    fn append_locked(&self, file: &mut File, record: &Record) -> Result<u64, JournalError> {
        let (seq, prev) = match self.last_line(file)? {
            None => (1, GENESIS.to_string()),
            Some((line_no, bytes)) => {
                let last: Entry = serde_json::from_slice(&bytes).map_err(|e| JournalError::Corrupt {
                    path: self.path.clone(),
                    line: line_no,
                    reason: format!("not a journal entry ({e})"),
                })?;
                (last.seq + 1, hex_sha256(&bytes))
            }
        };
        let entry = Entry { seq, time: jiff::Timestamp::now().to_string(), prev, record: record.clone() };
        let mut line = serde_json::to_vec(&entry).map_err(|e| self.io(std::io::Error::other(e)))?;
        if line.len() > MAX_LINE {
            return Err(JournalError::TooLong { path: self.path.clone(), len: line.len() });
        }
        line.push(b'\n');
        // One write: with O_APPEND a short write on a regular file means the disk is full.
        let n = file.write(&line).map_err(|e| self.io(e))?;
        if n != line.len() {
            return Err(self.io(std::io::Error::new(std::io::ErrorKind::WriteZero, "short write (disk full?)")));
        }
        file.sync_data().map_err(|e| self.io(e))?;
        Ok(seq)
    }

    /// The last complete line (its 1-based number is only known when the file is small; for a
    /// large file the number reported is the seq the line claims). Reads at most `MAX_LINE`
    /// bytes from the end.
    fn last_line(&self, file: &mut File) -> Result<Option<(u64, Vec<u8>)>, JournalError> {
        let len = file.metadata().map_err(|e| self.io(e))?.len();
        if len == 0 {
            return Ok(None);
        }
        let start = len.saturating_sub(MAX_LINE as u64 + 1);
        file.seek(SeekFrom::Start(start)).map_err(|e| self.io(e))?;
        let mut tail = Vec::with_capacity((len - start) as usize);
        file.take(len - start).read_to_end(&mut tail).map_err(|e| self.io(e))?;
        let corrupt = |reason: &str| JournalError::Corrupt { path: self.path.clone(), line: 0, reason: reason.into() };
        if tail.last() != Some(&b'\n') {
            return Err(corrupt("the last line is truncated (no newline)"));
        }
        let body = &tail[..tail.len() - 1];
        let line = match body.iter().rposition(|&b| b == b'\n') {
            Some(i) => &body[i + 1..],
            None if start == 0 => body,
            None => return Err(corrupt("the last line is longer than the line limit")),
        };
        let line_no = if start == 0 { tail.iter().filter(|&&b| b == b'\n').count() as u64 } else { 0 };
        Ok(Some((line_no, line.to_vec())))
    }

    /// Reads every entry, verifying the chain; stops at the first bad line.
    pub fn read(&self) -> Result<Verified, JournalError> {
        match File::open(&self.path) {
            Ok(f) => Ok(verify_reader(BufReader::new(f))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Verified::default()),
            Err(e) => Err(self.io(e)),
        }
    }
}

/// The outcome of reading a journal: the entries that verify, and the first bad line if any.
#[derive(Debug, Clone, Default)]
pub struct Verified {
    pub entries: Vec<Entry>,
    pub bad: Option<BadLine>,
}

/// The first line that breaks the chain. Nothing after it is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number in the file.
    pub line: u64,
    pub reason: String,
}

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// Verifies a journal's bytes line by line (bounded line length).
pub fn verify_reader<R: BufRead>(mut r: R) -> Verified {
    let mut out = Verified::default();
    let mut prev = GENESIS.to_string();
    let mut line_no = 0u64;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        line_no += 1;
        let bad = |reason: String| Some(BadLine { line: line_no, reason });
        match (&mut r).take(MAX_LINE as u64 + 2).read_until(b'\n', &mut buf) {
            Ok(0) => return out,
            Ok(_) => {}
            Err(e) => {
                out.bad = bad(format!("cannot read: {e}"));
                return out;
            }
        }
        if buf.last() != Some(&b'\n') {
            out.bad = bad(if buf.len() > MAX_LINE {
                "longer than the line limit".into()
            } else {
                "truncated (no newline at the end)".into()
            });
            return out;
        }
        let bytes = &buf[..buf.len() - 1];
        let entry: Entry = match serde_json::from_slice(bytes) {
            Ok(e) => e,
            Err(e) => {
                out.bad = bad(format!("not a journal entry ({e})"));
                return out;
            }
        };
        let want_seq = out.entries.len() as u64 + 1;
        if entry.seq != want_seq {
            out.bad =
                bad(format!("seq {} where {want_seq} was expected (a line is missing or out of order)", entry.seq));
            return out;
        }
        if entry.prev != prev {
            out.bad = bad(
                "prev does not match the previous line's SHA-256 (a line was changed, removed or reordered)".into()
            );
            return out;
        }
        if entry.time.parse::<jiff::Timestamp>().is_err() {
            out.bad = bad(format!("time {:?} is not RFC 3339", entry.time));
            return out;
        }
        prev = hex_sha256(bytes);
        out.entries.push(entry);
    }
}

/// An operation that has an `intent` and no `result`: the process died or was killed mid-way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished {
    pub op: String,
    pub title: String,
    /// The runbook step it ran, if it was one.
    pub step: Option<String>,
    pub time: String,
    /// The mutating requests it had sent: `verb path → code` (`→ ?` when no answer was
    /// journaled: it may or may not have taken effect).
    pub requests: Vec<String>,
}

/// Operations started and never ended, oldest first.
pub fn unfinished(entries: &[Entry]) -> Vec<Unfinished> {
    /// An open operation and its requests: (request seq, `verb path`, response code).
    type Open = (Unfinished, Vec<(u64, String, Option<String>)>);
    let mut open: Vec<Open> = Vec::new();
    for e in entries {
        let find = |open: &mut Vec<Open>, op: &str| open.iter_mut().position(|(u, _)| u.op == op);
        match &e.record {
            Record::Intent { op, title, step, .. } => open.push((
                Unfinished {
                    op: op.clone(),
                    title: title.clone(),
                    step: step.clone(),
                    time: e.time.clone(),
                    requests: Vec::new(),
                },
                Vec::new(),
            )),
            Record::Request { op, verb, path } => {
                if let Some(i) = find(&mut open, op) {
                    open[i].1.push((e.seq, format!("{verb} {path}"), None));
                }
            }
            Record::Response { op, request, code } => {
                if let Some(i) = find(&mut open, op)
                    && let Some(r) = open[i].1.iter_mut().find(|r| r.0 == *request)
                {
                    r.2 = Some(code.to_string());
                }
            }
            Record::Change { op, target, action, detail } => {
                if let Some(i) = find(&mut open, op) {
                    open[i].1.push((e.seq, format!("{action} {target}: {detail}"), None));
                }
            }
            Record::ChangeDone { op, change, ok, .. } => {
                if let Some(i) = find(&mut open, op)
                    && let Some(r) = open[i].1.iter_mut().find(|r| r.0 == *change)
                {
                    r.2 = Some(if *ok { "done" } else { "failed" }.to_string());
                }
            }
            Record::Result { op, .. } => open.retain(|(u, _)| &u.op != op),
            Record::Ack { .. } | Record::Note { .. } => {}
        }
    }
    open.into_iter()
        .map(|(mut u, reqs)| {
            u.requests = reqs
                .into_iter()
                .map(|(_, what, code)| match code {
                    Some(c) => format!("{what} → {c}"),
                    None => format!("{what} → ?"),
                })
                .collect();
            u
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tempdir::TempDir;

    fn intent(op: &str) -> Record {
        Record::Intent {
            op: op.into(),
            title: "drain w1".into(),
            preview: vec!["evict apps/web-1".into()],
            confirmed_by: "me".into(),
            mode: "armed".into(),
            step: None,
        }
    }

    fn sample(dir: &TempDir) -> Journal {
        let j = Journal::at(dir.path.join("journal").join("c.jsonl"));
        j.append(&intent("a")).expect("intent");
        j.append(&Record::Request { op: "a".into(), verb: "patch".into(), path: "/api/v1/nodes/w1".into() })
            .expect("req");
        j.append(&Record::Response { op: "a".into(), request: 2, code: 200 }).expect("resp");
        j.append(&Record::Result { op: "a".into(), outcome: Outcome::Ok, message: "done".into() }).expect("result");
        j
    }

    #[test]
    fn appends_a_chain_that_verifies_with_private_permissions() {
        let dir = TempDir::new().expect("tmp");
        let j = sample(&dir);
        let v = j.read().expect("read");
        assert_eq!(v.bad, None);
        assert_eq!(v.entries.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        assert_eq!(v.entries[0].prev, GENESIS);
        let text = std::fs::read_to_string(j.path()).expect("text");
        let first = text.lines().next().expect("line");
        assert_eq!(v.entries[1].prev, hex_sha256(first.as_bytes()));
        assert!(first.contains(r#""kind":"intent""#), "{first}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode(j.path()), 0o600);
            assert_eq!(mode(j.path().parent().expect("dir")), 0o700);
        }
        assert!(unfinished(&v.entries).is_empty());
    }

    #[test]
    fn one_changed_byte_is_found_at_its_line() {
        let dir = TempDir::new().expect("tmp");
        let j = sample(&dir);
        let text = std::fs::read_to_string(j.path()).expect("text");
        let changed = text.replacen("/api/v1/nodes/w1", "/api/v1/nodes/w2", 1);
        std::fs::write(j.path(), changed).expect("write");
        // Line 2 still parses; line 3's prev no longer matches it.
        let v = j.read().expect("read");
        assert_eq!(v.bad.as_ref().map(|b| b.line), Some(3), "{:?}", v.bad);
        assert_eq!(v.entries.len(), 2);
    }

    #[test]
    fn a_removed_line_and_a_truncated_line_are_reported() {
        let dir = TempDir::new().expect("tmp");
        let j = sample(&dir);
        let text = std::fs::read_to_string(j.path()).expect("text");
        let lines: Vec<&str> = text.lines().collect();
        let removed = format!("{}\n{}\n{}\n", lines[0], lines[2], lines[3]);
        let v = verify_reader(removed.as_bytes());
        assert_eq!(v.bad.map(|b| b.line), Some(2));
        let reordered = format!("{}\n{}\n{}\n{}\n", lines[0], lines[2], lines[1], lines[3]);
        assert_eq!(verify_reader(reordered.as_bytes()).bad.map(|b| b.line), Some(2));
        let truncated = &text[..text.len() - 5];
        let v = verify_reader(truncated.as_bytes());
        assert_eq!(v.bad.as_ref().map(|b| b.line), Some(4), "{:?}", v.bad);
        // A journal whose last line is truncated refuses appends: no change without its record.
        std::fs::write(j.path(), truncated).expect("write");
        assert!(matches!(j.append(&intent("b")), Err(JournalError::Corrupt { .. })));
    }

    #[test]
    fn an_intent_without_result_is_unfinished_with_what_it_did() {
        let dir = TempDir::new().expect("tmp");
        let j = Journal::at(dir.path.join("c.jsonl"));
        j.append(&intent("x")).expect("intent");
        j.append(&Record::Request { op: "x".into(), verb: "patch".into(), path: "/api/v1/nodes/w1".into() })
            .expect("r");
        j.append(&Record::Response { op: "x".into(), request: 2, code: 200 }).expect("r");
        j.append(&Record::Request { op: "x".into(), verb: "create".into(), path: "/e".into() }).expect("r");
        let v = j.read().expect("read");
        let u = unfinished(&v.entries);
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].title, "drain w1");
        assert_eq!(u[0].requests, vec!["patch /api/v1/nodes/w1 → 200".to_string(), "create /e → ?".to_string()]);
    }

    #[test]
    fn cluster_names_become_safe_file_names() {
        assert_eq!(file_name("homelab"), "homelab.jsonl");
        assert_eq!(file_name("arn:aws:eks/x@y"), "arn_aws_eks_x_y.jsonl");
        let sneaky = file_name("../..");
        assert!(!sneaky.contains('/') && !sneaky.starts_with('.'), "{sneaky}");
        assert_eq!(file_name(""), "cluster.jsonl");
    }

    #[test]
    fn two_writers_never_interleave() {
        let dir = TempDir::new().expect("tmp");
        let path = dir.path.join("c.jsonl");
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let j = Journal::at(path.clone());
                std::thread::spawn(move || {
                    for i in 0..25 {
                        j.append(&Record::Ack { op: format!("{t}-{i}"), what: "x".into(), by: "t".into() })
                            .expect("append");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let v = Journal::at(path).read().expect("read");
        assert_eq!(v.bad, None);
        assert_eq!(v.entries.len(), 100);
    }
}
