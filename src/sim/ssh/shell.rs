//! What a simulated node runs for an SSH exec request: one command line, parsed like a small
//! shell (words, quotes, `>/dev/null`; no pipes, lists, substitutions or globs), then `sudo` as
//! real sudo behaves and the few commands the runbook's templates and an operator use on a k3s
//! node. Files under `/etc/rancher/k3s/` are the world's (config.yaml and its drop-ins, through
//! the node ops); a few scratch paths elsewhere live only in the SSH server.

use std::time::Duration;

use crate::sim::world::NodeOp;

/// The k3s configuration directory and its drop-in directory on a node.
const K3S_DIR: &str = "/etc/rancher/k3s";
const CONFIG_FILE: &str = "/etc/rancher/k3s/config.yaml";
const DROPIN_DIR: &str = "/etc/rancher/k3s/config.yaml.d";
/// The login user's home directory (relative paths start here).
const HOME: &str = "/home/cutover";
/// stdin a command may take (a drop-in is a few hundred bytes).
pub const STDIN_MAX: usize = 1024 * 1024;

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub argv: Vec<String>,
    /// `>/dev/null`: stdout is discarded.
    pub stdout_null: bool,
}

/// Why a command line is not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Shell syntax the simulated node does not run (what it was).
    Unsupported(String),
    /// An unterminated quote.
    Unterminated(char),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Unsupported(what) => write!(
                f,
                "bash: {what}: not supported by the simulated node (one command per line; no pipes, lists, substitutions, globs or redirections other than >/dev/null)"
            ),
            ParseError::Unterminated(q) => write!(f, "bash: unexpected EOF while looking for matching `{q}'"),
        }
    }
}

/// Splits a command line into words (POSIX quoting: '…' literal, "…" with \-escapes, \ outside
/// quotes). Only `>/dev/null` (or `> /dev/null`) is accepted as a redirection.
pub fn parse(line: &str) -> Result<Invocation, ParseError> {
    let mut words: Vec<String> = Vec::new();
    let mut stdout_null = false;
    let mut cur = String::new();
    let mut in_word = false;
    let mut redirect_pending = false;
    let mut chars = line.chars().peekable();
    let finish =
        |cur: &mut String, in_word: &mut bool, words: &mut Vec<String>, redirect: &mut bool, null: &mut bool| {
            if !*in_word {
                return Ok(());
            }
            let w = std::mem::take(cur);
            *in_word = false;
            if *redirect {
                if w != "/dev/null" {
                    return Err(ParseError::Unsupported(format!("> {w}")));
                }
                *redirect = false;
                *null = true;
            } else {
                words.push(w);
            }
            Ok(())
        };
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => finish(&mut cur, &mut in_word, &mut words, &mut redirect_pending, &mut stdout_null)?,
            '\n' | ';' => return Err(ParseError::Unsupported(if c == ';' { ";".into() } else { "newline".into() })),
            '|' => return Err(ParseError::Unsupported(if chars.peek() == Some(&'|') { "||" } else { "|" }.into())),
            '&' => return Err(ParseError::Unsupported(if chars.peek() == Some(&'&') { "&&" } else { "&" }.into())),
            '`' => return Err(ParseError::Unsupported("`".into())),
            '$' => {
                return Err(ParseError::Unsupported(format!(
                    "${}",
                    chars.peek().map(|c| c.to_string()).unwrap_or_default()
                )));
            }
            '<' | '(' | ')' | '{' | '}' => return Err(ParseError::Unsupported(c.to_string())),
            '*' | '?' | '[' => return Err(ParseError::Unsupported(format!("glob {c}"))),
            '#' if !in_word => break,
            '>' => {
                if chars.peek() == Some(&'>') {
                    return Err(ParseError::Unsupported(">>".into()));
                }
                // `2>` and `1>`: the digit was read as a word of its own.
                if in_word {
                    if cur == "1" {
                        cur.clear();
                        in_word = false;
                    } else {
                        return Err(ParseError::Unsupported(format!("{cur}>")));
                    }
                }
                if redirect_pending {
                    return Err(ParseError::Unsupported(">".into()));
                }
                redirect_pending = true;
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some('\n') | None => {}
                    Some(n) => cur.push(n),
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(n) => cur.push(n),
                        None => return Err(ParseError::Unterminated('\'')),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(n @ ('"' | '\\' | '$' | '`')) => cur.push(n),
                            Some('\n') => {}
                            Some(n) => {
                                cur.push('\\');
                                cur.push(n);
                            }
                            None => return Err(ParseError::Unterminated('"')),
                        },
                        Some('$') => return Err(ParseError::Unsupported("$".into())),
                        Some('`') => return Err(ParseError::Unsupported("`".into())),
                        Some(n) => cur.push(n),
                        None => return Err(ParseError::Unterminated('"')),
                    }
                }
            }
            other => {
                in_word = true;
                cur.push(other);
            }
        }
    }
    finish(&mut cur, &mut in_word, &mut words, &mut redirect_pending, &mut stdout_null)?;
    if redirect_pending {
        return Err(ParseError::Unsupported("syntax error near unexpected token `newline'".into()));
    }
    Ok(Invocation { argv: words, stdout_null })
}

