//! The cockpit's Git client: the operator's own clone of the homelab repo, driven through the
//! operator's own `git` binary (so their credentials, SSH agent, hooks and signing config apply).
//!
//! It owns the rules every Git write of the runbook follows: fetch first; the clone must be on the
//! configured branch and clean apart from the files the cockpit writes; fast-forward only, never a
//! merge commit; `git add` of exactly the rendered paths; push `HEAD:refs/heads/<branch>`, never
//! forced; a push rejected because the remote moved is rebased (only the cockpit's own commits are
//! ever replayed) and retried; every write is journaled before it is sent ([`GitJournal`]).
//! Read-only repos fetch and compare, and refuse every write.
//!
//! Commits carry trailers (`Cutover-Step: stage1-commit`, `Cutover-Stage: 1`); reverts carry
//! `Cutover-Reverts: <sha>`, which is how [`Repo::find_own_commit`] knows a step was rolled back.

use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::sync::LazyLock;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::manifests::render::RenderedFile;

/// Default time limit of fetch and push.
pub const NETWORK_TIMEOUT: Duration = Duration::from_secs(120);
/// Default time limit of every local git command.
pub const LOCAL_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on what one git command may print on stdout.
pub const MAX_STDOUT: usize = 8 << 20;
/// Default cap on captured stderr (the rest is dropped).
pub const MAX_STDERR: usize = 64 << 10;
/// A push rejected because the remote moved is rebased and retried; this many pushes at most.
pub const MAX_PUSH_ATTEMPTS: usize = 3;
/// Trailer naming the runbook step that made a commit.
pub const TRAILER_STEP: &str = "Cutover-Step";
/// Trailer naming the stage a commit belongs to.
pub const TRAILER_STAGE: &str = "Cutover-Stage";
/// Trailer of a cockpit revert: the full id of the commit it reverts.
pub const TRAILER_REVERTS: &str = "Cutover-Reverts";
/// How far back [`Repo::find_own_commit`] looks (commits mentioning a `Cutover-` trailer).
const LOG_LIMIT: &str = "--max-count=2000";
/// Longest stderr excerpt kept in an error message.
const MESSAGE_MAX: usize = 600;

/// What can go wrong. Every message is one line, says what is true and what to do, and never
/// contains a URL's user or password.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("{path} is not a Git work tree ({detail}): set git.repo_path to your clone of the homelab repo")]
    NotARepo { path: String, detail: String },
    #[error("{what} {name:?} is not a usable name: fix it in cutover.toml")]
    InvalidName { what: &'static str, name: String },
    #[error("the clone is on {current}, the cockpit commits to {wanted}: run `git switch {wanted}` in the clone")]
    WrongBranch { current: String, wanted: String },
    #[error(
        "the clone has changes the cockpit did not make: {}; commit, stash or discard them first",
        list(.files)
    )]
    Dirty { files: Vec<String> },
    #[error("{remote} has no branch {branch}: check git.branch and the clone's remote {remote}")]
    NoUpstream { remote: String, branch: String },
    #[error(
        "local {branch} has {ahead} commit(s) that {remote}/{branch} lacks ({behind} behind it): push or drop them yourself; the cockpit never merges"
    )]
    Diverged { remote: String, branch: String, ahead: usize, behind: usize },
    #[error(
        "git fetch {remote} {branch} failed: {stderr}; check the network and your credentials (`git fetch` in the clone)"
    )]
    Fetch { remote: String, branch: String, stderr: String },
    #[error("{remote} refused the push of {commit} to {branch}: {stderr}; the commit exists locally, not pushed")]
    PushRejected { remote: String, branch: String, commit: String, stderr: String },
    #[error(
        "the cockpit's commit {commit} conflicts with {remote}/{branch} in {}; the rebase was aborted: the commit exists locally, not pushed; rebase it by hand or drop it",
        list(.files)
    )]
    RebaseConflict { commit: String, remote: String, branch: String, files: Vec<String> },
    #[error(
        "reverting {commit} conflicts in {}; the revert was aborted and nothing was committed: revert it by hand",
        list(.files)
    )]
    RevertConflict { commit: String, files: Vec<String> },
    #[error("commit {commit} is not on {remote}/{branch}: the cockpit only reverts what was pushed there")]
    NotOnBranch { commit: String, remote: String, branch: String },
    #[error("read-only: the cockpit does not {action} (it only fetches and compares)")]
    ReadOnly { action: &'static str },
    #[error(
        "git {cmd} was stopped after {secs} s without an answer (git never prompts here: load your SSH key into the agent or use a credential helper)"
    )]
    Timeout { cmd: String, secs: u64 },
    #[error("git {cmd} failed: {stderr}")]
    Failed { cmd: String, stderr: String },
    #[error("cannot run git ({reason}): install git or put it on PATH")]
    Spawn { reason: String },
    #[error("the journal could not record {action} ({reason}): nothing was done")]
    Journal { action: String, reason: String },
    #[error("cannot write {path} ({reason}): nothing was committed")]
    Write { path: String, reason: String },
    #[error("{path:?} is not a path inside the repo (relative, no `..`, UTF-8, one line)")]
    BadPath { path: String },
}

/// File names for a one-line message: the first ten, then how many more.
fn list(files: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut s = files.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if files.len() > SHOWN {
        s.push_str(&format!(" and {} more", files.len() - SHOWN));
    }
    s
}

