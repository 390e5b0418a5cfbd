//! Debian's prebuilt cloud kernel: the image and the headers packages fetched without root
//! (`apt-get download` + `dpkg-deb -x`) into `cache/kernels/<key>/root/`, for C modules when
//! nobody wants to build a kernel. Which kernel: the newest 6.12 ABI (`6.12.118+deb12`) for which
//! apt's lists offer the image, both headers packages and kbuild, resolved when it is first fetched,
//! or the one `--kernel-prebuilt=ABI` pins. The key is the ABI and the packages' versions.
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

/// The kernel series and flavour kmodlab fetches.
const SERIES: &str = "6.12";
pub const FLAVOUR: &str = "cloud-amd64";
/// The version of how kmodlab unpacks and fixes up the packages.
const RECIPE: &str = "kmodlab-prebuilt-2";

/// The packages of kernel ABI `abi`, in the order they are unpacked: image, flavour headers,
/// common headers, kbuild tools.
pub fn packages(abi: &str) -> Vec<String> {
    vec![
        format!("linux-image-{abi}-{FLAVOUR}-unsigned"),
        format!("linux-headers-{abi}-{FLAVOUR}"),
        format!("linux-headers-{abi}-common"),
        format!("linux-kbuild-{abi}"),
    ]
}

fn release(abi: &str) -> String {
    format!("{abi}-{FLAVOUR}")
}

#[derive(Debug, Serialize, Deserialize)]
struct Stamp {
    recipe: String,
    key: String,
    abi: String,
    versions: Vec<(String, String)>,
    seconds: f64,
}

/// The cache key: the recipe, the ABI and each package's version. The unpacked kernel's, when
/// there is one (like the Debian source, it stays in use until the cache is cleared; asking apt
/// costs about a second per run), else what apt's local lists offer now.
pub fn key(pin: Option<&str>) -> Result<String> {
    if let Some(kernel) = recorded(pin)? {
        return Ok(kernel.key);
    }
    let (abi, versions) = resolve(pin)?;
    Ok(key_of(&abi, &versions))
}

/// Where the key of the last unpacked prebuilt kernel is kept: one record for the newest at the
/// time, one per pinned ABI.
fn record_path(pin: Option<&str>) -> Result<PathBuf> {
    let name = match pin {
        None => "debian-prebuilt.key".to_string(),
        Some(abi) => format!("debian-prebuilt-{abi}.key"),
    };
    Ok(cache::dir("kernels")?.join(name))
}

/// The recorded prebuilt kernel, if its unpacked tree is complete.
fn recorded(pin: Option<&str>) -> Result<Option<Kernel>> {
    let Ok(key) = std::fs::read_to_string(record_path(pin)?) else {
        return Ok(None);
    };
    let key = key.trim();
    if key.is_empty() || key.contains('/') {
        return Ok(None);
    }
    load(&cache::dir("kernels")?.join(key), key)
}

fn key_of(abi: &str, versions: &[(String, String)]) -> String {
    let mut key = KeyBuilder::new();
    key.part("recipe", RECIPE)
        .part("arch", std::env::consts::ARCH)
        .part("abi", abi);
    for (package, version) in versions {
        key.part(package, version);
    }
    format!("debian-{}", key.finish())
}

/// The prebuilt kernel if it is unpacked already.
pub fn cached(pin: Option<&str>) -> Result<Option<Kernel>> {
    if let Some(kernel) = recorded(pin)? {
        return Ok(Some(kernel));
    }
    let key = key(pin)?;
    load(&cache::dir("kernels")?.join(&key), &key)
}

