//! Finding a module folder's user-space companions: `companions/<name>.c` (one C file) and
//! `companions/<name>/Cargo.toml` (a Rust package). What a spec's `[[test.run]]` may name; how
//! they are built is [`crate::build::companion`]'s business.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// The folder, inside a module folder, that holds the companions.
pub const DIR: &str = "companions";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    C,
    Rust,
}

/// A companion found in a module folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Companion {
    pub name: String,
    pub kind: Kind,
    /// `companions/<name>.c` or `companions/<name>`, relative to the module folder.
    pub source: PathBuf,
}

/// The companions of a module folder, by name. A folder without `companions/` has none.
pub fn discover(module_dir: &Path) -> Result<Vec<Companion>> {
    let dir = module_dir.join(DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let mut found: Vec<Companion> = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let (name, kind) = if path.join("Cargo.toml").is_file() {
            (file_name, Kind::Rust)
        } else if let Some(stem) = file_name.strip_suffix(".c").filter(|_| path.is_file()) {
            (stem, Kind::C)
        } else {
            // Shared headers, READMEs and the like.
            continue;
        };
        if !is_program_name(name) {
            bail!(
                "{}: `{name}` is not a usable companion name: use letters, digits, `_` and `-`",
                path.display()
            );
        }
        if let Some(other) = found.iter().find(|c| c.name == name) {
            bail!(
                "{}: two companions are named `{name}` ({} and {}); rename one",
                dir.display(),
                other.source.display(),
                Path::new(DIR).join(file_name).display()
            );
        }
        found.push(Companion {
            name: name.to_string(),
            kind,
            source: Path::new(DIR).join(file_name),
        });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

fn is_program_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::touch;

    #[test]
    fn c_files_and_cargo_packages_are_companions() {
        let dir = tempfile::tempdir().expect("tempdir");
        touch(
            dir.path(),
            "companions/b_test.c",
            "int main(void){return 0;}",
        );
        touch(dir.path(), "companions/a_rs/Cargo.toml", "[package]");
        touch(dir.path(), "companions/shared.h", "");
        touch(dir.path(), "companions/README.md", "");
        touch(dir.path(), "companions/notes/x.txt", "");
        let found = discover(dir.path()).expect("discover");
        assert_eq!(
            found,
            [
                Companion {
                    name: "a_rs".into(),
                    kind: Kind::Rust,
                    source: PathBuf::from("companions/a_rs"),
                },
                Companion {
                    name: "b_test".into(),
                    kind: Kind::C,
                    source: PathBuf::from("companions/b_test.c"),
                },
            ]
        );
        assert!(discover(&dir.path().join("nothing"))
            .expect("none")
            .is_empty());
    }

    #[test]
    fn a_name_taken_twice_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        touch(dir.path(), "companions/x.c", "");
        touch(dir.path(), "companions/x/Cargo.toml", "");
        let e = discover(dir.path()).expect_err("clash").to_string();
        assert!(e.contains("two companions are named `x`"), "{e}");
    }
}
