//! The Git client against the real `git`: a bare origin and clones in a temp dir. The clones'
//! identity and `commit.gpgsign=false` are in their local config only.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::*;
use crate::tempdir::TempDir;

const VALUES: &str = "platform/networking/cilium/values.yaml";
const APP: &str = "platform/gitops/argocd/apps/cilium-app.yaml";

/// Test set-up git (isolated from the machine's config; identity on the command line).
fn sh(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=test", "-c", "user.email=test@cutover.invalid", "-c", "commit.gpgsign=false"])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, text).expect("write");
}

fn file(path: &str, contents: &str) -> RenderedFile {
    RenderedFile { path: PathBuf::from(path), contents: contents.to_string() }
}

const TRAILERS: &[(&str, &str)] = &[(TRAILER_STEP, "stage1-commit"), (TRAILER_STAGE, "1")];

fn clone_into(base: &Path, origin: &Path, name: &str) -> PathBuf {
    sh(base, &["clone", "-q", origin.to_str().expect("utf-8"), name]);
    let dir = base.join(name);
    sh(&dir, &["config", "user.name", "cockpit test"]);
    sh(&dir, &["config", "user.email", "cockpit@cutover.invalid"]);
    sh(&dir, &["config", "commit.gpgsign", "false"]);
    dir
}

/// Someone else pushes `rel` from their clone `base/name`; returns their commit.
fn push_from(base: &Path, origin: &Path, name: &str, rel: &str, text: &str) -> String {
    let dir = base.join(name);
    if dir.exists() {
        sh(&dir, &["pull", "-q", "--ff-only"]);
    } else {
        clone_into(base, origin, name);
    }
    write(&dir, rel, text);
    sh(&dir, &["add", "-A"]);
    sh(&dir, &["commit", "-q", "-m", &format!("other: {rel}")]);
    sh(&dir, &["push", "-q", "origin", "HEAD:refs/heads/main"]);
    sh(&dir, &["rev-parse", "HEAD"])
}

struct Fx {
    tmp: TempDir,
    origin: PathBuf,
    a: PathBuf,
}

impl Fx {
    fn new() -> Fx {
        let tmp = TempDir::new().expect("temp dir");
        let origin = tmp.path.join("origin.git");
        sh(&tmp.path, &["init", "-q", "--bare", "-b", "main", "origin.git"]);
        let seed = tmp.path.join("seed");
        sh(&tmp.path, &["init", "-q", "-b", "main", "seed"]);
        write(&seed, "README.md", "homelab\n");
        write(&seed, VALUES, "ipam:\n  mode: kubernetes\n");
        sh(&seed, &["add", "-A"]);
        sh(&seed, &["commit", "-q", "-m", "Homelab layout"]);
        sh(&seed, &["push", "-q", origin.to_str().expect("utf-8"), "main"]);
        let fx = Fx { a: PathBuf::new(), origin, tmp };
        let a = fx.clone_to("a");
        Fx { a, ..fx }
    }

    fn clone_to(&self, name: &str) -> PathBuf {
        clone_into(&self.tmp.path, &self.origin, name)
    }

    /// Another operator pushes `rel` from their own clone.
    fn push_other(&self, name: &str, rel: &str, text: &str) -> String {
        push_from(&self.tmp.path, &self.origin, name, rel, text)
    }

    fn origin_head(&self) -> String {
        sh(&self.origin, &["rev-parse", "refs/heads/main"])
    }

    fn origin_file(&self, rel: &str) -> Option<String> {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&self.origin)
            .args(["show", &format!("main:{rel}")])
            .output()
            .expect("git");
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn a_head(&self) -> String {
        sh(&self.a, &["rev-parse", "HEAD"])
    }

    async fn repo(&self, read_only: bool) -> Repo {
        Repo::open(&self.a, "main", "origin", read_only).await.expect("opens")
    }
}

/// Records every journal call with what Git looked like when `before` ran; can refuse an action
/// and run something on the first `before` of one.
struct Rec {
    origin: PathBuf,
    clone: PathBuf,
    refuse: Option<&'static str>,
    calls: Mutex<Vec<(String, String, String, String)>>,
    hook: Mutex<Option<Hook>>,
}

