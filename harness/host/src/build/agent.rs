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
/// Either must be a static executable: the initramfs has no C library, so a host build of the
/// agent (what `cargo build` leaves in target/debug/) would boot to "Failed to execute /init".
pub fn locate() -> Result<PathBuf> {
    let build_hint = format!(
        "build it with `cargo build --release -p {BINARY} --target {TARGET}` and set KMODLAB_AGENT \
         to target/{TARGET}/release/{BINARY}"
    );
    if let Some(path) = std::env::var_os("KMODLAB_AGENT") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!(
                "KMODLAB_AGENT points to {}, which is not a file",
                path.display()
            );
        }
        return require_static(path, &build_hint);
    }
    let exe = std::env::current_exe().context("finding kmodlab's own executable")?;
    let beside = exe.with_file_name(BINARY);
    if beside.is_file() {
        return require_static(beside, &build_hint);
    }
    bail!(
        "the guest agent `{BINARY}` was not found next to {}; {build_hint}",
        exe.display()
    )
}

fn require_static(path: PathBuf, build_hint: &str) -> Result<PathBuf> {
    let is_static = crate::host::setup::is_static_elf(&path)
        .with_context(|| format!("reading the guest agent {}", path.display()))?;
    if !is_static {
        bail!(
            "the guest agent {} is dynamically linked and cannot run as the guest's /init; {build_hint}",
            path.display()
        );
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamically_linked_agent_is_refused_with_the_way_to_build_a_static_one() {
        // The host's own shell is dynamically linked on every Debian and Ubuntu.
        let err = require_static(PathBuf::from("/bin/sh"), "build hint")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("dynamically linked") && err.ends_with("build hint"),
            "{err}"
        );
    }
}
