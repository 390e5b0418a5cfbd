//! What a test guest starts with: the agent as `/init`, its plan, the modules and the companion
//! programs the plan names, packed in an initramfs (written by [`Writer`], so no root and no
//! `cpio` is needed), or sent as a payload to a VM restored from a snapshot.

use crate::guest::initramfs::Writer;
use anyhow::{anyhow, Context, Result};
use kmodlab_protocol::{payload, Plan, PLAN_PATH};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A file of the run the guest needs: where it goes, its mode, and the host file it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestFile {
    pub path: String,
    pub mode: u32,
    pub source: PathBuf,
}

/// The files a plan needs in the guest besides the agent: each module where the plan loads it
/// from (its file's name: `hello-1.ko` is `hello_1`), then the companion programs it runs, each
/// once and in name order (so that neither depends on the plan's order).
pub fn guest_files(
    plan: &Plan,
    release: &str,
    objects: &BTreeMap<String, PathBuf>,
    programs: &BTreeMap<String, PathBuf>,
) -> Result<Vec<GuestFile>> {
    let module_paths: BTreeMap<&str, &str> = plan
        .tests
        .iter()
        .flat_map(|t| t.modules.iter().map(|m| (m.name.as_str(), m.path.as_str())))
        .collect();
    let mut files = built(
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
    files.extend(built(
        companions,
        programs,
        0o755,
        "companion for",
        str::to_string,
    )?);
    Ok(files)
}

/// The guest's whole filesystem: agent as /init, the plan, and its [`guest_files`].
pub fn write_test_initramfs(
    path: &Path,
    agent: &Path,
    plan: &Plan,
    files: &[GuestFile],
) -> Result<()> {
    write_agent_initramfs(path, agent, |archive| {
        let plan_json = serde_json::to_vec(plan).context("encoding the test plan")?;
        archive.file(PLAN_PATH, 0o644, &plan_json)?;
        for file in files {
            archive.file_from_path(&file.path, file.mode, &file.source)?;
        }
        Ok(())
    })
}

/// The initramfs a snapshot is booted from: the agent alone, which then waits for a payload.
pub fn write_snapshot_initramfs(path: &Path, agent: &Path) -> Result<()> {
    write_agent_initramfs(path, agent, |_| Ok(()))
}

/// An initramfs with the base layout, the agent as `/init`, and what `add` puts in.
fn write_agent_initramfs(
    path: &Path,
    agent: &Path,
    add: impl FnOnce(&mut Writer<std::io::BufWriter<std::fs::File>>) -> Result<()>,
) -> Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut archive = Writer::new(std::io::BufWriter::new(file));
    archive.base_layout()?;
    archive.file_from_path("/init", 0o755, agent)?;
    add(&mut archive)?;
    let mut out = archive.finish()?;
    std::io::Write::flush(&mut out).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Writes the payload a restored VM takes: the plan and its [`guest_files`].
pub fn write_payload<W: std::io::Write>(
    out: &mut W,
    plan: &Plan,
    files: &[GuestFile],
) -> Result<()> {
    let mut entries = Vec::with_capacity(files.len());
    let mut readers = Vec::with_capacity(files.len());
    for file in files {
        let reader = std::fs::File::open(&file.source)
            .with_context(|| format!("opening {}", file.source.display()))?;
        let size = reader
            .metadata()
            .with_context(|| format!("reading {}", file.source.display()))?
            .len();
        entries.push(payload::FileEntry {
            path: file.path.clone(),
            mode: file.mode,
            size,
        });
        readers.push(reader);
    }
    let header = payload::Header {
        plan: plan.clone(),
        files: entries,
    };
    payload::write(out, &header, readers).context("sending the payload to the restored VM")
}

/// Each wanted file once, in name order, from what the build produced; `what` names a kind of
/// product for the error when the plan wants one that was not built.
fn built<'a>(
    wanted: impl Iterator<Item = &'a str>,
    built: &BTreeMap<String, PathBuf>,
    mode: u32,
    what: &str,
    guest_path: impl Fn(&str) -> String,
) -> Result<Vec<GuestFile>> {
    let mut names: Vec<&str> = wanted.collect();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let source = built
                .get(name)
                .ok_or_else(|| anyhow!("no built {what} {name}"))?;
            Ok(GuestFile {
                path: guest_path(name),
                mode,
                source: source.clone(),
            })
        })
        .collect()
}

/// Where a module file sits in the guest: where `modprobe` would look for an out-of-tree module.
pub fn guest_module_path(release: &str, name: &str) -> String {
    format!("/lib/modules/{release}/extra/{name}.ko")
}