/// What the command needs from the node it runs on.
pub trait Machine {
    fn node(&self) -> &str;
    /// `k3s` on servers, `k3s-agent` on agents.
    fn unit(&self) -> &'static str;
    /// The node's sudo wants a password (no NOPASSWD rule for the user).
    fn sudo_needs_password(&self) -> bool;
    /// An injected failure for this command line (words after sudo, joined by spaces).
    fn injected_failure(&self, command: &str) -> bool;
    /// A node operation on the world.
    fn op(&self, op: NodeOp) -> Result<String, String>;
    /// Scratch files outside the k3s directory.
    fn scratch_read(&self, path: &str) -> Option<Vec<u8>>;
    fn scratch_write(&self, path: &str, bytes: Vec<u8>, append: bool);
    fn scratch_remove(&self, path: &str) -> bool;
}

/// The result of one command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub code: u32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// `sleep N`: the exit status comes after this long.
    pub sleep: Option<Duration>,
    /// The node goes down after answering (`reboot`).
    pub reboot: bool,
}

impl Outcome {
    fn ok(stdout: impl Into<Vec<u8>>) -> Outcome {
        Outcome { stdout: stdout.into(), ..Default::default() }
    }
    fn err(code: u32, stderr: impl Into<String>) -> Outcome {
        let mut e: String = stderr.into();
        if !e.ends_with('\n') {
            e.push('\n');
        }
        Outcome { code, stderr: e.into_bytes(), ..Default::default() }
    }
}

/// Whether the command line reads its stdin to the end (the server waits for the client's EOF
/// before running it): `tee`, and `cat` without a file.
pub fn reads_stdin(line: &str) -> bool {
    let Ok(inv) = parse(line) else { return false };
    let argv = strip_sudo(&inv.argv);
    match argv.first().map(String::as_str) {
        Some("tee") => true,
        Some("cat") => argv.len() == 1,
        _ => false,
    }
}

/// The words after `sudo` and its options (the command itself for a plain command).
fn strip_sudo(argv: &[String]) -> &[String] {
    let mut rest = argv;
    while rest.first().is_some_and(|w| w == "sudo") {
        let mut i = 1;
        while let Some(w) = rest.get(i) {
            match w.as_str() {
                "-n" | "--non-interactive" => i += 1,
                "-u" => i += 2,
                "--" => {
                    i += 1;
                    break;
                }
                _ => break,
            }
        }
        rest = rest.get(i..).unwrap_or(&[]);
    }
    rest
}

/// Runs one command line as the login user (`cutover`, not root).
pub fn run(m: &dyn Machine, line: &str, stdin: &[u8]) -> Outcome {
    let inv = match parse(line) {
        Ok(i) => i,
        Err(e @ ParseError::Unterminated(_)) => return Outcome::err(2, e.to_string()),
        Err(e) => return Outcome::err(2, e.to_string()),
    };
    if inv.argv.is_empty() {
        return Outcome::default();
    }
    let mut out = exec(m, &inv.argv, stdin, false);
    if inv.stdout_null {
        out.stdout.clear();
    }
    out
}

