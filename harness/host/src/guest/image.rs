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
    let modules = plan
        .tests
        .iter()
        .flat_map(|t| t.modules.iter().map(|m| m.name.as_str()));
    for name in sorted_once(modules) {
        let source = objects
            .get(name)
            .ok_or_else(|| anyhow!("no built object for module {name}"))?;
        archive.file_from_path(&guest_module_path(release, name), 0o644, source)?;
    }
    let companions = plan
        .tests
        .iter()
        .flat_map(|t| t.run.iter().map(|p| p.path.as_str()));
    for guest in sorted_once(companions) {
        let source = programs
            .get(guest)
            .ok_or_else(|| anyhow!("no built companion for {guest}"))?;
        archive.file_from_path(guest, 0o755, source)?;
    }
    let mut out = archive.finish()?;
    std::io::Write::flush(&mut out).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Each name once, sorted, so that the archive does not depend on the plan's order.
fn sorted_once<'a>(names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut names: Vec<&str> = names.collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Where a module file sits in the guest: where `modprobe` would look for an out-of-tree module.
pub fn guest_module_path(release: &str, name: &str) -> String {
    format!("/lib/modules/{release}/extra/{name}.ko")
}
