//! The shell guest's modules: what each `.ko`'s `.modinfo` says, and the `modules.dep` and
//! `modules.alias` that busybox's `modprobe` and `modinfo` read.
//!
//! The index writer stands in for `depmod`, which does not fit here: it derives dependencies from
//! the modules' symbol tables (so it needs real modules in a staging tree shaped like
//! `/lib/modules/<release>`, and warns without the kernel's `modules.order` and
//! `modules.builtin`), it lives in /sbin (not on an ordinary user's PATH) and would be one more
//! tool for the host. libkmod (and crates that bind it) only reads these indexes. What busybox
//! needs is the `depends=` closure in load order, which takes a few lines.

use crate::build::module;
use anyhow::{bail, Result};
use std::collections::BTreeMap;
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

/// `modules.dep` and `modules.alias` for `modules`, in the format depmod writes:
/// `extra/a.ko: extra/b.ko extra/c.ko` lists every module `a` needs, directly or not, such that
/// loading them from the last to the first is a valid order (what kmod's and busybox's modprobe
/// do). Returns the two files and a warning for each dependency that is not among `modules`.
pub fn module_indexes(modules: &[GuestModule]) -> Result<(String, String, Vec<String>)> {
    let by_name: BTreeMap<&str, &GuestModule> =
        modules.iter().map(|m| (m.name.as_str(), m)).collect();
    let mut warnings = Vec::new();
    for m in modules {
        for dep in &m.depends {
            if !by_name.contains_key(dep.as_str()) {
                warnings.push(format!(
                    "module {} depends on {dep}, which is not in the guest: `modprobe {}` will fail \
                     unless the kernel has {dep} built in",
                    m.name, m.name
                ));
            }
        }
    }
    let mut dep = String::new();
    for m in modules {
        // Dependencies first (post-order), then reversed: the nearest dependency comes first.
        let mut order: Vec<&str> = Vec::new();
        let mut visiting: Vec<&str> = Vec::new();
        visit(&m.name, &by_name, &mut order, &mut visiting)?;
        let deps: Vec<&str> = order
            .iter()
            .rev()
            .filter(|n| **n != m.name)
            .filter_map(|n| by_name.get(n).map(|d| d.rel_path.as_str()))
            .collect();
        dep.push_str(&format!("{}:", m.rel_path));
        for d in deps {
            dep.push(' ');
            dep.push_str(d);
        }
        dep.push('\n');
    }
    let mut alias = String::from("# Aliases extracted from modules themselves.\n");
    for m in modules {
        for a in &m.aliases {
            alias.push_str(&format!("alias {a} {}\n", m.name));
        }
    }
    Ok((dep, alias, warnings))
}

fn visit<'a>(
    name: &'a str,
    by_name: &BTreeMap<&'a str, &'a GuestModule>,
    order: &mut Vec<&'a str>,
    visiting: &mut Vec<&'a str>,
) -> Result<()> {
    if order.contains(&name) {
        return Ok(());
    }
    if visiting.contains(&name) {
        visiting.push(name);
        bail!(
            "the modules depend on each other in a cycle: {}",
            visiting.join(" -> ")
        );
    }
    visiting.push(name);
    if let Some(m) = by_name.get(name) {
        for dep in &m.depends {
            visit(dep, by_name, order, visiting)?;
        }
    }
    visiting.pop();
    order.push(name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(name: &str, depends: &[&str]) -> GuestModule {
        GuestModule {
            name: name.into(),
            source: PathBuf::from(format!("/b/{name}.ko")),
            rel_path: format!("extra/{name}.ko"),
            depends: depends.iter().map(|d| d.to_string()).collect(),
            aliases: vec![],
        }
    }

    #[test]
    fn modules_dep_lists_every_dependency_nearest_first() {
        // a -> b -> c, a -> c, d alone; modprobe loads the list from the end.
        let mods = [
            module("a", &["b", "c"]),
            module("b", &["c"]),
            module("c", &[]),
            module("d", &[]),
        ];
        let (dep, alias, warnings) = module_indexes(&mods).unwrap();
        assert_eq!(
            dep,
            "extra/a.ko: extra/b.ko extra/c.ko\nextra/b.ko: extra/c.ko\nextra/c.ko:\nextra/d.ko:\n"
        );
        assert!(warnings.is_empty());
        assert_eq!(alias, "# Aliases extracted from modules themselves.\n");
    }

    #[test]
    fn missing_and_cyclic_dependencies_are_reported() {
        let (dep, _, warnings) = module_indexes(&[module("a", &["gone"])]).unwrap();
        assert_eq!(dep, "extra/a.ko:\n");
        assert!(warnings[0].contains("a depends on gone"), "{warnings:?}");
        let err = module_indexes(&[module("a", &["b"]), module("b", &["a"])])
            .unwrap_err()
            .to_string();
        assert!(err.contains("a -> b -> a"), "{err}");
    }

    #[test]
    fn aliases_name_the_module() {
        let mut m = module("snd_x", &[]);
        m.aliases = vec!["pci:v00001234d*".into(), "char-major-10-200".into()];
        let (_, alias, _) = module_indexes(&[m]).unwrap();
        assert!(alias.ends_with("alias pci:v00001234d* snd_x\nalias char-major-10-200 snd_x\n"));
    }
}