/// The prebuilt kernel, fetched and unpacked unless cached.
pub fn ensure(pin: Option<&str>) -> Result<Kernel> {
    if let Some(kernel) = recorded(pin)? {
        return Ok(kernel);
    }
    let (abi, versions) = resolve(pin)?;
    let key = key_of(&abi, &versions);
    let dir = cache::dir("kernels")?.join(&key);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let _lock = lock(&dir.join("lock"), &format!("fetching kernel {key}"))?;
    if let Some(kernel) = load(&dir, &key)? {
        write_atomic(&record_path(pin)?, key.as_bytes())?;
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
    let debs = download(&work, &abi, &versions)?;
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
    fix_up(&root, &abi)?;
    step.finish(&root.display().to_string());
    let stamp = Stamp {
        recipe: RECIPE.to_string(),
        key: key.clone(),
        abi,
        versions,
        seconds: started.elapsed().as_secs_f64(),
    };
    write_atomic(
        &dir.join("stamp.json"),
        &serde_json::to_vec_pretty(&stamp).context("encoding the stamp")?,
    )?;
    write_atomic(&record_path(pin)?, key.as_bytes())?;
    load(&dir, &key)?.with_context(|| format!("kernel {key} is incomplete after unpacking"))
}

fn headers_dir(root: &Path, abi: &str) -> PathBuf {
    root.join(format!("usr/src/linux-headers-{}", release(abi)))
}

fn common_dir(root: &Path, abi: &str) -> PathBuf {
    root.join(format!("usr/src/linux-headers-{abi}-common"))
}

/// Makes the unpacked headers a KDIR that works where it is.
fn fix_up(root: &Path, abi: &str) -> Result<()> {
    let headers = headers_dir(root, abi);
    let common = common_dir(root, abi);
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
    let image = root.join(format!("boot/vmlinuz-{}", release(&stamp.abi)));
    let build_dir = headers_dir(&root, &stamp.abi);
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
        source_dir: common_dir(&root, &stamp.abi),
        build_dir,
        image,
        release,
        fragments: Vec::new(),
        options,
        prebuilt: true,
    }))
}

/// The ABI to fetch (`pin`, or the newest complete one apt's lists offer) and its packages' versions.
fn resolve(pin: Option<&str>) -> Result<(String, Vec<(String, String)>)> {
    let abi = match pin {
        Some(abi) => abi.to_string(),
        None => newest_abi()?,
    };
    let versions = candidate_versions(&abi)?;
    Ok((abi, versions))
}

const PURPOSE: &str = "kmodlab fetches Debian's prebuilt kernel with apt";

/// The newest [`SERIES`] ABI whose four packages apt's local lists name; the lists are refreshed
/// once (as root) when they name none.
fn newest_abi() -> Result<String> {
    let pattern = search_pattern();
    let mut names = debian::names_matching(&pattern, PURPOSE)?;
    if newest_complete(&names).is_none() && crate::host::setup::refresh_package_lists()? {
        names = debian::names_matching(&pattern, PURPOSE)?;
    }
    newest_complete(&names).with_context(|| {
        format!(
            "apt's package lists name no Debian {SERIES} {FLAVOUR} kernel with its headers: they may \
             be empty or old; run `sudo apt-get update` (Debian 12 carries it in bookworm-security \
             and bookworm-updates)"
        )
    })
}

/// The extended regex for `apt-cache search --names-only` that matches every package of a
/// [`SERIES`] ABI.
fn search_pattern() -> String {
    format!(
        "^linux-(image|headers|kbuild)-{}\\.[0-9]+\\+deb[0-9]+",
        SERIES.replace('.', "\\.")
    )
}

/// Of the ABIs whose image is among `names`, the newest that has every one of [`packages`] there.
fn newest_complete(names: &[String]) -> Option<String> {
    let suffix = format!("-{FLAVOUR}-unsigned");
    names
        .iter()
        .filter_map(|name| name.strip_prefix("linux-image-")?.strip_suffix(&suffix))
        .filter(|abi| packages(abi).iter().all(|p| names.contains(p)))
        .max_by_key(|abi| abi_order(abi))
        .map(str::to_string)
}

