//! Building a module folder out of tree with Kbuild, in a copy, so the user's folder stays clean.
//!
//! The copy lives in the cache as `<copy>/<name>/` beside `<copy>/include/` (kmodlab's helpers, such as
//! `kmodlab/ktap.h`), so a module's Kbuild can say `ccflags-y += -I$(src)/../include` wherever it comes from.
//! A content hash of the sources, the helpers and the kernel skips `make` entirely when nothing changed.

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

/// What a build copy was last built from: the content key of its inputs, and the files synced
/// into it. Written only after a successful build, so a missing or unreadable stamp means "build".
#[derive(serde::Serialize, serde::Deserialize, Default)]
pub(crate) struct Stamp {
    pub key: String,
    pub files: Vec<String>,
}

impl Stamp {
    /// The stamp at `path`, or an empty one.
    pub fn read(path: &Path) -> Stamp {
        std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        std::fs::write(path, serde_json::to_vec(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }
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
    for rel in &sources {
        key.part("path", rel.to_string_lossy().as_bytes());
        key.file("file", &spec.dir.join(rel))?;
    }
    let key = key.finish();

    let root = copy_root(spec, kernel)?;
    let copy = root.join(&spec.name);
    let stamp_path = root.join("stamp.json");
    let previous = Stamp::read(&stamp_path);
    let objects: Vec<(String, PathBuf)> = spec
        .build
        .iter()
        .map(|name| (name.clone(), copy.join(format!("{name}.ko"))))
        .collect();
    if previous.key == key && objects.iter().all(|(_, path)| path.is_file()) {
        return Ok(ModuleBuild {
            module: spec.name.clone(),
            objects,
            reused: true,
            duration: started.elapsed(),
            warnings: String::new(),
            copy_dir: copy.clone(),
            companions: vec![],
        });
    }

    // Sync the copy: rewrite only changed files so make's own timestamps keep builds incremental.
    for (name, text) in HELPERS {
        write_if_changed(&root.join("include").join(name), text.as_bytes())?;
    }
    let current = sync_copy(&spec.dir, &sources, &copy, &previous.files)?;
    let _ = std::fs::remove_file(&stamp_path);

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
    let shown = |bytes: &[u8]| relocate(&String::from_utf8_lossy(bytes), &copy, &spec.dir);
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
    for (name, path) in &objects {
        if !path.is_file() {
            bail!(
                "building module `{}`: Kbuild did not produce {name}.ko; is `{name}` in its Kbuild's obj-m? \
                 (the spec's module.build lists {:?})",
                spec.name,
                spec.build
            );
        }
    }
    for (_, path) in &objects {
        check_release(path, &kernel.release)?;
    }
    Stamp {
        key,
        files: current,
    }
    .write(&stamp_path)?;
    Ok(ModuleBuild {
        module: spec.name.clone(),
        objects,
        reused: false,
        duration: started.elapsed(),
        warnings: stderr,
        copy_dir: copy.clone(),
        companions: vec![],
    })
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

/// Makes `copy` hold `sources` as they are in `dir`: rewrites only the files that changed (so the
/// build tools' own timestamps keep builds incremental) and removes the ones listed in `previous`
/// that are gone. Returns the new list, for the next build's stamp.
pub fn sync_copy(
    dir: &Path,
    sources: &[PathBuf],
    copy: &Path,
    previous: &[String],
) -> Result<Vec<String>> {
    for rel in sources {
        let data = std::fs::read(dir.join(rel))
            .with_context(|| format!("reading {}", dir.join(rel).display()))?;
        write_if_changed(&copy.join(rel), &data)?;
    }
    let current: Vec<String> = sources
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    for gone in previous.iter().filter(|f| !current.contains(f)) {
        let _ = std::fs::remove_file(copy.join(gone));
    }
    Ok(current)
}

/// The copy's folder: one per kernel and module folder.
fn copy_root(spec: &ModuleSpec, kernel: &Kernel) -> Result<PathBuf> {
    let canonical = spec
        .dir
        .canonicalize()
        .with_context(|| format!("finding {}", spec.dir.display()))?;
    let folder_key = KeyBuilder::new()
        .part("dir", canonical.to_string_lossy().as_bytes())
        .finish();
    let root = cache::dir("modules")?.join(&kernel.key).join(format!(
        "{}-{}",
        spec.name,
        &folder_key[..8]
    ));
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    Ok(root)
}

/// Whether a file name is something Kbuild writes (a user may have run make in the folder itself).
pub fn is_build_product(name: &str) -> bool {
    const SUFFIXES: [&str; 12] = [
        ".o", ".ko", ".mod", ".mod.c", ".symvers", ".order", ".a", ".rmeta", ".d", ".cmd", ".so",
        ".tmp",
    ];
    SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// The module's own files, relative to its folder, sorted; build products and hidden files are left out
/// (a user may have run make in place before).
pub(crate) fn source_files(dir: &Path) -> Result<Vec<PathBuf>> {
    fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let dir = root.join(rel);
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || is_build_product(&name) || name == "target" {
                continue;
            }
            let file_type = entry
                .file_type()
                .with_context(|| format!("reading {}", entry.path().display()))?;
            if file_type.is_dir() {
                walk(root, &rel.join(&name), out)?;
            } else if file_type.is_file() {
                out.push(rel.join(&name));
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, Path::new(""), &mut files)?;
    files.sort();
    Ok(files)
}

pub(crate) fn write_if_changed(path: &Path, data: &[u8]) -> Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == data) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, data).with_context(|| format!("writing {}", path.display()))
}

/// Points compiler and kernel messages at the user's files instead of the build copy.
pub fn relocate(text: &str, copy: &Path, original: &Path) -> String {
    let shown = display_path(original);
    text.replace(
        &format!("{}/", copy.display()),
        &format!("{}/", shown.display()),
    )
    .replace(&copy.display().to_string(), &shown.display().to_string())
}

/// A path relative to the current folder when it lies below it, for shorter messages.
pub fn display_path(path: &Path) -> PathBuf {
    let absolute = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    match std::env::current_dir() {
        // The working directory itself is `.`, not an empty path that prints as nothing.
        Ok(cwd) if absolute == cwd => PathBuf::from("."),
        Ok(cwd) => absolute
            .strip_prefix(&cwd)
            .map(Path::to_path_buf)
            .unwrap_or(absolute),
        Err(_) => absolute,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_show_relative_to_the_working_directory() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(display_path(&cwd), PathBuf::from("."));
        assert_eq!(
            display_path(&cwd.join("no_such_dir")),
            PathBuf::from("no_such_dir")
        );
        assert_eq!(display_path(Path::new("/")), PathBuf::from("/"));
    }

    #[test]
    fn sources_leave_out_build_products_and_hidden_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in [
            "hello.c",
            "Kbuild",
            "hello.o",
            "hello.ko",
            ".hello.o.cmd",
            "hello.mod.c",
            "sub/util.h",
        ] {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, name).expect("write");
        }
        let files = source_files(dir.path()).expect("walk");
        let names: Vec<_> = files
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["Kbuild", "hello.c", "sub/util.h"]);
    }

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

    #[test]
    fn compiler_paths_point_at_the_users_folder() {
        let text = "/cache/m/hello/hello.c:3:1: error: expected ';'\nmake[2]: *** [/cache/m/hello/Makefile] Error 1";
        let out = relocate(
            text,
            Path::new("/cache/m/hello"),
            Path::new("/no/such/modules/hello"),
        );
        assert!(
            out.starts_with("/no/such/modules/hello/hello.c:3:1: error"),
            "{out}"
        );
        assert!(!out.contains("/cache/m"), "{out}");
    }
}
