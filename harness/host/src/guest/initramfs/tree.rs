//! A folder's tree as archive entries.

use crate::guest::initramfs::Writer;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use walkdir::WalkDir;

/// Adds a folder's tree (not the folder itself) to `writer`: directories, files, symlinks, device
/// nodes, fifos and sockets with their permission bits, owned by root; files hard-linked to each
/// other inside the tree stay hard links. Returns how many entries it added.
pub fn write_tree<W: Write>(dir: &Path, writer: &mut Writer<W>) -> Result<usize> {
    let found = walk(dir)?;
    // Hard links: every name of one inode, so the group can be written at its last name (when
    // all their parents have been written).
    let mut groups: HashMap<(u64, u64), Vec<String>> = HashMap::new();
    for (rel, _, meta) in &found {
        if meta.is_file() && meta.nlink() > 1 {
            groups
                .entry((meta.dev(), meta.ino()))
                .or_default()
                .push(rel.clone());
        }
    }
    let mut count = 0;
    for (rel, path, meta) in &found {
        let mode = meta.mode() & 0o7777;
        let kind = meta.file_type();
        let mut names_added = 1;
        let added = if kind.is_dir() {
            writer.dir(rel, mode)
        } else if kind.is_file() {
            match groups.get(&(meta.dev(), meta.ino())) {
                Some(names) if names.len() > 1 => {
                    if names.last() != Some(rel) {
                        continue;
                    }
                    let names: Vec<&str> = names.iter().map(String::as_str).collect();
                    names_added = names.len();
                    writer.hard_linked_file_from_path(&names, mode, path)
                }
                _ => writer.file_from_path(rel, mode, path),
            }
        } else if kind.is_symlink() {
            let target = std::fs::read_link(path)
                .with_context(|| format!("reading the symlink {}", path.display()))?;
            let Some(target) = target.to_str() else {
                bail!(
                    "{}: the symlink's target is not UTF-8, which kmodlab cannot store",
                    path.display()
                );
            };
            writer.symlink(rel, target)
        } else if kind.is_char_device() || kind.is_block_device() {
            let rdev = meta.rdev();
            let (major, minor) = (libc::major(rdev), libc::minor(rdev));
            if kind.is_char_device() {
                writer.char_device(rel, mode, major, minor)
            } else {
                writer.block_device(rel, mode, major, minor)
            }
        } else if kind.is_fifo() {
            writer.fifo(rel, mode)
        } else if kind.is_socket() {
            writer.socket(rel, mode)
        } else {
            bail!("{}: unknown file type", path.display());
        };
        added.with_context(|| format!("adding {}", path.display()))?;
        count += names_added;
    }
    Ok(count)
}

/// Every entry below `dir` as (archive path, host path, metadata), parents before children, names
/// sorted for a reproducible archive. Symlinks are entries, never followed.
fn walk(dir: &Path) -> Result<Vec<(String, PathBuf, std::fs::Metadata)>> {
    let mut found = Vec::new();
    for entry in WalkDir::new(dir).min_depth(1).sort_by_file_name() {
        let entry = entry.with_context(|| format!("reading the folder {}", dir.display()))?;
        let path = entry.path();
        let rel = path.strip_prefix(dir).unwrap_or(path);
        // Parents come first, so the first name that is not UTF-8 is this entry's own.
        let Some(rel) = rel.to_str() else {
            bail!(
                "{}: the name is not UTF-8, which kmodlab cannot store",
                path.display()
            );
        };
        let meta = entry
            .metadata()
            .with_context(|| format!("reading {}", path.display()))?;
        found.push((format!("/{rel}"), path.to_path_buf(), meta));
    }
    Ok(found)
}