/// `6.12.118+deb12` → `[6, 12, 118, 12]`: compares as versions do (118 after 99).
fn abi_order(abi: &str) -> Vec<u64> {
    abi.split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// Each package's candidate version from apt's local lists (no network).
fn candidate_versions(abi: &str) -> Result<Vec<(String, String)>> {
    let packages = packages(abi);
    let versions = debian::candidates(&packages, PURPOSE)?;
    packages
        .into_iter()
        .map(
            |package| match versions.iter().find(|(p, _)| *p == package) {
                Some((_, version)) => Ok((package, version.clone())),
                None => bail!(
                    "apt does not know the package {package}: is {abi} a Debian kernel ABI (like \
                 6.12.118+deb12)? Else its package lists may be empty or old; run `sudo apt-get \
                 update` (Debian 12 carries it in bookworm-security and bookworm-updates)"
                ),
            },
        )
        .collect()
}

/// `apt-get download PKG=VERSION...` into `work`; returns the .deb files in [`packages`] order.
fn download(work: &Path, abi: &str, versions: &[(String, String)]) -> Result<Vec<PathBuf>> {
    let args: Vec<String> = versions.iter().map(|(p, v)| format!("{p}={v}")).collect();
    let (files, step) = debian::download(
        work,
        &args,
        &format!("downloading Debian's prebuilt kernel {}", release(abi)),
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
    fn the_key_follows_the_abi_and_the_versions() {
        let a = vec![("p".to_string(), "1".to_string())];
        let b = vec![("p".to_string(), "2".to_string())];
        assert_ne!(key_of("6.12.117+deb12", &a), key_of("6.12.117+deb12", &b));
        assert_ne!(key_of("6.12.117+deb12", &a), key_of("6.12.118+deb12", &a));
        assert!(key_of("6.12.117+deb12", &a).starts_with("debian-"));
    }

    /// What `apt-cache search --names-only` printed here (Debian 12, December 2026), trimmed.
    const SEARCH: &str = "\
linux-headers-6.12.99+deb12-cloud-amd64 - Header files for Linux 6.12.99+deb12-cloud-amd64
linux-headers-6.12.99+deb12-common - Common header files for Linux 6.12.99+deb12
linux-image-6.12.99+deb12-cloud-amd64-unsigned - Linux 6.12 for x86-64 cloud
linux-kbuild-6.12.99+deb12 - Kbuild infrastructure for Linux 6.12.99+deb12
linux-headers-6.12.117+deb12-amd64 - Header files for Linux 6.12.117+deb12-amd64
linux-headers-6.12.117+deb12-cloud-amd64 - Header files for Linux 6.12.117+deb12-cloud-amd64
linux-headers-6.12.117+deb12-common - Common header files for Linux 6.12.117+deb12
linux-image-6.12.117+deb12-cloud-amd64 - Linux 6.12 for x86-64 cloud (signed)
linux-image-6.12.117+deb12-cloud-amd64-unsigned - Linux 6.12 for x86-64 cloud
linux-kbuild-6.12.117+deb12 - Kbuild infrastructure for Linux 6.12.117+deb12
linux-image-6.12.118+deb12-cloud-amd64-unsigned - Linux 6.12 for x86-64 cloud
linux-kbuild-6.12.118+deb12 - Kbuild infrastructure for Linux 6.12.118+deb12
linux-image-6.12.119+deb12-amd64-unsigned - Linux 6.12 for 64-bit PCs
";

    fn names(text: &str) -> Vec<String> {
        text.lines()
            .filter_map(|l| l.split(" - ").next())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_newest_abi_is_the_newest_with_its_headers_in_the_lists() {
        // 118 has no headers yet and 119 no cloud image; 117 beats 99 as a number, not as text.
        assert_eq!(
            newest_complete(&names(SEARCH)).as_deref(),
            Some("6.12.117+deb12")
        );
        let with_118_headers = format!(
            "{SEARCH}linux-headers-6.12.118+deb12-cloud-amd64 - x\n\
             linux-headers-6.12.118+deb12-common - x\n"
        );
        assert_eq!(
            newest_complete(&names(&with_118_headers)).as_deref(),
            Some("6.12.118+deb12")
        );
        assert_eq!(newest_complete(&[]), None);
    }

    #[test]
    fn the_search_finds_every_package_of_an_abi() {
        let pattern = regex::Regex::new(&search_pattern()).unwrap();
        for package in packages("6.12.118+deb12") {
            assert!(pattern.is_match(&package), "{package}");
        }
        assert!(!pattern.is_match("linux-image-6.1.0-30-cloud-amd64-unsigned"));
    }
}