/// Runs once, on the first `before` of its action.
type Hook = (&'static str, Box<dyn FnOnce() + Send>);

impl Rec {
    fn new(fx: &Fx) -> Rec {
        Rec {
            origin: fx.origin.clone(),
            clone: fx.a.clone(),
            refuse: None,
            calls: Mutex::default(),
            hook: Mutex::default(),
        }
    }
    fn refusing(fx: &Fx, action: &'static str) -> Rec {
        Rec { refuse: Some(action), ..Rec::new(fx) }
    }
    fn on_first(self, action: &'static str, f: impl FnOnce() + Send + 'static) -> Rec {
        *self.hook.lock().expect("lock") = Some((action, Box::new(f)));
        self
    }
    fn actions(&self) -> Vec<String> {
        self.calls.lock().expect("lock").iter().map(|c| c.0.clone()).collect()
    }
    /// (origin head, clone head) when `before(action)` ran first.
    fn state_at(&self, action: &str) -> (String, String) {
        let calls = self.calls.lock().expect("lock");
        let c = calls.iter().find(|c| c.0 == format!("before {action}")).expect("before was called");
        (c.2.clone(), c.3.clone())
    }
}

impl GitJournal for Rec {
    fn before(&self, action: &str, detail: &str) -> Result<(), String> {
        let state = (sh(&self.origin, &["rev-parse", "refs/heads/main"]), sh(&self.clone, &["rev-parse", "HEAD"]));
        self.calls.lock().expect("lock").push((format!("before {action}"), detail.to_string(), state.0, state.1));
        let hook = {
            let mut h = self.hook.lock().expect("lock");
            if h.as_ref().is_some_and(|(a, _)| *a == action) { h.take() } else { None }
        };
        if let Some((_, f)) = hook {
            f();
        }
        if self.refuse == Some(action) { Err("journal disk full".into()) } else { Ok(()) }
    }
    fn after(&self, action: &str, detail: &str, ok: bool) {
        self.calls.lock().expect("lock").push((
            format!("after {action} {ok}"),
            detail.to_string(),
            String::new(),
            String::new(),
        ));
    }
}

#[test]
fn redacts_url_credentials() {
    let text = "fatal: unable to access 'https://alice:s3cr%40t@git.example.com/homelab.git/': 403; ssh://tok3n@host:22/x and http://u:p@ss@h/y";
    let r = redact(text);
    for secret in ["alice", "s3cr", "tok3n", "u:p", "ss@h"] {
        assert!(!r.contains(secret), "{secret} left in {r}");
    }
    assert!(r.contains("https://***@git.example.com/homelab.git/"), "{r}");
    assert!(r.contains("ssh://***@host:22/x"), "{r}");
    // No userinfo: untouched.
    assert_eq!(
        redact("see https://github.com/a/b and user@example.com"),
        "see https://github.com/a/b and user@example.com"
    );
    let e = GitError::Fetch {
        remote: "origin".into(),
        branch: "main".into(),
        stderr: one_line("a\nfatal: https://x:y@h/\n"),
    };
    assert!(!e.to_string().contains("x:y"), "{e}");
    assert!(!e.to_string().contains('\n'));
}

#[tokio::test]
async fn fetch_errors_never_show_the_password_of_the_remote_url() {
    let fx = Fx::new();
    // Loopback port 1: refused at once.
    sh(&fx.a, &["remote", "set-url", "origin", "http://operator:hunter2-secret@127.0.0.1:1/homelab.git"]);
    let repo = fx.repo(false).await;
    let e = repo.prepare(&[], &NoJournal).await.expect_err("cannot fetch");
    assert!(matches!(e, GitError::Fetch { .. }), "{e:?}");
    let text = format!("{e} {e:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!text.contains("operator:"), "{text}");
}

#[tokio::test]
async fn open_needs_a_work_tree_and_sane_names() {
    let fx = Fx::new();
    let e = Repo::open(&fx.origin, "main", "origin", false).await.expect_err("bare is no work tree");
    assert!(matches!(e, GitError::NotARepo { .. }), "{e:?}");
    let e = Repo::open(&fx.tmp.path.join("nope"), "main", "origin", false).await.expect_err("missing");
    assert!(matches!(e, GitError::NotARepo { .. }), "{e:?}");
    for bad in ["-f", "a..b", "x y", "", "main:other", "+main"] {
        assert!(Repo::open(&fx.a, bad, "origin", false).await.is_err(), "branch {bad:?}");
    }
    assert!(Repo::open(&fx.a, "main", "--upload-pack=x", false).await.is_err());
    let sub = fx.a.join("platform");
    let repo = Repo::open(&sub, "main", "origin", false).await.expect("a subdirectory opens its work tree");
    assert_eq!(repo.root().canonicalize().expect("canon"), fx.a.canonicalize().expect("canon"));
    assert_eq!(repo.local_timeout, LOCAL_TIMEOUT);
    assert_eq!(repo.network_timeout, NETWORK_TIMEOUT);
}

#[tokio::test]
async fn a_dirty_clone_is_refused_naming_the_files_and_own_files_are_allowed() {
    let fx = Fx::new();
    write(&fx.a, "README.md", "changed by hand\n");
    write(&fx.a, "notes/todo.txt", "untracked\n");
    write(&fx.a, VALUES, "half-written by an interrupted run\n");
    let repo = fx.repo(false).await;
    let e = repo.prepare(&[PathBuf::from(VALUES)], &NoJournal).await.expect_err("dirty");
    match &e {
        GitError::Dirty { files } => {
            assert_eq!(files, &vec!["README.md".to_string(), "notes/todo.txt".to_string()], "{e}")
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("README.md, notes/todo.txt"), "{e}");
    // commit_and_push refuses the same way, before writing anything.
    let e = repo.commit_and_push(&[file(VALUES, "x: 1\n")], "Stage 1", TRAILERS, &NoJournal).await.expect_err("dirty");
    assert!(matches!(e, GitError::Dirty { .. }), "{e:?}");
    assert_eq!(std::fs::read_to_string(fx.a.join(VALUES)).expect("read"), "half-written by an interrupted run\n");

    sh(&fx.a, &["checkout", "--", "README.md"]);
    std::fs::remove_dir_all(fx.a.join("notes")).expect("rm");
    let p = repo.prepare(&[PathBuf::from(VALUES)], &NoJournal).await.expect("only own files are dirty");
    assert_eq!(p.own_dirty, vec![VALUES.to_string()]);
    assert_eq!(p.head, fx.origin_head());
    assert_eq!((p.behind, p.fast_forwarded), (0, 0));
}

#[tokio::test]
async fn wrong_branch_is_refused() {
    let fx = Fx::new();
    sh(&fx.a, &["switch", "-q", "-c", "experiment"]);
    let repo = fx.repo(false).await;
    let e = repo.prepare(&[], &NoJournal).await.expect_err("wrong branch");
    match &e {
        GitError::WrongBranch { current, wanted } => {
            assert_eq!((current.as_str(), wanted.as_str()), ("experiment", "main"))
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("git switch main"), "{e}");
    let e = Repo::open(&fx.a, "trunk", "origin", false).await.expect("opens").prepare(&[], &NoJournal).await;
    assert!(matches!(e, Err(GitError::NoUpstream { .. })), "{e:?}");
}

#[tokio::test]
async fn prepare_fast_forwards_and_read_only_only_reports() {
    let fx = Fx::new();
    let before = fx.a_head();
    let theirs = fx.push_other("b", "apps/other.yaml", "a: 1\n");
    let ro = fx.repo(true).await;
    let p = ro.prepare(&[], &NoJournal).await.expect("read-only prepare fetches");
    assert_eq!((p.behind, p.fast_forwarded), (1, 0));
    assert_eq!(p.head, before, "read-only does not move the branch");
    assert_eq!(p.upstream_head, theirs);
    assert_eq!(fx.a_head(), before);

    let rec = Rec::new(&fx);
    let p = fx.repo(false).await.prepare(&[], &rec).await.expect("prepare");
    assert_eq!((p.behind, p.fast_forwarded), (0, 1));
    assert_eq!(p.head, theirs);
    assert_eq!(fx.a_head(), theirs);
    assert_eq!(rec.actions(), vec!["before merge-ff", "after merge-ff true"]);
    assert_eq!(rec.state_at("merge-ff").1, before, "journaled before the fast-forward");
    // Never a merge commit.
    assert_eq!(sh(&fx.a, &["rev-list", "--merges", "--count", "HEAD"]), "0");
}

#[tokio::test]
async fn diverged_clone_is_refused() {
    let fx = Fx::new();
    write(&fx.a, "README.md", "local work\n");
    sh(&fx.a, &["commit", "-q", "-am", "local work, not pushed"]);
    fx.push_other("b", "apps/other.yaml", "a: 1\n");
    let repo = fx.repo(false).await;
    let e = repo.prepare(&[], &NoJournal).await.expect_err("diverged");
    match &e {
        GitError::Diverged { ahead, behind, .. } => assert_eq!((*ahead, *behind), (1, 1)),
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("never merges"), "{e}");
    let origin = fx.origin_head();
    let e = repo.commit_and_push(&[file(VALUES, "x: 1\n")], "Stage 1", TRAILERS, &NoJournal).await;
    assert!(matches!(e, Err(GitError::Diverged { .. })), "{e:?}");
    assert_eq!(fx.origin_head(), origin);
}

#[tokio::test]
async fn preview_compares_with_head_and_writes_nothing() {
    let fx = Fx::new();
    let repo = fx.repo(true).await;
    let files = [
        file(VALUES, "ipam:\n  mode: kubernetes\n"),
        file(APP, "kind: Application\n"),
        file("README.md", "homelab\ncilium\n"),
    ];
    let p = repo.preview(&files).await.expect("preview");
    assert_eq!(p.head.as_deref(), Some(fx.a_head().as_str()));
    let changes: Vec<Change> = p.files.iter().map(|f| f.change).collect();
    assert_eq!(changes, vec![Change::Unchanged, Change::Created, Change::Changed]);
    assert!(!p.is_unchanged());
    assert_eq!(p.files[0].diff, "");
    assert_eq!(p.files[1].diff, format!("--- /dev/null\n+++ b/{APP}\n@@ -0,0 +1 @@\n+kind: Application\n"));
    assert_eq!(p.files[2].diff, "--- a/README.md\n+++ b/README.md\n@@ -1 +1,2 @@\n homelab\n+cilium\n");
    assert!(!fx.a.join(APP).exists(), "preview writes nothing");
    assert_eq!(sh(&fx.a, &["status", "--porcelain"]), "");
    for bad in ["../escape.yaml", "/etc/passwd", ".git/config"] {
        let e = repo.preview(&[file(bad, "x")]).await.expect_err("bad path");
        assert!(matches!(e, GitError::BadPath { .. }), "{bad}: {e:?}");
    }
}

#[tokio::test]
async fn commit_and_push_lands_on_origin_once() {
    let fx = Fx::new();
    let repo = fx.repo(false).await;
    let files =
        [file(VALUES, "ipam:\n  mode: kubernetes\nkubeProxyReplacement: false\n"), file(APP, "kind: Application\n")];
    // Something the cockpit does not write, left untracked by the operator? Refused above; an
    // ignored file is fine and is never added.
    write(&fx.a, ".gitignore", "*.local\n");
    sh(&fx.a, &["add", ".gitignore"]);
    sh(&fx.a, &["commit", "-q", "-m", "ignore local files"]);
    sh(&fx.a, &["push", "-q", "origin", "main"]);
    write(&fx.a, "secrets.local", "never committed\n");

    let rec = Rec::new(&fx);
    let before = fx.origin_head();
    let pushed = repo
        .commit_and_push(&files, "Stage 1: Cilium as the CNI\n\nRendered by cutover.", TRAILERS, &rec)
        .await
        .expect("pushed");
    assert!(!pushed.unchanged && !pushed.rebased && !pushed.resumed, "{pushed:?}");
    assert_eq!((pushed.remote.as_str(), pushed.branch.as_str()), ("origin", "main"));
    assert_eq!(fx.origin_head(), pushed.commit);
    assert_eq!(fx.origin_file(APP).as_deref(), Some("kind: Application\n"));
    assert_eq!(sh(&fx.origin, &["rev-parse", "main~1"]), before, "one commit on top, no merge");
    let names = sh(&fx.origin, &["show", "--name-only", "--format=", "main"]);
    assert_eq!(names, format!("{APP}\n{VALUES}"), "exactly the rendered files");
    let msg = sh(&fx.origin, &["log", "-1", "--format=%B", "main"]);
    assert!(msg.starts_with("Stage 1: Cilium as the CNI\n\nRendered by cutover.\n\n"), "{msg}");
    assert!(msg.ends_with("Cutover-Step: stage1-commit\nCutover-Stage: 1"), "{msg}");
    assert_eq!(rec.actions(), vec!["before commit", "after commit true", "before push", "after push true"]);
    let (origin_at_push, clone_at_commit) = (rec.state_at("push").0, rec.state_at("commit").1);
    assert_eq!(origin_at_push, before, "journaled before the push");
    assert_eq!(clone_at_commit, before, "journaled before the commit");
    let push_detail = rec.calls.lock().expect("lock")[2].1.clone();
    assert_eq!(push_detail, format!("origin {}:refs/heads/main", pushed.commit));
    // The tracking ref follows.
    assert_eq!(sh(&fx.a, &["rev-parse", "origin/main"]), pushed.commit);

    // Again: nothing to do.
    let rec = Rec::new(&fx);
    let again = repo.commit_and_push(&files, "Stage 1: Cilium as the CNI", TRAILERS, &rec).await.expect("idempotent");
    assert!(again.unchanged, "{again:?}");
    assert_eq!(again.commit, pushed.commit);
    assert_eq!(fx.origin_head(), pushed.commit);
    assert!(rec.actions().is_empty(), "no write, nothing journaled: {:?}", rec.actions());
    assert!(fx.a.join("secrets.local").exists());
}

#[tokio::test]
async fn a_push_rejected_because_the_remote_moved_is_rebased_and_pushed() {
    let fx = Fx::new();
    let repo = fx.repo(false).await;
    let theirs = std::sync::Arc::new(Mutex::new(String::new()));
    let (t, fx_origin, dir) = (theirs.clone(), fx.origin.clone(), fx.tmp.path.clone());
    // Between our fetch and our push, someone else pushes an unrelated file.
    let rec = Rec::new(&fx).on_first("push", move || {
        *t.lock().expect("lock") = push_from(&dir, &fx_origin, "b", "apps/unrelated.yaml", "b: 2\n");
    });
    let pushed =
        repo.commit_and_push(&[file(VALUES, "new: values\n")], "Stage 1", TRAILERS, &rec).await.expect("pushed");
    assert!(pushed.rebased, "{pushed:?}");
    let theirs = theirs.lock().expect("lock").clone();
    assert_eq!(fx.origin_head(), pushed.commit);
    assert_eq!(sh(&fx.origin, &["rev-parse", "main~1"]), theirs, "our commit sits on theirs");
    assert_eq!(fx.origin_file("apps/unrelated.yaml").as_deref(), Some("b: 2\n"));
    assert_eq!(fx.origin_file(VALUES).as_deref(), Some("new: values\n"));
    assert_eq!(
        rec.actions(),
        vec![
            "before commit",
            "after commit true",
            "before push",
            "after push false",
            "before rebase",
            "after rebase true",
            "before push",
            "after push true"
        ]
    );
}

#[tokio::test]
async fn a_conflicting_remote_change_aborts_the_rebase_and_never_forces() {
    let fx = Fx::new();
    let repo = fx.repo(false).await;
    let (fx_origin, dir) = (fx.origin.clone(), fx.tmp.path.clone());
    let rec = Rec::new(&fx).on_first("push", move || {
        push_from(&dir, &fx_origin, "b", VALUES, "someone: else\n");
    });
    let e = repo.commit_and_push(&[file(VALUES, "ours: 1\n")], "Stage 1", TRAILERS, &rec).await.expect_err("conflict");
    let origin_after = fx.origin_head();
    match &e {
        GitError::RebaseConflict { files, commit, .. } => {
            assert_eq!(files, &vec![VALUES.to_string()]);
            assert_eq!(commit, &fx.a_head(), "the commit exists locally");
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("not pushed"), "{e}");
    assert_eq!(fx.origin_file(VALUES).as_deref(), Some("someone: else\n"), "nothing forced");
    assert_eq!(sh(&fx.origin, &["log", "-1", "--format=%s", "main"]), format!("other: {VALUES}"));
    assert_eq!(fx.origin_head(), origin_after);
    // The rebase was aborted: on main, tree clean, our commit on top of the old base.
    assert_eq!(sh(&fx.a, &["symbolic-ref", "--short", "HEAD"]), "main");
    assert_eq!(sh(&fx.a, &["status", "--porcelain"]), "");
    assert!(!fx.a.join(".git/rebase-merge").exists() && !fx.a.join(".git/rebase-apply").exists());
    assert_eq!(sh(&fx.a, &["log", "-1", "--format=%(trailers:key=Cutover-Step,valueonly)"]), "stage1-commit");
    assert!(rec.actions().contains(&"after rebase false".to_string()), "{:?}", rec.actions());
}

#[tokio::test]
async fn read_only_refuses_every_write() {
    let fx = Fx::new();
    let repo = fx.repo(true).await;
    let head = fx.a_head();
    let rec = Rec::new(&fx);
    let e = repo.commit_and_push(&[file(APP, "kind: Application\n")], "Stage 1", TRAILERS, &rec).await;
    assert!(matches!(e, Err(GitError::ReadOnly { .. })), "{e:?}");
    let e = repo.revert_and_push(&head, "Roll back", TRAILERS, &rec).await;
    assert!(matches!(e, Err(GitError::ReadOnly { .. })), "{e:?}");
    assert!(rec.actions().is_empty());
    assert!(!fx.a.join(APP).exists());
    assert_eq!(fx.a_head(), head);
    assert_eq!(fx.origin_head(), head);
    // Reads still work.
    assert_eq!(repo.remote_head().await.expect("remote head"), head);
    assert!(repo.find_own_commit("stage1-commit").await.expect("find").is_none());
}

#[tokio::test]
async fn journal_refusal_stops_the_action_and_an_interrupted_run_resumes() {
    let fx = Fx::new();
    let repo = fx.repo(false).await;
    let files = [file(APP, "kind: Application\n")];
    let head = fx.a_head();
    let e = repo.commit_and_push(&files, "Stage 1", TRAILERS, &Rec::refusing(&fx, "commit")).await;
    assert!(matches!(&e, Err(GitError::Journal { action, .. }) if action == "commit"), "{e:?}");
    assert!(!fx.a.join(APP).exists(), "nothing written");
    assert_eq!(fx.a_head(), head);

    // The commit is made, the push is refused by the journal: the commit exists locally only.
    let e = repo.commit_and_push(&files, "Stage 1", TRAILERS, &Rec::refusing(&fx, "push")).await;
    assert!(matches!(&e, Err(GitError::Journal { action, .. }) if action == "push"), "{e:?}");
    let local = fx.a_head();
    assert_ne!(local, head);
    assert_eq!(fx.origin_head(), head, "not pushed");
    let p = repo.prepare(&[PathBuf::from(APP)], &NoJournal).await.expect("own unpushed commits are allowed");
    assert_eq!(p.unpushed_own, vec![local.clone()]);

    // Resume: the same files again push the existing commit.
    let rec = Rec::new(&fx);
    let pushed = repo.commit_and_push(&files, "Stage 1", TRAILERS, &rec).await.expect("resumed");
    assert!(pushed.resumed && !pushed.unchanged, "{pushed:?}");
    assert_eq!(pushed.commit, local);
    assert_eq!(fx.origin_head(), local);
    assert_eq!(rec.actions(), vec!["before push", "after push true"]);
}

#[tokio::test]
async fn find_own_commit_and_revert_round_trip() {
    let fx = Fx::new();
    let repo = fx.repo(false).await;
    assert!(repo.find_own_commit("stage1-commit").await.expect("find").is_none());
    let original = fx.origin_file(VALUES).expect("seeded");
    let files = [file(VALUES, "stage: 1\n"), file(APP, "kind: Application\n")];
    let pushed = repo.commit_and_push(&files, "Stage 1: Cilium", TRAILERS, &NoJournal).await.expect("pushed");
    // An unrelated commit on top, by someone else.
    fx.push_other("b", "apps/other.yaml", "x: 1\n");
    let own = repo.find_own_commit("stage1-commit").await.expect("find").expect("found");
    assert_eq!(own, OwnCommit { commit: pushed.commit.clone(), subject: "Stage 1: Cilium".into(), reverted_by: None });
    assert!(repo.find_own_commit("stage2-commit").await.expect("find").is_none());

    let rec = Rec::new(&fx);
    let trailers = [(TRAILER_STEP, "stage1-rollback"), (TRAILER_STAGE, "1")];
    let reverted = repo.revert_and_push(&own.commit, "Roll back Stage 1", &trailers, &rec).await.expect("reverted");
    assert!(!reverted.unchanged, "{reverted:?}");
    assert_eq!(fx.origin_head(), reverted.commit);
    assert_eq!(fx.origin_file(VALUES).as_deref(), Some(original.as_str()));
    assert_eq!(fx.origin_file(APP), None);
    assert_eq!(fx.origin_file("apps/other.yaml").as_deref(), Some("x: 1\n"), "only our commit is undone");
    let msg = sh(&fx.origin, &["log", "-1", "--format=%B", "main"]);
    assert!(msg.contains(&format!("Cutover-Reverts: {}", own.commit)), "{msg}");
    assert_eq!(&rec.actions()[..2], ["before merge-ff", "after merge-ff true"]);
    assert_eq!(&rec.actions()[2..], ["before revert", "after revert true", "before push", "after push true"]);

    let own = repo.find_own_commit("stage1-commit").await.expect("find").expect("still found");
    assert_eq!(own.reverted_by.as_deref(), Some(reverted.commit.as_str()));
    let again = repo.revert_and_push(&own.commit, "Roll back Stage 1", &trailers, &NoJournal).await.expect("again");
    assert!(again.unchanged, "{again:?}");
    assert_eq!(again.commit, reverted.commit);
    assert_eq!(fx.origin_head(), reverted.commit);
    let e = repo.revert_and_push("0123456789abcdef0123456789abcdef01234567", "x", &trailers, &NoJournal).await;
    assert!(matches!(e, Err(GitError::NotOnBranch { .. })), "{e:?}");
}

#[tokio::test]
async fn time_limit_and_output_bound() {
    let fx = Fx::new();
    // A pre-commit hook that hangs stands in for a hung credential helper or hook.
    write(&fx.a, ".git/hooks/pre-commit", "#!/bin/sh\nsleep 20\n");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(fx.a.join(".git/hooks/pre-commit"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
    let mut repo = fx.repo(false).await;
    repo.local_timeout = Duration::from_millis(500);
    let e = repo.commit_and_push(&[file(APP, "kind: Application\n")], "Stage 1", TRAILERS, &NoJournal).await;
    match e {
        Err(GitError::Timeout { cmd, .. }) => assert!(cmd.starts_with("commit"), "{cmd}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(fx.origin_head(), fx.a_head(), "nothing committed or pushed");
    std::fs::remove_file(fx.a.join(".git/hooks/pre-commit")).expect("rm hook");

    let mut repo = fx.repo(true).await;
    repo.max_stdout = 8;
    let e = repo.preview(&[file(VALUES, "x")]).await.expect_err("stdout over the bound");
    assert!(e.to_string().contains("more than 8 bytes"), "{e}");
}

#[tokio::test]
async fn a_revert_made_by_hand_counts_as_the_rollback() {
    let fx = Fx::new();
    let repo = fx.repo(false).await;
    let pushed = repo
        .commit_and_push(&[file(APP, "kind: Application\n")], "Stage 1", TRAILERS, &NoJournal)
        .await
        .expect("pushed");
    // The operator rolls back by hand in another clone, with git's own revert message.
    let b = fx.clone_to("b");
    sh(&b, &["revert", "--no-edit", &pushed.commit]);
    sh(&b, &["push", "-q", "origin", "HEAD:refs/heads/main"]);
    let by_hand = sh(&b, &["rev-parse", "HEAD"]);
    let own = repo.find_own_commit("stage1-commit").await.expect("find").expect("found");
    assert_eq!(own.reverted_by.as_deref(), Some(by_hand.as_str()));
    let rec = Rec::new(&fx);
    let r = repo.revert_and_push(&pushed.commit, "Roll back Stage 1", TRAILERS, &rec).await.expect("nothing to do");
    assert!(r.unchanged && r.commit == by_hand, "{r:?}");
    assert!(rec.actions().is_empty(), "{:?}", rec.actions());
    assert_eq!(fx.origin_head(), by_hand);
}

#[test]
fn long_file_lists_stay_one_short_line() {
    let files: Vec<String> = (0..12).map(|i| format!("f{i}.txt")).collect();
    let e = GitError::Dirty { files };
    let text = e.to_string();
    assert!(text.contains("f9.txt and 2 more;"), "{text}");
    assert!(!text.contains("f10.txt"), "{text}");
}
