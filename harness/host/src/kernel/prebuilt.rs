//! Debian's prebuilt cloud kernel: the image and the headers packages fetched without root
//! (`apt-get download` + `dpkg-deb -x`) into `cache/kernels/<key>/root/`, for C modules when
//! nobody wants to build a kernel. The key is the packages' versions.
//!
//! Fix-ups after unpacking: the headers' Makefile includes the common headers by an absolute
//! `/usr/src/...` path, so it is rewritten to point into the cache; the headers' `vmlinux` (BTF
//! only, not bootable) is removed so module builds skip BTF instead of needing `pahole`.

use super::{debian, lock, source::write_atomic, Kernel};
use crate::host::cache::{self, KeyBuilder};
use crate::host::progress::Step;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The Debian kernel ABI and flavour kmodlab fetches.
pub const ABI: &str = "6.12.117+deb12";
pub const FLAVOUR: &str = "cloud-amd64";
/// The version of how kmodlab unpacks and fixes up the packages.
const RECIPE: &str = "kmodlab-prebuilt-1";

/// The packages, in the order they are unpacked: image, flavour headers, common headers, kbuild tools.
pub fn packages() -> Vec<String> {
    vec![
        format!("linux-image-{ABI}-{FLAVOUR}-unsigned"),
        format!("linux-headers-{ABI}-{FLAVOUR}"),
        format!("linux-headers-{ABI}-common"),
        format!("linux-kbuild-{ABI}"),
    ]
}

fn release() -> String {
    format!("{ABI}-{FLAVOUR}")
}

#[derive(Debug, Serialize, Deserialize)]
struct Stamp {
    recipe: String,
    key: String,
    versions: Vec<(String, String)>,
    seconds: f64,
}

/// The cache key: the recipe and each package's version. The unpacked kernel's, when there is
/// one (like the Debian source, it stays in use until the cache is cleared; asking apt costs
/// 0.7 s per run), else apt's candidates, from its local lists.
pub fn key() -> Result<String> {
    if let Some(kernel) = recorded()? {
        return Ok(kernel.key);
    }
    Ok(key_of(&candidate_versions()?))
}

/// Where the key of the last unpacked prebuilt kernel is kept.
fn record_path() -> Result<PathBuf> {
    Ok(cache::dir("kernels")?.join("debian-prebuilt.key"))
}

/// The recorded prebuilt kernel, if its unpacked tree is complete.
fn recorded() -> Result<Option<Kernel>> {
    let Ok(key) = std::fs::read_to_string(record_path()?) else {
        return Ok(None);
    };
    let key = key.trim();
    if key.is_empty() || key.contains('/') {
        return Ok(None);
    }
    load(&cache::dir("kernels")?.join(key), key)
}

fn key_of(versions: &[(String, String)]) -> String {
    let mut key = KeyBuilder::new();
    key.part("recipe", RECIPE)
        .part("arch", std::env::consts::ARCH);
    for (package, version) in versions {
        key.part(package, version);
    }
    format!("debian-{}", key.finish())
}

/// The prebuilt kernel if it is unpacked already.
pub fn cached() -> Result<Option<Kernel>> {
    if let Some(kernel) = recorded()? {
        return Ok(Some(kernel));
    }
    let key = key()?;
    load(&cache::dir("kernels")?.join(&key), &key)
}

/// The prebuilt kernel, fetched and unpacked unless cached.
pub fn ensure() -> Result<Kernel> {
    if let Some(kernel) = recorded()? {
        return Ok(kernel);
    }
    let versions = candidate_versions()?;
    let key = key_of(&versions);
    let dir = cache::dir("kernels")?.join(&key);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let _lock = lock(&dir.join("lock"), &format!("fetching kernel {key}"))?;
    if let Some(kernel) = load(&dir, &key)? {
        write_atomic(&record_path()?, key.as_bytes())?;
        return Ok(kernel);
    }
    let started = std::time::Instant::now();
    let work = dir.join(".fetch");
    let root = dir.join("root");
    for stale in [&work, &root] {
        if stale.exists() {
            std::fs::remove_dir_all(stale)
                .with_context(|| format!("removing the stale {}", stale.display()))?;
        }
    }
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let debs = download(&work, &versions)?;
    let step = Step::start(&format!("unpacking kernel {key}"));
    let unpacked = work.join("root");
    for deb in &debs {
        if let Err(e) = debian::extract(deb, &unpacked) {
            step.fail("dpkg-deb -x failed");
            return Err(e);
        }
    }
    std::fs::rename(&unpacked, &root)
        .with_context(|| format!("moving the unpacked packages to {}", root.display()))?;
    let _ = std::fs::remove_dir_all(&work);
    fix_up(&root)?;
    step.finish(&root.display().to_string());
    let stamp = Stamp {
        recipe: RECIPE.to_string(),
        key: key.clone(),
        versions,
        seconds: started.elapsed().as_secs_f64(),
    };
    write_atomic(
        &dir.join("stamp.json"),
        &serde_json::to_vec_pretty(&stamp).context("encoding the stamp")?,
    )?;
    write_atomic(&record_path()?, key.as_bytes())?;
    load(&dir, &key)?.with_context(|| format!("kernel {key} is incomplete after unpacking"))
}

