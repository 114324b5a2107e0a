//! The simulated Git source: a real local repository that the sim's Argo CD reads through the
//! `git` CLI (`rev-parse`, `ls-tree`, `cat-file --batch`), never over the network. By default a
//! bare origin (`k8s-homelab.git` in the sim's temp dir) seeded with the homelab's layout: the
//! cockpit and the tests clone it, commit and push, as an operator does with GitHub. A scenario's
//! `git.path` is read as it is (bare or not).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Files larger than this are not read (a real Argo would, but the sim only needs manifests).
const MAX_FILE: u64 = 1024 * 1024;

/// The tree of one commit: YAML/JSON files by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitSnapshot {
    pub rev: String,
    pub files: BTreeMap<String, String>,
}

/// Where the repo is and what the Argo controller last read.
#[derive(Debug, Default)]
pub struct GitState {
    pub path: Option<PathBuf>,
    pub branch: String,
    pub head: Option<GitSnapshot>,
    /// Last error reading the repo (shown as a ComparisonError on apps that need it).
    pub error: Option<String>,
}

fn base_cmd(dir: &Path) -> std::process::Command {
    let mut c = std::process::Command::new("git");
    c.arg("-C").arg(dir);
    // Neither the user's global config (hooks, signing) nor a pager may change what the sim does.
    c.env("GIT_CONFIG_NOSYSTEM", "1").env("GIT_CONFIG_GLOBAL", "/dev/null").env("GIT_TERMINAL_PROMPT", "0");
    c.env("GIT_PAGER", "cat").env("LC_ALL", "C");
    c
}