/// Every Git write is journaled before it is sent: `before` returning `Err` stops the action.
///
/// Actions: `commit` (detail: subject and files), `push` (detail: `<remote> <commit>:refs/heads/<branch>`),
/// `rebase`, `revert`, `merge-ff`.
pub trait GitJournal: Send + Sync {
    fn before(&self, action: &str, detail: &str) -> Result<(), String>;
    fn after(&self, action: &str, detail: &str, ok: bool);
}

/// A journal that records nothing. For tests only: the runbook journals every write.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoJournal;

impl GitJournal for NoJournal {
    fn before(&self, _action: &str, _detail: &str) -> Result<(), String> {
        Ok(())
    }
    fn after(&self, _action: &str, _detail: &str, _ok: bool) {}
}

/// What [`Repo::prepare`] found (and did).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// Local `HEAD` after the fast-forward (read-only: as found).
    pub head: String,
    /// `<remote>/<branch>` after the fetch.
    pub upstream_head: String,
    /// Commits the local branch is still behind the remote (read-only: how far; else 0).
    pub behind: usize,
    /// Commits fast-forwarded over.
    pub fast_forwarded: usize,
    /// The cockpit's own commits made earlier and not pushed yet (an interrupted run), oldest
    /// first; [`Repo::commit_and_push`] pushes them.
    pub unpushed_own: Vec<String>,
    /// Files the cockpit writes that differ from `HEAD` in the work tree (allowed).
    pub own_dirty: Vec<String>,
}

/// How a rendered file compares with `HEAD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Unchanged,
    /// Not in `HEAD`.
    Created,
    Changed,
}

/// One file of a [`Preview`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePreview {
    /// Repo-relative, `/`-separated.
    pub path: String,
    pub change: Change,
    /// Unified diff (`a/<path>` → `b/<path>`, `/dev/null` for a created file); empty when unchanged.
    pub diff: String,
}

/// The rendered files against `HEAD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview {
    /// `HEAD` compared against (`None` on a branch without commits).
    pub head: Option<String>,
    pub files: Vec<FilePreview>,
}

impl Preview {
    /// Whether every file equals `HEAD`'s.
    pub fn is_unchanged(&self) -> bool {
        self.files.iter().all(|f| f.change == Change::Unchanged)
    }
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The commit now on `<remote>/<branch>` carrying the change (or, unchanged, the commit found).
    pub commit: String,
    pub remote: String,
    pub branch: String,
    /// Nothing was committed or pushed: it was there already.
    pub unchanged: bool,
    /// The remote had moved: the cockpit's commit was rebased onto it before the push.
    pub rebased: bool,
    /// A commit made earlier (an interrupted run) was pushed instead of a new one.
    pub resumed: bool,
}

/// A cockpit commit found on the remote branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnCommit {
    pub commit: String,
    pub subject: String,
    /// A later commit on the branch whose `Cutover-Reverts` names this one.
    pub reverted_by: Option<String>,
}

/// The operator's clone, on one branch of one remote.
#[derive(Debug, Clone)]
pub struct Repo {
    root: PathBuf,
    branch: String,
    remote: String,
    read_only: bool,
    /// Time limit of fetch and push.
    pub network_timeout: Duration,
    /// Time limit of every other git command.
    pub local_timeout: Duration,
    pub max_stdout: usize,
    pub max_stderr: usize,
}

#[derive(Debug, Clone, Copy)]
enum Net {
    Local,
    Network,
}

struct Output {
    ok: bool,
    stdout: Vec<u8>,
    stdout_truncated: bool,
    stderr: String,
}

impl Output {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).trim().to_string()
    }
}

static USERINFO: LazyLock<regex::Regex> = LazyLock::new(|| {
    // `scheme://user:password@host` and `scheme://token@host`: everything up to the last `@`
    // before the path.
    regex::Regex::new(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/]+@").expect("a valid static regex")
});

/// Removes the user and password of every `scheme://user:password@host` in `text`.
pub fn redact(text: &str) -> String {
    USERINFO.replace_all(text, "${1}***@").into_owned()
}

/// A redacted, one-line, bounded excerpt of git's output.
fn one_line(text: &str) -> String {
    let joined: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let mut s = redact(&joined.join("; "));
    if s.len() > MESSAGE_MAX {
        let mut cut = MESSAGE_MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    if s.is_empty() { "no message".into() } else { s }
}

fn valid_ref_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['-', '+', '/', '.'])
        && !name.ends_with(['/', '.'])
        && !name.ends_with(".lock")
        && !name.contains("..")
        && !name.contains("//")
        && !name.contains("@{")
        && name.chars().all(|c| !c.is_control() && !c.is_whitespace() && !"~^:?*[\\".contains(c))
}

/// Repo-relative `/`-separated path of a rendered file, or `BadPath`.
fn rel_path(p: &Path) -> Result<String, GitError> {
    let bad = || GitError::BadPath { path: p.display().to_string() };
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().ok_or_else(bad)?),
            Component::CurDir => {}
            _ => return Err(bad()),
        }
    }
    let s = parts.join("/");
    if s.is_empty() || s.contains(['\n', '\r', '\0']) || parts.contains(&".git") {
        return Err(bad());
    }
    Ok(s)
}