fn headers_dir(root: &Path) -> PathBuf {
    root.join(format!("usr/src/linux-headers-{}", release()))
}

fn common_dir(root: &Path) -> PathBuf {
    root.join(format!("usr/src/linux-headers-{ABI}-common"))
}

/// Makes the unpacked headers a KDIR that works where it is.
fn fix_up(root: &Path) -> Result<()> {
    let headers = headers_dir(root);
    let common = common_dir(root);
    let makefile = headers.join("Makefile");
    if !common.join("Makefile").is_file() {
        bail!("the common headers have no Makefile ({})", common.display());
    }
    // The package's Makefile is `include /usr/src/linux-headers-<abi>-common/Makefile`.
    std::fs::write(
        &makefile,
        format!("include {}/Makefile\n", common.display()),
    )
    .with_context(|| format!("writing {}", makefile.display()))?;
    // Only BTF; with it there, every module build wants pahole. Without it, kbuild skips BTF.
    let vmlinux = headers.join("vmlinux");
    if vmlinux.exists() {
        std::fs::remove_file(&vmlinux)
            .with_context(|| format!("removing {}", vmlinux.display()))?;
    }
    // The scripts and tools links are relative (../../lib/linux-kbuild-<abi>/...): check they resolve.
    for link in ["scripts", "tools"] {
        for tree in [&headers, &common] {
            if !tree.join(link).is_dir() {
                bail!(
                    "{} does not resolve after unpacking",
                    tree.join(link).display()
                );
            }
        }
    }
    Ok(())
}

fn load(dir: &Path, key: &str) -> Result<Option<Kernel>> {
    let Ok(text) = std::fs::read_to_string(dir.join("stamp.json")) else {
        return Ok(None);
    };
    let Ok(stamp) = serde_json::from_str::<Stamp>(&text) else {
        return Ok(None);
    };
    let root = dir.join("root");
    let image = root.join(format!("boot/vmlinuz-{}", release()));
    let build_dir = headers_dir(&root);
    if stamp.recipe != RECIPE || stamp.key != key || !image.is_file() {
        return Ok(None);
    }
    let read = |path: PathBuf| {
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    };
    let release = read(build_dir.join("include/config/kernel.release"))?
        .trim()
        .to_string();
    let options = super::config::parse_dotconfig(&read(build_dir.join(".config"))?);
    Ok(Some(Kernel {
        key: key.to_string(),
        source_dir: common_dir(&root),
        build_dir,
        image,
        release,
        fragments: Vec::new(),
        options,
        prebuilt: true,
    }))
}

/// Each package's candidate version from apt's local lists (no network).
fn candidate_versions() -> Result<Vec<(String, String)>> {
    let packages = packages();
    let versions = debian::candidates(
        &packages,
        "kmodlab fetches Debian's prebuilt kernel with apt",
    )?;
    packages
        .into_iter()
        .map(|package| match versions.iter().find(|(p, _)| *p == package) {
            Some((_, version)) => Ok((package, version.clone())),
            None => bail!(
                "apt does not know the package {package}: its package lists may be empty or old; run `sudo apt-get update` (Debian 12 carries it in bookworm-security and bookworm-updates)"
            ),
        })
        .collect()
}

/// `apt-get download PKG=VERSION...` into `work`; returns the .deb files in [`packages`] order.
fn download(work: &Path, versions: &[(String, String)]) -> Result<Vec<PathBuf>> {
    let args: Vec<String> = versions.iter().map(|(p, v)| format!("{p}={v}")).collect();
    let (files, step) = debian::download(
        work,
        &args,
        "downloading Debian's prebuilt kernel",
        "`apt-get download` of the prebuilt kernel",
    )?;
    let mut debs = Vec::new();
    let mut bytes = 0;
    for (package, _) in versions {
        let prefix = format!("{package}_");
        let deb = files
            .iter()
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
            })
            .with_context(|| format!("apt-get download left no .deb of {package}"))?;
        bytes += deb.metadata().map(|m| m.len()).unwrap_or(0);
        debs.push(deb.clone());
    }
    step.finish(&format!(
        "{} packages ({} MB)",
        debs.len(),
        bytes / 1_000_000
    ));
    Ok(debs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_follows_the_versions() {
        let a = vec![("p".to_string(), "1".to_string())];
        let b = vec![("p".to_string(), "2".to_string())];
        assert_ne!(key_of(&a), key_of(&b));
        assert!(key_of(&a).starts_with("debian-"));
    }
}
