//! Kconfig fragments by name: `base` and the profiles merged onto it (`rust`, `debug`, `kasan`,
//! `full`), found in a `kernel-configs/` folder or, outside this repository, in the binary itself
//! (build.rs embeds every file of `kernel-configs/`); and which fragment to suggest when a test
//! needs an option the kernel lacks.

use super::Kernel;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The fragment every kernel starts from: a small x86_64 guest for QEMU microvm.
pub const BASE_FRAGMENT: &str = "base";

/// The fragments merged onto `base` when none are named.
pub const DEFAULT_FRAGMENTS: [&str; 1] = ["rust"];

/// Every fragment of `kernel-configs/`, built into the binary for use outside this repository.
mod embedded {
    include!(concat!(env!("OUT_DIR"), "/fragments.rs"));
}
pub use embedded::EMBEDDED_FRAGMENTS;

/// The fragments a run merges, in order: `base`, then the named ones (by default [`DEFAULT_FRAGMENTS`]).
pub fn requested(names: &[String], configs_dir: Option<&Path>) -> Result<Vec<PathBuf>> {
    let mut all: Vec<&str> = vec![BASE_FRAGMENT];
    if names.is_empty() {
        all.extend(DEFAULT_FRAGMENTS);
    } else {
        all.extend(
            names
                .iter()
                .map(String::as_str)
                .filter(|n| *n != BASE_FRAGMENT),
        );
    }
    all.into_iter()
        .map(|name| resolve(name, configs_dir))
        .collect()
}

/// `base` → `<configs>/base.config`; a path is taken as it is.
pub fn resolve(name: &str, configs_dir: Option<&Path>) -> Result<PathBuf> {
    let as_path = Path::new(name);
    if name.contains('/') || name.ends_with(".config") {
        if as_path.is_file() {
            return Ok(as_path.to_path_buf());
        }
        bail!("kernel config fragment {name} does not exist");
    }
    if let Some(dir) = configs_dir {
        let path = dir.join(format!("{name}.config"));
        if path.is_file() {
            return Ok(path);
        }
        let known: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .strip_suffix(".config")
                            .map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default();
        bail!(
            "no kernel config fragment `{name}` in {} (known: {})",
            dir.display(),
            known.join(", ")
        );
    }
    if !EMBEDDED_FRAGMENTS.iter().any(|(n, _)| *n == name) {
        let known: Vec<&str> = EMBEDDED_FRAGMENTS.iter().map(|(n, _)| *n).collect();
        bail!(
            "no built-in kernel config fragment `{name}` (built in: {}); give a path instead",
            known.join(", ")
        );
    }
    // All of them, so that the folder holds every profile a SKIP reason may suggest.
    let dir = crate::host::cache::dir("configs")?;
    for (n, text) in EMBEDDED_FRAGMENTS {
        let path = dir.join(format!("{n}.config"));
        if std::fs::read_to_string(&path).ok().as_deref() != Some(*text) {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(dir.join(format!("{name}.config")))
}

/// `the kernel lacks CONFIG_KASAN (fragments: base + rust); ... run with --kernel-config kasan`
pub fn skip_reason(kernel: &Kernel, missing: &[&str]) -> String {
    if kernel.is_prebuilt() {
        return format!(
            "Debian's prebuilt kernel lacks {}; run without --kernel-prebuilt to build a kernel that has it",
            missing.join(", ")
        );
    }
    let mut reason = format!(
        "the kernel lacks {} (fragments: {})",
        missing.join(", "),
        fragment_names(kernel)
    );
    let providers = providers(kernel, missing);
    // Only the providing fragment is suggested: it always builds on top of base, whereas adding it
    // to the current ones may not (6.12 cannot build Rust with KASAN under GCC).
    if let Some(provider) = providers.first() {
        reason.push_str(&format!(
            "; kernel-configs/{provider}.config sets it: run with --kernel-config {provider}"
        ));
    }
    reason
}

/// The profiles (fragments beside the ones in use, in kernel-configs/) that set every one of
/// `options` to `y` or `m`, by name, sorted.
pub fn providers(kernel: &Kernel, options: &[&str]) -> Vec<String> {
    let Some(dir) = kernel.fragments.first().and_then(|f| f.parent()) else {
        return vec![];
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut providers: Vec<String> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "config") && !kernel.fragments.contains(p))
        .filter(|p| {
            std::fs::read_to_string(p).is_ok_and(|text| {
                options.iter().all(|option| {
                    text.lines().any(|l| {
                        l.trim() == format!("{option}=y") || l.trim() == format!("{option}=m")
                    })
                })
            })
        })
        .filter_map(|p| p.file_stem().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    providers.sort();
    providers
}

fn fragment_names(kernel: &Kernel) -> String {
    kernel
        .fragments
        .iter()
        .map(|f| {
            f.file_name().map_or_else(
                || f.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        })
        .collect::<Vec<_>>()
        .join(" + ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fragment_of_kernel_configs_is_built_in_byte_for_byte() {
        // Byte for byte: a kernel's cache key covers the fragments' bytes, so an installed kmodlab
        // finds the kernels `cargo xtask` built.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kernel-configs");
        let mut on_disk: Vec<(String, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "config"))
            .map(|p| {
                let name = p.file_stem().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&p).unwrap())
            })
            .collect();
        on_disk.sort();
        let embedded: Vec<(String, String)> = EMBEDDED_FRAGMENTS
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        assert_eq!(embedded, on_disk);
        for name in ["base", "rust", "debug", "kasan", "full"] {
            assert!(embedded.iter().any(|(n, _)| n == name), "{name}");
        }
    }

    #[test]
    fn an_unknown_built_in_fragment_names_the_known_ones() {
        let err = resolve("nosuch", None).unwrap_err().to_string();
        assert!(
            err.contains("`nosuch`") && err.contains("base, debug, full, kasan, rust"),
            "{err}"
        );
    }
}
