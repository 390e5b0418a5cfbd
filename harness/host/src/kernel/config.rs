//! Kconfig fragments: reading them, and checking that what they ask for survived the merge.
//!
//! `merge_config.sh` quietly drops an option whose dependencies are not met (with an allnoconfig base
//! a KUnit test without RUNTIME_TESTING_MENU, or CONFIG_RUST without a usable toolchain). Finding
//! that out after a boot costs minutes, so every requested option is compared with the final
//! `.config`, and a mismatch is an error naming the option, the fragment line and, from the
//! kernel's Kconfig files, what it depends on.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use walkdir::WalkDir;

/// One option a fragment asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    /// With the `CONFIG_` prefix.
    pub name: String,
    /// `None` for `# CONFIG_X is not set` (and `CONFIG_X=n`).
    pub value: Option<String>,
    pub file: PathBuf,
    pub line: usize,
}

impl Request {
    /// The request as a `.config` line would say it.
    fn as_line(&self) -> String {
        match &self.value {
            Some(value) => format!("{}={value}", self.name),
            None => format!("# {} is not set", self.name),
        }
    }
}

/// Parses one fragment. Blank lines and comments are skipped; anything else that is not a Kconfig
/// assignment is an error, since merge_config.sh would pass it on silently.
pub(crate) fn parse_fragment(file: &Path, text: &str) -> Result<Vec<Request>> {
    let mut requests = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        let at = index + 1;
        if let Some(name) = line
            .strip_prefix("# ")
            .and_then(|l| l.strip_suffix(" is not set"))
        {
            if is_config_name(name) {
                requests.push(Request {
                    name: name.to_string(),
                    value: None,
                    file: file.to_path_buf(),
                    line: at,
                });
                continue;
            }
        }
        if line.trim_start().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let Some((name, value)) = line
            .split_once('=')
            .filter(|(name, _)| is_config_name(name))
        else {
            bail!(
                "{}:{at}: `{line}` is not a Kconfig line (expected `CONFIG_NAME=value` or `# CONFIG_NAME is not set`)",
                file.display()
            );
        };
        let value = (value != "n").then(|| value.to_string());
        requests.push(Request {
            name: name.to_string(),
            value,
            file: file.to_path_buf(),
            line: at,
        });
    }
    Ok(requests)
}