/// Runs git synchronously; stdout on success, stderr in the error.
pub fn git(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let mut c = base_cmd(dir);
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    c.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = c.spawn().map_err(|e| format!("cannot run git: {e}"))?;
    if let (Some(input), Some(mut s)) = (stdin, child.stdin.take()) {
        s.write_all(input).map_err(|e| format!("git {}: {e}", args.join(" ")))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("git {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!("git {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Async flavour for the poller (does not block a runtime worker).
pub async fn git_async(dir: &Path, args: &[&str], stdin: Option<Vec<u8>>) -> Result<Vec<u8>, String> {
    use tokio::io::AsyncWriteExt;
    let mut c = tokio::process::Command::new("git");
    c.arg("-C").arg(dir);
    c.env("GIT_CONFIG_NOSYSTEM", "1").env("GIT_CONFIG_GLOBAL", "/dev/null").env("GIT_TERMINAL_PROMPT", "0");
    c.env("GIT_PAGER", "cat").env("LC_ALL", "C").kill_on_drop(true);
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    c.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = c.spawn().map_err(|e| format!("cannot run git: {e}"))?;
    if let (Some(input), Some(mut s)) = (stdin, child.stdin.take()) {
        s.write_all(&input).await.map_err(|e| format!("git {}: {e}", args.join(" ")))?;
        drop(s);
    }
    let out = child.wait_with_output().await.map_err(|e| format!("git {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!("git {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Creates a repository with `files` committed on `main` (fixed author/date: same content → same
/// commit id, so a scenario replays with the same revisions).
pub fn init_repo(dir: &Path, files: &[(String, String)]) -> Result<String, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    git(dir, &["init", "-q", "-b", "main"], None)?;
    for (path, content) in files {
        let p = dir.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&p, content).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    commit_all(dir, "Homelab platform layout")
}

/// Creates an empty bare repository whose `HEAD` is `main`.
pub fn init_bare(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    git(dir, &["init", "-q", "--bare", "-b", "main"], None)?;
    Ok(())
}

/// Pushes the work tree's `HEAD` to `main` of `origin` (a path).
pub fn publish(work: &Path, origin: &Path) -> Result<(), String> {
    let origin = origin.to_str().ok_or_else(|| format!("{}: not UTF-8", origin.display()))?;
    git(work, &["push", "-q", origin, "HEAD:refs/heads/main"], None)?;
    Ok(())
}

/// Clones `origin` into `dest` (created 0700 when missing, must be empty) on `main`, with a local
/// identity and `commit.gpgsign=false` so that commits work without a global git identity.
pub fn clone_origin(origin: &Path, dest: &Path) -> Result<(), String> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    let dest = &dest.canonicalize().map_err(|e| format!("{}: {e}", dest.display()))?;
    let (Some(o), Some(d)) = (origin.to_str(), dest.to_str()) else {
        return Err(format!("{} or {}: not UTF-8", origin.display(), dest.display()));
    };
    git(dest, &["clone", "-q", "--branch", "main", o, d], None)?;
    for (k, v) in [("user.name", "cutover demo"), ("user.email", "demo@cutover.invalid"), ("commit.gpgsign", "false")] {
        git(dest, &["config", "--local", k, v], None)?;
    }
    Ok(())
}

/// Commits `files` (`None` removes the path) to `main` of `origin` through a temporary clone and
/// pushes (fixed identity and date, as the seed). Returns the new commit.
pub fn push_files(origin: &Path, files: &[(String, Option<String>)], message: &str) -> Result<String, String> {
    let tmp = crate::tempdir::TempDir::new().map_err(|e| format!("cannot create a temp clone: {e}"))?;
    let work = tmp.path.join("clone");
    clone_origin(origin, &work)?;
    for (path, content) in files {
        let p = work.join(path);
        match content {
            Some(content) => {
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
                }
                std::fs::write(&p, content).map_err(|e| format!("{}: {e}", p.display()))?;
            }
            None => {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
    let rev = commit_all(&work, message)?;
    publish(&work, origin)?;
    Ok(rev)
}

/// Commits everything in the work tree (used by the seed and by [`push_files`]).
pub fn commit_all(dir: &Path, message: &str) -> Result<String, String> {
    git(dir, &["add", "-A"], None)?;
    let mut c = base_cmd(dir);
    c.args([
        "-c",
        "user.name=cutover-sim",
        "-c",
        "user.email=sim@cutover.invalid",
        "-c",
        "commit.gpgsign=false",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        message,
    ]);
    c.env("GIT_AUTHOR_DATE", "2025-07-01T12:00:00Z").env("GIT_COMMITTER_DATE", "2025-07-01T12:00:00Z");
    let out = c.output().map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(format!("git commit: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let head = git(dir, &["rev-parse", "HEAD"], None)?;
    Ok(String::from_utf8_lossy(&head).trim().to_string())
}

fn wanted(path: &str, size: u64) -> bool {
    size <= MAX_FILE && [".yaml", ".yml", ".json"].iter().any(|e| path.ends_with(e))
}

/// Parses `git ls-tree -r -l -z` output into (oid, path) of wanted blobs.
fn parse_ls_tree(out: &[u8]) -> Vec<(String, String)> {
    out.split(|b| *b == 0)
        .filter_map(|rec| {
            let rec = std::str::from_utf8(rec).ok()?;
            let (meta, path) = rec.split_once('\t')?;
            let mut f = meta.split_whitespace();
            let (_mode, kind, oid, size) = (f.next()?, f.next()?, f.next()?, f.next()?);
            let size: u64 = size.parse().ok()?;
            (kind == "blob" && wanted(path, size)).then(|| (oid.to_string(), path.to_string()))
        })
        .collect()
}

/// Parses `git cat-file --batch` output for the given entries.
fn parse_batch(out: &[u8], entries: &[(String, String)]) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    let mut pos = 0;
    for (_, path) in entries {
        let Some(nl) = out[pos..].iter().position(|b| *b == b'\n') else { break };
        let header = String::from_utf8_lossy(&out[pos..pos + nl]).to_string();
        pos += nl + 1;
        let size: usize = header.split_whitespace().nth(2).and_then(|s| s.parse().ok()).unwrap_or(0);
        if header.ends_with("missing") || pos + size > out.len() {
            continue;
        }
        files.insert(path.clone(), String::from_utf8_lossy(&out[pos..pos + size]).into_owned());
        pos += size + 1;
    }
    files
}

/// Reads a commit's tree synchronously.
pub fn snapshot(dir: &Path, rev: &str) -> Result<GitSnapshot, String> {
    let ls = git(dir, &["ls-tree", "-r", "-l", "-z", rev], None)?;
    let entries = parse_ls_tree(&ls);
    let input: String = entries.iter().map(|(oid, _)| format!("{oid}\n")).collect();
    let out = if entries.is_empty() { Vec::new() } else { git(dir, &["cat-file", "--batch"], Some(input.as_bytes()))? };
    Ok(GitSnapshot { rev: rev.to_string(), files: parse_batch(&out, &entries) })
}

pub async fn snapshot_async(dir: &Path, rev: &str) -> Result<GitSnapshot, String> {
    let ls = git_async(dir, &["ls-tree", "-r", "-l", "-z", rev], None).await?;
    let entries = parse_ls_tree(&ls);
    let input: String = entries.iter().map(|(oid, _)| format!("{oid}\n")).collect();
    let out = if entries.is_empty() {
        Vec::new()
    } else {
        git_async(dir, &["cat-file", "--batch"], Some(input.into_bytes())).await?
    };
    Ok(GitSnapshot { rev: rev.to_string(), files: parse_batch(&out, &entries) })
}

/// Commit id of `refs/heads/<branch>`.
pub fn head(dir: &Path, branch: &str) -> Result<String, String> {
    let out = git(dir, &["rev-parse", "--verify", "-q", &format!("refs/heads/{branch}")], None)?;
    Ok(String::from_utf8_lossy(&out).trim().to_string())
}

pub async fn head_async(dir: &Path, branch: &str) -> Result<String, String> {
    let out = git_async(dir, &["rev-parse", "--verify", "-q", &format!("refs/heads/{branch}")], None).await?;
    Ok(String::from_utf8_lossy(&out).trim().to_string())
}

/// Argo CD's directory `include`/`exclude` glob: the same linear matcher the pre-flight uses.
pub use crate::checks::evaluate::glob_match;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*-app.yaml", "cilium-app.yaml"));
        assert!(!glob_match("*-app.yaml", "README.md"));
        assert!(!glob_match("*-app.yaml", "cilium-app.yml"));
        assert!(glob_match("*-app.{yaml,yml}", "cilium-app.yml"));
        assert!(glob_match("?-x", "a-x"));
    }

    #[test]
    fn repo_roundtrip() {
        let dir = std::env::temp_dir().join(format!("cutover-git-test-{}-{}", std::process::id(), fastrand::u64(..)));
        let files = vec![("a/b.yaml".to_string(), "x: 1\n".to_string()), ("README.md".to_string(), "hi".to_string())];
        let rev = init_repo(&dir, &files).unwrap();
        assert_eq!(head(&dir, "main").unwrap(), rev);
        let snap = snapshot(&dir, &rev).unwrap();
        assert_eq!(snap.files.get("a/b.yaml").map(String::as_str), Some("x: 1\n"));
        assert!(!snap.files.contains_key("README.md"));
        std::fs::write(dir.join("a/c.yaml"), "y: 2\n").unwrap();
        let rev2 = commit_all(&dir, "add c").unwrap();
        assert_ne!(rev, rev2);
        assert_eq!(snapshot(&dir, &rev2).unwrap().files.len(), 2);
        // Same content and fixed dates: same commit id in another repo.
        let dir2 = dir.with_extension("again");
        assert_eq!(init_repo(&dir2, &files).unwrap(), rev);
        // A bare origin: read as the work tree was, cloned and pushed to.
        let tmp = crate::tempdir::TempDir::new().unwrap();
        let origin = tmp.path.join("origin.git");
        init_bare(&origin).unwrap();
        publish(&dir, &origin).unwrap();
        assert_eq!(head(&origin, "main").unwrap(), rev2);
        assert_eq!(snapshot(&origin, &rev2).unwrap(), snapshot(&dir, &rev2).unwrap());
        let rev3 =
            push_files(&origin, &[("a/d.yaml".into(), Some("z: 3\n".into())), ("a/b.yaml".into(), None)], "d").unwrap();
        assert_eq!(head(&origin, "main").unwrap(), rev3);
        let files = snapshot(&origin, &rev3).unwrap().files;
        assert_eq!(files.keys().collect::<Vec<_>>(), ["a/c.yaml", "a/d.yaml"]);
        let clone = tmp.path.join("clone");
        clone_origin(&origin, &clone).unwrap();
        assert_eq!(head(&clone, "main").unwrap(), rev3);
        assert_eq!(git(&clone, &["config", "--local", "user.email"], None).unwrap(), b"demo@cutover.invalid\n");
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&dir2);
    }
}
