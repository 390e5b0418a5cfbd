//! The guest agent binary: the one built into kmodlab (build.rs builds it for the musl target and
//! embeds it), `KMODLAB_AGENT`, or, inside the kmodlab workspace, a build of its sources.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The agent's Rust target: static, so it runs as /init with no libraries in the initramfs.
pub const TARGET: &str = "x86_64-unknown-linux-musl";
const BINARY: &str = "kmodlab-agent";

/// The agent of the workspace at `workspace`: the one built into this library when there is one
/// (build.rs built it from the same sources, and cargo rebuilds the library when they change),
/// else a build of its sources, for a library built before the musl target was installed.
///
/// That build uses its own target folder so that it can run while an outer cargo holds the
/// workspace's (as `cargo test` does while the end-to-end tests run).
pub fn build_in_workspace(workspace: &Path) -> Result<PathBuf> {
    if let Some(agent) = embedded() {
        return agent;
    }
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

/// The agent this crate carries (built by build.rs), written to the cache under its content hash
/// so that every kmodlab with the same agent shares one file; `None` when the crate was built
/// without the musl target.
pub fn embedded() -> Option<Result<PathBuf>> {
    let bytes = embedded::AGENT?;
    Some(
        crate::host::cache::dir("agents")
            .and_then(|dir| write_embedded(&dir, bytes, embedded::AGENT_SHA256)),
    )
}

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/agent.rs"));
}

/// `dir/kmodlab-agent-<hash>`, mode 0755, written unless it is there already.
fn write_embedded(dir: &Path, bytes: &[u8], sha256: &str) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(format!("{BINARY}-{}", &sha256[..16.min(sha256.len())]));
    let complete = path
        .metadata()
        .is_ok_and(|m| m.len() == bytes.len() as u64 && m.permissions().mode() & 0o111 != 0);
    if !complete {
        // Written aside and renamed, so a concurrent kmodlab never boots a half-written /init.
        let mut file = tempfile::NamedTempFile::new_in(dir)
            .with_context(|| format!("creating a file in {}", dir.display()))?;
        std::io::Write::write_all(&mut file, bytes)
            .with_context(|| format!("writing the guest agent into {}", dir.display()))?;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o755))
            .context("making the guest agent executable")?;
        file.persist(&path)
            .with_context(|| format!("moving the guest agent to {}", path.display()))?;
    }
    require_static(
        path,
        &format!("rebuild kmodlab with the {TARGET} target installed"),
    )
}

/// The agent a standalone `kmodlab` uses: `KMODLAB_AGENT` when set (for working on the agent),
/// else the one built into the binary. Either must be a static executable: the initramfs has no C
/// library, so a host build of the agent would boot to "Failed to execute /init".
pub fn locate() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("KMODLAB_AGENT") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!(
                "KMODLAB_AGENT points to {}, which is not a file",
                path.display()
            );
        }
        return require_static(
            path,
            &format!(
                "build it with `cargo build --release -p {BINARY} --target {TARGET}` and set \
                 KMODLAB_AGENT to target/{TARGET}/release/{BINARY}, or unset KMODLAB_AGENT"
            ),
        );
    }
    match embedded() {
        Some(path) => path,
        None => bail!(
            "this kmodlab was built without its guest agent (the Rust target {TARGET} was missing); \
             run `rustup target add {TARGET}` and install kmodlab again"
        ),
    }
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
    fn the_built_in_agent_is_a_static_executable_named_by_its_hash() {
        use std::os::unix::fs::PermissionsExt;
        let bytes = embedded::AGENT.expect("built with the musl target installed");
        let dir = tempfile::tempdir().unwrap();
        let path = write_embedded(dir.path(), bytes, embedded::AGENT_SHA256).unwrap();
        assert_eq!(
            path.file_name().unwrap().to_string_lossy(),
            format!("{BINARY}-{}", &embedded::AGENT_SHA256[..16])
        );
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert_eq!(path.metadata().unwrap().permissions().mode() & 0o777, 0o755);
        // A second kmodlab finds it in place.
        assert_eq!(
            write_embedded(dir.path(), bytes, embedded::AGENT_SHA256).unwrap(),
            path
        );
    }

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
