//! Module test specs: the `kmodlab.toml` in each module folder.
//!
//! ```toml
//! [module]
//! language = "c"                 # "c" or "rust"
//! description = "one line"
//! build = ["hello"]              # .ko files the folder builds; default: the folder name
//! requires = ["CONFIG_RUST"]     # kernel options the tests need; missing ones make the tests SKIP
//!
//! [[test]]
//! name = "greets"
//! load = ["hello"]               # load order, dependencies first; default: `build`
//! params = "who=kmodlab"         # parameters of the last module in `load`
//! ktap = true                    # wait for the module's KTAP document and judge it
//! settle_ms = 50                # extra wait for late messages (default 50)
//! after_unload_ms = 300          # keep watching after each unload (default 300)
//! reload = true                  # load, unload, load and unload again (default: see README)
//! timeout_s = 10
//! expect = ['Hello, kmodlab']    # each must match a kernel log line of the test's window
//! forbid = ['refcount']          # none may match
//!
//! [[test.run]]                   # programs to run once loaded (after the KTAP/settle wait), in order
//! program = "chardev_test"       # a companion: companions/chardev_test.c or companions/chardev_test/
//! args = ["/dev/kmodlab_chardev"]
//! exit = 0                       # expected exit status (default 0)
//! expect = ['read back: hello']  # each must match a line of the program's output (stdout + stderr)
//! forbid = ['FAILED']
//! timeout_s = 5                  # default: the test's timeout_s
//!
//! [[test]]
//! name = "refuses_a_bad_count"
//! params = "count=lots"
//! load_error = "EINVAL"          # the last module of `load` must be refused with exactly this errno;
//!                                # not with `ktap = true` or `[[test.run]]`, which need a loaded module
//! expect = ["`lots' invalid for parameter `count'"]
//! ```
//! Every mistake is reported as `file:line:column: what is wrong`, naming the field.

pub mod companions;
pub mod init;
pub mod kbuild;
pub mod scaffold;
pub mod select;

use anyhow::{anyhow, bail, Context, Result};
use nix::errno::Errno;
use regex::Regex;
use serde::Deserialize;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// The spec's file name inside a module folder.
pub const SPEC_FILE: &str = "kmodlab.toml";

const DEFAULT_SETTLE_MS: u64 = 50;
const DEFAULT_TIMEOUT_S: u64 = 10;
/// How long the agent keeps reading the kernel log after an unload. A module that left a timer or
/// work item armed crashes when it fires; the examples' leftovers fire within 100-200 ms of being
/// armed, and 300 ms covers a callback re-armed every 250 ms (HZ/4) once.
pub const DEFAULT_AFTER_UNLOAD_MS: u64 = 300;
/// Whether a spec test loads its modules a second time by default.
pub const DEFAULT_RELOAD: bool = true;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    C,
    Rust,
}

impl std::fmt::Display for Language {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Language::C => "C",
            Language::Rust => "Rust",
        })
    }
}

/// A module folder and what its spec asks for.
#[derive(Debug, Clone)]
pub struct ModuleSpec {
    /// The folder's name (dashes allowed); also the default `.ko` name.
    pub name: String,
    pub dir: PathBuf,
    pub spec_path: PathBuf,
    pub language: Language,
    pub description: String,
    /// The `.ko` names the folder's Kbuild produces.
    pub build: Vec<String>,
    /// Kernel options (with the `CONFIG_` prefix) the tests need.
    pub requires: Vec<String>,
    pub tests: Vec<TestSpec>,
    /// No spec: the folder's Kbuild or Makefile names `obj-m`, `build` and `tests` are empty, and
    /// the run tests each `.ko` the build produces (with its dependencies, from depmod).
    pub discovered: bool,
}

#[derive(Debug, Clone)]
pub struct TestSpec {
    pub name: String,
    pub load: Vec<String>,
    pub params: String,
    pub ktap: bool,
    pub settle: Duration,
    pub timeout: Duration,
    /// How long to keep watching after each unload.
    pub after_unload: Duration,
    /// Load, unload, load and unload again.
    pub reload: bool,
    pub expect: Vec<Regex>,
    pub forbid: Vec<Regex>,
    /// Programs to run after loading (and after the KTAP/settle wait), before unloading.
    pub run: Vec<ProgramSpec>,
    /// The errno the last module of `load` must be refused with; `None`: every load must succeed.
    pub load_error: Option<Errno>,
}

