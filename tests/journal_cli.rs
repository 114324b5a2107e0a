//! `cutover journal --verify` against tampered files: a changed byte and a removed line are
//! reported at their line, never trusted. Needs no simulated cluster.

use std::process::Command;

use cutover::runbook::journal::{Journal, Outcome, Record};
use cutover::tempdir::TempDir;

fn sample(dir: &TempDir) -> Journal {
    let j = Journal::at(dir.path.join("homelab.jsonl"));
    let op = "1800000000-0000abcd".to_string();
    j.append(&Record::Intent {
        op: op.clone(),
        title: "cordon homelab-w1".into(),
        preview: vec!["PATCH node homelab-w1: spec.unschedulable=true".into()],
        confirmed_by: "op@bastion pid 1, pressed y to confirm".into(),
        mode: "armed".into(),
        step: None,
    })
    .expect("intent");
    j.append(&Record::Request { op: op.clone(), verb: "patch".into(), path: "/api/v1/nodes/homelab-w1".into() })
        .expect("request");
    j.append(&Record::Response { op: op.clone(), request: 2, code: 200 }).expect("response");
    j.append(&Record::Result { op, outcome: Outcome::Ok, message: "node homelab-w1 cordoned".into() }).expect("result");
    j
}

fn journal_cmd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["--log-file", "/dev/null", "journal"])
        .args(args)
        .output()
        .expect("run cutover journal");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_intact_journal_verifies_and_prints_one_line_per_entry() {
    let dir = TempDir::new().expect("tmp");
    let j = sample(&dir);
    let path = j.path().display().to_string();
    let (code, out, err) = journal_cmd(&["--file", &path, "--verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("4 entries, chain verifies"), "{out}");
    let (code, out, _) = journal_cmd(&["--file", &path]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(out.contains("result   ok: node homelab-w1 cordoned"), "{out}");
    let (code, out, _) = journal_cmd(&["--file", &path, "-o", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v.as_array().map(Vec::len), Some(4));
}

#[test]
fn one_changed_byte_fails_verify_at_the_next_line() {
    let dir = TempDir::new().expect("tmp");
    let j = sample(&dir);
    let text = std::fs::read_to_string(j.path()).expect("read");
    std::fs::write(j.path(), text.replacen("homelab-w1\"}", "homelab-w2\"}", 1)).expect("write");
    let (code, _, err) = journal_cmd(&["--file", &j.path().display().to_string(), "--verify"]);
    assert_eq!(code, 1, "{err}");
    // Line 2 (the changed request) still parses; line 3's `prev` no longer matches it.
    assert!(err.contains("line 3:"), "{err}");
}

#[test]
fn a_removed_line_fails_verify_at_its_place_and_nothing_after_is_shown() {
    let dir = TempDir::new().expect("tmp");
    let j = sample(&dir);
    let text = std::fs::read_to_string(j.path()).expect("read");
    let kept: Vec<&str> = text.lines().enumerate().filter(|(i, _)| *i != 1).map(|(_, l)| l).collect();
    std::fs::write(j.path(), format!("{}\n", kept.join("\n"))).expect("write");
    let path = j.path().display().to_string();
    let (code, _, err) = journal_cmd(&["--file", &path, "--verify"]);
    assert_eq!(code, 1);
    assert!(err.contains("line 2:") && err.contains("seq 3 where 2 was expected"), "{err}");
    let (code, out, err) = journal_cmd(&["--file", &path]);
    assert_eq!(code, 1);
    assert_eq!(out.lines().count(), 1, "only the line before the break is shown:\n{out}");
    assert!(err.contains("does not verify"), "{err}");
}
