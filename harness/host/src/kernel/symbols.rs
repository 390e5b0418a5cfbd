//! Which kernel option provides a symbol a module needs: the file of the configured kernel's
//! source that exports it (`EXPORT_SYMBOL(sym)` or `EXPORT_SYMBOL_GPL(sym)`), the Kconfig option
//! under which Kbuild builds that file (`obj-$(CONFIG_X) += file.o`, following composite objects
//! and folders up to the top), and the kmodlab kernel profile that sets the option.
//!
//! The source is searched with `grep` once per set of unknown symbols; what it found (or did not)
//! is kept per source tree in the cache, so a second run asks nothing.

use super::{fragments, Kernel};
use crate::host::cache::{self, KeyBuilder};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Top-level folders of a kernel tree that hold no code a module can link against.
const NOT_KERNEL_CODE: [&str; 8] = [
    "Documentation",
    "tools",
    "samples",
    "scripts",
    "usr",
    "LICENSES",
    "arch",
    "debian",
];

/// Where a symbol comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provider {
    /// The file (relative to the source) that exports it and the option it is built under.
    Option { file: String, option: String },
    /// Exported by a file built into every kernel (its absence has another reason).
    Always { file: String },
    /// No file of the kernel exports it (it may come from another module).
    Nowhere,
}

