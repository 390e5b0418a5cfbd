//! The shell guest's modules: what each `.ko`'s `.modinfo` says, and the `modules.dep` and
//! `modules.alias` that busybox's `modprobe` and `modinfo` read, written by the real depmod
//! ([`crate::build::depmod`], the same run that orders a test's modules).

use crate::build::{depmod, module};
use anyhow::Result;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// One module file for the guest, with what `.modinfo` says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestModule {
    /// Module name as the kernel knows it (`-` taken as `_`).
    pub name: String,
    /// The `.ko` on the host.
    pub source: PathBuf,
    /// Path under `/lib/modules/<release>/`, e.g. `extra/hello.ko`.
    pub rel_path: String,
    /// Direct dependencies (`depends=`).
    pub depends: Vec<String>,
    /// `alias=` patterns.
    pub aliases: Vec<String>,
}

impl GuestModule {
    /// Reads a built module's `.modinfo`; `file_stem` is the `.ko`'s name without `.ko`.
    pub fn from_ko(file_stem: &str, source: &Path) -> Result<GuestModule> {
        let info = module::modinfo(source)?;
        let name = info
            .iter()
            .find(|(k, _)| k == "name")
            .map_or(file_stem, |(_, v)| v.as_str());
        let depends = info
            .iter()
            .filter(|(k, _)| k == "depends")
            .flat_map(|(_, v)| v.split(','))
            .filter(|d| !d.is_empty())
            .map(module_name)
            .collect();
        let aliases = info
            .iter()
            .filter(|(k, _)| k == "alias")
            .map(|(_, v)| v.clone())
            .collect();
        Ok(GuestModule {
            name: module_name(name),
            source: source.to_path_buf(),
            rel_path: format!("extra/{file_stem}.ko"),
            depends,
            aliases,
        })
    }
}

/// Module names treat `-` and `_` alike; the kernel and modprobe use `_`.
fn module_name(name: &str) -> String {
    name.trim().replace('-', "_")
}

/// `modules.dep` and `modules.alias` for `modules`, from depmod: `extra/a.ko: extra/b.ko
/// extra/c.ko` lists every module `a` needs, directly or not, such that loading them from the last
/// to the first is a valid order (what kmod's and busybox's modprobe do).
pub fn module_indexes(release: &str, modules: &[GuestModule]) -> Result<(String, String)> {
    let files: Vec<(String, PathBuf)> = modules
        .iter()
        .map(|m| (m.rel_path.clone(), m.source.clone()))
        .collect();
    let indexes = depmod::run(release, &files)?;
    Ok((indexes.dep, indexes.alias))
}

/// A warning for each dependency (`depends=`) that is not among `modules`.
pub fn missing_dependencies(modules: &[GuestModule]) -> Vec<String> {
    let names: BTreeSet<&str> = modules.iter().map(|m| m.name.as_str()).collect();
    let mut warnings = Vec::new();
    for m in modules {
        for dep in &m.depends {
            if !names.contains(dep.as_str()) {
                warnings.push(format!(
                    "module {} depends on {dep}, which is not in the guest: `modprobe {}` will fail \
                     unless the kernel has {dep} built in",
                    m.name, m.name
                ));
            }
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_dependencies_are_reported() {
        let m = GuestModule {
            name: "a".into(),
            source: PathBuf::from("/b/a.ko"),
            rel_path: "extra/a.ko".into(),
            depends: vec!["gone".into()],
            aliases: vec![],
        };
        let warnings = missing_dependencies(&[m]);
        assert!(warnings[0].contains("a depends on gone"), "{warnings:?}");
    }
}