fn is_config_name(name: &str) -> bool {
    name.strip_prefix("CONFIG_").is_some_and(|rest| {
        !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

/// What all fragments ask for together: a later fragment (or a later line) overrides an earlier
/// one, as in merge_config.sh. Ordered by where each surviving request was written.
pub(crate) fn merged_requests(fragments: &[PathBuf]) -> Result<Vec<Request>> {
    let mut by_name: BTreeMap<String, (usize, Request)> = BTreeMap::new();
    for (order, file) in fragments.iter().enumerate() {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading the config fragment {}", file.display()))?;
        for request in parse_fragment(file, &text)? {
            by_name.insert(request.name.clone(), (order, request));
        }
    }
    let mut requests: Vec<(usize, Request)> = by_name.into_values().collect();
    requests.sort_by_key(|(order, r)| (*order, r.line));
    Ok(requests.into_iter().map(|(_, r)| r).collect())
}

/// The options a `.config` sets, by name with the `CONFIG_` prefix. Unset options are absent.
pub(crate) fn parse_dotconfig(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .filter(|(name, _)| is_config_name(name))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// A request the built config does not honour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lost {
    pub request: Request,
    /// The built config's value; `None` when unset.
    pub got: Option<String>,
}

/// The requests that did not survive into `config`.
pub(crate) fn lost_requests(requests: &[Request], config: &BTreeMap<String, String>) -> Vec<Lost> {
    requests
        .iter()
        .filter_map(|request| {
            let got = config.get(&request.name).cloned();
            (got != request.value).then(|| Lost {
                request: request.clone(),
                got,
            })
        })
        .collect()
}

/// Fails with one paragraph per lost request. `src` (the kernel tree) is searched for each
/// option's Kconfig entry to say what it depends on.
pub(crate) fn check_survival(
    requests: &[Request],
    config: &BTreeMap<String, String>,
    src: Option<&Path>,
    build_dir: &Path,
) -> Result<()> {
    let lost = lost_requests(requests, config);
    if lost.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = lost
        .iter()
        .map(|l| l.request.name.trim_start_matches("CONFIG_"))
        .collect();
    let entries = src.map(|src| find_entries(src, &names)).unwrap_or_default();
    let mut message = format!(
        "{} of the requested kernel options did not survive into {}:",
        lost.len(),
        build_dir.join(".config").display()
    );
    for lost in &lost {
        message.push_str("\n\n");
        message.push_str(&describe(lost, config, &entries, src));
    }
    bail!(message)
}

fn describe(
    lost: &Lost,
    config: &BTreeMap<String, String>,
    entries: &[Entry],
    src: Option<&Path>,
) -> String {
    let request = &lost.request;
    let got = match &lost.got {
        Some(value) => format!("has {}={value}", request.name),
        None => "has it unset".to_string(),
    };
    let why = match (&request.value, &lost.got) {
        (None, Some(_)) => "another option selects it or its default forces it",
        (Some(want), Some(got)) if want == "y" && got == "m" => {
            "a dependency is only a module (=m), which limits it to m"
        }
        (Some(_), Some(_)) => "the value is out of range or rewritten by Kconfig",
        _ => "its dependencies are not met",
    };
    let mut text = format!(
        "{} requested by {}:{} but the built config {got} — {why}",
        request.as_line(),
        display_path(&request.file),
        request.line
    );
    let short = request.name.trim_start_matches("CONFIG_");
    for entry in entries.iter().filter(|e| e.symbol == short) {
        let _ = write!(
            text,
            "\n    defined at {}:{}",
            entry.file.display(),
            entry.line
        );
        for (line, condition) in &entry.conditions {
            let _ = write!(
                text,
                "\n    {}:{line}: {}",
                entry.file.display(),
                annotate(condition, config)
            );
        }
    }
    if short == "RUST" && request.value.is_some() {
        let tree = src
            .map(|s| s.display().to_string())
            .unwrap_or_else(|| "SRC".into());
        let _ = write!(
            text,
            "\n    (for Rust: run `make -C {tree} rustavailable` to see why; `kmodlab setup` installs rustc's rust-src, bindgen and libclang)"
        );
    }
    text
}

/// A path as the user gave it, shortened to be relative to the current folder when inside it.
fn display_path(path: &Path) -> String {
    let shortened = std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf));
    shortened
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

/// Writes each symbol of a Kconfig condition with its value in `config`, as menuconfig's help does:
/// `depends on KUNIT [=y] && !MODVERSIONS [=n]`.
fn annotate(condition: &str, config: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.is_empty() {
            return;
        }
        out.push_str(word);
        let is_symbol = !matches!(
            word.as_str(),
            "y" | "n" | "m" | "on" | "if" | "depends" | "visible"
        ) && !word.bytes().all(|b| b.is_ascii_digit())
            && word.bytes().any(|b| b.is_ascii_uppercase());
        if is_symbol {
            let value = config
                .get(&format!("CONFIG_{word}"))
                .map(String::as_str)
                .unwrap_or("n");
            let _ = write!(out, " [={value}]");
        }
        word.clear();
    };
    for c in condition.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Where a symbol is defined in Kconfig, with the conditions that guard it: its own `depends on`
/// lines and the `if` blocks and menus around it in the same file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub symbol: String,
    /// Relative to the source tree.
    pub file: PathBuf,
    pub line: usize,
    /// (line, text) such as (2167, "inside `if RUNTIME_TESTING_MENU`") or (2639, "depends on KUNIT").
    pub conditions: Vec<(usize, String)>,
}

/// Finds the Kconfig entries of `symbols` (without `CONFIG_`) in an x86_64 kernel tree.
pub(crate) fn find_entries(src: &Path, symbols: &[&str]) -> Vec<Entry> {
    let mut entries = Vec::new();
    for file in kconfig_files(src) {
        if let Ok(text) = std::fs::read_to_string(&file) {
            let relative = file.strip_prefix(src).unwrap_or(&file).to_path_buf();
            entries.extend(scan_kconfig(&relative, &text, symbols));
        }
    }
    entries
}

/// The tree's `Kconfig*` files, sorted, leaving out hidden folders and other architectures'
/// (their symbols only confuse an x86_64 answer). What cannot be read is left out: this only
/// explains an error.
fn kconfig_files(src: &Path) -> Vec<PathBuf> {
    let arch = src.join("arch");
    let mut files: Vec<PathBuf> = WalkDir::new(src)
        .min_depth(1)
        .into_iter()
        .filter_entry(|entry| {
            let name = entry.file_name().to_string_lossy();
            let other_arch = entry.path().parent() == Some(arch.as_path()) && name != "x86";
            !entry.file_type().is_dir() || !(name.starts_with('.') || other_arch)
        })
        .flatten()
        .filter(|entry| {
            !entry.file_type().is_dir()
                && entry.file_name().to_string_lossy().starts_with("Kconfig")
        })
        .map(walkdir::DirEntry::into_path)
        .collect();
    files.sort();
    files
}

/// A block around the lines being read: an `if`, a `menu` (its `depends on` guard its entries) or
/// a `choice`.
struct Frame {
    line: usize,
    kind: &'static str,
    conditions: Vec<String>,
}

/// Reads one Kconfig file and returns the entries that define any of `symbols`.
pub(crate) fn scan_kconfig(file: &Path, text: &str, symbols: &[&str]) -> Vec<Entry> {
    let mut scan = Scan {
        file,
        symbols,
        found: Vec::new(),
        frames: Vec::new(),
        target: Target::Nothing,
    };
    let mut help_indent: Option<Option<usize>> = None;
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let at = i + 1;
        let mut line = lines[i].to_string();
        i += 1;
        if in_help(&mut help_indent, &line) {
            continue;
        }
        while line.ends_with('\\') && i < lines.len() {
            line.pop();
            line.push_str(lines[i]);
            i += 1;
        }
        let trimmed = line.trim();
        let keyword = trimmed.split_whitespace().next().unwrap_or("");
        let rest = trimmed[keyword.len()..].trim();
        if matches!(keyword, "help" | "---help---") {
            help_indent = Some(None);
        } else {
            scan.keyword(at, keyword, rest);
        }
    }
    scan.found
}