async fn read_bounded<R: AsyncRead + Unpin>(r: Option<R>, limit: usize) -> (Vec<u8>, bool) {
    let mut buf = Vec::new();
    let mut truncated = false;
    let Some(mut r) = r else { return (buf, truncated) };
    let mut chunk = [0u8; 8192];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = limit.saturating_sub(buf.len());
                if n > room {
                    truncated = true;
                }
                // Keep draining so git never blocks on a full pipe.
                buf.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
    (buf, truncated)
}

/// Parses `git status --porcelain=v1 -z` into paths (both sides of a rename).
fn status_paths(out: &[u8]) -> Vec<String> {
    let mut paths = Vec::new();
    let mut it = out.split(|b| *b == 0);
    while let Some(rec) = it.next() {
        if rec.len() < 4 {
            continue;
        }
        paths.push(String::from_utf8_lossy(&rec[3..]).into_owned());
        if matches!(rec[0], b'R' | b'C')
            && let Some(orig) = it.next()
        {
            paths.push(String::from_utf8_lossy(orig).into_owned());
        }
    }
    paths
}

/// Trailers of `%(trailers:only,unfold)` output: `Key: value` lines.
fn parse_trailers(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

fn trailer<'a>(trailers: &'a [(String, String)], key: &str) -> Option<&'a str> {
    trailers.iter().rev().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str())
}

/// `message` with a trailer block appended (`Key: value` lines after a blank line).
fn full_message(message: &str, trailers: &[(&str, &str)]) -> Result<String, GitError> {
    let body = message.trim();
    let subject = body.lines().next().unwrap_or("").trim();
    if subject.is_empty() {
        return Err(GitError::Failed { cmd: "commit".into(), stderr: "the commit message is empty".into() });
    }
    let mut text = format!("{body}\n");
    if !trailers.is_empty() {
        text.push('\n');
    }
    for (k, v) in trailers {
        let key_ok = !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !key_ok || v.contains(['\n', '\r']) || v.trim().is_empty() {
            return Err(GitError::Failed {
                cmd: "commit".into(),
                stderr: format!("trailer {k:?} must be a word and a one-line value"),
            });
        }
        text.push_str(&format!("{k}: {}\n", v.trim()));
    }
    Ok(text)
}

fn subject_of(message: &str) -> &str {
    message.trim().lines().next().unwrap_or("").trim()
}

/// Writes `contents` to `root/rel` through a temp file and a rename (parents created). Refuses a
/// path that leaves the repo through a symlinked directory.
fn write_atomic(root: &Path, rel: &str, contents: &str) -> Result<(), GitError> {
    use std::io::Write;
    let werr = |e: std::io::Error| GitError::Write { path: rel.to_string(), reason: e.to_string() };
    let full = root.join(rel);
    let parent = full.parent().ok_or_else(|| GitError::BadPath { path: rel.to_string() })?;
    std::fs::create_dir_all(parent).map_err(werr)?;
    let canon_root = root.canonicalize().map_err(werr)?;
    let canon_parent = parent.canonicalize().map_err(werr)?;
    if !canon_parent.starts_with(&canon_root) {
        return Err(GitError::Write { path: rel.to_string(), reason: "its directory is outside the repo".into() });
    }
    if std::fs::symlink_metadata(&full).is_ok_and(|m| m.file_type().is_symlink() || m.is_dir()) {
        return Err(GitError::Write { path: rel.to_string(), reason: "it is a symlink or a directory".into() });
    }
    let name = full.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = parent.join(format!(".{name}.cutover-{:016x}.tmp", fastrand::u64(..)));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &full)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(werr)
}

impl Repo {
    /// Opens the work tree at `path` (any directory inside it) for `branch` of `remote`.
    pub async fn open(path: &Path, branch: &str, remote: &str, read_only: bool) -> Result<Repo, GitError> {
        if !valid_ref_name(branch) {
            return Err(GitError::InvalidName { what: "git.branch", name: branch.to_string() });
        }
        if remote.is_empty() || remote.starts_with('-') || remote.contains(|c: char| c.is_whitespace() || c == ':') {
            return Err(GitError::InvalidName { what: "git remote", name: redact(remote) });
        }
        let mut repo = Repo {
            root: path.to_path_buf(),
            branch: branch.to_string(),
            remote: remote.to_string(),
            read_only,
            network_timeout: NETWORK_TIMEOUT,
            local_timeout: LOCAL_TIMEOUT,
            max_stdout: MAX_STDOUT,
            max_stderr: MAX_STDERR,
        };
        let out = repo.raw(&["rev-parse", "--show-toplevel"], Net::Local, None).await?;
        if !out.ok {
            return Err(GitError::NotARepo { path: path.display().to_string(), detail: one_line(&out.stderr) });
        }
        let top = out.text();
        if top.is_empty() {
            return Err(GitError::NotARepo { path: path.display().to_string(), detail: "no work tree".into() });
        }
        repo.root = PathBuf::from(top);
        Ok(repo)
    }

