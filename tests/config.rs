//! `cutover config path`: which settings file a command would use, from any directory. Needs no
//! simulated cluster; the environment is set per child process, never in this one.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use cutover::tempdir::TempDir;

/// `cutover config path` in `cwd` with `$XDG_CONFIG_HOME=xdg` and `$CUTOVER_CONFIG` as given.
fn config_path(cwd: &Path, xdg: &Path, cutover_config: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cutover"));
    cmd.args(["--log-file", "/dev/null", "config", "path"])
        .current_dir(cwd)
        .env("XDG_CONFIG_HOME", xdg)
        .env_remove("CUTOVER_CONFIG")
        .stdin(Stdio::null());
    if let Some(p) = cutover_config {
        cmd.env("CUTOVER_CONFIG", p);
    }
    cmd.output().expect("run cutover")
}

#[test]
fn config_path_prints_the_xdg_file_from_another_directory() {
    let xdg = TempDir::new().expect("tmp");
    let elsewhere = TempDir::new().expect("tmp");
    let file = xdg.path.join("cutover/cutover.toml");
    std::fs::create_dir_all(xdg.path.join("cutover")).expect("mkdir");
    std::fs::write(&file, "[contexts.\"prod\"]\nread_only = true\n").expect("write");

    let out = config_path(&elsewhere.path, &xdg.path, None);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{}\n", file.display()));

    // $CUTOVER_CONFIG comes first.
    let named = elsewhere.path.join("named.toml");
    std::fs::write(&named, "").expect("write");
    let out = config_path(&elsewhere.path, &xdg.path, Some(&named));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{}\n", named.display()));
}

#[test]
fn config_path_without_a_file_says_built_in_and_where_it_looked() {
    let xdg = TempDir::new().expect("tmp");
    let elsewhere = TempDir::new().expect("tmp");
    let out = config_path(&elsewhere.path, &xdg.path, None);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("built-in defaults (no cutover.toml found)\n"), "{text}");
    let user = xdg.path.join("cutover/cutover.toml").display().to_string();
    let here = elsewhere.path.join("cutover.toml").display().to_string();
    let (u, h) = (text.find(&user), text.find(&here));
    assert!(u.is_some() && h.is_some() && u < h, "XDG file before the working directory:\n{text}");
}

#[test]
fn config_path_refuses_a_missing_named_file() {
    let xdg = TempDir::new().expect("tmp");
    let elsewhere = TempDir::new().expect("tmp");
    let missing = elsewhere.path.join("missing.toml");
    let out = config_path(&elsewhere.path, &xdg.path, Some(&missing));
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing.toml") && err.contains("$CUTOVER_CONFIG"), "{err}");
}