fn exec(m: &dyn Machine, argv: &[String], stdin: &[u8], root: bool) -> Outcome {
    let Some(prog) = argv.first().map(String::as_str) else { return Outcome::default() };
    let args = &argv[1..];
    if prog == "sudo" {
        return sudo(m, args, stdin, root);
    }
    if m.injected_failure(&argv.join(" ")) {
        return injected(m, argv);
    }
    match prog {
        "true" => Outcome::default(),
        "false" => Outcome { code: 1, ..Default::default() },
        "hostname" => Outcome::ok(format!("{}\n", m.node())),
        "id" => Outcome::ok(if root {
            "uid=0(root) gid=0(root) groups=0(root)\n".to_string()
        } else {
            "uid=1001(cutover) gid=1001(cutover) groups=1001(cutover)\n".to_string()
        }),
        "echo" => Outcome::ok(format!("{}\n", args.join(" "))),
        "sleep" => match args.first().and_then(|a| a.trim_end_matches('s').parse::<f64>().ok()) {
            Some(s) if (0.0..=86_400.0).contains(&s) && args.len() == 1 => {
                Outcome { sleep: Some(Duration::from_secs_f64(s)), ..Default::default() }
            }
            _ => Outcome::err(1, format!("sleep: invalid time interval '{}'", args.join(" "))),
        },
        "cat" => cat(m, args, stdin),
        "tee" => tee(m, args, stdin, root),
        "rm" => rm(m, args, root),
        "test" => test(m, args),
        "systemctl" => systemctl(m, args, root),
        "reboot" => reboot(m, root, "reboot"),
        "journalctl" => journalctl(m, args, root),
        other => Outcome::err(127, format!("bash: {other}: command not found")),
    }
}

fn sudo(m: &dyn Machine, args: &[String], stdin: &[u8], root: bool) -> Outcome {
    let mut non_interactive = false;
    let mut i = 0;
    while let Some(w) = args.get(i) {
        match w.as_str() {
            "-n" | "--non-interactive" => {
                non_interactive = true;
                i += 1;
            }
            "-u" => {
                match args.get(i + 1).map(String::as_str) {
                    Some("root" | "0" | "#0") => {}
                    Some(u) => return Outcome::err(1, format!("sudo: unknown user {u}")),
                    None => return Outcome::err(1, "sudo: option requires an argument -- 'u'"),
                }
                i += 2;
            }
            "--" => {
                i += 1;
                break;
            }
            opt if opt.starts_with('-') => {
                let c = opt.trim_start_matches('-').chars().next().unwrap_or('-');
                return Outcome::err(1, format!("sudo: invalid option -- '{c}'"));
            }
            _ => break,
        }
    }
    let cmd = &args[i.min(args.len())..];
    if cmd.is_empty() {
        return Outcome::err(1, "usage: sudo -h | -K | -k | -V\nusage: sudo [-AbEHknPS] [-u user] [command [arg ...]]");
    }
    if !root && m.sudo_needs_password() {
        if non_interactive {
            return Outcome::err(1, "sudo: a password is required");
        }
        // BatchMode, no tty: sudo cannot prompt.
        return Outcome::err(
            1,
            "sudo: a terminal is required to read the password; either use the -S option to read from standard input or configure an askpass helper\nsudo: a password is required",
        );
    }
    exec(m, cmd, stdin, true)
}

/// An injected failure: the command's own wording for a failure of that kind.
fn injected(m: &dyn Machine, argv: &[String]) -> Outcome {
    let prog = argv[0].as_str();
    match prog {
        "systemctl" => {
            let unit = argv.get(2).map(|u| u.trim_end_matches(".service")).unwrap_or(m.unit());
            Outcome::err(
                1,
                format!(
                    "Job for {unit}.service failed because the control process exited with error code.\nSee \"systemctl status {unit}.service\" and \"journalctl -xeu {unit}.service\" for details."
                ),
            )
        }
        "tee" => {
            let file = argv.iter().skip(1).find(|a| !a.starts_with('-')).cloned().unwrap_or_default();
            Outcome::err(1, format!("tee: {file}: No space left on device"))
        }
        _ => {
            let file = argv.iter().skip(1).find(|a| !a.starts_with('-')).cloned().unwrap_or_default();
            Outcome::err(1, format!("{prog}: {file}: Input/output error"))
        }
    }
}

