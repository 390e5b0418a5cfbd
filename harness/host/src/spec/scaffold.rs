//! `new`: a module folder that builds and passes `test` the moment it exists, either from a small
//! template (C or Rust) or as a renamed copy of an example.

use crate::spec::{self, Language};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use walkdir::WalkDir;

/// Creates `<modules_dir>/<name>/` and returns its path.
pub fn create(
    modules_dir: &Path,
    name: &str,
    language: Language,
    from: Option<&Path>,
) -> Result<PathBuf> {
    if !spec::is_module_name(name) {
        bail!(
            "`{name}` is not a valid module name: use letters, digits and underscores, not starting with a digit \
             (the kernel turns `-` into `_`, so kmodlab does not accept it)"
        );
    }
    let dir = modules_dir.join(name);
    if dir.exists() {
        bail!(
            "{} already exists; kmodlab never overwrites a module folder",
            dir.display()
        );
    }
    if let Some(builtin) = builtin_clash(name) {
        bail!("`{name}` is the name of a part of the kernel itself ({builtin}); a module of that name cannot load");
    }
    std::fs::create_dir_all(modules_dir)
        .with_context(|| format!("creating {}", modules_dir.display()))?;
    let result = match from {
        Some(example) => copy_example(example, &dir, name),
        None => write_template(&dir, name, language),
    };
    if result.is_err() {
        // Leave nothing half-made behind.
        let _ = std::fs::remove_dir_all(&dir);
    }
    result.map(|()| dir)
}

/// Names the kernel already uses under /sys/module on kmodlab's kernels; loading a module with one of
/// them fails with EEXIST (seen with `workqueue`).
fn builtin_clash(name: &str) -> Option<&'static str> {
    const BUILTIN: [(&str, &str); 8] = [
        ("workqueue", "the work-queue core"),
        ("printk", "the kernel log"),
        ("kernel", "core kernel parameters"),
        ("module", "the module loader"),
        ("rcupdate", "RCU"),
        ("rcutree", "RCU"),
        ("random", "the random number generator"),
        ("8250", "the serial driver"),
    ];
    BUILTIN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, what)| *what)
}

fn write(dir: &Path, file: &str, text: &str) -> Result<()> {
    let path = dir.join(file);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

fn write_template(dir: &Path, name: &str, language: Language) -> Result<()> {
    std::fs::create_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{Type}}", &camel_case(name))
    };
    match language {
        Language::C => {
            write(dir, &format!("{name}.c"), &fill(C_SOURCE))?;
            write(dir, "Kbuild", &fill(C_KBUILD))?;
            write(
                dir,
                "kmodlab.toml",
                &fill(&SPEC.replace("{{language}}", "c")),
            )?;
        }
        Language::Rust => {
            write(dir, &format!("{name}.rs"), &fill(RUST_SOURCE))?;
            write(dir, "Kbuild", &fill(RUST_KBUILD))?;
            let spec = SPEC.replace("{{language}}", "rust").replacen(
                "[[test]]",
                "requires = [\"CONFIG_RUST\"]\n\n[[test]]",
                1,
            );
            write(dir, "kmodlab.toml", &fill(&spec))?;
        }
    }
    write(dir, "README.md", &fill(README))
}

/// Copies an example and renames what it builds to `name`, so the copy and the original can be
/// tested together.
fn copy_example(example: &Path, dir: &Path, name: &str) -> Result<()> {
    let source = spec::load(example)
        .with_context(|| format!("reading the example {}", example.display()))?;
    if source.build.len() != 1 {
        bail!(
            "{} builds {} modules; `new --from` copies examples that build one",
            example.display(),
            source.build.len()
        );
    }
    let old = source.build[0].clone();
    copy_renamed(example, dir, &old, name)
}

