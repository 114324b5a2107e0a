//! Where cutover keeps its files, following the XDG base directories as operators expect on a
//! Linux bastion: settings under `$XDG_CONFIG_HOME/cutover/`, the log and the journal under
//! `$XDG_STATE_HOME/cutover/`.

use std::path::PathBuf;

/// `$XDG_STATE_HOME/cutover` (default `~/.local/state/cutover`); `None` without a home.
pub fn state_dir() -> Option<PathBuf> {
    xdg("XDG_STATE_HOME", ".local/state")
}

/// `$XDG_CONFIG_HOME/cutover` (default `~/.config/cutover`); `None` without a home.
pub fn config_dir() -> Option<PathBuf> {
    xdg("XDG_CONFIG_HOME", ".config")
}

fn xdg(var: &str, under_home: &str) -> Option<PathBuf> {
    // The XDG spec: a relative path in the variable is invalid and must be ignored.
    let base = std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(under_home)))?;
    Some(base.join("cutover"))
}

/// Creates `dir` (and its parents) with mode 0700 for the last component.
pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut b = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    match b.create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}
