//! Where the workspace and its untracked state live.

use std::path::{Path, PathBuf};

/// The workspace root: the parent of this crate's manifest directory, fixed at build time
/// so that tests and `cargo xtask` agree regardless of their working directory.
pub fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map_or_else(|| manifest.to_path_buf(), Path::to_path_buf)
}

/// `<root>/.state`: ignored by git, holds image archives and the dev node.
pub fn state_dir() -> PathBuf {
    root().join(".state")
}
