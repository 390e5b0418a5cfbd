//! The test guest's initramfs: the agent as `/init`, its plan, the modules and the companion
//! programs the plan names. Everything is written by [`Writer`], so no root and no `cpio` is needed.

use crate::guest::initramfs::Writer;
use anyhow::{anyhow, Context, Result};
use kmodlab_protocol::{Plan, PLAN_PATH};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The guest's whole filesystem: agent as /init, the plan, the modules, the programs the plan runs.
pub fn write_test_initramfs(
    path: &Path,
    agent: &Path,
    plan: &Plan,
    release: &str,
    objects: &BTreeMap<String, PathBuf>,
    programs: &BTreeMap<String, PathBuf>,
) -> Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut archive = Writer::new(std::io::BufWriter::new(file));
    archive.base_layout()?;
    archive.file_from_path("/init", 0o755, agent)?;
    let plan_json = serde_json::to_vec(plan).context("encoding the test plan")?;
    archive.file(PLAN_PATH, 0o644, &plan_json)?;
    // Each module goes where the plan loads it from (its file's name: `hello-1.ko` is `hello_1`).
    let module_paths: BTreeMap<&str, &str> = plan
        .tests
        .iter()
        .flat_map(|t| t.modules.iter().map(|m| (m.name.as_str(), m.path.as_str())))
        .collect();
    add_built(
        &mut archive,
        module_paths.keys().copied(),
        objects,
        0o644,
        "object for module",
        |name| {
            module_paths
                .get(name)
                .map_or_else(|| guest_module_path(release, name), |p| p.to_string())
        },
    )?;
    let companions = plan
        .tests
        .iter()
        .flat_map(|t| t.run.iter().map(|p| p.path.as_str()));
    add_built(
        &mut archive,
        companions,
        programs,
        0o755,
        "companion for",
        str::to_string,
    )?;
    let mut out = archive.finish()?;
    std::io::Write::flush(&mut out).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Adds each wanted file once, in name order (so that the archive does not depend on the plan's
/// order), from what the build produced; `what` names a kind of product for the error when the
/// plan wants one that was not built.
fn add_built<'a, W: std::io::Write>(
    archive: &mut Writer<W>,
    wanted: impl Iterator<Item = &'a str>,
    built: &BTreeMap<String, PathBuf>,
    mode: u32,
    what: &str,
    guest_path: impl Fn(&str) -> String,
) -> Result<()> {
    let mut names: Vec<&str> = wanted.collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let source = built
            .get(name)
            .ok_or_else(|| anyhow!("no built {what} {name}"))?;
        archive.file_from_path(&guest_path(name), mode, source)?;
    }
    Ok(())
}

/// Where a module file sits in the guest: where `modprobe` would look for an out-of-tree module.
pub fn guest_module_path(release: &str, name: &str) -> String {
    format!("/lib/modules/{release}/extra/{name}.ko")
}
