//! Building a module folder out of tree with Kbuild, in a copy, so the user's folder stays clean.
//!
//! The copy lives in the cache as `<copy>/<name>/` beside `<copy>/include/` (kmodlab's helpers, such as
//! `kmodlab/ktap.h`), so a module's Kbuild can say `ccflags-y += -I$(src)/../include` wherever it comes from.
//! A content hash of the sources, the helpers and the kernel skips `make` entirely when nothing changed.

use crate::build::copy::{key_sources, relocate, source_files, write_if_changed, BuildCopy};
use crate::host::cache::{self, KeyBuilder};
use crate::kernel::Kernel;
use crate::spec::ModuleSpec;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// kmodlab's module helpers, built into the binary so they exist wherever modules come from.
/// Their sources are in `modules/include/`.
pub const HELPERS: &[(&str, &str)] = &[
    (
        "kmodlab/ktap.h",
        include_str!("../../../../modules/include/kmodlab/ktap.h"),
    ),
    (
        "kmodlab_ktap.rs",
        include_str!("../../../../modules/include/kmodlab_ktap.rs"),
    ),
];

/// A built module folder.
#[derive(Debug, Clone)]
pub struct ModuleBuild {
    pub module: String,
    /// Each `.ko` of the spec's `build` list, in that order.
    pub objects: Vec<(String, PathBuf)>,
    /// True when the previous build was still current and `make` did not run.
    pub reused: bool,
    pub duration: Duration,
    /// Compiler warnings, with paths pointing into the user's folder.
    pub warnings: String,
    /// The build copy of the module folder (its paths appear in kernel messages, e.g. WARNING lines).
    pub copy_dir: PathBuf,
    /// The folder's user-space companions (see [`crate::build::companion`]): name and static executable.
    pub companions: Vec<(String, PathBuf)>,
}

/// Builds `spec`'s folder against `kernel`: its modules, then its companions.
pub fn build(spec: &ModuleSpec, kernel: &Kernel) -> Result<ModuleBuild> {
    let mut build = build_modules(spec, kernel)?;
    let companions = crate::build::companion::build(spec)?;
    build.reused &= companions.reused;
    build.duration += companions.duration;
    build.warnings.push_str(&companions.warnings);
    build.companions = companions.programs;
    Ok(build)
}

fn build_modules(spec: &ModuleSpec, kernel: &Kernel) -> Result<ModuleBuild> {
    let started = Instant::now();
    let sources = source_files(&spec.dir)?;
    let mut key = KeyBuilder::new();
    key.part("kernel", &kernel.key);
    for (name, text) in HELPERS {
        key.part(name, text);
    }
    key_sources(&mut key, &spec.dir, &sources)?;
    let key = key.finish();

    let mut build_copy = BuildCopy::open(&cache::dir("modules")?.join(&kernel.key), spec)?;
    let copy = build_copy.root.join(&spec.name);
    let objects: Vec<(String, PathBuf)> = spec
        .build
        .iter()
        .map(|name| (name.clone(), copy.join(format!("{name}.ko"))))
        .collect();
    let mut build = ModuleBuild {
        module: spec.name.clone(),
        objects,
        reused: true,
        duration: Duration::ZERO,
        warnings: String::new(),
        copy_dir: copy.clone(),
        companions: vec![],
    };
    if !build_copy.is_current(&key, build.objects.iter().map(|(_, path)| path.as_path())) {
        // Sync the copy: rewrite only changed files so make's own timestamps keep builds incremental.
        for (name, text) in HELPERS {
            write_if_changed(&build_copy.root.join("include").join(name), text.as_bytes())?;
        }
        build_copy.sync(&spec.dir, &sources, &copy)?;
        build.warnings = make_modules(spec, kernel, &copy)?;
        check_objects(spec, &build.objects, &kernel.release)?;
        build_copy.finish(key)?;
        build.reused = false;
    }
    build.duration = started.elapsed();
    Ok(build)
}

