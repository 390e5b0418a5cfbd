//! What the host needs to build kernels and modules and to boot them, how to tell quickly whether it
//! is there, and how to install it.
//!
//! The requirements are tables of data (in `host/requirements.rs`): [`REQUIREMENTS`] for kmodlab
//! itself, [`TEST_REQUIREMENTS`] for this project's own tests only. [`check`] only looks (no
//! network, no installs, a few execs); [`ensure`] installs what is missing. Other modules call
//! [`require_tool`] so that a missing tool names its fix.

pub use super::requirements::{
    Fix, Missing, Probe, Requirement, BINDGEN_VERSION, CHROMIUM, REQUIREMENTS, TEST_REQUIREMENTS,
};

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::fmt;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What the probes look at; tests build one over a temporary folder.
#[derive(Debug, Clone)]
pub struct Host {
    /// Folders searched for tools, in order.
    pub path: Vec<PathBuf>,
    /// Prefix for absolute probe paths: `/` on a real host.
    pub root: PathBuf,
    /// The active Rust toolchain's sysroot, when there is a rustc.
    pub rust_sysroot: Option<PathBuf>,
}

impl Host {
    /// This machine, as the kernel build will see it.
    pub fn current() -> Host {
        let path: Vec<PathBuf> = std::env::split_paths(&build_env_path()).collect();
        let rust_sysroot = find_in(&path, "rustc").and_then(|rustc| {
            let out = Command::new(rustc)
                .args(["--print", "sysroot"])
                .env("PATH", build_env_path())
                .stderr(Stdio::null())
                .output()
                .ok()?;
            let text = String::from_utf8(out.stdout).ok()?;
            out.status.success().then(|| PathBuf::from(text.trim()))
        });
        Host {
            path,
            root: PathBuf::from("/"),
            rust_sysroot,
        }
    }

    fn file(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }
}

/// Which requirements are missing on this host. No network and no installs.
pub fn check() -> Vec<Missing> {
    check_host(&Host::current(), REQUIREMENTS)
}

/// Which of `requirements` are missing on `host`.
pub fn check_host(host: &Host, requirements: &[Requirement]) -> Vec<Missing> {
    requirements
        .iter()
        .filter_map(|req| {
            probe(host, &req.probe).err().map(|detail| Missing {
                name: req.name,
                purpose: req.purpose,
                detail,
                fix: req.fix,
            })
        })
        .collect()
}

/// Ok when the probe finds what it looks for, else what it saw instead.
fn probe(host: &Host, probe: &Probe) -> std::result::Result<(), String> {
    match *probe {
        Probe::Tool(tool) => match find_in(&host.path, tool) {
            Some(_) => Ok(()),
            None => Err(format!("no `{tool}` on PATH")),
        },
        Probe::ToolVersion { tool, version } => {
            let Some(path) = find_in(&host.path, tool) else {
                return Err(format!("no `{tool}` on PATH or in ~/.cargo/bin"));
            };
            let out = Command::new(&path)
                .arg("--version")
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .map_err(|e| format!("running `{} --version`: {e}", path.display()))?;
            let text = String::from_utf8_lossy(&out.stdout);
            let words: Vec<&str> = text.split_whitespace().collect();
            if words.contains(&version) {
                Ok(())
            } else {
                Err(format!(
                    "{} is `{}`, kmodlab pins {version}",
                    path.display(),
                    text.trim()
                ))
            }
        }
        Probe::File(pattern) => {
            if file_matches(&host.file(pattern)) {
                Ok(())
            } else {
                Err(format!("no {pattern}"))
            }
        }
        Probe::StaticBinary(path) => match is_static_elf(&host.file(path)) {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!("{path} is dynamically linked")),
            Err(_) => Err(format!("no {path}")),
        },
        Probe::RustSysroot(relative) => match &host.rust_sysroot {
            Some(sysroot) if sysroot.join(relative).is_dir() => Ok(()),
            Some(sysroot) => Err(format!("no {}", sysroot.join(relative).display())),
            None => Err("no working rustc to ask for its sysroot".to_string()),
        },
    }
}

/// Whether a path exists, where one `*` may match part of one component.
fn file_matches(pattern: &Path) -> bool {
    let text = pattern.to_string_lossy();
    let Some(star) = text.find('*') else {
        return pattern.exists();
    };
    let (head, tail) = text.split_at(star);
    let tail = &tail[1..];
    let (dir, prefix) = match head.rfind('/') {
        Some(slash) => (&head[..slash + 1], &head[slash + 1..]),
        None => ("./", head),
    };
    let (suffix, rest) = match tail.find('/') {
        Some(slash) => (&tail[..slash], &tail[slash..]),
        None => (tail, ""),
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        name.starts_with(prefix)
            && name.ends_with(suffix)
            && name.len() >= prefix.len() + suffix.len()
            && Path::new(&format!("{dir}{name}{rest}")).exists()
    })
}