/// Whether `line` belongs to help text, which may hold any words. `help_indent` is `Some` inside
/// help, with the indentation of its first line once that is known; help ends at the first line
/// indented less than its first line.
fn in_help(help_indent: &mut Option<Option<usize>>, line: &str) -> bool {
    let Some(first) = *help_indent else {
        return false;
    };
    if line.trim().is_empty() {
        return true;
    }
    let indent = indentation(line);
    match first {
        None => {
            *help_indent = Some(Some(indent));
            true
        }
        Some(first) if indent >= first => true,
        Some(_) => {
            *help_indent = None;
            false
        }
    }
}

/// Where `depends on` lines go: the entry being read (an index into the entries found), a menu, or
/// nowhere.
enum Target {
    Found(usize),
    Frame,
    Nothing,
}

/// A Kconfig file being read: the blocks around the current line and the entries found so far.
struct Scan<'a> {
    file: &'a Path,
    symbols: &'a [&'a str],
    found: Vec<Entry>,
    frames: Vec<Frame>,
    target: Target,
}

impl Scan<'_> {
    /// One line (outside help text) that starts with `keyword`.
    fn keyword(&mut self, at: usize, keyword: &str, rest: &str) {
        match keyword {
            "config" | "menuconfig" => {
                self.target = Target::Nothing;
                if self.symbols.contains(&rest) {
                    self.entry(at, rest);
                }
            }
            "if" => {
                self.frames.push(Frame {
                    line: at,
                    kind: "if",
                    conditions: vec![rest.to_string()],
                });
                self.target = Target::Nothing;
            }
            "menu" | "choice" => {
                let kind = if keyword == "menu" { "menu" } else { "choice" };
                self.frames.push(Frame {
                    line: at,
                    kind,
                    conditions: Vec::new(),
                });
                self.target = Target::Frame;
            }
            "endif" | "endmenu" | "endchoice" => {
                self.frames.pop();
                self.target = Target::Nothing;
            }
            "comment" | "source" | "mainmenu" => self.target = Target::Nothing,
            "depends" => {
                let condition = rest.strip_prefix("on").unwrap_or(rest).trim();
                let condition = format!("depends on {condition}");
                match self.target {
                    Target::Found(index) => self.found[index].conditions.push((at, condition)),
                    Target::Frame => {
                        if let Some(frame) = self.frames.last_mut() {
                            frame.conditions.push(condition);
                        }
                    }
                    Target::Nothing => {}
                }
            }
            _ => {}
        }
    }

    /// A `config` line of a wanted symbol: an entry with the conditions of the blocks around it.
    fn entry(&mut self, at: usize, symbol: &str) {
        let mut conditions = Vec::new();
        for frame in &self.frames {
            for condition in &frame.conditions {
                let text = match frame.kind {
                    "if" => format!("inside `if {condition}`"),
                    kind => format!("inside a {kind} that {condition}"),
                };
                conditions.push((frame.line, text));
            }
        }
        self.found.push(Entry {
            symbol: symbol.to_string(),
            file: self.file.to_path_buf(),
            line: at,
            conditions,
        });
        self.target = Target::Found(self.found.len() - 1);
    }
}