/// `register_netdev, free_netdev (net/core/dev.c, CONFIG_NET; run with --kernel-config full)`:
/// the symbols grouped by what would provide them.
pub fn explain(kernel: &Kernel, symbols: &[String]) -> String {
    let providers = providers(&kernel.source_dir, symbols);
    // Symbols that one option would provide go together, with the files that export them.
    let mut groups: Vec<(String, Vec<&str>, Vec<&str>)> = Vec::new();
    for symbol in symbols {
        let (file, why) = match providers.get(symbol).unwrap_or(&Provider::Nowhere) {
            Provider::Option { file, option } => {
                let profile = if kernel.option(option).is_some_and(|v| v == "y" || v == "m") {
                    "which this kernel has".to_string()
                } else {
                    match fragments::providers(kernel, &[option.as_str()]).first() {
                        Some(profile) => format!("run with --kernel-config {profile}"),
                        None => "no kmodlab kernel profile sets it".to_string(),
                    }
                };
                (Some(file.as_str()), format!("{option}; {profile}"))
            }
            Provider::Always { file } => (Some(file.as_str()), "built into every kernel".into()),
            Provider::Nowhere => (
                None,
                "exported by no file of the kernel: another module must provide it".into(),
            ),
        };
        match groups.iter_mut().find(|(w, _, _)| *w == why) {
            Some((_, names, files)) => {
                names.push(symbol);
                files.extend(file.filter(|f| !files.contains(f)));
            }
            None => groups.push((why, vec![symbol], file.into_iter().collect())),
        }
    }
    groups
        .iter()
        .map(|(why, names, files)| {
            let files: String = files.iter().map(|f| format!("{f}, ")).collect();
            format!("{} ({files}{why})", names.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Where each of `symbols` comes from in the kernel source at `source`.
pub fn providers(source: &Path, symbols: &[String]) -> BTreeMap<String, Provider> {
    let exporters = exporters(source, symbols);
    symbols
        .iter()
        .map(|symbol| {
            let provider = match exporters.get(symbol).and_then(|f| f.as_ref()) {
                None => Provider::Nowhere,
                Some(file) => match option_of(source, file) {
                    Some(option) => Provider::Option {
                        file: file.clone(),
                        option,
                    },
                    None => Provider::Always { file: file.clone() },
                },
            };
            (symbol.clone(), provider)
        })
        .collect()
}

/// The `.c` file (relative to `source`) exporting each symbol, `None` when none does; from the
/// cache, else from one `grep` over the source for the symbols it does not know yet.
fn exporters(source: &Path, symbols: &[String]) -> BTreeMap<String, Option<String>> {
    let cache_file = cache::dir("symbols").ok().map(|dir| {
        let key = KeyBuilder::new()
            .part("source", source.to_string_lossy().as_bytes())
            .finish();
        dir.join(format!("{}.json", &key[..16]))
    });
    let mut known: BTreeMap<String, Option<String>> = cache_file
        .as_ref()
        .and_then(|f| std::fs::read(f).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let unknown: Vec<&String> = symbols.iter().filter(|s| !known.contains_key(*s)).collect();
    if !unknown.is_empty() {
        let Some(found) = grep_exports(source, &unknown) else {
            return known;
        };
        for symbol in unknown {
            known.insert(symbol.clone(), found.get(symbol.as_str()).cloned());
        }
        if let Some(file) = &cache_file {
            if let Ok(bytes) = serde_json::to_vec(&known) {
                let _ = std::fs::write(file, bytes);
            }
        }
    }
    known
}

/// `grep -rHoE 'EXPORT_SYMBOL(_GPL)?\((a|b)\)'` over the folders of `source` that hold kernel code
/// (and arch/x86); `None` when grep cannot run.
fn grep_exports(source: &Path, symbols: &[&String]) -> Option<BTreeMap<String, String>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(source)
        .ok()?
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter(|e| !NOT_KERNEL_CODE.contains(&&*e.file_name().to_string_lossy()))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    dirs.push(source.join("arch/x86"));
    dirs.sort();
    let names: Vec<String> = symbols.iter().map(|s| regex::escape(s)).collect();
    let pattern = format!(
        r"EXPORT_SYMBOL(_GPL)?(_NS|_NS_GPL)?\(({})[,)]",
        names.join("|")
    );
    let output = Command::new("grep")
        .args(["-rHoE", "--include=*.c", &pattern])
        .args(&dirs)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut found = BTreeMap::new();
    for line in text.lines() {
        let Some((file, export)) = line.split_once(':') else {
            continue;
        };
        let Some(symbol) = export
            .split_once('(')
            .map(|(_, s)| s.trim_end_matches([',', ')']))
        else {
            continue;
        };
        let rel = Path::new(file)
            .strip_prefix(source)
            .map_or_else(|_| file.to_string(), |p| p.to_string_lossy().into_owned());
        found.entry(symbol.to_string()).or_insert(rel);
    }
    Some(found)
}

/// The Kconfig option under which Kbuild builds `file` (relative to `source`): the `obj-$(CONFIG_X)`
/// line naming its object, its composite object or one of its folders; `None` when every level
/// says `obj-y`.
pub fn option_of(source: &Path, file: &str) -> Option<String> {
    let path = Path::new(file);
    let dir = path.parent()?.to_path_buf();
    let object = format!("{}.o", path.file_stem()?.to_string_lossy());
    option_in(source, &dir, &object, 0)
}

fn option_in(source: &Path, dir: &Path, target: &str, depth: usize) -> Option<String> {
    if depth > 12 {
        return None;
    }
    let text = ["Kbuild", "Makefile"]
        .iter()
        .find_map(|f| std::fs::read_to_string(source.join(dir).join(f)).ok())?;
    for (lhs, rhs) in assignments(&text) {
        if !rhs.split_whitespace().any(|t| t == target) {
            continue;
        }
        let Some((base, suffix)) = lhs.rsplit_once('-') else {
            continue;
        };
        if format!("{base}.o") == target {
            continue;
        }
        let option = suffix
            .strip_prefix("$(")
            .and_then(|s| s.strip_suffix(')'))
            .filter(|s| s.starts_with("CONFIG_"));
        if let Some(option) = option {
            return Some(option.to_string());
        }
        if base == "obj" {
            // Built whenever its folder is: ask the folder above about this folder.
            let name = dir.file_name()?.to_string_lossy().into_owned();
            let parent = dir.parent()?;
            return option_in(source, parent, &format!("{name}/"), depth + 1);
        }
        // A part of a composite object: ask about the object.
        return option_in(source, dir, &format!("{base}.o"), depth + 1);
    }
    None
}

/// `lhs op rhs` lines of a Kbuild file, continuation lines joined.
fn assignments(text: &str) -> Vec<(String, String)> {
    let joined = text.replace("\\\n", " ");
    joined
        .lines()
        .filter_map(|line| {
            let line = line.split('#').next()?;
            let at = line.find('=')?;
            let lhs = line[..at].trim_end_matches([':', '+', '?']).trim();
            if lhs.is_empty() || lhs.contains(char::is_whitespace) {
                return None;
            }
            Some((lhs.to_string(), line[at + 1..].to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        }
        dir
    }

    #[test]
    fn the_option_is_found_through_folders_and_composite_objects() {
        let src = tree(&[
            ("Kbuild", "obj-y += kernel/\nobj-$(CONFIG_NET)\t+= net/\n"),
            ("net/Makefile", "obj-y := socket.o core/\n"),
            (
                "net/core/Makefile",
                "obj-y += dev.o \\\n\tdst.o\nobj-$(CONFIG_NET_PTP) += ptp.o\n",
            ),
            ("net/core/dev.c", "EXPORT_SYMBOL(register_netdev);\n"),
            ("drivers/Makefile", "obj-$(CONFIG_GPIOLIB) += gpio/\n"),
            (
                "drivers/gpio/Makefile",
                "obj-m += unused.o\ngpiolib-y := core.o gpiolib-cdev.o\nobj-y += gpiolib.o\n",
            ),
            (
                "drivers/gpio/gpiolib-cdev.c",
                "EXPORT_SYMBOL_GPL(gpiod_get, x);\n",
            ),
            ("kernel/Makefile", "obj-y = fork.o\n"),
            ("kernel/fork.c", "EXPORT_SYMBOL(fork_me);\n"),
        ]);
        let root = src.path();
        assert_eq!(
            option_of(root, "net/core/dev.c").as_deref(),
            Some("CONFIG_NET")
        );
        assert_eq!(
            option_of(root, "net/core/ptp.c").as_deref(),
            Some("CONFIG_NET_PTP")
        );
        assert_eq!(
            option_of(root, "drivers/gpio/gpiolib-cdev.c").as_deref(),
            Some("CONFIG_GPIOLIB")
        );
        assert_eq!(option_of(root, "kernel/fork.c"), None);
        let symbols: Vec<String> = ["register_netdev", "gpiod_get", "fork_me", "nothing_at_all"]
            .map(String::from)
            .to_vec();
        let found = grep_exports(root, &symbols.iter().collect::<Vec<_>>()).expect("grep runs");
        assert_eq!(found["register_netdev"], "net/core/dev.c");
        assert_eq!(found["gpiod_get"], "drivers/gpio/gpiolib-cdev.c");
        assert!(!found.contains_key("nothing_at_all"));
    }

    #[test]
    fn the_verdict_names_the_file_the_option_and_the_profile_that_sets_it() {
        let src = tree(&[
            (
                "Kbuild",
                "obj-$(CONFIG_NET) += net/
obj-y += lib/
",
            ),
            (
                "net/Makefile",
                "obj-y := dev.o
",
            ),
            (
                "net/dev.c",
                "EXPORT_SYMBOL(register_netdev);
EXPORT_SYMBOL_GPL(free_netdev);
",
            ),
            (
                "lib/Makefile",
                "obj-y += string.o
",
            ),
            (
                "lib/string.c",
                "EXPORT_SYMBOL(strfoo);
",
            ),
        ]);
        let configs = tree(&[
            ("base.config", "CONFIG_PRINTK=y\n"),
            ("rust.config", "CONFIG_RUST=y\n"),
            (
                "netting.config",
                "# networking\nCONFIG_NET=y\nCONFIG_INET=y\n",
            ),
        ]);
        let kernel = Kernel {
            key: "k".into(),
            source_dir: src.path().to_path_buf(),
            build_dir: "/b".into(),
            image: "/b/bzImage".into(),
            release: "6.12.117".into(),
            fragments: vec![
                configs.path().join("base.config"),
                configs.path().join("rust.config"),
            ],
            options: super::super::config::parse_dotconfig("CONFIG_RUST=y\n"),
            prebuilt: false,
        };
        let symbols: Vec<String> = ["register_netdev", "free_netdev", "strfoo", "elsewhere"]
            .map(String::from)
            .to_vec();
        let text = explain(&kernel, &symbols);
        assert_eq!(
            text,
            "register_netdev, free_netdev (net/dev.c, CONFIG_NET; run with --kernel-config netting); \
             strfoo (lib/string.c, built into every kernel); \
             elsewhere (exported by no file of the kernel: another module must provide it)"
        );
    }
}
