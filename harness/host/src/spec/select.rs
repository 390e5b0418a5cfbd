//! Choosing the module folders (and tests) a command works on: `name`, `name/test`, or a path.

use super::{self as spec, ModuleSpec};
use crate::host::paths::display_path;
use anyhow::{anyhow, bail, Result};
use std::path::Path;

/// A module folder chosen for the run, and optionally which of its tests.
#[derive(Debug, Clone)]
pub struct Selected {
    pub spec: ModuleSpec,
    /// `None`: all tests.
    pub tests: Option<Vec<String>>,
}

/// Finds the named modules: `name`, `name/test`, or a path to a module folder (`.` included). With
/// no names: `modules_dir` itself when it is a module folder (`kmodlab test` inside a driver's
/// repository), else every module folder in it.
pub fn select(modules_dir: &Path, names: &[String]) -> Result<Vec<Selected>> {
    if names.is_empty() {
        if spec::is_module_folder(modules_dir) {
            return Ok(vec![Selected {
                spec: spec::load(modules_dir)?,
                tests: None,
            }]);
        }
        let dirs = spec::discover(modules_dir)?;
        if dirs.is_empty() {
            bail!(
                "no module folders in {}: a module folder has a {}, or a Kbuild or Makefile naming \
                 obj-m (run kmodlab inside one, or name its path)",
                display_path(modules_dir).display(),
                spec::SPEC_FILE,
            );
        }
        return dirs
            .iter()
            .map(|d| {
                Ok(Selected {
                    spec: spec::load(d)?,
                    tests: None,
                })
            })
            .collect();
    }
    let mut selected: Vec<Selected> = Vec::new();
    for name in names {
        let as_path = Path::new(name);
        let (dir, test) = if spec::is_module_folder(as_path) {
            (as_path.to_path_buf(), None)
        } else {
            let (module, test) = match name.split_once('/') {
                Some((m, t)) if !t.contains('/') && !m.is_empty() && !t.is_empty() => {
                    (m, Some(t.to_string()))
                }
                _ => (name.as_str(), None),
            };
            let dir = modules_dir.join(module);
            if !spec::is_module_folder(&dir) {
                return Err(unknown_module(modules_dir, name));
            }
            (dir, test)
        };
        let spec = spec::load(&dir)?;
        // A folder without a spec has its tests once it is built: one per .ko.
        if let Some(test) = test.as_ref().filter(|_| !spec.discovered) {
            if !spec.tests.iter().any(|t| &t.name == test) {
                let names: Vec<&str> = spec.tests.iter().map(|t| t.name.as_str()).collect();
                bail!(
                    "module `{}` has no test `{test}`; its tests: {}",
                    spec.name,
                    names.join(", ")
                );
            }
        }
        match selected.iter_mut().find(|s| s.spec.dir == spec.dir) {
            Some(existing) => match (&mut existing.tests, test) {
                (Some(list), Some(test)) if !list.contains(&test) => list.push(test),
                (tests, None) => *tests = None,
                _ => {}
            },
            None => selected.push(Selected {
                spec,
                tests: test.map(|t| vec![t]),
            }),
        }
    }
    Ok(selected)
}

fn unknown_module(modules_dir: &Path, name: &str) -> anyhow::Error {
    let known: Vec<String> = spec::discover(modules_dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    let closest = known
        .iter()
        .min_by_key(|k| strsim::levenshtein(k, name))
        .filter(|k| strsim::levenshtein(k, name) <= 3);
    let mut message = format!(
        "no module named `{name}` in {}",
        display_path(modules_dir).display()
    );
    if let Some(closest) = closest {
        message.push_str(&format!("; did you mean `{closest}`?"));
    }
    if Path::new(name).is_dir() {
        return anyhow!(
            "{name} is no module folder: it has no {}, and no Kbuild or Makefile naming obj-m",
            spec::SPEC_FILE
        );
    }
    if !known.is_empty() {
        message.push_str(&format!("\navailable: {}", known.join(", ")));
    }
    anyhow!(message)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_close_name_is_suggested_and_a_far_one_is_not() {
        let dir = tempfile::tempdir().expect("temporary folder");
        for name in ["workqueue", "hello"] {
            let module = dir.path().join(name);
            std::fs::create_dir(&module).expect("module folder");
            std::fs::write(module.join(super::spec::SPEC_FILE), "").expect("spec");
        }
        let near = super::unknown_module(dir.path(), "workqeue").to_string();
        assert!(near.contains("did you mean `workqueue`?"), "{near}");
        assert!(near.contains("available: hello, workqueue"), "{near}");
        let far = super::unknown_module(dir.path(), "zzzzzzzzz").to_string();
        assert!(!far.contains("did you mean"), "{far}");
    }

    #[test]
    fn a_folder_with_a_kbuild_is_selected_from_inside_by_path_or_by_name() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let repo = dir.path().join("my-driver");
        std::fs::create_dir(&repo).expect("module folder");
        std::fs::write(repo.join("Makefile"), "obj-m += hello-1.o\n").expect("Makefile");
        // `kmodlab test` inside it: the current folder is the modules folder.
        let inside = super::select(&repo, &[]).expect("selected");
        assert_eq!(inside.len(), 1);
        assert_eq!(inside[0].spec.name, "my-driver");
        assert!(inside[0].spec.discovered && inside[0].spec.tests.is_empty());
        // `.` and other paths name it too, and `..`-ended ones get the folder's own name.
        let sub = repo.join("sub");
        std::fs::create_dir(&sub).expect("sub");
        for path in [repo.clone(), repo.join("."), sub.join("..")] {
            let by_path = super::select(dir.path(), &[path.display().to_string()]).expect("path");
            assert_eq!(by_path[0].spec.name, "my-driver", "{}", path.display());
        }
        // By name, with a test of it (known once it is built).
        let by_name =
            super::select(dir.path(), &["my-driver/hello_1".to_string()]).expect("by name");
        assert_eq!(
            by_name[0].tests.as_deref(),
            Some(&["hello_1".to_string()][..])
        );
        // The folder above lists it among its module folders.
        assert_eq!(super::select(dir.path(), &[]).expect("all").len(), 1);
    }

    #[test]
    fn a_folder_that_builds_nothing_says_what_a_module_folder_is() {
        let dir = tempfile::tempdir().expect("temporary folder");
        std::fs::write(dir.path().join("Makefile"), "all:\n\techo\n").expect("Makefile");
        let e = super::select(dir.path(), &[])
            .expect_err("no modules")
            .to_string();
        assert!(
            e.contains("no module folders in") && e.contains("naming obj-m"),
            "{e}"
        );
        let path = dir.path().display().to_string();
        let e = super::select(dir.path(), &[path])
            .expect_err("not one")
            .to_string();
        assert!(e.contains("is no module folder"), "{e}");
    }
}