/// `make -C KDIR M=<copy> modules`; returns its warnings, with paths pointing into the user's folder.
fn make_modules(spec: &ModuleSpec, kernel: &Kernel, copy: &Path) -> Result<String> {
    let output = Command::new("make")
        .arg("-C")
        .arg(&kernel.build_dir)
        .arg(format!("M={}", copy.display()))
        .arg(format!(
            "-j{}",
            std::thread::available_parallelism().map_or(2, |n| n.get())
        ))
        .arg("modules")
        .env("PATH", crate::host::setup::build_env_path())
        .output()
        .context("running make for the module build (is `make` installed? Debian package: make)")?;
    let shown = |bytes: &[u8]| relocate(&String::from_utf8_lossy(bytes), copy, &spec.dir);
    // Debian's prebuilt headers have no vmlinux to base module BTF on (kmodlab removes its BTF-only
    // one so that builds need no pahole); kbuild's note about skipping BTF is no compiler warning.
    let stderr: String = shown(&output.stderr)
        .lines()
        .filter(|l| !l.starts_with("Skipping BTF generation for "))
        .map(|l| format!("{l}\n"))
        .collect();
    if !output.status.success() {
        let stdout = shown(&output.stdout);
        let tail: Vec<&str> = stdout
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        bail!(
            "building module `{}` failed:\n{}{}",
            spec.name,
            stderr.trim_end(),
            if stderr.trim().is_empty() {
                format!("\n{}", tail.join("\n"))
            } else {
                String::new()
            }
        );
    }
    Ok(stderr)
}

/// Every `.ko` the spec lists is there and built for `release`.
fn check_objects(spec: &ModuleSpec, objects: &[(String, PathBuf)], release: &str) -> Result<()> {
    for (name, path) in objects {
        if !path.is_file() {
            bail!(
                "building module `{}`: Kbuild did not produce {name}.ko; is `{name}` in its Kbuild's obj-m? \
                 (the spec's module.build lists {:?})",
                spec.name,
                spec.build
            );
        }
    }
    for (_, path) in objects {
        check_release(path, release)?;
    }
    Ok(())
}

/// The `key=value` pairs of a module's `.modinfo` section (what `modinfo` shows).
pub fn modinfo(ko: &Path) -> Result<Vec<(String, String)>> {
    use object::{Object, ObjectSection};
    let data = std::fs::read(ko).with_context(|| format!("reading {}", ko.display()))?;
    let file = object::File::parse(&*data)
        .with_context(|| format!("{} is not an ELF object", ko.display()))?;
    let section = file.section_by_name(".modinfo").ok_or_else(|| {
        anyhow::anyhow!(
            "{} has no .modinfo section: not a kernel module",
            ko.display()
        )
    })?;
    let bytes = section
        .data()
        .with_context(|| format!("reading .modinfo of {}", ko.display()))?;
    Ok(bytes
        .split(|b| *b == 0)
        .filter_map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            entry
                .split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect())
}

/// Refuses, before any boot, a module built for another kernel release: the kernel would reject it
/// with a terse "disagrees about version" otherwise.
pub fn check_release(ko: &Path, release: &str) -> Result<()> {
    let info = modinfo(ko)?;
    let vermagic = info
        .iter()
        .find(|(k, _)| k == "vermagic")
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| anyhow::anyhow!("{} has no vermagic in its modinfo", ko.display()))?;
    let built_for = vermagic.split_whitespace().next().unwrap_or_default();
    if built_for != release {
        bail!(
            "{} was built for kernel {built_for}, but the kernel under test is {release}; rebuild it against this kernel",
            ko.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_for_another_release_is_refused_before_boot() {
        // An ELF object with a .modinfo section, as Kbuild's modpost gives every .ko.
        let dir = tempfile::tempdir().expect("tempdir");
        let source = dir.path().join("fake.c");
        std::fs::write(
            &source,
            "__attribute__((section(\".modinfo\"), used)) static const char info[] =\n\
             \"license=GPL\\0vermagic=6.12.117 SMP mod_unload \";\n",
        )
        .expect("write");
        let ko = dir.path().join("fake.ko");
        let status = Command::new("gcc")
            .arg("-c")
            .arg(&source)
            .arg("-o")
            .arg(&ko)
            .status()
            .expect("gcc runs");
        assert!(status.success());
        let info = modinfo(&ko).expect("modinfo");
        assert!(
            info.contains(&(
                "vermagic".to_string(),
                "6.12.117 SMP mod_unload ".to_string()
            )),
            "{info:?}"
        );
        check_release(&ko, "6.12.117").expect("the same release passes");
        let e = check_release(&ko, "5.10.0-other")
            .expect_err("another release")
            .to_string();
        assert!(
            e.contains("built for kernel 6.12.117") && e.contains("5.10.0-other"),
            "{e}"
        );
    }

    #[test]
    fn modinfo_rejects_what_is_not_a_module() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.ko");
        std::fs::write(&path, b"not an elf").expect("write");
        assert!(modinfo(&path)
            .expect_err("not ELF")
            .to_string()
            .contains("not an ELF object"));
    }
}
