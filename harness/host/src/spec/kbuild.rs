//! Folders without a spec: a folder whose `Kbuild` or `Makefile` names `obj-m` (or a conditional
//! `obj-$(CONFIG_...)`) builds modules, and kmodlab tests each `.ko` it produces
//! (see [`crate::run`]'s plan).

use std::path::Path;

/// The files Kbuild reads a folder's objects from, in the order it looks for them.
const KBUILD_FILES: [&str; 2] = ["Kbuild", "Makefile"];

/// Whether `dir`'s Kbuild or Makefile names modules to build.
pub fn builds_modules(dir: &Path) -> bool {
    KBUILD_FILES
        .iter()
        .any(|name| std::fs::read_to_string(dir.join(name)).is_ok_and(|text| names_obj_m(&text)))
}

/// Whether Kbuild text assigns to `obj-m` or to `obj-$(CONFIG_...)`, in any of the forms
/// `:=`, `+=`, `?=` and `=`, inside conditionals or not.
pub fn names_obj_m(text: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim_start();
        let Some(rest) = line.strip_prefix("obj-") else {
            return false;
        };
        let rest = if let Some(r) = rest.strip_prefix('m') {
            r
        } else if let Some(r) = rest
            .strip_prefix("$(CONFIG_")
            .or(rest.strip_prefix("${CONFIG_"))
        {
            match r.find([')', '}']) {
                Some(end) => &r[end + 1..],
                None => return false,
            }
        } else {
            return false;
        };
        let rest = rest.trim_start();
        ["=", ":=", "+=", "?="]
            .iter()
            .any(|op| rest.starts_with(op))
    })
}

/// The language of a folder's modules: Rust when it has Rust sources beside the Kbuild file.
pub fn language_of(dir: &Path) -> super::Language {
    let has_rust = std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "rs"))
    });
    if has_rust {
        super::Language::Rust
    } else {
        super::Language::C
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn obj_m_is_found_in_its_usual_forms() {
        assert!(names_obj_m("obj-m += hello-1.o\nobj-m += hello-2.o\n"));
        assert!(names_obj_m("obj-m := a-core.o a-user.o\n"));
        assert!(names_obj_m(
            "ifneq ($(KERNELRELEASE),)\n\tobj-m = x.o\nelse\nall:\n\t$(MAKE)\nendif\n"
        ));
        assert!(names_obj_m("obj-$(CONFIG_DEMO) += demo.o\n"));
        assert!(names_obj_m("obj-m+=tight.o\n"));
        assert!(!names_obj_m("obj-y += core.o\nall:\n\tmake\n"));
        assert!(!names_obj_m("# obj-mine\nobj-module := 1\n"));
    }

    #[test]
    fn a_folder_with_a_makefile_naming_obj_m_builds_modules() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(!builds_modules(dir.path()));
        std::fs::write(dir.path().join("Makefile"), "all:\n\techo\n").expect("write");
        assert!(!builds_modules(dir.path()));
        std::fs::write(dir.path().join("Kbuild"), "obj-m := a.o\n").expect("write");
        assert!(builds_modules(dir.path()));
    }
}