    /// The work tree's top directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn branch(&self) -> &str {
        &self.branch
    }
    pub fn remote(&self) -> &str {
        &self.remote
    }
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    fn tracking(&self) -> String {
        format!("refs/remotes/{}/{}", self.remote, self.branch)
    }

    fn upstream_name(&self) -> String {
        format!("{}/{}", self.remote, self.branch)
    }

    fn cmd_name(args: &[&str]) -> String {
        let shown: Vec<&str> = args.iter().copied().filter(|a| !a.starts_with("--format=")).take(6).collect();
        redact(&shown.join(" "))
    }

    /// Runs `git <args>` in the work tree; any exit code is an `Output`.
    async fn raw(&self, args: &[&str], net: Net, stdin: Option<Vec<u8>>) -> Result<Output, GitError> {
        let limit = match net {
            Net::Local => self.local_timeout,
            Net::Network => self.network_timeout,
        };
        let mut c = tokio::process::Command::new("git");
        c.arg("-C").arg(&self.root).args(["-c", "core.quotePath=false"]).args(args);
        // The operator's own config applies (identity, signing, credentials); only what would hide
        // a prompt behind the TUI, page, translate or re-target the command is pinned.
        c.env("GIT_TERMINAL_PROMPT", "0").env("LC_ALL", "C").env("GIT_PAGER", "cat");
        c.env("GIT_LITERAL_PATHSPECS", "1").env("GIT_EDITOR", "true");
        for v in ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_NAMESPACE", "GIT_PREFIX"] {
            c.env_remove(v);
        }
        c.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        c.stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        // Its own process group: an ssh passphrase prompt cannot read the TUI's keys (it stops,
        // and the time limit ends it).
        #[cfg(unix)]
        c.process_group(0);
        let mut child = c.spawn().map_err(|e| GitError::Spawn { reason: e.to_string() })?;
        let pid = child.id();
        let stdin_pipe = child.stdin.take();
        let stdout_pipe = child.stdout.take();
        let stderr_pipe = child.stderr.take();
        let (max_out, max_err) = (self.max_stdout, self.max_stderr);
        let work = async {
            let write = async {
                if let (Some(mut p), Some(data)) = (stdin_pipe, stdin) {
                    let _ = p.write_all(&data).await;
                    let _ = p.shutdown().await;
                }
            };
            let (_, (stdout, stdout_truncated), (stderr, _), status) = tokio::join!(
                write,
                read_bounded(stdout_pipe, max_out),
                read_bounded(stderr_pipe, max_err),
                child.wait()
            );
            (stdout, stdout_truncated, stderr, status)
        };
        match tokio::time::timeout(limit, work).await {
            Ok((stdout, stdout_truncated, stderr, status)) => {
                let status = status.map_err(|e| GitError::Spawn { reason: e.to_string() })?;
                Ok(Output {
                    ok: status.success(),
                    stdout,
                    stdout_truncated,
                    stderr: String::from_utf8_lossy(&stderr).into_owned(),
                })
            }
            Err(_) => {
                // Dropping the child kills git (kill_on_drop); its helpers (ssh, hooks) are in
                // its process group.
                #[cfg(unix)]
                if let Some(pid) = pid {
                    let _ = std::process::Command::new("kill")
                        .args(["-KILL", "--", &format!("-{pid}")])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
                #[cfg(not(unix))]
                let _ = pid;
                Err(GitError::Timeout { cmd: Self::cmd_name(args), secs: limit.as_secs().max(1) })
            }
        }
    }

    /// Runs `git <args>`; its stdout, or `Failed` with its stderr.
    async fn ok(&self, args: &[&str], net: Net, stdin: Option<Vec<u8>>) -> Result<Output, GitError> {
        let out = self.raw(args, net, stdin).await?;
        if !out.ok {
            return Err(GitError::Failed { cmd: Self::cmd_name(args), stderr: one_line(&out.stderr) });
        }
        if out.stdout_truncated {
            return Err(GitError::Failed {
                cmd: Self::cmd_name(args),
                stderr: format!("printed more than {} bytes", self.max_stdout),
            });
        }
        Ok(out)
    }

    /// Full commit id of `rev`, `None` if it does not name a commit.
    async fn rev(&self, rev: &str) -> Result<Option<String>, GitError> {
        let spec = format!("{rev}^{{commit}}");
        let out = self.raw(&["rev-parse", "--verify", "-q", &spec], Net::Local, None).await?;
        Ok(if out.ok { Some(out.text()).filter(|s| !s.is_empty()) } else { None })
    }

    async fn fetch(&self) -> Result<(), GitError> {
        // The remote-tracking ref follows the remote like a default fetch refspec does (`+` here
        // only lets the tracking ref move; nothing is ever force-pushed).
        let refspec = format!("+refs/heads/{}:{}", self.branch, self.tracking());
        let args = ["fetch", "--quiet", "--no-tags", &self.remote, &refspec];
        let out = self.raw(&args, Net::Network, None).await?;
        if out.ok {
            return Ok(());
        }
        if out.stderr.contains("couldn't find remote ref") {
            return Err(GitError::NoUpstream { remote: redact(&self.remote), branch: self.branch.clone() });
        }
        Err(GitError::Fetch {
            remote: redact(&self.remote),
            branch: self.branch.clone(),
            stderr: one_line(&out.stderr),
        })
    }

    async fn upstream(&self) -> Result<String, GitError> {
        self.rev(&self.tracking())
            .await?
            .ok_or_else(|| GitError::NoUpstream { remote: redact(&self.remote), branch: self.branch.clone() })
    }

    async fn check_branch(&self) -> Result<(), GitError> {
        let out = self.raw(&["symbolic-ref", "-q", "--short", "HEAD"], Net::Local, None).await?;
        let current = if out.ok { out.text() } else { String::new() };
        if current != self.branch {
            let current = if current.is_empty() { "a detached HEAD (or a rebase in progress)".into() } else { current };
            return Err(GitError::WrongBranch { current, wanted: self.branch.clone() });
        }
        Ok(())
    }

    /// (ahead, behind) of `HEAD` against the remote-tracking ref.
    async fn counts(&self) -> Result<(usize, usize), GitError> {
        let range = format!("HEAD...{}", self.tracking());
        let out = self.ok(&["rev-list", "--left-right", "--count", &range], Net::Local, None).await?;
        let text = out.text();
        let mut it = text.split_whitespace().map(|n| n.parse::<usize>().ok());
        match (it.next().flatten(), it.next().flatten()) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => {
                Err(GitError::Failed { cmd: "rev-list --count".into(), stderr: format!("unexpected output {text:?}") })
            }
        }
    }

    /// Local commits the remote lacks, oldest first.
    async fn unpushed(&self) -> Result<Vec<String>, GitError> {
        let range = format!("{}..HEAD", self.tracking());
        let out = self.ok(&["rev-list", "--reverse", &range], Net::Local, None).await?;
        Ok(out.text().lines().map(str::to_string).collect())
    }

    async fn trailers_of(&self, commit: &str) -> Result<Vec<(String, String)>, GitError> {
        let out = self.ok(&["log", "-1", "--format=%(trailers:only,unfold)", commit, "--"], Net::Local, None).await?;
        Ok(parse_trailers(&String::from_utf8_lossy(&out.stdout)))
    }

    /// The unpushed commits if every one is the cockpit's (has a `Cutover-Step` trailer).
    async fn unpushed_own(&self, ahead: usize, behind: usize) -> Result<Vec<String>, GitError> {
        if ahead == 0 {
            return Ok(Vec::new());
        }
        let pending = self.unpushed().await?;
        for c in &pending {
            if trailer(&self.trailers_of(c).await?, TRAILER_STEP).is_none() {
                return Err(GitError::Diverged {
                    remote: redact(&self.remote),
                    branch: self.branch.clone(),
                    ahead,
                    behind,
                });
            }
        }
        Ok(pending)
    }

    /// Paths `git status` reports (staged, unstaged, untracked, conflicted).
    async fn status(&self) -> Result<Vec<String>, GitError> {
        let out = self.ok(&["status", "--porcelain=v1", "-z", "--untracked-files=all"], Net::Local, None).await?;
        Ok(status_paths(&out.stdout))
    }

    /// (not ours, ours) among the changed paths.
    async fn dirty(&self, own: &[String]) -> Result<(Vec<String>, Vec<String>), GitError> {
        Ok(self.status().await?.into_iter().partition(|p| !own.contains(p)))
    }

    fn journal_before(&self, journal: &dyn GitJournal, action: &str, detail: &str) -> Result<(), GitError> {
        journal.before(action, detail).map_err(|reason| GitError::Journal { action: action.into(), reason })
    }

    async fn fast_forward(&self, upstream: &str, journal: &dyn GitJournal) -> Result<(), GitError> {
        let detail = format!("{} to {} {upstream}", self.branch, self.upstream_name());
        self.journal_before(journal, "merge-ff", &detail)?;
        let r = self.ok(&["merge", "--ff-only", "--quiet", upstream], Net::Local, None).await;
        journal.after("merge-ff", &detail, r.is_ok());
        r.map(|_| ())
    }

    /// Fetches, checks the branch and the work tree (clean apart from `own`, repo-relative paths
    /// the cockpit writes), and fast-forwards to `<remote>/<branch>` (read-only: reports how far
    /// behind instead). Unpushed local commits are refused (`Diverged`) unless all are the
    /// cockpit's own (an interrupted run), which [`Repo::commit_and_push`] then pushes.
    pub async fn prepare(&self, own: &[PathBuf], journal: &dyn GitJournal) -> Result<Prepared, GitError> {
        let own: Vec<String> = own.iter().map(|p| rel_path(p)).collect::<Result<_, _>>()?;
        self.fetch().await?;
        self.check_branch().await?;
        let (others, own_dirty) = self.dirty(&own).await?;
        if !others.is_empty() {
            return Err(GitError::Dirty { files: others });
        }
        let upstream_head = self.upstream().await?;
        let (ahead, behind) = self.counts().await?;
        let unpushed_own = self.unpushed_own(ahead, behind).await?;
        let mut fast_forwarded = 0;
        let mut left = behind;
        if behind > 0 && ahead == 0 && !self.read_only {
            self.fast_forward(&upstream_head, journal).await?;
            fast_forwarded = behind;
            left = 0;
        }
        let head = self.rev("HEAD").await?.unwrap_or_default();
        Ok(Prepared { head, upstream_head, behind: left, fast_forwarded, unpushed_own, own_dirty })
    }

    /// Compares `files` with `HEAD` (never writes).
    pub async fn preview(&self, files: &[RenderedFile]) -> Result<Preview, GitError> {
        let paths: Vec<String> = files.iter().map(|f| rel_path(&f.path)).collect::<Result<_, _>>()?;
        let head = self.rev("HEAD").await?;
        let blobs = match &head {
            Some(h) => self.blobs(h, &paths).await?,
            None => vec![None; paths.len()],
        };
        let mut out = Vec::with_capacity(files.len());
        for ((f, path), old) in files.iter().zip(paths).zip(blobs) {
            let (change, diff) = match old {
                Some(old) if old == f.contents.as_bytes() => (Change::Unchanged, String::new()),
                Some(old) => {
                    let old = String::from_utf8_lossy(&old);
                    (Change::Changed, unified(&old, &f.contents, &format!("a/{path}"), &format!("b/{path}")))
                }
                None => (Change::Created, unified("", &f.contents, "/dev/null", &format!("b/{path}"))),
            };
            out.push(FilePreview { path, change, diff });
        }
        Ok(Preview { head, files: out })
    }

    /// Blob contents of `paths` in `commit` (`None`: not there).
    async fn blobs(&self, commit: &str, paths: &[String]) -> Result<Vec<Option<Vec<u8>>>, GitError> {
        let input: String = paths.iter().map(|p| format!("{commit}:{p}\n")).collect();
        let out = self.ok(&["cat-file", "--batch"], Net::Local, Some(input.into_bytes())).await?;
        let data = out.stdout;
        let mut pos = 0;
        let mut result = Vec::with_capacity(paths.len());
        for p in paths {
            let bad =
                || GitError::Failed { cmd: "cat-file --batch".into(), stderr: format!("unexpected output for {p}") };
            let nl = data[pos..].iter().position(|b| *b == b'\n').ok_or_else(bad)?;
            let header = String::from_utf8_lossy(&data[pos..pos + nl]).into_owned();
            pos += nl + 1;
            if header.ends_with(" missing") || header.ends_with(" ambiguous") {
                result.push(None);
                continue;
            }
            let mut h = header.split_whitespace();
            let (_, kind, size) = (h.next(), h.next(), h.next().and_then(|s| s.parse::<usize>().ok()));
            let size = size.ok_or_else(bad)?;
            if pos + size > data.len() {
                return Err(bad());
            }
            if kind != Some("blob") {
                return Err(GitError::BadPath { path: format!("{p} (a {} in HEAD)", kind.unwrap_or("?")) });
            }
            result.push(Some(data[pos..pos + size].to_vec()));
            pos += size + 1;
        }
        Ok(result)
    }

    /// Writes `files`, commits exactly them with `message` and `trailers`, and pushes the commit
    /// to `<remote>/<branch>` (rebasing the cockpit's own commit when the remote moved).
    /// Idempotent: files equal to `HEAD` with `HEAD` on the remote → `unchanged`, nothing done;
    /// an earlier cockpit commit not pushed yet (interrupted run) is pushed (`resumed`).
    pub async fn commit_and_push(
        &self,
        files: &[RenderedFile],
        message: &str,
        trailers: &[(&str, &str)],
        journal: &dyn GitJournal,
    ) -> Result<Pushed, GitError> {
        if self.read_only {
            return Err(GitError::ReadOnly { action: "commit or push" });
        }
        let paths: Vec<String> = files.iter().map(|f| rel_path(&f.path)).collect::<Result<_, _>>()?;
        let text = full_message(message, trailers)?;
        self.fetch().await?;
        self.check_branch().await?;
        let (others, _) = self.dirty(&paths).await?;
        if !others.is_empty() {
            return Err(GitError::Dirty { files: others });
        }
        let upstream = self.upstream().await?;
        let (ahead, behind) = self.counts().await?;
        let pending = self.unpushed_own(ahead, behind).await?;
        if ahead == 0 && behind > 0 {
            self.fast_forward(&upstream, journal).await?;
        }
        let preview = self.preview(files).await?;
        if preview.is_unchanged() {
            let head = preview.head.clone().unwrap_or_default();
            if pending.is_empty() {
                return Ok(self.pushed(head, true, false, false));
            }
            return self.push_loop(journal, true).await;
        }
        let detail = format!("{}: {}", subject_of(message), paths.join(", "));
        self.journal_before(journal, "commit", &detail)?;
        let made = self.write_and_commit(files, &paths, &text).await;
        journal.after("commit", &detail, made.is_ok());
        made?;
        self.push_loop(journal, false).await
    }

    async fn write_and_commit(&self, files: &[RenderedFile], paths: &[String], text: &str) -> Result<(), GitError> {
        for (f, p) in files.iter().zip(paths) {
            write_atomic(&self.root, p, &f.contents)?;
        }
        let mut add = vec!["add", "--"];
        add.extend(paths.iter().map(String::as_str));
        self.ok(&add, Net::Local, None).await?;
        // Only our paths are staged (the tree was clean apart from them), so the commit holds
        // exactly the rendered files.
        self.ok(&["commit", "--quiet", "--cleanup=strip", "-F", "-"], Net::Local, Some(text.as_bytes().to_vec()))
            .await?;
        Ok(())
    }

    fn pushed(&self, commit: String, unchanged: bool, rebased: bool, resumed: bool) -> Pushed {
        Pushed { commit, remote: redact(&self.remote), branch: self.branch.clone(), unchanged, rebased, resumed }
    }

    /// Pushes `HEAD` (never forced); a non-fast-forward rejection fetches, rebases the cockpit's
    /// own commits onto the remote and tries again, `MAX_PUSH_ATTEMPTS` pushes at most.
    async fn push_loop(&self, journal: &dyn GitJournal, resumed: bool) -> Result<Pushed, GitError> {
        let mut rebased = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let head = self.rev("HEAD").await?.unwrap_or_default();
            let refspec = format!("{head}:refs/heads/{}", self.branch);
            let detail = format!("{} {refspec}", redact(&self.remote));
            self.journal_before(journal, "push", &detail)?;
            let out = self.raw(&["push", "--porcelain", &self.remote, &refspec], Net::Network, None).await;
            let out = match out {
                Ok(o) => o,
                Err(e) => {
                    journal.after("push", &detail, false);
                    return Err(e);
                }
            };
            journal.after("push", &detail, out.ok);
            if out.ok {
                // Keep the remote-tracking ref in step (git does this for a named remote; this also
                // covers a remote given as a URL-less name without a fetch refspec).
                let _ = self.raw(&["update-ref", &self.tracking(), &head], Net::Local, None).await;
                return Ok(self.pushed(head, false, rebased, resumed));
            }
            let said = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), out.stderr);
            let moved = said.contains("non-fast-forward") || said.contains("fetch first");
            let stderr = one_line(&out.stderr);
            if !moved {
                return Err(GitError::PushRejected {
                    remote: redact(&self.remote),
                    branch: self.branch.clone(),
                    commit: head,
                    stderr,
                });
            }
            if attempt >= MAX_PUSH_ATTEMPTS {
                return Err(GitError::PushRejected {
                    remote: redact(&self.remote),
                    branch: self.branch.clone(),
                    commit: head,
                    stderr: format!(
                        "{} kept moving: still rejected after {attempt} pushes ({stderr})",
                        self.upstream_name()
                    ),
                });
            }
            self.fetch().await?;
            let (ahead, behind) = self.counts().await?;
            let pending = self.unpushed_own(ahead, behind).await?;
            if pending.is_empty() {
                // The remote already has it.
                let head = self.rev("HEAD").await?.unwrap_or_default();
                return Ok(self.pushed(head, true, rebased, resumed));
            }
            let upstream = self.upstream().await?;
            let detail = format!(
                "{} cockpit commit(s) {} onto {} {upstream}",
                pending.len(),
                pending.join(" "),
                self.upstream_name()
            );
            self.journal_before(journal, "rebase", &detail)?;
            let out = self.raw(&["rebase", "--quiet", "--no-autostash", &upstream], Net::Local, None).await?;
            if !out.ok {
                let files = self.conflicted().await;
                let _ = self.raw(&["rebase", "--abort"], Net::Local, None).await;
                journal.after("rebase", &detail, false);
                return Err(GitError::RebaseConflict {
                    commit: head,
                    remote: redact(&self.remote),
                    branch: self.branch.clone(),
                    files: if files.is_empty() { vec![one_line(&out.stderr)] } else { files },
                });
            }
            journal.after("rebase", &detail, true);
            rebased = true;
        }
    }

    async fn conflicted(&self) -> Vec<String> {
        match self.ok(&["diff", "--name-only", "-z", "--diff-filter=U"], Net::Local, None).await {
            Ok(out) => out
                .stdout
                .split(|b| *b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The commits on the remote branch that carry a `Cutover-` trailer or are a `git revert`,
    /// newest first.
    async fn own_log(&self) -> Result<Vec<LogEntry>, GitError> {
        let tracking = self.tracking();
        let args = [
            "log",
            LOG_LIMIT,
            "--fixed-strings",
            "--grep=Cutover-",
            "--grep=This reverts commit ",
            "--format=%H%x1f%s%x1f%(trailers:only,unfold)%x1f%b%x1e",
            &tracking,
            "--",
        ];
        let out = self.ok(&args, Net::Local, None).await?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.split('\x1e').filter_map(LogEntry::parse).collect())
    }

    /// The newest commit on `<remote>/<branch>` (after a fetch) whose `Cutover-Step` is `step_id`,
    /// and the later commit reverting it, if any.
    pub async fn find_own_commit(&self, step_id: &str) -> Result<Option<OwnCommit>, GitError> {
        self.fetch().await?;
        let log = self.own_log().await?;
        for (i, e) in log.iter().enumerate() {
            if trailer(&e.trailers, TRAILER_STEP) != Some(step_id) {
                continue;
            }
            let reverted_by = log[..i].iter().rev().find(|r| r.reverts(&e.commit)).map(|r| r.commit.clone());
            return Ok(Some(OwnCommit { commit: e.commit.clone(), subject: e.subject.clone(), reverted_by }));
        }
        Ok(None)
    }

    /// Reverts `commit` (a commit on `<remote>/<branch>`) in a new commit carrying `message`,
    /// `trailers` and `Cutover-Reverts: <commit>`, and pushes it as [`Repo::commit_and_push`] does.
    /// Idempotent: a revert already on the remote → `unchanged`; one made but not pushed → pushed.
    pub async fn revert_and_push(
        &self,
        commit: &str,
        message: &str,
        trailers: &[(&str, &str)],
        journal: &dyn GitJournal,
    ) -> Result<Pushed, GitError> {
        if self.read_only {
            return Err(GitError::ReadOnly { action: "revert or push" });
        }
        if commit.is_empty() || commit.starts_with('-') || !commit.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(GitError::InvalidName { what: "commit", name: commit.to_string() });
        }
        self.fetch().await?;
        self.check_branch().await?;
        let (others, _) = self.dirty(&[]).await?;
        if !others.is_empty() {
            return Err(GitError::Dirty { files: others });
        }
        let full = self.rev(commit).await?.ok_or_else(|| GitError::NotOnBranch {
            commit: commit.to_string(),
            remote: redact(&self.remote),
            branch: self.branch.clone(),
        })?;
        let upstream = self.upstream().await?;
        let on_branch = self.raw(&["merge-base", "--is-ancestor", &full, &upstream], Net::Local, None).await?.ok;
        if !on_branch {
            return Err(GitError::NotOnBranch {
                commit: full,
                remote: redact(&self.remote),
                branch: self.branch.clone(),
            });
        }
        // Already reverted on the remote (by the cockpit, or by hand with `git revert`)?
        if let Some(by) = self.own_log().await?.into_iter().find(|e| e.reverts(&full)) {
            return Ok(self.pushed(by.commit, true, false, false));
        }
        let (ahead, behind) = self.counts().await?;
        let pending = self.unpushed_own(ahead, behind).await?;
        for p in &pending {
            if trailer(&self.trailers_of(p).await?, TRAILER_REVERTS).is_some_and(|r| same_commit(r, &full)) {
                return self.push_loop(journal, true).await;
            }
        }
        if ahead == 0 && behind > 0 {
            self.fast_forward(&upstream, journal).await?;
        }
        let mut all: Vec<(&str, &str)> = trailers.to_vec();
        all.push((TRAILER_REVERTS, &full));
        let text = full_message(message, &all)?;
        let subject = self.ok(&["log", "-1", "--format=%s", &full, "--"], Net::Local, None).await?.text();
        let detail = format!("{full} ({subject}): {}", subject_of(message));
        self.journal_before(journal, "revert", &detail)?;
        let out = self.raw(&["revert", "--no-commit", &full], Net::Local, None).await?;
        if !out.ok {
            let files = self.conflicted().await;
            let _ = self.raw(&["revert", "--abort"], Net::Local, None).await;
            journal.after("revert", &detail, false);
            return Err(GitError::RevertConflict {
                commit: full,
                files: if files.is_empty() { vec![one_line(&out.stderr)] } else { files },
            });
        }
        // `--allow-empty`: when the files are back already, the revert is still recorded.
        let made = self
            .ok(
                &["commit", "--quiet", "--allow-empty", "--cleanup=strip", "-F", "-"],
                Net::Local,
                Some(text.into_bytes()),
            )
            .await;
        if made.is_err() {
            let _ = self.raw(&["revert", "--abort"], Net::Local, None).await;
        }
        journal.after("revert", &detail, made.is_ok());
        made?;
        self.push_loop(journal, false).await
    }

    /// `<remote>/<branch>` after a fetch.
    pub async fn remote_head(&self) -> Result<String, GitError> {
        self.fetch().await?;
        self.upstream().await
    }

    /// Whether `ancestor` is `commit` or one of its ancestors (no fetch). `None`: `commit` is not
    /// a commit this clone knows (fetch first, or it is not a commit id at all, e.g. a chart
    /// version).
    pub async fn contains(&self, commit: &str, ancestor: &str) -> Result<Option<bool>, GitError> {
        let ok = |c: &str| !c.is_empty() && !c.starts_with('-') && c.chars().all(|c| c.is_ascii_hexdigit());
        if !ok(commit) || !ok(ancestor) {
            return Ok(None);
        }
        let (Some(c), Some(a)) = (self.rev(commit).await?, self.rev(ancestor).await?) else { return Ok(None) };
        Ok(Some(self.raw(&["merge-base", "--is-ancestor", &a, &c], Net::Local, None).await?.ok))
    }

    /// Local `HEAD` (no fetch); `None` on a branch without commits.
    pub async fn head(&self) -> Result<Option<String>, GitError> {
        self.rev("HEAD").await
    }
}