fn indentation(line: &str) -> usize {
    let mut width = 0;
    for c in line.chars() {
        match c {
            ' ' => width += 1,
            '\t' => width = (width / 8 + 1) * 8,
            _ => break,
        }
    }
    width
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn fragments_parse_values_unset_lines_and_comments() {
        let text = "# a comment\n\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x y\"\nCONFIG_D=n\nCONFIG_E=0x10\n";
        let got = parse_fragment(Path::new("f.config"), text).unwrap();
        let pairs: Vec<(&str, Option<&str>, usize)> = got
            .iter()
            .map(|r| (r.name.as_str(), r.value.as_deref(), r.line))
            .collect();
        assert_eq!(
            pairs,
            [
                ("CONFIG_A", Some("y"), 3),
                ("CONFIG_B", None, 4),
                ("CONFIG_C", Some("\"x y\""), 5),
                ("CONFIG_D", None, 6),
                ("CONFIG_E", Some("0x10"), 7)
            ]
        );
    }

    #[test]
    fn a_malformed_fragment_line_names_file_and_line() {
        let err = parse_fragment(Path::new("k/x.config"), "CONFIG_A=y\nRUST=y\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("k/x.config:2: `RUST=y` is not a Kconfig line"),
            "{err}"
        );
    }

    #[test]
    fn later_fragments_override_earlier_ones() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.config", "CONFIG_A=y\nCONFIG_B=y\n");
        let b = write(
            dir.path(),
            "b.config",
            "# CONFIG_A is not set\nCONFIG_C=m\n",
        );
        let merged = merged_requests(&[a.clone(), b.clone()]).unwrap();
        let lines: Vec<(String, &Path, usize)> = merged
            .iter()
            .map(|r| (r.as_line(), r.file.as_path(), r.line))
            .collect();
        assert_eq!(
            lines,
            [
                ("CONFIG_B=y".to_string(), a.as_path(), 2),
                ("# CONFIG_A is not set".to_string(), b.as_path(), 1),
                ("CONFIG_C=m".to_string(), b.as_path(), 2)
            ]
        );
    }

    #[test]
    fn dotconfig_keeps_only_set_options() {
        let config = parse_dotconfig("#\n# CONFIG_X is not set\nCONFIG_A=y\nCONFIG_S=\"hi\"\n");
        assert_eq!(config.len(), 2);
        assert_eq!(config["CONFIG_S"], "\"hi\"");
    }

    #[test]
    fn survival_check_names_option_values_and_fragment_line() {
        let dir = tempfile::tempdir().unwrap();
        let frag = write(
            dir.path(),
            "rust.config",
            "# Rust\nCONFIG_RUST=y\n# CONFIG_SEL is not set\nCONFIG_TRI=y\nCONFIG_OK=y\n",
        );
        let requests = merged_requests(std::slice::from_ref(&frag)).unwrap();
        let config = parse_dotconfig("CONFIG_OK=y\nCONFIG_SEL=y\nCONFIG_TRI=m\n");
        let err = check_survival(&requests, &config, None, Path::new("/b"))
            .unwrap_err()
            .to_string();
        let frag = frag.display();
        assert!(
            err.starts_with("3 of the requested kernel options did not survive into /b/.config"),
            "{err}"
        );
        assert!(
            err.contains(&format!(
                "CONFIG_RUST=y requested by {frag}:2 but the built config has it unset — its dependencies are not met"
            )),
            "{err}"
        );
        assert!(err.contains("make -C SRC rustavailable"), "{err}");
        assert!(
            err.contains(&format!("# CONFIG_SEL is not set requested by {frag}:3 but the built config has CONFIG_SEL=y")),
            "{err}"
        );
        assert!(err.contains(&format!(
            "CONFIG_TRI=y requested by {frag}:4 but the built config has CONFIG_TRI=m"
        )));
        assert!(!err.contains("CONFIG_OK"), "{err}");
        assert!(check_survival(&requests[3..], &config, None, Path::new("/b")).is_ok());
    }

    #[test]
    fn requesting_unset_is_satisfied_by_absence() {
        let requests =
            parse_fragment(Path::new("f"), "# CONFIG_X is not set\nCONFIG_Y=n\n").unwrap();
        assert!(lost_requests(&requests, &BTreeMap::new()).is_empty());
    }

    const KCONFIG: &str = "\
menuconfig RUNTIME_TESTING_MENU
\tbool \"Runtime Testing\"
\tdefault y