/// An absolute, normalized path (`..` and `.` resolved; relative paths from the home directory).
fn normalize(path: &str) -> String {
    let full = if path.starts_with('/') { path.to_string() } else { format!("{HOME}/{path}") };
    let mut parts: Vec<&str> = Vec::new();
    for p in full.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Where a path lives on the simulated node.
enum Place {
    Config,
    Dropin(String),
    /// A directory the sim knows (k3s' config dirs, /etc, /tmp, the home directory).
    Dir,
    Hostname,
    Scratch,
}

fn place(path: &str) -> Place {
    if path == CONFIG_FILE {
        return Place::Config;
    }
    if let Some(name) = path.strip_prefix(DROPIN_DIR).and_then(|r| r.strip_prefix('/')) {
        return Place::Dropin(name.to_string());
    }
    if ["/", "/etc", "/etc/rancher", K3S_DIR, DROPIN_DIR, "/tmp", "/home", HOME].contains(&path) {
        return Place::Dir;
    }
    if path == "/etc/hostname" {
        return Place::Hostname;
    }
    Place::Scratch
}

/// The login user may write only in its home directory and /tmp.
fn user_writable(path: &str) -> bool {
    path.starts_with("/tmp/") || path.starts_with(&format!("{HOME}/"))
}

fn read_file(m: &dyn Machine, path: &str) -> Result<Vec<u8>, &'static str> {
    match place(path) {
        Place::Config => m.op(NodeOp::ReadK3sConfig).map(String::into_bytes).map_err(|_| "No such file or directory"),
        Place::Dropin(name) => {
            m.op(NodeOp::ReadDropin { name }).map(String::into_bytes).map_err(|_| "No such file or directory")
        }
        Place::Dir => Err("Is a directory"),
        Place::Hostname => Ok(format!("{}\n", m.node()).into_bytes()),
        Place::Scratch => m.scratch_read(path).ok_or("No such file or directory"),
    }
}

fn cat(m: &dyn Machine, args: &[String], stdin: &[u8]) -> Outcome {
    let files: Vec<&String> = args.iter().filter(|a| *a != "--").collect();
    if let Some(opt) = files.iter().find(|a| a.starts_with('-') && a.len() > 1) {
        return Outcome::err(1, format!("cat: invalid option -- '{}'", opt.trim_start_matches('-')));
    }
    if files.is_empty() {
        return Outcome::ok(stdin.to_vec());
    }
    let mut out = Outcome::default();
    for f in files {
        match read_file(m, &normalize(f)) {
            Ok(bytes) => out.stdout.extend(bytes),
            Err(why) => {
                out.code = 1;
                out.stderr.extend(format!("cat: {f}: {why}\n").into_bytes());
            }
        }
    }
    out
}

fn tee(m: &dyn Machine, args: &[String], stdin: &[u8], root: bool) -> Outcome {
    let mut append = false;
    let mut files = Vec::new();
    for a in args {
        match a.as_str() {
            "-a" | "--append" => append = true,
            "--" => {}
            opt if opt.starts_with('-') && opt.len() > 1 => {
                return Outcome::err(1, format!("tee: invalid option -- '{}'", opt.trim_start_matches('-')));
            }
            f => files.push(f.to_string()),
        }
    }
    let mut out = Outcome::ok(stdin.to_vec());
    let text = String::from_utf8_lossy(stdin).into_owned();
    for f in files {
        let path = normalize(&f);
        let result = match place(&path) {
            Place::Dir => Err("Is a directory".to_string()),
            _ if !root && !user_writable(&path) => Err("Permission denied".to_string()),
            Place::Config => {
                let content = if append {
                    format!("{}{text}", m.op(NodeOp::ReadK3sConfig).unwrap_or_default())
                } else {
                    text.clone()
                };
                m.op(NodeOp::WriteK3sConfig { config: content }).map(drop)
            }
            Place::Dropin(name) => {
                let content = if append {
                    format!("{}{text}", m.op(NodeOp::ReadDropin { name: name.clone() }).unwrap_or_default())
                } else {
                    text.clone()
                };
                m.op(NodeOp::WriteDropin { name, content })
                    .map(drop)
                    .map_err(|e| e.rsplit(": ").next().unwrap_or("Input/output error").to_string())
            }
            Place::Hostname => Err("Read-only file system".to_string()),
            Place::Scratch => {
                m.scratch_write(&path, stdin.to_vec(), append);
                Ok(())
            }
        };
        if let Err(why) = result {
            out.code = 1;
            out.stderr.extend(format!("tee: {f}: {why}\n").into_bytes());
        }
    }
    out
}