/// Whether an ELF executable has no program interpreter (PT_INTERP), i.e. is statically linked.
/// Only the headers are read, not the whole file.
pub fn is_static_elf(path: &Path) -> Result<bool> {
    use object::read::elf::{FileHeader, ProgramHeader};
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let data = object::ReadCache::new(file);
    // 64-bit only: the only kind this x86_64 tool needs to judge.
    let not_elf = || format!("{} is not a 64-bit ELF file", path.display());
    let header =
        object::elf::FileHeader64::<object::Endianness>::parse(&data).with_context(not_elf)?;
    let endian = header.endian().with_context(not_elf)?;
    let segments = header
        .program_headers(endian, &data)
        .with_context(|| format!("reading the program headers of {}", path.display()))?;
    Ok(!segments
        .iter()
        .any(|segment| segment.p_type(endian) == object::elf::PT_INTERP))
}

/// Cargo's bin folder (`$CARGO_HOME/bin`, else `~/.cargo/bin`), where rustup and `cargo install` put tools.
pub fn cargo_bin() -> Option<PathBuf> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    match non_empty("CARGO_HOME") {
        Some(home) => Some(PathBuf::from(home).join("bin")),
        None => non_empty("HOME").map(|home| PathBuf::from(home).join(".cargo").join("bin")),
    }
}

/// PATH with cargo's bin folder first, so the kernel's Makefile finds the rustc and bindgen that
/// setup installed even when the caller's PATH lacks them (or has an older bindgen earlier).
pub fn build_env_path() -> OsString {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(bin) = cargo_bin() {
        dirs.push(bin);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
    } else {
        dirs.extend(["/usr/local/bin", "/usr/bin", "/bin"].map(PathBuf::from));
    }
    // Every entry came from a PATH-like list or a plain folder name, so joining cannot meet a ':'
    // it did not already accept; fall back to the caller's PATH rather than failing a build over it.
    std::env::join_paths(&dirs).unwrap_or_else(|_| std::env::var_os("PATH").unwrap_or_default())
}

/// Where `name` is on [`build_env_path`], if anywhere.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path: Vec<PathBuf> = std::env::split_paths(&build_env_path()).collect();
    find_in(&path, name)
}

/// The first executable `name` in `dirs`.
pub fn find_in(dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    dirs.iter().map(|dir| dir.join(name)).find(|candidate| {
        candidate
            .metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// The path of a tool, or an error that says which package or command provides it.
pub fn require_tool(name: &str) -> Result<PathBuf> {
    match find_tool(name) {
        Some(path) => Ok(path),
        None => Err(tool_not_found(name)),
    }
}

/// Why `name` cannot be used, and what installs it.
fn tool_not_found(name: &str) -> anyhow::Error {
    let provides = |req: &&Requirement| match req.probe {
        Probe::Tool(tool) | Probe::ToolVersion { tool, .. } => tool == name,
        _ => false,
    };
    let (req, for_tests) = match REQUIREMENTS.iter().find(provides) {
        Some(req) => (req, false),
        None => match TEST_REQUIREMENTS.iter().find(provides) {
            Some(req) => (req, true),
            None => {
                return anyhow::anyhow!(
                    "`{name}` is not on PATH; install the package that provides it"
                )
            }
        },
    };
    let how = match req.fix {
        Fix::Manual(text) => text.to_string(),
        // `kmodlab setup` does not install what only the project's tests need.
        fix if for_tests => format!(
            "install it with `{}`, or run `cargo xtask ci`, which sets up what the tests need",
            sudo_if_needed(&fix)
        ),
        fix => format!(
            "install it with `{}`, or run `kmodlab setup`",
            sudo_if_needed(&fix)
        ),
    };
    let cargo_bin = cargo_bin().map(|p| p.display().to_string());
    anyhow::anyhow!(
        "`{name}` is not on PATH (nor in {}); it is needed for {}: {how}",
        cargo_bin.as_deref().unwrap_or("~/.cargo/bin"),
        req.purpose
    )
}

/// Setup could not finish on its own: these commands (some as root) would.
/// The CLI looks for this error (with `downcast_ref`) to exit with status 2.
#[derive(Debug)]
pub struct ActionNeeded {
    pub missing: Vec<Missing>,
    pub commands: Vec<String>,
}

impl fmt::Display for ActionNeeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the host is missing what kmodlab needs:")?;
        for missing in &self.missing {
            writeln!(f, "  - {missing}")?;
        }
        write!(f, "run:")?;
        for command in &self.commands {
            write!(f, "\n  {command}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ActionNeeded {}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn sudo_if_needed(fix: &Fix) -> String {
    match fix {
        Fix::Apt(_) if !is_root() => format!("sudo {}", fix.command()),
        _ => fix.command(),
    }
}

/// The commands that fix `missing`, apt ones merged into one install, `sudo` added when not root.
fn commands_for(missing: &[Missing], root: bool) -> Vec<String> {
    let sudo = if root { "" } else { "sudo " };
    let mut commands = Vec::new();
    let packages = apt_packages(missing);
    if !packages.is_empty() {
        if !apt_lists_present() {
            commands.push(format!("{sudo}apt-get update"));
        }
        commands.push(format!(
            "{sudo}apt-get install -y --no-install-recommends {}",
            packages.join(" ")
        ));
    }
    for m in missing {
        let command = m.fix.command();
        if !matches!(m.fix, Fix::Apt(_)) && !commands.contains(&command) {
            commands.push(command);
        }
    }
    commands
}

fn apt_packages(missing: &[Missing]) -> Vec<&'static str> {
    let mut packages = Vec::new();
    for m in missing {
        if let Fix::Apt(package) = m.fix {
            if !packages.contains(&package) {
                packages.push(package);
            }
        }
    }
    packages
}

/// Whether apt has package lists at all: a fresh machine needs `apt-get update` before any install.
fn apt_lists_present() -> bool {
    std::fs::read_dir("/var/lib/apt/lists").is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains("_Packages"))
    })
}

