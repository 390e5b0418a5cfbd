//! Building a folder without a spec: every `.ko` that can be built is, and each one that cannot
//! keeps the compiler or modpost lines that say why.
//!
//! `make -k` compiles every object it can. When all of them compile, `modules.order` lists the
//! modules in Kbuild's order. When some do not, Kbuild writes no `modules.order` and runs no
//! modpost; but it has written a `<module>.mod` (the module's objects) for every `obj-m`, so the
//! modules whose objects compiled are linked with a second make that names their `.ko` files
//! (Kbuild's single targets). `KBUILD_MODPOST_WARN=1` makes symbols no module or kernel exports
//! warnings, so they cost only the module that needs them, which is then not loaded.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a build of a folder without a spec produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The `.ko` files built, relative to the folder and without `.ko`, in Kbuild's order.
    pub built: Vec<String>,
    pub failed: Vec<Failed>,
}

/// A module that did not build, or that needs symbols nothing exports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failed {
    /// Relative to the folder, without `.ko`.
    pub module: String,
    /// The compiler's, make's or modpost's lines about it (paths of the build copy).
    pub lines: Vec<String>,
    /// Symbols modpost found no export for.
    pub undefined: Vec<String>,
}

impl Failed {
    /// Why it did not build, in one line: the symbols it lacks, else the compiler's first error.
    pub fn summary(&self) -> String {
        if self.undefined.is_empty() {
            self.first_error().unwrap_or_default().to_string()
        } else {
            format!(
                "needs symbols the kernel lacks: {}",
                self.undefined.join(", ")
            )
        }
    }

    /// The first error gcc (`x.c:3:1: error: ...`), rustc (`error[E0107]: ...`, but not its
    /// closing `error: aborting due to ...`) or modpost (`ERROR: modpost: ...`) printed; else
    /// the first line.
    pub fn first_error(&self) -> Option<&str> {
        let is_error = |line: &&String| {
            let line = line.trim_start();
            (line.contains("error:") || line.starts_with("error[") || line.starts_with("ERROR: "))
                && !line.starts_with("error: aborting due to")
        };
        self.lines
            .iter()
            .find(is_error)
            .or(self.lines.first())
            .map(|l| l.trim())
    }
}

/// The modules Kbuild knows in `copy` (from their `.mod` files), relative to it, with the
/// objects each is linked from (absolute paths).
pub fn modules_by_mod_file(copy: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let mut modules = BTreeMap::new();
    for entry in walkdir::WalkDir::new(copy).into_iter().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "mod") || !entry.file_type().is_file() {
            continue;
        }
        let Ok(rel) = path
            .with_extension("")
            .strip_prefix(copy)
            .map(Path::to_path_buf)
        else {
            continue;
        };
        let objects = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| PathBuf::from(l.trim()))
            .collect();
        modules.insert(rel.to_string_lossy().into_owned(), objects);
    }
    modules
}

