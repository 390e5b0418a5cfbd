//! The copy of a module folder that builds happen in, shared by the Kbuild build
//! ([`crate::build::module`]) and the companions' build ([`crate::build::companion`]), so the
//! user's folder stays clean.
//!
//! Which files of a folder count ([`source_files`]), a key of their contents, syncing them into the
//! copy so that the build tools' own timestamps keep builds incremental, the stamp that says what a
//! copy was last built from, and turning the copy's paths in messages back into the user's.

use crate::host::cache::KeyBuilder;
use crate::host::paths::display_path;
use crate::spec::ModuleSpec;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use walkdir::WalkDir;

/// A build copy's folder in the cache and what it was last built from.
pub(crate) struct BuildCopy {
    /// `<parent>/<module>-<hash of the folder's path>/`.
    pub root: PathBuf,
    stamp_path: PathBuf,
    previous: Stamp,
    /// The files the last [`BuildCopy::sync`] wrote, for the stamp.
    synced: Vec<String>,
}

/// What a build copy was last built from: the content key of its inputs, and the files synced
/// into it. Written only after a successful build, so a missing or unreadable stamp means "build".
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Stamp {
    key: String,
    files: Vec<String>,
    /// For a folder without a spec: which modules built and which did not.
    #[serde(default)]
    outcome: Option<super::partial::Outcome>,
}

impl BuildCopy {
    /// The copy of `spec`'s folder under `parent` (created if needed): one per module folder, so
    /// two checkouts of the same module never share one.
    pub fn open(parent: &Path, spec: &ModuleSpec) -> Result<BuildCopy> {
        let canonical = spec
            .dir
            .canonicalize()
            .with_context(|| format!("finding {}", spec.dir.display()))?;
        let folder_key = KeyBuilder::new()
            .part("dir", canonical.to_string_lossy().as_bytes())
            .finish();
        let root = parent.join(format!("{}-{}", spec.name, &folder_key[..8]));
        std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        let stamp_path = root.join("stamp.json");
        // An unreadable stamp (a half-written file, an older layout) means "build".
        let previous = std::fs::read(&stamp_path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        Ok(BuildCopy {
            root,
            stamp_path,
            previous,
            synced: Vec::new(),
        })
    }

    /// Whether the last build was of inputs with `key` and every one of `outputs` is still there.
    pub fn is_current<'a>(&self, key: &str, mut outputs: impl Iterator<Item = &'a Path>) -> bool {
        self.previous.key == key && outputs.all(Path::is_file)
    }

    /// Makes `copy` hold `sources` as they are in `dir`: rewrites only the files that changed and
    /// removes the ones the last sync wrote that are gone. Until [`BuildCopy::finish`], the copy
    /// counts as not built.
    pub fn sync(&mut self, dir: &Path, sources: &[PathBuf], copy: &Path) -> Result<()> {
        for rel in sources {
            let data = std::fs::read(dir.join(rel))
                .with_context(|| format!("reading {}", dir.join(rel).display()))?;
            write_if_changed(&copy.join(rel), &data)?;
        }
        let current: Vec<String> = sources
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        for gone in self.previous.files.iter().filter(|f| !current.contains(f)) {
            let _ = std::fs::remove_file(copy.join(gone));
        }
        self.synced = current;
        let _ = std::fs::remove_file(&self.stamp_path);
        Ok(())
    }

    /// What the last build of inputs with `key` produced, if it was of a folder without a spec.
    pub fn outcome(&self, key: &str) -> Option<super::partial::Outcome> {
        self.previous
            .outcome
            .clone()
            .filter(|_| self.previous.key == key)
    }

    /// Records a successful build of inputs with `key`.
    pub fn finish(self, key: String) -> Result<()> {
        self.finish_with(key, None)
    }

    /// Records a finished build of inputs with `key` (for a folder without a spec, what it
    /// produced: some of its modules may have failed).
    pub fn finish_with(self, key: String, outcome: Option<super::partial::Outcome>) -> Result<()> {
        let stamp = Stamp {
            key,
            files: self.synced,
            outcome,
        };
        std::fs::write(&self.stamp_path, serde_json::to_vec(&stamp)?)
            .with_context(|| format!("writing {}", self.stamp_path.display()))
    }
}

/// Adds each of `sources` (relative to `dir`) to `key`: its path and its contents.
pub(crate) fn key_sources(key: &mut KeyBuilder, dir: &Path, sources: &[PathBuf]) -> Result<()> {
    for rel in sources {
        key.part("path", rel.to_string_lossy().as_bytes());
        key.file("file", &dir.join(rel))?;
    }
    Ok(())
}

/// Whether a file name is something Kbuild writes (a user may have run make in the folder itself).
pub fn is_build_product(name: &str) -> bool {
    const SUFFIXES: [&str; 12] = [
        ".o", ".ko", ".mod", ".mod.c", ".symvers", ".order", ".a", ".rmeta", ".d", ".cmd", ".so",
        ".tmp",
    ];
    SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// Whether a file or folder of a module folder is the module's own: not hidden, not a build
/// product, not cargo's `target`.
pub(crate) fn is_source_name(name: &str) -> bool {
    !(name.starts_with('.') || is_build_product(name) || name == "target")
}

/// The module's own files (see [`is_source_name`]) below `dir`, relative to it, as the walk finds
/// them.
pub(crate) fn walk_sources(dir: &Path) -> impl Iterator<Item = Result<PathBuf>> + '_ {
    WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .filter_entry(|entry| is_source_name(&entry.file_name().to_string_lossy()))
        .filter_map(move |entry| match entry {
            Ok(entry) if entry.file_type().is_file() => Some(Ok(entry
                .path()
                .strip_prefix(dir)
                .unwrap_or(entry.path())
                .to_path_buf())),
            Ok(_) => None,
            Err(e) => Some(Err(e).with_context(|| format!("listing {}", dir.display()))),
        })
}

/// The module's own files (see [`is_source_name`]), relative to its folder, sorted.
pub(crate) fn source_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = walk_sources(dir).collect::<Result<Vec<_>>>()?;
    files.sort();
    Ok(files)
}

/// Writes `data` to `path` unless it holds it already, creating its folder.
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn cargo_targets_are_left_out_but_a_folder_of_any_name_is_walked() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A module may itself be named `target`: only what lies below the folder is filtered.
        let module = dir.path().join("target");
        for name in [
            "target.c",
            "companions/x/src/main.rs",
            "companions/x/target/debug/x",
        ] {
            let path = module.join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, name).expect("write");
        }
        let files = source_files(&module).expect("walk");
        assert_eq!(
            files,
            [
                PathBuf::from("companions/x/src/main.rs"),
                PathBuf::from("target.c")
            ]
        );
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
