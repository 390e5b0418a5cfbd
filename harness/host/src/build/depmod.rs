//! Module dependencies as the kernel's own tool sees them: the built `.ko` files are laid out as
//! `<tmp>/lib/modules/<release>/extra/` and `depmod -b <tmp> <release>` writes `modules.dep` and
//! `modules.alias` from their symbol tables. The test plan reads load orders from it; the shell
//! guest ships both files so that `modprobe` works there.

use crate::host::setup;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The index files depmod wrote, and what they say.
#[derive(Debug, Clone, Default)]
pub struct Indexes {
    /// `modules.dep`: `extra/a.ko: extra/b.ko ...`, nearest dependency first.
    pub dep: String,
    /// `modules.alias`.
    pub alias: String,
}

impl Indexes {
    /// For each module file (its path under `/lib/modules/<release>/`), the files to load for it,
    /// dependencies first and itself last.
    pub fn load_orders(&self) -> BTreeMap<String, Vec<String>> {
        self.dep
            .lines()
            .filter_map(|line| line.split_once(':'))
            .map(|(module, deps)| {
                let mut order: Vec<String> =
                    deps.split_whitespace().rev().map(str::to_string).collect();
                order.push(module.trim().to_string());
                (module.trim().to_string(), order)
            })
            .collect()
    }
}

/// depmod, which Debian keeps in /usr/sbin (not on an ordinary user's PATH).
fn depmod() -> Result<PathBuf> {
    setup::find_tool("depmod")
        .or_else(|| setup::find_in(&[PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")], "depmod"))
        .context("depmod is not installed (Debian package: kmod); kmodlab uses it to find the order modules load in")
}

/// Runs depmod over `modules` (path under `/lib/modules/<release>/`, e.g. `extra/a-core.ko`, and
/// the file on the host).
pub fn run(release: &str, modules: &[(String, PathBuf)]) -> Result<Indexes> {
    let tmp = tempfile::tempdir().context("creating a folder for depmod")?;
    let root = tmp.path().join("lib/modules").join(release);
    for (rel, source) in modules {
        let target = root.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::copy(source, &target)
            .with_context(|| format!("copying {} for depmod", source.display()))?;
    }
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    // Empty lists of the kernel's own modules keep depmod from warning that they are missing.
    for empty in [
        "modules.order",
        "modules.builtin",
        "modules.builtin.modinfo",
    ] {
        std::fs::write(root.join(empty), "").with_context(|| format!("writing {empty}"))?;
    }
    let output = Command::new(depmod()?)
        .arg("-b")
        .arg(tmp.path())
        .arg(release)
        .output()
        .context("running depmod")?;
    if !output.status.success() {
        bail!(
            "depmod failed on the built modules: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let read = |name: &str| {
        std::fs::read_to_string(root.join(name))
            .with_context(|| format!("reading the {name} depmod wrote"))
    };
    Ok(Indexes {
        dep: read("modules.dep")?,
        alias: read("modules.alias")?,
    })
}

/// The path a module file gets under `/lib/modules/<release>/`: `extra/<file name>`.
pub fn extra_path(ko: &Path) -> String {
    format!(
        "extra/{}",
        ko.file_name().unwrap_or_default().to_string_lossy()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_orders_put_dependencies_first() {
        let indexes = Indexes {
            dep: "extra/a.ko: extra/b.ko extra/c.ko\nextra/b.ko: extra/c.ko\nextra/c.ko:\n".into(),
            alias: String::new(),
        };
        let orders = indexes.load_orders();
        assert_eq!(
            orders["extra/a.ko"],
            ["extra/c.ko", "extra/b.ko", "extra/a.ko"]
        );
        assert_eq!(orders["extra/c.ko"], ["extra/c.ko"]);
    }
}
