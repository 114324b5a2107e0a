//! Headless errors as an operator (or a script capturing stderr) reads them: the first line says
//! what failed, and a stderr that is a file gets no colour codes. Needs no simulated cluster.

use std::process::{Command, Stdio};

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn a_settings_error_names_itself_on_the_first_line_without_colour_codes() {
    let dir = cutover::tempdir::TempDir::new().expect("tmp");
    let err_path = dir.path.join("stderr.txt");
    let err_file = std::fs::File::create(&err_path).expect("stderr file");
    let status = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["--settings", &fixture("settings-unknown-key.toml"), "--log-file", "/dev/null", "preflight"])
        .env_remove("NO_COLOR")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err_file)
        .status()
        .expect("run cutover");
    assert!(!status.success());
    let text = std::fs::read_to_string(&err_path).expect("read stderr");
    let first = text.lines().next().unwrap_or_default();
    assert!(first.starts_with("cutover: ") && first.len() > "cutover: ".len() + 5, "first line: {first:?}\n{text}");
    assert!(!text.contains('\u{1b}'), "colour codes in a file: {text:?}");
    assert!(text.contains("settings-unknown-key.toml"), "names the file: {text}");
}