/// Copies `from` to `to`, leaving out hidden files and folders, with `old` renamed to `new` in
/// every name and text file.
fn copy_renamed(from: &Path, to: &Path, old: &str, new: &str) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    let walk = WalkDir::new(from)
        .min_depth(1)
        .into_iter()
        .filter_entry(|entry| !entry.file_name().to_string_lossy().starts_with('.'));
    for entry in walk {
        let entry = entry.with_context(|| format!("listing {}", from.display()))?;
        let rel = entry.path().strip_prefix(from).unwrap_or(entry.path());
        // `/` is no identifier character, so renaming the whole path renames each of its names.
        let target = to.join(rename_word(&rel.to_string_lossy(), old, new));
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target)
                .with_context(|| format!("creating {}", target.display()))?;
            continue;
        }
        let bytes = std::fs::read(entry.path())
            .with_context(|| format!("reading {}", entry.path().display()))?;
        let data = match String::from_utf8(bytes) {
            Ok(text) => rename_word(&text, old, new).into_bytes(),
            Err(e) => e.into_bytes(),
        };
        std::fs::write(&target, data).with_context(|| format!("writing {}", target.display()))?;
    }
    Ok(())
}

/// Replaces `old` where it stands as a whole identifier (not inside a longer one), so `hello` becomes
/// `greeter` in `hello_init` and `hello.o` but `Hello` and `othello` stay.
fn rename_word(text: &str, old: &str, new: &str) -> String {
    let is_ident = |c: char| c.is_ascii_alphanumeric();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(old) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + old.len()..].chars().next();
        let whole = !before.is_some_and(is_ident) && !after.is_some_and(is_ident);
        out.push_str(&rest[..at]);
        out.push_str(if whole { new } else { old });
        rest = &rest[at + old.len()..];
    }
    out.push_str(rest);
    out
}