/// Makes the host ready for kmodlab ([`REQUIREMENTS`]); see [`ensure_requirements`].
pub fn ensure(install: bool) -> Result<()> {
    ensure_requirements(REQUIREMENTS, install)
}

/// Makes the host meet `requirements`. With `install == false` it only checks, and fails with
/// [`ActionNeeded`] naming the commands. With `install == true` it runs them: apt when root (else the
/// error lists the `sudo` commands), rustup and `cargo install` in any case. Idempotent, and quick
/// when nothing is missing.
pub fn ensure_requirements(requirements: &[Requirement], install: bool) -> Result<()> {
    // Looked at afresh after installing: what is on PATH, and the sysroot, may have changed.
    let check = || check_host(&Host::current(), requirements);
    let missing = check();
    if missing.is_empty() {
        return Ok(());
    }
    let root = is_root();
    if !install {
        let commands = commands_for(&missing, root);
        return Err(ActionNeeded { missing, commands }.into());
    }

    let mut failures = Vec::new();
    let packages = apt_packages(&missing);
    if !packages.is_empty() && root {
        if let Err(e) = apt_install(&packages) {
            failures.push(format!("{e:#}"));
        }
    }
    // C tools first: `cargo install` needs a linker, which apt may just have installed.
    for m in &missing {
        let (program, args) = match m.fix {
            Fix::Rustup(args) => ("rustup", args),
            Fix::Cargo(args) => ("cargo", args),
            Fix::Apt(_) | Fix::Manual(_) => continue,
        };
        if let Err(e) = run_tool(program, args) {
            failures.push(format!("{e:#}"));
        }
    }

    let still = check();
    if still.is_empty() {
        return Ok(());
    }
    let mut error = anyhow::Error::new(ActionNeeded {
        commands: commands_for(&still, root),
        missing: still,
    });
    if !failures.is_empty() {
        error = error.context(format!("setup did not finish: {}", failures.join("; ")));
    }
    Err(error)
}