fn rm(m: &dyn Machine, args: &[String], root: bool) -> Outcome {
    let mut force = false;
    let mut files = Vec::new();
    for a in args {
        match a.as_str() {
            "-f" | "--force" => force = true,
            "--" => {}
            opt if opt.starts_with('-') && opt.len() > 1 => {
                return Outcome::err(1, format!("rm: invalid option -- '{}'", opt.trim_start_matches('-')));
            }
            f => files.push(f.to_string()),
        }
    }
    if files.is_empty() && !force {
        return Outcome::err(1, "rm: missing operand");
    }
    let mut out = Outcome::default();
    for f in files {
        let path = normalize(&f);
        let exists = read_file(m, &path).is_ok();
        let result: Result<(), &str> = match place(&path) {
            Place::Dir => Err("Is a directory"),
            _ if !exists => {
                if force {
                    Ok(())
                } else {
                    Err("No such file or directory")
                }
            }
            _ if !root && !user_writable(&path) => Err("Permission denied"),
            Place::Config => Err("Operation not permitted (the simulated node keeps its config.yaml)"),
            Place::Dropin(name) => {
                m.op(NodeOp::RemoveDropin { name }).map(drop).map_err(|_| "No such file or directory")
            }
            Place::Hostname => Err("Read-only file system"),
            Place::Scratch => {
                m.scratch_remove(&path);
                Ok(())
            }
        };
        if let Err(why) = result {
            out.code = 1;
            out.stderr.extend(format!("rm: cannot remove '{f}': {why}\n").into_bytes());
        }
    }
    out
}

fn test(m: &dyn Machine, args: &[String]) -> Outcome {
    let code = match args {
        [op, f] if op == "-f" || op == "-e" || op == "-s" || op == "-d" => {
            let path = normalize(f);
            let is_dir = matches!(place(&path), Place::Dir);
            let present = match op.as_str() {
                "-d" => is_dir,
                "-e" => is_dir || read_file(m, &path).is_ok(),
                "-s" => read_file(m, &path).is_ok_and(|b| !b.is_empty()),
                _ => !is_dir && read_file(m, &path).is_ok(),
            };
            u32::from(!present)
        }
        [s] => u32::from(s.is_empty()),
        [] => 1,
        _ => return Outcome::err(2, format!("test: unsupported expression: {}", args.join(" "))),
    };
    Outcome { code, ..Default::default() }
}

/// The unit named on the command line, checked against this node's k3s unit.
fn unit_arg(m: &dyn Machine, verb: &str, unit: Option<&String>) -> Result<&'static str, Outcome> {
    let Some(u) = unit else {
        return Err(Outcome::err(1, format!("Too few arguments.\nsystemctl {verb} needs a unit name.")));
    };
    let name = u.trim_end_matches(".service");
    if name == m.unit() {
        return Ok(m.unit());
    }
    Err(match verb {
        "status" => Outcome::err(4, format!("Unit {name}.service could not be found.")),
        "is-active" => Outcome { code: 4, stdout: b"inactive\n".to_vec(), ..Default::default() },
        _ => Outcome::err(5, format!("Failed to {verb} {name}.service: Unit {name}.service not found.")),
    })
}

