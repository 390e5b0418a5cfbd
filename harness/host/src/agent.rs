//! Finding (or, inside the kmodlab workspace, building) the guest agent binary.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The agent's Rust target: static, so it runs as /init with no libraries in the initramfs.
pub const TARGET: &str = "x86_64-unknown-linux-musl";
const BINARY: &str = "kmodlab-agent";

/// Builds the agent from the workspace at `workspace` and returns its path.
///
/// It uses its own target folder so that it can run while an outer cargo holds the workspace's
/// (as `cargo test` does while the end-to-end tests run).
pub fn build_in_workspace(workspace: &Path) -> Result<PathBuf> {
    let target_dir = workspace.join("target").join("agent");
    let path = target_dir.join(TARGET).join("release").join(BINARY);
    if !path.is_file() {
        eprintln!(
            "agent   building the guest agent for {TARGET} (the first time takes about a minute)"
        );
    }
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(workspace)
        .args([
            "build",
            "--quiet",
            "--release",
            "--package",
            BINARY,
            "--target",
            TARGET,
            "--target-dir",
        ])
        .arg(&target_dir)
        .status()
        .context("running cargo to build the guest agent")?;
    if !status.success() {
        bail!(
            "building the guest agent failed ({status}); if the target is missing: rustup target add {TARGET}"
        );
    }
    if !path.is_file() {
        bail!("cargo built the agent but {} is not there", path.display());
    }
    Ok(path)
}

/// Where a standalone `kmodlab` finds the agent: `KMODLAB_AGENT`, else next to its own executable.
pub fn locate() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("KMODLAB_AGENT") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!(
            "KMODLAB_AGENT points to {}, which is not a file",
            path.display()
        );
    }
    let exe = std::env::current_exe().context("finding kmodlab's own executable")?;
    let beside = exe.with_file_name(BINARY);
    if beside.is_file() {
        return Ok(beside);
    }
    bail!(
        "the guest agent `{BINARY}` was not found next to {} ; build it with \
         `cargo build --release -p {BINARY} --target {TARGET}` and set KMODLAB_AGENT to its path",
        exe.display()
    )
}
