//! Where cutover keeps its files, following the XDG base directories as operators expect on a
//! Linux bastion: settings under `$XDG_CONFIG_HOME/cutover/`, the log and the journal under
//! `$XDG_STATE_HOME/cutover/`.

use std::ffi::OsStr;
use std::path::PathBuf;

/// `$XDG_STATE_HOME/cutover` (default `~/.local/state/cutover`); `None` without a home.
pub fn state_dir() -> Option<PathBuf> {
    xdg_dir(std::env::var_os("XDG_STATE_HOME").as_deref(), std::env::var_os("HOME").as_deref(), ".local/state")
}

/// `$XDG_CONFIG_HOME/cutover` (default `~/.config/cutover`); `None` without a home.
pub fn config_dir() -> Option<PathBuf> {
    config_dir_from(std::env::var_os("XDG_CONFIG_HOME").as_deref(), std::env::var_os("HOME").as_deref())
}

/// `config_dir()` for given values of `$XDG_CONFIG_HOME` and `$HOME`, so the settings lookup can be
/// tested without changing the process environment.
pub fn config_dir_from(xdg_config_home: Option<&OsStr>, home: Option<&OsStr>) -> Option<PathBuf> {
    xdg_dir(xdg_config_home, home, ".config")
}

fn xdg_dir(var: Option<&OsStr>, home: Option<&OsStr>, under_home: &str) -> Option<PathBuf> {
    // The XDG spec: a relative path in the variable is invalid and must be ignored (so is an
    // empty one, which is not absolute either).
    let base = var
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| home.filter(|h| !h.is_empty()).map(|h| PathBuf::from(h).join(under_home)))?;
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
