//! Building a module folder out of tree with Kbuild, in a copy, so the user's folder stays clean.
//!
//! The copy lives in the cache as `<copy>/<name>/` beside `<copy>/include/` (kmodlab's helpers, such as
//! `kmodlab/ktap.h`), so a module's Kbuild can say `ccflags-y += -I$(src)/../include` wherever it comes from.
//! A content hash of the sources, the helpers and the kernel skips `make` entirely when nothing changed.

use crate::build::copy::{key_sources, relocate, source_files, write_if_changed, BuildCopy};
use crate::build::{depmod, partial};
use crate::host::cache::{self, KeyBuilder};
use crate::kernel::Kernel;
use crate::spec::ModuleSpec;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
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
    /// Each `.ko` of the spec's `build` list, in that order (for a folder without a spec: each
    /// one its build produced, in Kbuild's order), by file name without `.ko`.
    pub objects: Vec<(String, PathBuf)>,
    /// A folder without a spec: the modules that did not build, with the lines that say why
    /// (paths pointing into the user's folder).
    pub failed: Vec<partial::Failed>,
    /// A folder without a spec: for each of `objects`, the modules to load for it, dependencies
    /// first and itself last (from depmod).
    pub load_orders: BTreeMap<String, Vec<String>>,
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
    let mut build = if spec.discovered {
        build_discovered(spec, kernel)?
    } else {
        build_modules(spec, kernel)?
    };
    let companions = crate::build::companion::build(spec)?;
    build.reused &= companions.reused;
    build.duration += companions.duration;
    build.warnings.push_str(&companions.warnings);
    build.companions = companions.programs;
    Ok(build)
}

/// The content key of a module folder's build: the kernel, kmodlab's helpers and the sources.
fn build_key(spec: &ModuleSpec, kernel: &Kernel, sources: &[PathBuf]) -> Result<String> {
    let mut key = KeyBuilder::new();
    key.part("kernel", &kernel.key);
    for (name, text) in HELPERS {
        key.part(name, text);
    }
    if spec.discovered {
        key.part("build", "every .ko, keep going");
    }
    key_sources(&mut key, &spec.dir, sources)?;
    Ok(key.finish())
}

/// A build about to start: its sources, their content key and the copy it happens in.
struct Start {
    started: Instant,
    sources: Vec<PathBuf>,
    key: String,
    build_copy: BuildCopy,
    copy: PathBuf,
}

impl Start {
    fn new(spec: &ModuleSpec, kernel: &Kernel) -> Result<Start> {
        let started = Instant::now();
        let sources = source_files(&spec.dir)?;
        let key = build_key(spec, kernel, &sources)?;
        let build_copy = BuildCopy::open(&cache::dir("modules")?.join(&kernel.key), spec)?;
        let copy = build_copy.root.join(&spec.name);
        Ok(Start {
            started,
            sources,
            key,
            build_copy,
            copy,
        })
    }

    /// Brings the copy up to date with the folder and kmodlab's helpers, before `make`. Only
    /// changed files are rewritten, so make's own timestamps keep builds incremental.
    fn sync(&mut self, spec: &ModuleSpec) -> Result<()> {
        for (name, text) in HELPERS {
            write_if_changed(
                &self.build_copy.root.join("include").join(name),
                text.as_bytes(),
            )?;
        }
        self.build_copy.sync(&spec.dir, &self.sources, &self.copy)
    }
}

fn build_modules(spec: &ModuleSpec, kernel: &Kernel) -> Result<ModuleBuild> {
    let mut start = Start::new(spec, kernel)?;
    let (started, copy) = (start.started, start.copy.clone());
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
        failed: vec![],
        load_orders: BTreeMap::new(),
    };
    let objects = build.objects.iter().map(|(_, path)| path.as_path());
    if !start.build_copy.is_current(&start.key, objects) {
        start.sync(spec)?;
        build.warnings = make_modules(spec, kernel, &copy)?;
        check_objects(spec, &build.objects, &kernel.release)?;
        start.build_copy.finish(start.key)?;
        build.reused = false;
    }
    build.duration = started.elapsed();
    Ok(build)
}