/// `my_mod` → `MyMod`, for the Rust module's type.
fn camel_case(name: &str) -> String {
    name.split('_')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |c| {
                c.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

const SPEC: &str = r#"# How kmodlab tests {{name}}: see the README of kmodlab for every field.
[module]
language = "{{language}}"
description = "{{name}}: a new module"

[[test]]
name = "loads"
ktap = true
expect = ['{{name}}: loaded', '{{name}}: unloaded']
# More a test can say:
# params = "count=3"          # parameters the module declares, for the load
# forbid = ['refcount_t: ']   # regexes no kernel line of the test may match
# timeout_s = 10              # limit for load, wait and unload
#
# A test that the load is refused (no `ktap`: the module never gets to print it), here for an
# int parameter `count` given something that is not a number:
# [[test]]
# name = "refuses_a_bad_count"
# params = "count=lots"
# load_error = "EINVAL"
"#;

const C_KBUILD: &str =
    "# kmodlab puts its helpers (kmodlab/ktap.h) next to this folder in its build copy.\n\
ccflags-y += -I$(src)/../include\n\
obj-m += {{name}}.o\n";

const C_SOURCE: &str = r#"// SPDX-License-Identifier: GPL-2.0
/* {{name}}: checks itself at load time and reports the result as KTAP. */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/init.h>
#include <linux/module.h>

#include <kmodlab/ktap.h>

static int __init {{name}}_init(void)
{
	struct ktap t;

	pr_info("loaded\n");
	ktap_plan(&t, 1);
	ktap_check(&t, 1 + 1 == 2, "arithmetic_works");
	ktap_finish(&t);
	return 0;
}

static void __exit {{name}}_exit(void)
{
	pr_info("unloaded\n");
}

module_init({{name}}_init);
module_exit({{name}}_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("{{name}}: a new module");
"#;

const RUST_KBUILD: &str = "# A Rust module is listed like a C one: {{name}}.o is built from {{name}}.rs.\nobj-m += {{name}}.o\n";

const RUST_SOURCE: &str = r#"// SPDX-License-Identifier: GPL-2.0

//! {{name}}: checks itself at load time and reports the result as KTAP.

use kernel::prelude::*;

// kmodlab puts its helpers next to this folder in its build copy.
#[path = "../include/kmodlab_ktap.rs"]
mod ktap;

module! {
    type: {{Type}},
    name: "{{name}}",
    author: "you",
    description: "{{name}}: a new module",
    license: "GPL",
}

struct {{Type}};

impl kernel::Module for {{Type}} {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        pr_info!("loaded\n");
        let mut t = ktap::Ktap::plan(1);
        t.check(1 + 1 == 2, "arithmetic_works");
        t.finish();
        Ok({{Type}})
    }
}

impl Drop for {{Type}} {
    fn drop(&mut self) {
        pr_info!("unloaded\n");
    }
}
"#;

const README: &str = r#"# {{name}}

A new kernel module. `cargo xtask test {{name}}` builds it, loads it in a fresh kernel under QEMU,
checks its KTAP output and its log lines, unloads it, and prints the verdict.

- `kmodlab.toml` says what the test expects: a complete, all-ok KTAP document and the `loaded` and
  `unloaded` lines.
- Add a check: one more `ktap_check` (C) or `t.check` (Rust), and raise the plan's count.
- Watch a failure: make a check false and run the test again; kmodlab reports FAIL naming it.
- Iterate: `cargo xtask watch {{name}}` re-runs the test on every save; `cargo xtask shell {{name}}`
  boots a shell where `modprobe {{name}}` and `dmesg` work; `--html report.html` on `test` draws
  each kernel message on a timeline by CPU.
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renaming_touches_whole_identifiers_only() {
        let text = "hello.o hello_init Hello, othello! \"hello\" KBUILD(hello)";
        assert_eq!(
            rename_word(text, "hello", "greeter"),
            "greeter.o greeter_init Hello, othello! \"greeter\" KBUILD(greeter)"
        );
    }

    #[test]
    fn a_copy_renames_names_and_text_below_every_folder_and_leaves_hidden_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let from = dir.path().join("hello");
        for (name, text) in [
            ("hello.c", "int hello_init;"),
            ("uapi/hello.h", "#define HELLO 1 /* hello */"),
            (".hello.o.cmd", "hello"),
            (".git/hello", "hello"),
        ] {
            let path = from.join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        }
        let to = dir.path().join("greeter");
        copy_renamed(&from, &to, "hello", "greeter").expect("copied");
        let read = |rel: &str| std::fs::read_to_string(to.join(rel)).expect(rel);
        assert_eq!(read("greeter.c"), "int greeter_init;");
        assert_eq!(read("uapi/greeter.h"), "#define HELLO 1 /* greeter */");
        assert!(!to.join(".greeter.o.cmd").exists() && !to.join(".git").exists());
    }

    #[test]
    fn rust_types_are_camel_case() {
        assert_eq!(camel_case("my_first_mod"), "MyFirstMod");
        assert_eq!(camel_case("x"), "X");
    }

    #[test]
    fn bad_names_and_existing_folders_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = create(dir.path(), "my-mod", Language::C, None)
            .expect_err("dash")
            .to_string();
        assert!(e.contains("not a valid module name"), "{e}");
        let e = create(dir.path(), "workqueue", Language::C, None)
            .expect_err("built in")
            .to_string();
        assert!(e.contains("part of the kernel itself"), "{e}");
        create(dir.path(), "mine", Language::C, None).expect("first time");
        let e = create(dir.path(), "mine", Language::Rust, None)
            .expect_err("exists")
            .to_string();
        assert!(e.contains("never overwrites"), "{e}");
    }

    #[test]
    fn templates_give_a_valid_spec_for_each_language() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, language) in [("c_mod", Language::C), ("rust_mod", Language::Rust)] {
            let folder = create(dir.path(), name, language, None).expect("created");
            let spec = spec::load(&folder).expect("the spec parses");
            assert_eq!(spec.language, language);
            assert_eq!(spec.build, [name]);
            assert!(folder.join("README.md").is_file());
            let source = folder.join(if language == Language::C {
                format!("{name}.c")
            } else {
                format!("{name}.rs")
            });
            let text = std::fs::read_to_string(source).expect("source");
            assert!(!text.contains("{{"), "every placeholder is filled");
        }
        let rust = spec::load(&dir.path().join("rust_mod")).expect("spec");
        assert_eq!(rust.requires, ["CONFIG_RUST"]);
    }
}