impl TestSpec {
    /// The basic check: load `load` in order, settle, unload, and the kernel stays healthy. A
    /// spec without tests gets it, and so does each `.ko` of a folder without a spec.
    pub fn load_and_unload(name: &str, load: Vec<String>) -> TestSpec {
        TestSpec {
            name: name.into(),
            load,
            params: String::new(),
            ktap: false,
            settle: Duration::from_millis(DEFAULT_SETTLE_MS),
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_S),
            after_unload: Duration::from_millis(DEFAULT_AFTER_UNLOAD_MS),
            reload: true,
            expect: vec![],
            forbid: vec![],
            run: vec![],
            load_error: None,
        }
    }
}

/// One `[[test.run]]`: a companion program, its arguments and what it must do.
#[derive(Debug, Clone)]
pub struct ProgramSpec {
    /// The companion's name (see [`companions`]).
    pub program: String,
    pub args: Vec<String>,
    /// The exit status it must end with.
    pub exit: i32,
    /// Each must match a line of its output.
    pub expect: Vec<Regex>,
    /// None may match a line of its output.
    pub forbid: Vec<Regex>,
    /// Its own limit; `None`: the test's.
    pub timeout: Option<Duration>,
}

impl ProgramSpec {
    /// The limit it runs with in `test`.
    pub fn limit(&self, test: &TestSpec) -> Duration {
        self.timeout.unwrap_or(test.timeout)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    module: RawModule,
    #[serde(default, rename = "test")]
    tests: Vec<RawTest>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModule {
    language: Language,
    #[serde(default)]
    description: String,
    build: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    requires: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTest {
    name: Spanned<String>,
    load: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    params: String,
    #[serde(default)]
    ktap: bool,
    settle_ms: Option<u64>,
    after_unload_ms: Option<u64>,
    reload: Option<bool>,
    timeout_s: Option<Spanned<u64>>,
    #[serde(default)]
    expect: Vec<Spanned<String>>,
    #[serde(default)]
    forbid: Vec<Spanned<String>>,
    #[serde(default)]
    run: Vec<Spanned<RawRun>>,
    load_error: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRun {
    program: Spanned<String>,
    #[serde(default)]
    args: Vec<String>,
    exit: Option<Spanned<i64>>,
    #[serde(default)]
    expect: Vec<Spanned<String>>,
    #[serde(default)]
    forbid: Vec<Spanned<String>>,
    timeout_s: Option<Spanned<u64>>,
}

/// Reads and checks `<dir>/kmodlab.toml`; a folder without one whose Kbuild or Makefile names
/// `obj-m` gets a spec with no tests yet: each `.ko` its build produces becomes one.
pub fn load(dir: &Path) -> Result<ModuleSpec> {
    let spec_path = dir.join(SPEC_FILE);
    let name = folder_name(dir)?;
    if !spec_path.is_file() && kbuild::builds_modules(dir) {
        return Ok(ModuleSpec {
            name,
            dir: dir.to_path_buf(),
            spec_path,
            language: kbuild::language_of(dir),
            description: String::new(),
            build: vec![],
            requires: vec![],
            tests: vec![],
            discovered: true,
        });
    }
    let text = std::fs::read_to_string(&spec_path).with_context(|| {
        format!(
            "{}: cannot read the module spec (a module folder has a {SPEC_FILE}, or a Kbuild or \
             Makefile naming obj-m)",
            spec_path.display()
        )
    })?;
    parse(&name, dir, &spec_path, &text)
}

/// A module folder's name: its own, also for `.` or a path ending in `..`.
fn folder_name(dir: &Path) -> Result<String> {
    let named = |d: &Path| d.file_name().and_then(|n| n.to_str()).map(str::to_string);
    let name = match named(dir) {
        Some(name) if name != ".." => Some(name),
        _ => dir.canonicalize().ok().as_deref().and_then(named),
    };
    name.filter(|n| is_folder_name(n)).ok_or_else(|| {
        anyhow!(
            "{}: the module folder's name must be letters, digits, `_`, `-` or `.`",
            dir.display()
        )
    })
}

/// Whether `dir` is a module folder: it has a spec, or a Kbuild or Makefile naming `obj-m`.
pub fn is_module_folder(dir: &Path) -> bool {
    dir.join(SPEC_FILE).is_file() || kbuild::builds_modules(dir)
}

/// Parses spec text; `spec_path` is only used in messages.
pub fn parse(name: &str, dir: &Path, spec_path: &Path, text: &str) -> Result<ModuleSpec> {
    let at = Locator {
        path: spec_path,
        text,
    };
    if !is_folder_name(name) {
        bail!(
            "{}: `{name}` is not a usable module folder name: use letters, digits, `_`, `-` and `.`",
            dir.display()
        );
    }
    let raw: RawSpec = toml::from_str(text).map_err(|e| at.toml_error(&e))?;

    let build = match raw.module.build {
        Some(list) if list.is_empty() => bail!(
            "{}: field `module.build`: list at least one .ko name",
            at.path.display()
        ),
        Some(list) => list
            .into_iter()
            .map(|b| at.checked_name(b, "module.build"))
            .collect::<Result<Vec<_>>>()?,
        None => vec![name.to_string()],
    };
    let requires = at.requires(raw.module.requires)?;

    let companions = if raw.tests.iter().any(|t| !t.run.is_empty()) {
        companions::discover(dir)?
            .into_iter()
            .map(|c| c.name)
            .collect()
    } else {
        vec![]
    };
    let mut tests = Vec::new();
    for raw_test in raw.tests {
        let test = at.test(raw_test, &build, dir, &companions)?;
        if tests.iter().any(|t: &TestSpec| t.name == test.name) {
            bail!("{}: two tests are named `{}`", at.path.display(), test.name);
        }
        tests.push(test);
    }
    if tests.is_empty() {
        // A spec without tests still gets the basic check: loads, unloads, and the kernel stays healthy.
        tests.push(TestSpec::load_and_unload("load", build.clone()));
    }
    Ok(ModuleSpec {
        name: name.to_string(),
        dir: dir.to_path_buf(),
        spec_path: spec_path.to_path_buf(),
        language: raw.module.language,
        description: raw.module.description,
        build,
        requires,
        tests,
        discovered: false,
    })
}

/// A folder name kmodlab can use for a module folder (its verdicts' first part).
pub fn is_folder_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// A `.ko` file's name without `.ko`, as `build` and `load` list them: a module name, except
/// that dashes are allowed (`hello-1.ko` is the kernel's `hello_1`).
pub fn is_module_file_name(name: &str) -> bool {
    is_module_name(&kernel_name(name))
}

/// The name the kernel gives the module in `<stem>.ko`: dashes become underscores.
pub fn kernel_name(stem: &str) -> String {
    stem.replace('-', "_")
}

/// Kernel module names: what `modprobe` and the kernel accept without translation.
pub fn is_module_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 56
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// The errno named as the agent names it in verdicts (`EINVAL`, `ENOSPC`, ...), or why the name is
/// not one.
pub fn errno_by_name(name: &str) -> std::result::Result<Errno, String> {
    // The agent renders errnos as nix's names, so the same table decides which names exist; each
    // number has one name there (EAGAIN, not its alias EWOULDBLOCK).
    let find = |wanted: &str| {
        (1..=255)
            .map(Errno::from_raw)
            .filter(|e| *e != Errno::UnknownErrno)
            .find(|e| format!("{e:?}") == wanted)
    };
    if let Some(errno) = find(name) {
        return Ok(errno);
    }
    let alias = match name {
        "EWOULDBLOCK" => Some("EAGAIN"),
        "EDEADLOCK" => Some("EDEADLK"),
        "ENOTSUP" => Some("EOPNOTSUPP"),
        _ => None,
    };
    let hint = match alias {
        Some(canonical) => format!("write it as `{canonical}`, the name verdicts use for it"),
        None if find(&name.to_ascii_uppercase()).is_some() => {
            format!("write it as `{}`", name.to_ascii_uppercase())
        }
        None => "expected an errno name such as EINVAL, ENOENT or ENOSPC".into(),
    };
    Err(format!("unknown errno name `{name}`: {hint}"))
}

/// Turns byte spans into `file:line:column` messages.
struct Locator<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    fn error(&self, span: Range<usize>, field: &str, what: &str) -> anyhow::Error {
        let (line, col) = self.line_col(span.start);
        anyhow!(
            "{}:{line}:{col}: field `{field}`: {what}",
            self.path.display()
        )
    }

    fn toml_error(&self, e: &toml::de::Error) -> anyhow::Error {
        let message = e.message().trim_end();
        match e.span() {
            Some(span) => {
                let (line, col) = self.line_col(span.start);
                let source_line = self.text.lines().nth(line - 1).unwrap_or("").trim_end();
                anyhow!(
                    "{}:{line}:{col}: {message}\n    {line} | {source_line}",
                    self.path.display()
                )
            }
            None => anyhow!("{}: {message}", self.path.display()),
        }
    }

    fn checked_name(&self, name: Spanned<String>, field: &str) -> Result<String> {
        let span = name.span();
        let name = name.into_inner();
        if is_module_file_name(&name) {
            Ok(name)
        } else {
            Err(self.error(span, field, &format!("`{name}` is not a valid module name")))
        }
    }

    /// `module.requires`: kernel option names, with the `CONFIG_` prefix added where missing.
    fn requires(&self, list: Vec<Spanned<String>>) -> Result<Vec<String>> {
        list.into_iter()
            .map(|r| {
                let option = r.get_ref().trim();
                let option = option.strip_prefix("CONFIG_").unwrap_or(option);
                if option.is_empty()
                    || !option
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    return Err(self.error(
                        r.span(),
                        "module.requires",
                        "not a kernel option name (e.g. CONFIG_RUST)",
                    ));
                }
                Ok(format!("CONFIG_{option}"))
            })
            .collect()
    }

    fn regexes(&self, list: Vec<Spanned<String>>, field: &str) -> Result<Vec<Regex>> {
        list.into_iter()
            .map(|pattern| {
                Regex::new(pattern.get_ref())
                    .map_err(|e| self.error(pattern.span(), field, &format!("invalid regex: {e}")))
            })
            .collect()
    }

    fn test(
        &self,
        raw: RawTest,
        build: &[String],
        dir: &Path,
        companions: &[String],
    ) -> Result<TestSpec> {
        let name_span = raw.name.span();
        let name = raw.name.into_inner();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(self.error(
                name_span,
                "test.name",
                &format!("`{name}`: use lower-case letters, digits and _"),
            ));
        }
        let field = |f: &str| format!("test `{name}`: {f}");
        let load = self.load_list(raw.load, build, name_span, &field("load"))?;
        let timeout_s = match raw.timeout_s {
            Some(t) if *t.get_ref() == 0 => {
                return Err(self.error(t.span(), &field("timeout_s"), "must be at least 1"))
            }
            Some(t) => t.into_inner(),
            None => DEFAULT_TIMEOUT_S,
        };
        let must_load = raw.load_error.is_none();
        let load_error = match raw.load_error {
            None => None,
            Some(e) => Some(self.load_error(e, raw.ktap, raw.run.first(), &field)?),
        };
        let run = raw
            .run
            .into_iter()
            .enumerate()
            .map(|(i, r)| self.program(r, &field(&format!("run[{}]", i + 1)), dir, companions))
            .collect::<Result<Vec<_>>>()?;
        Ok(TestSpec {
            load,
            params: raw.params,
            ktap: raw.ktap,
            settle: Duration::from_millis(raw.settle_ms.unwrap_or(DEFAULT_SETTLE_MS)),
            timeout: Duration::from_secs(timeout_s),
            after_unload: Duration::from_millis(
                raw.after_unload_ms.unwrap_or(DEFAULT_AFTER_UNLOAD_MS),
            ),
            // A test whose load must be refused has nothing to load twice.
            reload: raw.reload.unwrap_or(DEFAULT_RELOAD) && must_load,
            expect: self.regexes(raw.expect, &field("expect"))?,
            forbid: self.regexes(raw.forbid, &field("forbid"))?,
            run,
            load_error,
            name,
        })
    }

    /// A test's `load` list: by default every module the folder builds, else some of them.
    fn load_list(
        &self,
        list: Option<Vec<Spanned<String>>>,
        build: &[String],
        test_span: Range<usize>,
        field: &str,
    ) -> Result<Vec<String>> {
        match list {
            None => Ok(build.to_vec()),
            Some(list) if list.is_empty() => {
                Err(self.error(test_span, field, "list at least one module"))
            }
            Some(list) => list
                .into_iter()
                .map(|m| {
                    let span = m.span();
                    let m = self.checked_name(m, field)?;
                    // `hello_1` and `hello-1` name the same module, as for the kernel.
                    match build.iter().find(|b| kernel_name(b) == kernel_name(&m)) {
                        Some(b) => Ok(b.clone()),
                        None => Err(self.error(
                            span,
                            field,
                            &format!("`{m}` is not in module.build {build:?}"),
                        )),
                    }
                })
                .collect(),
        }
    }

    /// A test's `load_error`: an errno name, for a test that neither waits for KTAP nor runs
    /// programs. `field` names a field of the test.
    fn load_error(
        &self,
        name: Spanned<String>,
        ktap: bool,
        first_run: Option<&Spanned<RawRun>>,
        field: &dyn Fn(&str) -> String,
    ) -> Result<Errno> {
        let span = name.span();
        let errno = errno_by_name(name.get_ref())
            .map_err(|what| self.error(span.clone(), &field("load_error"), &what))?;
        // Both wait for something only a module that loaded can give.
        if ktap {
            return Err(self.error(
                span,
                &field("load_error"),
                "cannot go with `ktap = true`: KTAP results are judged only from a \
                 module that loaded (check what a refusing init printed with `expect`)",
            ));
        }
        if let Some(first) = first_run {
            return Err(self.error(
                first.span(),
                &field("run[1]"),
                "a test with `load_error` runs no programs: they run only once every \
                 module has loaded",
            ));
        }
        Ok(errno)
    }

    /// One `[[test.run]]`; `field` is e.g. "test `a`: run[2]".
    fn program(
        &self,
        raw: Spanned<RawRun>,
        field: &str,
        dir: &Path,
        companions: &[String],
    ) -> Result<ProgramSpec> {
        let raw = raw.into_inner();
        let sub = |f: &str| format!("{field}.{f}");
        let program_span = raw.program.span();
        let program = raw.program.into_inner();
        if !companions.contains(&program) {
            let found = if companions.is_empty() {
                "it has none".to_string()
            } else {
                format!("found: {}", companions.join(", "))
            };
            return Err(self.error(
                program_span,
                &sub("program"),
                &format!(
                    "no companion `{program}` in {}/{} ({found}; a companion is \
                     {dir_name}/<name>.c or {dir_name}/<name>/Cargo.toml)",
                    dir.display(),
                    companions::DIR,
                    dir_name = companions::DIR,
                ),
            ));
        }
        let exit = match raw.exit {
            None => 0,
            Some(e) => match i32::try_from(*e.get_ref()) {
                Ok(code) if (0..=255).contains(&code) => code,
                _ => return Err(self.error(e.span(), &sub("exit"), "an exit status is 0 to 255")),
            },
        };
        let timeout = match raw.timeout_s {
            Some(t) if *t.get_ref() == 0 => {
                return Err(self.error(t.span(), &sub("timeout_s"), "must be at least 1"))
            }
            Some(t) => Some(Duration::from_secs(t.into_inner())),
            None => None,
        };
        Ok(ProgramSpec {
            program,
            args: raw.args,
            exit,
            expect: self.regexes(raw.expect, &sub("expect"))?,
            forbid: self.regexes(raw.forbid, &sub("forbid"))?,
            timeout,
        })
    }
}

/// The module folders directly under `root`: those holding a spec, or a Kbuild or Makefile
/// naming `obj-m`.
pub fn discover(root: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    let entries = std::fs::read_dir(root)
        .with_context(|| format!("listing modules in {}", root.display()))?;
    for entry in entries {
        let path = entry
            .with_context(|| format!("listing modules in {}", root.display()))?
            .path();
        if path.is_dir() && is_module_folder(&path) {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<ModuleSpec> {
        parse(
            "demo",
            Path::new("modules/demo"),
            Path::new("modules/demo/kmodlab.toml"),
            text,
        )
    }

    fn error_of(text: &str) -> String {
        format!(
            "{:#}",
            parse_text(text).expect_err("spec should be rejected")
        )
    }

    #[test]
    fn a_full_spec_is_read_with_defaults_filled_in() {
        let spec = parse_text(
            r#"
[module]
language = "c"
description = "demo"
build = ["demo_core", "demo"]
requires = ["RUST", "CONFIG_SMP"]

[[test]]
name = "greets"
load = ["demo_core", "demo"]
params = "who=x"
ktap = true
expect = ['Hello, \w+']

[[test]]
name = "plain"
timeout_s = 3
"#,
        )
        .expect("valid spec");
        assert_eq!(spec.language, Language::C);
        assert_eq!(spec.requires, ["CONFIG_RUST", "CONFIG_SMP"]);
        assert_eq!(spec.tests.len(), 2);
        let greets = &spec.tests[0];
        assert_eq!(greets.load, ["demo_core", "demo"]);
        assert!(greets.ktap && greets.expect[0].is_match("Hello, kmodlab"));
        let plain = &spec.tests[1];
        assert_eq!(plain.load, ["demo_core", "demo"]);
        assert_eq!(plain.timeout, Duration::from_secs(3));
        assert_eq!(plain.settle, Duration::from_millis(DEFAULT_SETTLE_MS));
    }

    #[test]
    fn a_spec_without_tests_gets_a_load_test() {
        let spec = parse_text("[module]\nlanguage = \"rust\"\n").expect("valid");
        assert_eq!(spec.build, ["demo"]);
        assert_eq!(spec.tests.len(), 1);
        assert_eq!(spec.tests[0].name, "load");
    }

    #[test]
    fn a_typo_names_file_line_and_field() {
        let e = error_of("[module]\nlanguage = \"c\"\n\n[[test]]\nname = \"a\"\nexpct = ['x']\n");
        assert!(e.starts_with("modules/demo/kmodlab.toml:6:1: "), "{e}");
        assert!(e.contains("unknown field `expct`"), "{e}");
    }

    #[test]
    fn a_bad_regex_names_its_line_and_field() {
        let e = error_of(
            "[module]\nlanguage = \"c\"\n[[test]]\nname = \"a\"\nexpect = ['ok', 'un(closed']\n",
        );
        assert!(
            e.starts_with(
                "modules/demo/kmodlab.toml:5:17: field `test `a`: expect`: invalid regex"
            ),
            "{e}"
        );
    }

    #[test]
    fn bad_values_are_rejected_where_they_stand() {
        let e = error_of("[module]\nlanguage = \"cobol\"\n");
        assert!(e.starts_with("modules/demo/kmodlab.toml:2:12: "), "{e}");
        let e =
            error_of("[module]\nlanguage = \"c\"\n[[test]]\nname = \"a\"\nload = [\"other\"]\n");
        assert!(
            e.contains(":5:9: field `test `a`: load`: `other` is not in module.build"),
            "{e}"
        );
        let e = error_of("[module]\nlanguage = \"c\"\n[[test]]\nname = \"Bad-Name\"\n");
        assert!(e.contains(":4:8: field `test.name`"), "{e}");
        let e = error_of("[module]\nlanguage = \"c\"\n[[test]]\nname = \"a\"\ntimeout_s = 0\n");
        assert!(
            e.contains(":5:13: field `test `a`: timeout_s`: must be at least 1"),
            "{e}"
        );
        let e = error_of(
            "[module]\nlanguage = \"c\"\n[[test]]\nname = \"a\"\n[[test]]\nname = \"a\"\n",
        );
        assert!(e.contains("two tests are named `a`"), "{e}");
        let e = error_of("[module]\n");
        assert!(e.contains("missing field `language`"), "{e}");
    }

    /// A module folder with companions `chardev_test` (C) and `chardev_rs` (Rust).
    fn folder_with_companions() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let companions = dir.path().join("companions");
        std::fs::create_dir_all(companions.join("chardev_rs")).expect("mkdir");
        std::fs::write(companions.join("chardev_rs/Cargo.toml"), "[package]\n").expect("write");
        std::fs::write(companions.join("chardev_test.c"), "int main(void){}\n").expect("write");
        dir
    }

    fn parse_in(dir: &Path, text: &str) -> Result<ModuleSpec> {
        parse("demo", dir, &dir.join("kmodlab.toml"), text)
    }

    #[test]
    fn programs_to_run_are_read_with_their_defaults() {
        let dir = folder_with_companions();
        let spec = parse_in(
            dir.path(),
            r#"
[module]
language = "c"

[[test]]
name = "both"
timeout_s = 7

[[test.run]]
program = "chardev_test"
args = ["/dev/kmodlab_chardev", "-v"]
exit = 3
expect = ['read back: hello$']
forbid = ['FAILED']
timeout_s = 5

[[test.run]]
program = "chardev_rs"
"#,
        )
        .expect("valid spec");
        let test = &spec.tests[0];
        assert_eq!(test.run.len(), 2);
        let c = &test.run[0];
        assert_eq!(c.program, "chardev_test");
        assert_eq!(c.args, ["/dev/kmodlab_chardev", "-v"]);
        assert_eq!(c.exit, 3);
        assert!(c.expect[0].is_match("read back: hello"));
        assert!(c.forbid[0].is_match("FAILED: x"));
        assert_eq!(c.limit(test), Duration::from_secs(5));
        let rs = &test.run[1];
        assert_eq!((rs.exit, rs.args.len(), rs.timeout), (0, 0, None));
        assert_eq!(rs.limit(test), Duration::from_secs(7), "the test's limit");
    }

    #[test]
    fn a_program_that_is_no_companion_names_the_ones_found() {
        let dir = folder_with_companions();
        let text = "[module]\nlanguage = \"c\"\n[[test]]\nname = \"a\"\n[[test.run]]\nprogram = \"chardev_tset\"\n";
        let e = format!(
            "{:#}",
            parse_in(dir.path(), text).expect_err("unknown program")
        );
        assert!(
            e.contains(
                "kmodlab.toml:6:11: field `test `a`: run[1].program`: no companion `chardev_tset`"
            ),
            "{e}"
        );
        assert!(e.contains("found: chardev_rs, chardev_test"), "{e}");
        // A folder without companions says so.
        let e = error_of(text);
        assert!(
            e.contains("(it has none; a companion is companions/<name>.c"),
            "{e}"
        );
    }

    #[test]
    fn bad_program_fields_are_rejected_where_they_stand() {
        let dir = folder_with_companions();
        let head = "[module]\nlanguage = \"c\"\n[[test]]\nname = \"a\"\n[[test.run]]\nprogram = \"chardev_rs\"\n";
        let e = format!(
            "{:#}",
            parse_in(dir.path(), &format!("{head}exit = 256\n")).expect_err("exit")
        );
        assert!(
            e.contains(":7:8: field `test `a`: run[1].exit`: an exit status is 0 to 255"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            parse_in(dir.path(), &format!("{head}timeout_s = 0\n")).expect_err("0")
        );
        assert!(
            e.contains(":7:13: field `test `a`: run[1].timeout_s`: must be at least 1"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            parse_in(dir.path(), &format!("{head}expect = ['(']\n")).expect_err("re")
        );
        assert!(
            e.contains(":7:11: field `test `a`: run[1].expect`: invalid regex"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            parse_in(dir.path(), &format!("{head}arg = ['x']\n")).expect_err("typo")
        );
        assert!(
            e.contains(":7:1: ") && e.contains("unknown field `arg`"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            parse_in(dir.path(), &format!("{head}[[test.run]]\nargs = []\n"))
                .expect_err("no program")
        );
        assert!(e.contains("missing field `program`"), "{e}");
    }

    #[test]
    fn load_error_names_an_errno_as_verdicts_do() {
        let spec = parse_text(
            "[module]\nlanguage = \"c\"\n[[test]]\nname = \"refused\"\nparams = \"level=99\"\nload_error = \"EINVAL\"\nexpect = ['outside']\n[[test]]\nname = \"plain\"\n",
        )
        .expect("valid spec");
        assert_eq!(spec.tests[0].load_error, Some(Errno::EINVAL));
        assert_eq!(spec.tests[1].load_error, None);
        assert_eq!(errno_by_name("ENOSPC"), Ok(Errno::ENOSPC));
        assert_eq!(errno_by_name("EHWPOISON"), Ok(Errno::EHWPOISON));
    }

    #[test]
    fn an_unknown_errno_name_is_rejected_where_it_stands() {
        let head = "[module]\nlanguage = \"c\"\n[[test]]\nname = \"a\"\n";
        let e = error_of(&format!("{head}load_error = \"EBOGUS\"\n"));
        assert!(
            e.starts_with(
                "modules/demo/kmodlab.toml:5:14: field `test `a`: load_error`: unknown errno name `EBOGUS`: expected an errno name such as EINVAL"
            ),
            "{e}"
        );
        let e = error_of(&format!("{head}load_error = \"einval\"\n"));
        assert!(
            e.contains(":5:14: ") && e.contains("write it as `EINVAL`"),
            "{e}"
        );
        // An alias is refused in favour of the name the agent reports for that number.
        let e = error_of(&format!("{head}load_error = \"EWOULDBLOCK\"\n"));
        assert!(
            e.contains("unknown errno name `EWOULDBLOCK`: write it as `EAGAIN`"),
            "{e}"
        );
        let e = error_of(&format!("{head}load_error = 22\n"));
        assert!(e.starts_with("modules/demo/kmodlab.toml:5:14: "), "{e}");
    }

    #[test]
    fn load_error_goes_with_neither_ktap_nor_programs() {
        let e = error_of(
            "[module]\nlanguage = \"c\"\n[[test]]\nname = \"a\"\nktap = true\nload_error = \"EINVAL\"\n",
        );
        assert!(
            e.starts_with(
                "modules/demo/kmodlab.toml:6:14: field `test `a`: load_error`: cannot go with `ktap = true`"
            ),
            "{e}"
        );
        let dir = folder_with_companions();
        let text = "[module]\nlanguage = \"c\"\n[[test]]\nname = \"a\"\nload_error = \"EINVAL\"\n[[test.run]]\nprogram = \"chardev_test\"\n";
        let e = format!("{:#}", parse_in(dir.path(), text).expect_err("run"));
        assert!(
            e.contains(":6:1: field `test `a`: run[1]`: a test with `load_error` runs no programs"),
            "{e}"
        );
    }

    #[test]
    fn build_and_load_take_file_names_with_dashes() {
        let spec = parse(
            "my-driver",
            Path::new("my-driver"),
            Path::new("my-driver/kmodlab.toml"),
            "[module]\nlanguage = \"c\"\nbuild = [\"a-core\", \"a-user\"]\n\
             [[test]]\nname = \"user\"\nload = [\"a_core\", \"a-user\"]\n",
        )
        .expect("valid spec");
        assert_eq!(spec.name, "my-driver");
        // `a_core` names the same module as `a-core`, as for the kernel; the file's name is kept.
        assert_eq!(spec.tests[0].load, ["a-core", "a-user"]);
        assert_eq!(kernel_name("a-core"), "a_core");
        let e = error_of("[module]\nlanguage = \"c\"\nbuild = [\"a core\"]\n");
        assert!(e.contains(":3:10: field `module.build`"), "{e}");
        // A folder name without a spec is the folder's own, dashes and all.
        let dir = tempfile::tempdir().expect("tempdir");
        let folder = dir.path().join("hello-world");
        std::fs::create_dir(&folder).expect("mkdir");
        std::fs::write(folder.join("Kbuild"), "obj-m := hello-world.o\n").expect("write");
        let found = load(&folder.join(".")).expect("a folder without a spec");
        assert_eq!(found.name, "hello-world");
        assert!(found.discovered && found.tests.is_empty());
    }

    #[test]
    fn module_names_follow_the_kernel() {
        assert!(is_module_name("wq_demo2"));
        assert!(!is_module_name("wq-demo") && !is_module_name("2fast") && !is_module_name(""));
    }
}