if RUNTIME_TESTING_MENU

config LIST_KUNIT_TEST
\ttristate \"list test\" if !KUNIT_ALL_TESTS
\tdepends on KUNIT
\thelp
\t  if you say Y here, endif and menu words in help text
\t  must not be read as Kconfig.

menu \"Stuff\"
\tdepends on PCI

config INNER
\tbool
\tdepends on A && \\
\t  B

endmenu
endif # RUNTIME_TESTING_MENU

config OUTER
\tbool
";

    #[test]
    fn kconfig_scan_finds_dependencies_and_enclosing_blocks() {
        let got = scan_kconfig(
            Path::new("lib/Kconfig.debug"),
            KCONFIG,
            &["LIST_KUNIT_TEST", "INNER", "OUTER"],
        );
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].line, 7);
        assert_eq!(
            got[0].conditions,
            [
                (5, "inside `if RUNTIME_TESTING_MENU`".to_string()),
                (9, "depends on KUNIT".to_string())
            ]
        );
        assert_eq!(got[1].conditions.len(), 3, "{:?}", got[1].conditions);
        assert_eq!(
            got[1].conditions[1],
            (14, "inside a menu that depends on PCI".to_string())
        );
        assert!(
            got[1].conditions[2].1.starts_with("depends on A &&"),
            "{:?}",
            got[1].conditions
        );
        assert!(got[2].conditions.is_empty(), "{:?}", got[2].conditions);
    }

    #[test]
    fn survival_errors_show_kconfig_conditions_with_values() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("lib")).unwrap();
        std::fs::create_dir_all(src.path().join("arch/arm")).unwrap();
        write(&src.path().join("lib"), "Kconfig.debug", KCONFIG);
        write(
            &src.path().join("arch/arm"),
            "Kconfig",
            "config LIST_KUNIT_TEST\n\tdepends on ARM\n",
        );
        let frag = write(
            src.path(),
            "kunit.config",
            "CONFIG_KUNIT=y\nCONFIG_LIST_KUNIT_TEST=y\n",
        );
        let requests = merged_requests(std::slice::from_ref(&frag)).unwrap();
        let config = parse_dotconfig("CONFIG_KUNIT=y\n");
        let err = check_survival(&requests, &config, Some(src.path()), Path::new("/b"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "CONFIG_LIST_KUNIT_TEST=y requested by {}:2",
                frag.display()
            )),
            "{err}"
        );
        assert!(
            err.contains("lib/Kconfig.debug:5: inside `if RUNTIME_TESTING_MENU [=n]`"),
            "{err}"
        );
        assert!(
            err.contains("lib/Kconfig.debug:9: depends on KUNIT [=y]"),
            "{err}"
        );
        assert!(
            !err.contains("ARM"),
            "other architectures are skipped: {err}"
        );
    }

    #[test]
    fn annotate_marks_symbols_only() {
        let config = parse_dotconfig("CONFIG_HAVE_RUST=y\nCONFIG_RUSTC_VERSION=109500\n");
        assert_eq!(
            annotate(
                "depends on HAVE_RUST && !MODVERSIONS || RUSTC_VERSION >= 108100",
                &config
            ),
            "depends on HAVE_RUST [=y] && !MODVERSIONS [=n] || RUSTC_VERSION [=109500] >= 108100"
        );
    }
}