fn systemctl(m: &dyn Machine, args: &[String], root: bool) -> Outcome {
    let args: Vec<&String> = args.iter().filter(|a| !matches!(a.as_str(), "--no-pager" | "-q" | "--quiet")).collect();
    let verb = args.first().map(|s| s.as_str()).unwrap_or("");
    let unit = args.get(1).copied();
    match verb {
        "restart" | "try-restart" => {
            let unit = match unit_arg(m, verb, unit) {
                Ok(u) => u,
                Err(o) => return o,
            };
            if !root {
                return Outcome::err(
                    1,
                    format!(
                        "Failed to restart {unit}.service: Interactive authentication required.\nSee system logs and 'systemctl status {unit}.service' for details."
                    ),
                );
            }
            match m.op(NodeOp::RestartK3s) {
                Ok(_) => Outcome::default(),
                Err(_) => Outcome::err(
                    1,
                    format!(
                        "Job for {unit}.service failed because the control process exited with error code.\nSee \"systemctl status {unit}.service\" and \"journalctl -xeu {unit}.service\" for details."
                    ),
                ),
            }
        }
        "status" => {
            if let Err(o) = unit_arg(m, verb, unit) {
                return o;
            }
            match m.op(NodeOp::Status) {
                Ok(text) => Outcome::ok(text),
                Err(text) => Outcome { code: 3, stdout: text.into_bytes(), ..Default::default() },
            }
        }
        "is-active" => {
            if let Err(o) = unit_arg(m, verb, unit) {
                return o;
            }
            match m.op(NodeOp::Status) {
                Ok(_) => Outcome::ok("active\n"),
                Err(text) if text.contains("auto-restart") => {
                    Outcome { code: 3, stdout: b"activating\n".to_vec(), ..Default::default() }
                }
                Err(_) => Outcome { code: 3, stdout: b"inactive\n".to_vec(), ..Default::default() },
            }
        }
        "reboot" => reboot(m, root, "systemctl reboot"),
        "start" | "stop" | "enable" | "disable" | "daemon-reload" => Outcome::err(
            1,
            format!(
                "systemctl {verb}: not simulated on this node (the sim's k3s units take restart, status, is-active)"
            ),
        ),
        "" => Outcome::err(1, "systemctl: a verb is required (the sim takes restart, status, is-active, reboot)"),
        other => Outcome::err(1, format!("Unknown command verb '{other}'.")),
    }
}

fn reboot(m: &dyn Machine, root: bool, how: &str) -> Outcome {
    if !root {
        return Outcome::err(1, "Call to Reboot failed: Interactive authentication required.");
    }
    match m.op(NodeOp::Reboot) {
        Ok(_) => Outcome { reboot: true, ..Default::default() },
        Err(e) => Outcome::err(1, format!("{how}: {e}")),
    }
}