/// The modules `modules.order` lists (`dir/name.o` or `dir/name.ko`), relative to `copy`.
pub fn read_modules_order(copy: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(copy.join("modules.order")).ok()?;
    Some(
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| {
                let l = l.strip_suffix(".o").or(l.strip_suffix(".ko")).unwrap_or(l);
                let path = Path::new(l);
                path.strip_prefix(copy)
                    .unwrap_or(path)
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
    )
}

/// Sorts modules as the folder's Kbuild or Makefile names them (`name.o`), unknown ones last.
pub fn kbuild_order(dir: &Path, modules: &mut [String]) {
    let text: String = ["Kbuild", "Makefile"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(dir.join(f)).ok())
        .collect::<Vec<_>>()
        .join("\n");
    let position = |m: &String| {
        let stem = Path::new(m)
            .file_name()
            .map_or(m.clone(), |n| n.to_string_lossy().into_owned());
        text.find(&format!("{stem}.o")).unwrap_or(usize::MAX)
    };
    modules.sort_by_key(|m| (position(m), m.clone()));
}

/// Which of `modules` (name → objects) the lines of a failed make are about: a compiler line names
/// a source file (`/copy/a.c:3:1: error`), make names the object it gave up on (`[...: /copy/a.o]
/// Error 1`), modpost names the module (`[/copy/m.ko]`, `m.o`). Lines that name no file (the
/// compiler's source excerpts, `In function`) follow the last one that did.
pub fn attribute(
    text: &str,
    copy: &Path,
    modules: &BTreeMap<String, Vec<PathBuf>>,
) -> BTreeMap<String, Vec<String>> {
    // Each object's stem (without extension) → the module it belongs to.
    let mut owner: BTreeMap<String, &str> = BTreeMap::new();
    for (module, objects) in modules {
        owner.insert(copy.join(module).to_string_lossy().into_owned(), module);
        for object in objects {
            let object = if object.is_absolute() {
                object.clone()
            } else {
                copy.join(object)
            };
            owner.insert(
                object.with_extension("").to_string_lossy().into_owned(),
                module,
            );
        }
    }
    let prefix = format!("{}/", copy.display());
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut last: Option<&str> = None;
    // rustc names the file on the line after its `error[E0107]: ...` header: held until then.
    let mut header: Vec<String> = Vec::new();
    for line in text.lines() {
        let named = paths_in(line, &prefix)
            .into_iter()
            .find_map(|p| owner.get(strip_extension(&p)).copied());
        let is_noise = line.contains("not remade because of errors")
            || line.starts_with("make: ")
            || line.contains("Entering directory")
            || line.contains("Leaving directory");
        let starts_diagnostic = line.starts_with("error") || line.starts_with("warning");
        match named {
            Some(module) => {
                last = Some(module);
                out.entry(module.to_string())
                    .or_default()
                    .append(&mut header);
            }
            None if is_noise => continue,
            None if line.starts_with("make[") || line.starts_with("WARNING: modpost") => {
                last = None;
                header.clear();
                continue;
            }
            None if starts_diagnostic => {
                last = None;
                header = vec![line.to_string()];
                continue;
            }
            None => {}
        }
        match last {
            Some(module) => out
                .entry(module.to_string())
                .or_default()
                .push(line.to_string()),
            None if !header.is_empty() => header.push(line.to_string()),
            None => {}
        }
    }
    out
}

/// Paths below `prefix` that a line mentions.
fn paths_in(line: &str, prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find(prefix) {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| c == ':' || c == ']' || c == '\'' || c == '"' || c.is_whitespace())
            .unwrap_or(tail.len());
        found.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    found
}

/// `/x/a.c` → `/x/a`; `/x/a.mod.c` → `/x/a`.
fn strip_extension(path: &str) -> &str {
    let name_start = path.rfind('/').map_or(0, |i| i + 1);
    match path[name_start..].find('.') {
        Some(dot) => &path[..name_start + dot],
        None => path,
    }
}

/// The symbols modpost could not resolve, by module (relative to `copy`, without `.ko`):
/// `WARNING: modpost: "register_netdev" [/copy/vnet.ko] undefined!` (an ERROR without
/// `KBUILD_MODPOST_WARN`).
pub fn undefined_symbols(text: &str, copy: &Path) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.split("modpost: \"").nth(1) else {
            continue;
        };
        if !line.ends_with("undefined!") {
            continue;
        }
        let Some((symbol, rest)) = rest.split_once('"') else {
            continue;
        };
        let Some(module) = rest
            .split_once('[')
            .and_then(|(_, r)| r.split_once(".ko]"))
            .map(|(m, _)| m)
        else {
            continue;
        };
        let module = Path::new(module);
        let rel = module.strip_prefix(copy).unwrap_or(module);
        out.entry(rel.to_string_lossy().into_owned())
            .or_default()
            .push(symbol.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_error_is_the_compilers_not_rustcs_closing_line() {
        let failed = |lines: &[&str]| Failed {
            module: "m".into(),
            lines: lines.iter().map(|l| l.to_string()).collect(),
            undefined: vec![],
        };
        let rust = failed(&[
            "error[E0107]: struct takes 2 generic arguments but 1 generic argument was supplied",
            "  --> ./m.rs:16:14",
            "error: aborting due to 1 previous error",
        ]);
        assert_eq!(rust.first_error(), Some("error[E0107]: struct takes 2 generic arguments but 1 generic argument was supplied"));
        let c = failed(&["make[2]: entering", "./m.c:3:1: error: expected ';'"]);
        assert_eq!(c.first_error(), Some("./m.c:3:1: error: expected ';'"));
        let modpost = failed(&["ERROR: modpost: missing MODULE_LICENSE() in ./m.o"]);
        assert_eq!(
            modpost.summary(),
            "ERROR: modpost: missing MODULE_LICENSE() in ./m.o"
        );
    }

    const FAILED_MAKE: &str = "\
/c/x/hello-2.c: In function 'hello_2_init':
/c/x/hello-2.c:12:13: error: expected ';' before '}' token
   12 |     return 0
      |             ^
make[2]: *** [/src/scripts/Makefile.build:234: /c/x/hello-2.o] Error 1
/c/x/start.c:3:1: error: unknown type name 'nope'
make[2]: *** [/src/scripts/Makefile.build:234: /c/x/start.o] Error 1
make[2]: Target '/c/x/' not remade because of errors.
make: *** [/src/Makefile:236: __sub-make] Error 2
";

    #[test]
    fn failed_lines_go_to_the_module_of_their_object() {
        let mut modules = BTreeMap::new();
        modules.insert("hello-2".to_string(), vec![PathBuf::from("/c/x/hello-2.o")]);
        modules.insert(
            "startstop".to_string(),
            vec![PathBuf::from("/c/x/start.o"), PathBuf::from("/c/x/stop.o")],
        );
        modules.insert("hello-1".to_string(), vec![PathBuf::from("/c/x/hello-1.o")]);
        let by = attribute(FAILED_MAKE, Path::new("/c/x"), &modules);
        assert_eq!(by.len(), 2, "{by:?}");
        assert_eq!(by["hello-2"].len(), 5, "{by:?}");
        assert!(by["hello-2"][1].contains("hello-2.c:12:13: error"));
        assert_eq!(by["startstop"].len(), 2, "{by:?}");
    }

    #[test]
    fn rustcs_header_goes_with_the_file_it_names_next() {
        let mut modules = BTreeMap::new();
        modules.insert("r".to_string(), vec![PathBuf::from("/c/x/r.o")]);
        modules.insert("c".to_string(), vec![PathBuf::from("/c/x/c.o")]);
        let text = "/c/x/c.c:1:1: warning: unused\n\
                    error[E0107]: struct takes 2 generic arguments\n  \
                    --> /c/x/r.rs:16:14\n   |\n\
                    error: aborting due to 1 previous error\n";
        let by = attribute(text, Path::new("/c/x"), &modules);
        assert_eq!(by["c"], ["/c/x/c.c:1:1: warning: unused"], "{by:?}");
        assert_eq!(
            by["r"],
            [
                "error[E0107]: struct takes 2 generic arguments",
                "  --> /c/x/r.rs:16:14",
                "   |"
            ],
            "{by:?}"
        );
    }

    #[test]
    fn undefined_symbols_are_found_by_module() {
        let text = "WARNING: modpost: \"register_netdev\" [/c/x/vnet-loop.ko] undefined!\n\
                    WARNING: modpost: \"free_netdev\" [/c/x/vnet-loop.ko] undefined!\n\
                    WARNING: modpost: suppressed 1 unresolved symbol warnings because there were too many)\n";
        let by = undefined_symbols(text, Path::new("/c/x"));
        assert_eq!(by["vnet-loop"], ["register_netdev", "free_netdev"]);
    }

    #[test]
    fn modules_order_and_kbuild_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let copy = dir.path();
        std::fs::write(
            copy.join("modules.order"),
            format!("{0}/b-one.o\n{0}/sub/a.o\n", copy.display()),
        )
        .expect("write");
        assert_eq!(read_modules_order(copy).expect("order"), ["b-one", "sub/a"]);
        std::fs::write(copy.join("Kbuild"), "obj-m += zed.o\nobj-m += alpha.o\n").expect("write");
        let mut modules = vec!["alpha".to_string(), "other".into(), "zed".into()];
        kbuild_order(copy, &mut modules);
        assert_eq!(modules, ["zed", "alpha", "other"]);
    }
}