fn apt_install(packages: &[&str]) -> Result<()> {
    let apt_get = require_tool("apt-get").context("installing Debian packages")?;
    let install = |apt_get: &Path| {
        let mut args = vec!["install", "-y", "--no-install-recommends"];
        args.extend_from_slice(packages);
        run_shown(
            Command::new(apt_get)
                .args(&args)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    if !apt_lists_present() {
        refresh_package_lists()?;
    } else if install(&apt_get).is_ok() {
        return Ok(());
    } else {
        // Stale lists name versions the mirror no longer has: refresh once, then retry.
        refresh_package_lists()?;
    }
    install(&apt_get)
}

/// Refreshes apt's package lists once per process, when a package kmodlab needs is unknown to
/// them or could not be fetched: a new machine's lists can be months older than the archive (seen
/// here: lists from an image of May named no `linux-source-6.12` that the archive of December had).
/// Needs root; returns false without root, and callers then tell the user to run it.
pub fn refresh_package_lists() -> Result<bool> {
    static REFRESHED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if let Some(done) = REFRESHED.get() {
        return Ok(*done);
    }
    if !is_root() {
        return Ok(false);
    }
    let apt_get = require_tool("apt-get").context("refreshing apt's package lists")?;
    run_shown(Command::new(apt_get).arg("update"))?;
    Ok(*REFRESHED.get_or_init(|| true))
}

fn run_tool(program: &str, args: &[&str]) -> Result<()> {
    let path = require_tool(program)?;
    run_shown(Command::new(path).args(args).env("PATH", build_env_path()))
}

/// Runs a command with its output on our stderr (stdout stays free for reports) and fails on a
/// non-zero exit, naming the command.
fn run_shown(command: &mut Command) -> Result<()> {
    let shown = format!("{command:?}").replace('"', "");
    eprintln!("kmodlab setup: running {shown}");
    let stderr = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .context("duplicating stderr")?;
    let status = command
        .stdin(Stdio::null())
        .stdout(Stdio::from(stderr))
        .status()
        .with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A fake host in a temporary folder where every probe of `REQUIREMENTS` succeeds.
    fn complete_host(dir: &Path) -> Host {
        let bin = dir.join("bin");
        fs::create_dir_all(&bin).unwrap();
        let sysroot = dir.join("sysroot");
        for req in REQUIREMENTS {
            match req.probe {
                Probe::Tool(tool) => write_exe(&bin.join(tool), "#!/bin/sh\n"),
                Probe::ToolVersion { tool, version } => write_exe(
                    &bin.join(tool),
                    &format!("#!/bin/sh\necho {tool} {version}\n"),
                ),
                Probe::File(path) => {
                    touch(&dir.join(path.replace('*', "14").trim_start_matches('/')))
                }
                Probe::StaticBinary(path) => {
                    fs::create_dir_all(dir.join(path.trim_start_matches('/')).parent().unwrap())
                        .unwrap();
                    fs::write(dir.join(path.trim_start_matches('/')), elf(false)).unwrap();
                }
                Probe::RustSysroot(rel) => fs::create_dir_all(sysroot.join(rel)).unwrap(),
            }
        }
        Host {
            path: vec![bin],
            root: dir.to_path_buf(),
            rust_sysroot: Some(sysroot),
        }
    }

    fn touch(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, "").unwrap();
    }

    fn write_exe(path: &Path, text: &str) {
        fs::write(path, text).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A minimal ELF64 header with one program header: PT_INTERP when `dynamic`, PT_LOAD otherwise.
    fn elf(dynamic: bool) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56];
        b[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&1u16.to_le_bytes());
        let kind: u32 = if dynamic { 3 } else { 1 };
        b[64..68].copy_from_slice(&kind.to_le_bytes());
        b
    }

    fn names(missing: &[Missing]) -> Vec<&str> {
        missing.iter().map(|m| m.name).collect()
    }

    #[test]
    fn a_complete_host_misses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let host = complete_host(dir.path());
        assert!(
            check_host(&host, REQUIREMENTS).is_empty(),
            "{:?}",
            check_host(&host, REQUIREMENTS)
        );
    }

    #[test]
    fn each_kind_of_probe_reports_what_is_absent() {
        let dir = tempfile::tempdir().unwrap();
        let host = complete_host(dir.path());
        fs::remove_file(host.path[0].join("qemu-system-x86_64")).unwrap();
        fs::remove_file(dir.path().join("usr/include/libelf.h")).unwrap();
        fs::remove_dir_all(dir.path().join("usr/lib/llvm-14")).unwrap();
        fs::remove_dir_all(host.rust_sysroot.as_ref().unwrap().join("lib/rustlib/src")).unwrap();
        let missing = check_host(&host, REQUIREMENTS);
        assert_eq!(
            names(&missing),
            ["libelf headers", "libclang", "QEMU", "rust-src"]
        );
        assert_eq!(missing[0].fix, Fix::Apt("libelf-dev"));
        assert_eq!(missing[2].detail, "no `qemu-system-x86_64` on PATH");
        assert_eq!(missing[3].fix.command(), "rustup component add rust-src");
    }

    #[test]
    fn a_tool_that_is_not_executable_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let host = complete_host(dir.path());
        fs::set_permissions(host.path[0].join("make"), fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(names(&check_host(&host, REQUIREMENTS)), ["make"]);
    }

    #[test]
    fn the_wrong_bindgen_version_is_missing_and_names_the_pinned_install() {
        let dir = tempfile::tempdir().unwrap();
        let host = complete_host(dir.path());
        write_exe(
            &host.path[0].join("bindgen"),
            "#!/bin/sh\necho bindgen 0.69.4\n",
        );
        let missing = check_host(&host, REQUIREMENTS);
        assert_eq!(names(&missing), ["bindgen 0.73.2"]);
        assert!(
            missing[0].detail.contains("bindgen 0.69.4"),
            "{}",
            missing[0].detail
        );
        assert_eq!(
            missing[0].fix.command(),
            "cargo install --locked bindgen-cli --version 0.73.2"
        );
    }

    #[test]
    fn a_dynamic_busybox_does_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let host = complete_host(dir.path());
        fs::write(dir.path().join("bin/busybox"), elf(true)).unwrap();
        let missing = check_host(&host, REQUIREMENTS);
        assert_eq!(names(&missing), ["static busybox"]);
        assert_eq!(missing[0].detail, "/bin/busybox is dynamically linked");
    }

    #[test]
    fn without_rustc_the_sysroot_probes_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let mut host = complete_host(dir.path());
        host.rust_sysroot = None;
        let missing = check_host(&host, REQUIREMENTS);
        assert_eq!(names(&missing), ["rust-src", "musl target"]);
        assert!(missing[0].detail.contains("no working rustc"));
    }

    #[test]
    fn commands_merge_apt_packages_and_keep_the_rest() {
        let missing = |name, fix| Missing {
            name,
            purpose: "",
            detail: String::new(),
            fix,
        };
        let list = [
            missing("QEMU", Fix::Apt("qemu-system-x86")),
            missing("rust-src", Fix::Rustup(&["component", "add", "rust-src"])),
            missing("clang", Fix::Apt("clang")),
        ];
        let commands = commands_for(&list, false);
        let install = commands
            .iter()
            .find(|c| c.contains("apt-get install"))
            .unwrap();
        assert_eq!(
            install,
            "sudo apt-get install -y --no-install-recommends qemu-system-x86 clang"
        );
        assert_eq!(commands.last().unwrap(), "rustup component add rust-src");
        assert!(commands_for(&list, true)
            .iter()
            .all(|c| !c.starts_with("sudo")));
    }

    #[test]
    fn build_path_puts_cargo_bin_first_once() {
        let path: Vec<PathBuf> = std::env::split_paths(&build_env_path()).collect();
        if let Some(bin) = cargo_bin() {
            assert_eq!(path[0], bin);
            assert_eq!(path.iter().filter(|p| **p == bin).count(), 1);
        }
    }

    #[test]
    fn test_only_tools_are_not_kmodlabs_requirements() {
        let tools = |list: &[Requirement]| -> Vec<&'static str> {
            list.iter()
                .filter_map(|r| match r.probe {
                    Probe::Tool(tool) | Probe::ToolVersion { tool, .. } => Some(tool),
                    _ => None,
                })
                .collect()
        };
        let (kmodlab, tests) = (tools(REQUIREMENTS), tools(TEST_REQUIREMENTS));
        for tool in ["cpio", "tmux", CHROMIUM, "python3"] {
            assert!(tests.contains(&tool), "{tool} is a test requirement");
            assert!(!kmodlab.contains(&tool), "{tool} is not kmodlab's");
        }
        let dir = tempfile::tempdir().unwrap();
        let host = complete_host(dir.path());
        assert_eq!(
            names(&check_host(&host, TEST_REQUIREMENTS)),
            ["cpio", "tmux", "python3", "headless Chromium"]
        );
    }

    #[test]
    fn a_missing_test_tool_names_its_package_and_the_ci_command() {
        let err = tool_not_found(CHROMIUM).to_string();
        assert!(
            err.contains("apt-get install -y --no-install-recommends chromium-headless-shell")
                && err.contains("cargo xtask ci")
                && err.contains("HTML report"),
            "{err}"
        );
        let err = tool_not_found("qemu-system-x86_64").to_string();
        assert!(
            err.contains("qemu-system-x86") && err.contains("kmodlab setup"),
            "{err}"
        );
    }

    #[test]
    fn require_tool_names_the_package() {
        let err = require_tool("kmodlab-no-such-tool")
            .unwrap_err()
            .to_string();
        assert!(err.contains("kmodlab-no-such-tool"), "{err}");
        let found = require_tool("sh").unwrap();
        assert!(found.ends_with("sh"));
    }
}