/// One commit of [`Repo::own_log`].
struct LogEntry {
    commit: String,
    subject: String,
    trailers: Vec<(String, String)>,
    /// Commits it reverts: `Cutover-Reverts` trailers and `git revert`'s "This reverts commit <sha>".
    reverted: Vec<String>,
}

impl LogEntry {
    fn parse(rec: &str) -> Option<LogEntry> {
        let mut f = rec.trim_start_matches('\n').splitn(4, '\x1f');
        let (commit, subject) = (f.next()?.trim(), f.next()?);
        let (trailers, body) = (parse_trailers(f.next().unwrap_or("")), f.next().unwrap_or(""));
        if commit.is_empty() {
            return None;
        }
        let mut reverted: Vec<String> =
            trailers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(TRAILER_REVERTS)).map(|(_, v)| v.clone()).collect();
        for part in body.split("This reverts commit ").skip(1) {
            let sha: String = part.chars().take_while(char::is_ascii_hexdigit).collect();
            if sha.len() >= 7 {
                reverted.push(sha);
            }
        }
        Some(LogEntry { commit: commit.to_string(), subject: subject.to_string(), trailers, reverted })
    }

    fn reverts(&self, commit: &str) -> bool {
        self.reverted.iter().any(|r| same_commit(r, commit))
    }
}

/// `a` and `b` name the same commit (one may be an abbreviation of at least 7 digits).
fn same_commit(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim().to_ascii_lowercase(), b.trim().to_ascii_lowercase());
    a.len() >= 7 && b.len() >= 7 && (a.starts_with(&b) || b.starts_with(&a))
}

fn unified(old: &str, new: &str, from: &str, to: &str) -> String {
    similar::TextDiff::from_lines(old, new).unified_diff().context_radius(3).header(from, to).to_string()
}

#[cfg(test)]
mod tests;