fn journalctl(m: &dyn Machine, args: &[String], root: bool) -> Outcome {
    let mut unit: Option<String> = None;
    let mut lines: Option<usize> = None;
    let mut i = 0;
    let bad_lines = |v: &str| Outcome::err(1, format!("Failed to parse lines '{v}'."));
    while let Some(a) = args.get(i) {
        match a.as_str() {
            "--no-pager" | "-q" | "--quiet" | "--no-hostname" | "-x" | "-e" | "-xe" => {}
            "-u" | "--unit" => {
                unit = args.get(i + 1).cloned();
                i += 1;
            }
            "-n" | "--lines" => {
                let Some(v) = args.get(i + 1) else { return bad_lines("") };
                match v.parse() {
                    Ok(n) => lines = Some(n),
                    Err(_) => return bad_lines(v),
                }
                i += 1;
            }
            other => {
                if let Some(v) = other.strip_prefix("--lines=").or_else(|| other.strip_prefix("-n")) {
                    match v.parse() {
                        Ok(n) => lines = Some(n),
                        Err(_) => return bad_lines(v),
                    }
                } else if let Some(u) = other.strip_prefix("--unit=").or_else(|| other.strip_prefix("-u")) {
                    unit = Some(u.to_string());
                } else {
                    return Outcome::err(
                        1,
                        format!("journalctl: option '{other}' is not simulated (-u UNIT -n N --no-pager)"),
                    );
                }
            }
        }
        i += 1;
    }
    if !root {
        return Outcome {
            stdout: b"-- No entries --\n".to_vec(),
            stderr: b"Hint: You are currently not seeing messages from other users and the system.\n      Users in groups 'adm', 'systemd-journal' can see all messages.\n      Pass -q to turn off this notice.\n".to_vec(),
            ..Default::default()
        };
    }
    let lines = lines.unwrap_or(10_000).min(10_000);
    let ours = unit.as_deref().is_none_or(|u| u.trim_end_matches(".service") == m.unit());
    if !ours || lines == 0 {
        return Outcome::ok("-- No entries --\n");
    }
    match m.op(NodeOp::Journal { lines }) {
        Ok(text) if text.is_empty() => Outcome::ok("-- No entries --\n"),
        Ok(text) => Outcome::ok(text),
        Err(e) => Outcome::err(1, format!("journalctl: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use super::*;

    fn words(line: &str) -> Vec<String> {
        parse(line).expect("parses").argv
    }

    #[test]
    fn parses_words_quotes_and_dev_null() {
        assert_eq!(words("sudo -n cat /etc/x"), ["sudo", "-n", "cat", "/etc/x"]);
        assert_eq!(words("echo 'a b' \"c \\\"d\\\"\" e\\ f"), ["echo", "a b", "c \"d\"", "e f"]);
        let inv = parse("sudo -n tee /etc/rancher/k3s/config.yaml.d/90-cutover-stage1.yaml >/dev/null").expect("ok");
        assert!(inv.stdout_null);
        assert_eq!(inv.argv.len(), 4);
        assert!(parse("tee f > /dev/null").expect("ok").stdout_null);
        assert!(parse("tee f 1>/dev/null").expect("ok").stdout_null);
        assert_eq!(words("  "), Vec::<String>::new());
        assert_eq!(words("true # comment"), ["true"]);
    }

    #[test]
    fn refuses_other_shell_syntax() {
        for line in [
            "cat a | grep b",
            "true; reboot",
            "true && reboot",
            "true || x",
            "sleep 1 &",
            "echo `id`",
            "echo $(id)",
            "echo $HOME",
            "echo \"$HOME\"",
            "cat < f",
            "echo x > f",
            "echo x >> f",
            "ls 2>/dev/null",
            "cat /etc/*.yaml",
            "a\nb",
        ] {
            assert!(matches!(parse(line), Err(ParseError::Unsupported(_))), "{line:?}");
        }
        assert_eq!(parse("echo 'x"), Err(ParseError::Unterminated('\'')));
        assert_eq!(parse("echo \"x"), Err(ParseError::Unterminated('"')));
    }

    #[derive(Default)]
    struct Fake {
        needs_password: bool,
        fail: Option<String>,
        ops: RefCell<Vec<NodeOp>>,
        dropins: RefCell<BTreeMap<String, String>>,
        scratch: RefCell<BTreeMap<String, Vec<u8>>>,
    }

    impl Machine for Fake {
        fn node(&self) -> &str {
            "homelab-w1"
        }
        fn unit(&self) -> &'static str {
            "k3s-agent"
        }
        fn sudo_needs_password(&self) -> bool {
            self.needs_password
        }
        fn injected_failure(&self, command: &str) -> bool {
            self.fail.as_deref().is_some_and(|f| command.starts_with(f))
        }
        fn op(&self, op: NodeOp) -> Result<String, String> {
            self.ops.borrow_mut().push(op.clone());
            match op {
                NodeOp::WriteDropin { name, content } => {
                    self.dropins.borrow_mut().insert(name, content);
                    Ok(String::new())
                }
                NodeOp::ReadDropin { name } => self.dropins.borrow().get(&name).cloned().ok_or_else(|| "absent".into()),
                NodeOp::RemoveDropin { name } => {
                    self.dropins.borrow_mut().remove(&name).map(|_| String::new()).ok_or_else(|| "absent".into())
                }
                NodeOp::ReadK3sConfig => Ok("server: https://192.168.20.11:6443\n".into()),
                NodeOp::Journal { lines } => Ok(format!("{lines} lines\n")),
                _ => Ok(String::new()),
            }
        }
        fn scratch_read(&self, path: &str) -> Option<Vec<u8>> {
            self.scratch.borrow().get(path).cloned()
        }
        fn scratch_write(&self, path: &str, bytes: Vec<u8>, append: bool) {
            let mut s = self.scratch.borrow_mut();
            let e = s.entry(path.to_string()).or_default();
            if !append {
                e.clear();
            }
            e.extend(bytes);
        }
        fn scratch_remove(&self, path: &str) -> bool {
            self.scratch.borrow_mut().remove(path).is_some()
        }
    }

    const DROPIN: &str = "/etc/rancher/k3s/config.yaml.d/90-cutover-stage1.yaml";

    #[test]
    fn templates_round_trip_through_sudo() {
        let m = Fake::default();
        let w = run(&m, &format!("sudo -n tee {DROPIN} >/dev/null"), b"flannel-backend: none\n");
        assert_eq!((w.code, w.stdout.len()), (0, 0), "{w:?}");
        let r = run(&m, &format!("sudo -n cat {DROPIN}"), b"");
        assert_eq!(r.stdout, b"flannel-backend: none\n");
        assert_eq!(run(&m, &format!("test -f {DROPIN}"), b"").code, 0);
        assert_eq!(run(&m, &format!("sudo -n rm -f {DROPIN}"), b"").code, 0);
        assert_eq!(run(&m, &format!("test -f {DROPIN}"), b"").code, 1);
        assert_eq!(run(&m, &format!("sudo -n rm -f {DROPIN}"), b"").code, 0, "-f: absent is fine");
        let e = run(&m, &format!("sudo -n rm {DROPIN}"), b"");
        assert_eq!(e.code, 1);
        assert!(String::from_utf8_lossy(&e.stderr).contains("No such file or directory"));
        assert!(reads_stdin(&format!("sudo -n tee {DROPIN} >/dev/null")));
        assert!(!reads_stdin(&format!("sudo -n cat {DROPIN}")));
    }

    #[test]
    fn writes_under_etc_need_root() {
        let m = Fake::default();
        let w = run(&m, &format!("tee {DROPIN}"), b"x: 1\n");
        assert_eq!(w.code, 1);
        assert_eq!(String::from_utf8_lossy(&w.stderr), format!("tee: {DROPIN}: Permission denied\n"));
        let r = run(&m, "systemctl restart k3s-agent", b"");
        assert_eq!(r.code, 1);
        assert!(String::from_utf8_lossy(&r.stderr).contains("Interactive authentication required"));
        assert!(m.ops.borrow().iter().all(|o| !matches!(o, NodeOp::RestartK3s)));
        assert_eq!(run(&m, "tee /tmp/x", b"hi").code, 0);
        assert_eq!(run(&m, "cat /tmp/x", b"").stdout, b"hi");
    }

    #[test]
    fn sudo_password_and_unknown_commands() {
        let m = Fake { needs_password: true, ..Default::default() };
        let r = run(&m, "sudo -n systemctl restart k3s-agent", b"");
        assert_eq!(
            (r.code, String::from_utf8_lossy(&r.stderr).into_owned()),
            (1, "sudo: a password is required\n".into())
        );
        let r = run(&m, "sudo systemctl restart k3s-agent", b"");
        assert_eq!(r.code, 1);
        assert!(String::from_utf8_lossy(&r.stderr).ends_with("sudo: a password is required\n"));
        let r = run(&m, "kubectl get nodes", b"");
        assert_eq!(
            (r.code, String::from_utf8_lossy(&r.stderr).into_owned()),
            (127, "bash: kubectl: command not found\n".into())
        );
        let r = run(&m, "cat a | grep b", b"");
        assert_eq!(r.code, 2);
    }

    #[test]
    fn systemctl_journalctl_and_injected_failures() {
        let m = Fake { fail: Some("systemctl restart".into()), ..Default::default() };
        let r = run(&m, "sudo -n systemctl restart k3s-agent", b"");
        assert_eq!(r.code, 1);
        assert!(String::from_utf8_lossy(&r.stderr).starts_with("Job for k3s-agent.service failed"));
        assert_eq!(run(&m, "sudo -n systemctl restart k3s", b"").code, 1);
        let m = Fake::default();
        assert_eq!(run(&m, "sudo -n systemctl restart k3s", b"").code, 5, "no k3s unit on an agent");
        assert_eq!(run(&m, "sudo -n systemctl restart k3s-agent.service", b"").code, 0);
        let j = run(&m, "sudo -n journalctl -u k3s-agent -n 40 --no-pager", b"");
        assert_eq!(j.stdout, b"40 lines\n");
        let j = run(&m, "journalctl -u k3s-agent -n 40", b"");
        assert!(String::from_utf8_lossy(&j.stderr).starts_with("Hint: "));
        let r = run(&m, "sudo -n systemctl reboot", b"");
        assert!(r.reboot && r.code == 0);
        assert_eq!(run(&m, "hostname", b"").stdout, b"homelab-w1\n");
        assert_eq!(run(&m, "sleep 2", b"").sleep, Some(Duration::from_secs(2)));
    }
}
