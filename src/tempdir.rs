//! A private temporary directory, removed on drop (tests, the simulator, scratch work).

use std::path::PathBuf;

/// A temporary directory removed on drop.
#[derive(Debug)]
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    /// Creates `$TMPDIR/cutover-<pid>-<random>`, readable by the owner only.
    pub fn new() -> std::io::Result<Self> {
        let n = fastrand::u64(..);
        let path = std::env::temp_dir().join(format!("cutover-{}-{n:016x}", std::process::id()));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&path)?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