/// Builds a folder without a spec: every `.ko` that builds, the failures by module, and the load
/// order of each from depmod.
fn build_discovered(spec: &ModuleSpec, kernel: &Kernel) -> Result<ModuleBuild> {
    let mut start = Start::new(spec, kernel)?;
    let (started, copy) = (start.started, start.copy.clone());
    let ko = |rel: &String| copy.join(format!("{rel}.ko"));
    let previous = start
        .build_copy
        .outcome(&start.key)
        .filter(|o| o.built.iter().all(|m| ko(m).is_file()));
    let (outcome, warnings, reused) = match previous {
        Some(outcome) => (outcome, String::new(), true),
        None => {
            start.sync(spec)?;
            let (outcome, warnings) = make_every_module(spec, kernel, &copy)?;
            start
                .build_copy
                .finish_with(start.key, Some(outcome.clone()))?;
            (outcome, warnings, false)
        }
    };
    let objects: Vec<(String, PathBuf)> = outcome
        .built
        .iter()
        .map(|rel| (file_stem(rel), ko(rel)))
        .collect();
    for (_, path) in &objects {
        check_release(path, &kernel.release)?;
    }
    let indexes = depmod::run(
        &kernel.release,
        &objects
            .iter()
            .map(|(_, path)| (depmod::extra_path(path), path.clone()))
            .collect::<Vec<_>>(),
    )?;
    let stem_of = |rel: &str| file_stem(rel.trim_start_matches("extra/").trim_end_matches(".ko"));
    let load_orders = indexes
        .load_orders()
        .into_iter()
        .map(|(module, order)| (stem_of(&module), order.iter().map(|m| stem_of(m)).collect()))
        .collect();
    let failed = outcome
        .failed
        .into_iter()
        .map(|f| partial::Failed {
            lines: f
                .lines
                .iter()
                .map(|l| relocate(l, &copy, &spec.dir))
                .collect(),
            ..f
        })
        .collect();
    Ok(ModuleBuild {
        module: spec.name.clone(),
        objects,
        reused,
        duration: started.elapsed(),
        warnings,
        copy_dir: copy,
        companions: vec![],
        failed,
        load_orders,
    })
}

/// `sub/hello-1` → `hello-1`.
fn file_stem(rel: &str) -> String {
    rel.rsplit('/').next().unwrap_or(rel).to_string()
}

/// Builds every module of `copy` that can be built (see [`partial`]); returns what was built and
/// what was not, and the warnings of the modules that were (paths in the user's folder).
fn make_every_module(
    spec: &ModuleSpec,
    kernel: &Kernel,
    copy: &Path,
) -> Result<(partial::Outcome, String)> {
    // Stale `.mod` files of modules the Kbuild no longer names would count as modules.
    for module in partial::modules_by_mod_file(copy).keys() {
        let _ = std::fs::remove_file(copy.join(format!("{module}.mod")));
    }
    let _ = std::fs::remove_file(copy.join("modules.order"));
    let first = make(kernel, copy, &["-k", "KBUILD_MODPOST_WARN=1", "modules"])?;
    let mut text = without_btf_notes(&String::from_utf8_lossy(&first.stderr));
    let modules = partial::modules_by_mod_file(copy);
    let mut outcome = partial::Outcome::default();
    if first.status.success() {
        outcome.built =
            partial::read_modules_order(copy).unwrap_or_else(|| modules.keys().cloned().collect());
    } else {
        if modules.is_empty() {
            let stdout = String::from_utf8_lossy(&first.stdout);
            bail!(
                "building `{}` failed before Kbuild named any module:\n{}",
                spec.name,
                relocate(
                    if text.trim().is_empty() {
                        &stdout
                    } else {
                        &text
                    },
                    copy,
                    &spec.dir
                )
                .trim_end()
            );
        }
        let mut candidates = fail_attributed(&text, copy, &modules, &mut outcome);
        partial::kbuild_order(&spec.dir, &mut candidates);
        // Link the rest by naming their .ko files; a modpost error that names modules drops them
        // and the rest are linked again.
        for _ in 0..3 {
            if candidates.is_empty() {
                break;
            }
            let goals: Vec<String> = candidates.iter().map(|m| format!("{m}.ko")).collect();
            let mut args = vec!["-k", "KBUILD_MODPOST_WARN=1"];
            args.extend(goals.iter().map(String::as_str));
            let again = make(kernel, copy, &args)?;
            let again_text = without_btf_notes(&String::from_utf8_lossy(&again.stderr));
            text.push_str(&again_text);
            if again.status.success() {
                outcome.built = std::mem::take(&mut candidates);
                break;
            }
            let before = candidates.len();
            let chosen: BTreeMap<String, Vec<PathBuf>> = modules
                .iter()
                .filter(|(m, _)| candidates.contains(m))
                .map(|(m, o)| (m.clone(), o.clone()))
                .collect();
            candidates = fail_attributed(&again_text, copy, &chosen, &mut outcome);
            if candidates.len() == before {
                // Nothing names a module: every one left fails with the whole output.
                for module in std::mem::take(&mut candidates) {
                    outcome.failed.push(partial::Failed {
                        module,
                        lines: again_text.lines().map(str::to_string).collect(),
                        undefined: vec![],
                    });
                }
            }
        }
    }
    // Symbols nothing exports: the module builds, but could never load.
    for (module, symbols) in partial::undefined_symbols(&text, copy) {
        if let Some(at) = outcome.built.iter().position(|m| *m == module) {
            outcome.built.remove(at);
            let ko = format!("{}/{module}.ko", copy.display());
            outcome.failed.push(partial::Failed {
                module,
                lines: text
                    .lines()
                    .filter(|l| l.contains("modpost") && l.contains(&ko))
                    .map(str::to_string)
                    .collect(),
                undefined: symbols,
            });
        }
    }
    let failed: Vec<&str> = outcome.failed.iter().map(|f| f.module.as_str()).collect();
    let by_module = partial::attribute(&text, copy, &modules);
    let warnings: String = by_module
        .iter()
        .filter(|(m, _)| !failed.contains(&m.as_str()))
        .flat_map(|(_, lines)| lines.iter().map(|l| format!("{l}\n")))
        .collect();
    Ok((outcome, relocate(&warnings, copy, &spec.dir)))
}

/// Records as failed the modules of `modules` that the lines of a failed make name; returns the
/// others.
fn fail_attributed(
    text: &str,
    copy: &Path,
    modules: &BTreeMap<String, Vec<PathBuf>>,
    outcome: &mut partial::Outcome,
) -> Vec<String> {
    let by_module = partial::attribute(text, copy, modules);
    let mut rest = Vec::new();
    for module in modules.keys() {
        match by_module.get(module) {
            Some(lines) if lines.iter().any(|l| is_error_line(l)) => {
                outcome.failed.push(partial::Failed {
                    module: module.clone(),
                    lines: lines.clone(),
                    undefined: vec![],
                })
            }
            _ => rest.push(module.clone()),
        }
    }
    rest
}

/// A line that says something failed, not just a warning.
fn is_error_line(line: &str) -> bool {
    line.contains("error:") || line.contains("] Error ") || line.starts_with("ERROR: ")
}

/// `make -C KDIR M=<copy>` with `goals`, as every module build runs it.
fn make(kernel: &Kernel, copy: &Path, goals: &[&str]) -> Result<Output> {
    Command::new("make")
        .arg("-C")
        .arg(&kernel.build_dir)
        .arg(format!("M={}", copy.display()))
        .arg(format!(
            "-j{}",
            std::thread::available_parallelism().map_or(2, |n| n.get())
        ))
        .args(goals)
        .env("PATH", crate::host::setup::build_env_path())
        .output()
        .context("running make for the module build (is `make` installed? Debian package: make)")
}

/// Kbuild's note about skipping BTF is no compiler warning: Debian's prebuilt headers have no
/// vmlinux to base module BTF on (kmodlab removes its BTF-only one so that builds need no pahole).
fn without_btf_notes(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with("Skipping BTF generation for "))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// `make -C KDIR M=<copy> modules`; returns its warnings, with paths pointing into the user's folder.
fn make_modules(spec: &ModuleSpec, kernel: &Kernel, copy: &Path) -> Result<String> {
    let output = make(kernel, copy, &["-k", "modules"])?;
    let shown = |bytes: &[u8]| relocate(&String::from_utf8_lossy(bytes), copy, &spec.dir);
    let stderr = without_btf_notes(&shown(&output.stderr));
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
