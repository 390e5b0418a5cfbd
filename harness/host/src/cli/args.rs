//! The command line's arguments: one clap type per subcommand, and the option groups they share.

use crate::guest::accel::AccelChoice;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(
    name = "kmodlab",
    version,
    about = "Build Linux kernel modules, boot them under QEMU, and judge what the kernel printed.",
    long_about = "Build Linux kernel modules (C or Rust), boot them under QEMU with a small test agent, and \
                  turn what the kernel printed (KTAP, dmesg, crash reports) into verdicts: PASS, FAIL, ERROR, \
                  CRASH, TIMEOUT or SKIP.\n\nStart with `test`: it installs what is missing, builds the kernel \
                  the first time (about 5 minutes, cached afterwards), builds the modules and runs them."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build modules, boot them under QEMU, and print one verdict per test (exit 0 pass, 1 fail, 2 could not run)
    Test(TestArgs),
    /// Rebuild and re-run modules' tests on every save, printing only the verdicts that changed
    Watch(WatchArgs),
    /// Build modules against the configured kernel without booting anything
    Build(BuildArgs),
    /// Provision and build the kernel (cached by content), or show where it stands
    Kernel(KernelArgs),
    /// List the modules and their tests
    List(ListArgs),
    /// Create a module folder (source, Kbuild, spec, README) that passes `test` right away
    New(NewArgs),
    /// Write a kmodlab.toml for a folder without one, from what its build produces: one test per
    /// .ko with its load order, commented for you to refine
    Init(InitArgs),
    /// Install what kmodlab needs on this machine: Debian packages, rustup pieces, bindgen
    Setup(SetupArgs),
    /// Check every host requirement, KVM, the kernel cache and disk space, and print the fix for each problem
    Doctor,
    /// Judge saved logs: a kmodlab run folder, or any kernel log with KTAP or crash reports in it
    /// (exit 0 pass, 1 fail, 2 could not read)
    Parse(ParseArgs),
    /// Boot the configured kernel with a busybox userland and a shell on this terminal, the named
    /// modules ready for modprobe (leave with Ctrl-] or `poweroff`)
    Shell(ShellArgs),
    /// Build a standalone initramfs from a gen_init_cpio description or a folder, or list one
    Initramfs(InitramfsArgs),
}

#[derive(Args, Debug, Clone, Default)]
pub struct KernelOpts {
    /// Kernel source tree to use instead of Debian's linux-source-6.12 package
    #[arg(long, value_name = "DIR")]
    pub kernel_src: Option<PathBuf>,
    /// Kconfig fragments merged onto `base`, in order: names from kernel-configs/ (rust, debug, ...)
    /// or paths, comma-separated or repeated [default: rust]
    #[arg(
        long = "kernel-config",
        value_name = "NAME|FILE",
        value_delimiter = ','
    )]
    pub kernel_config: Vec<String>,
    /// Parallel jobs for the kernel build (make -j) [default: number of CPUs]
    #[arg(long, value_name = "N")]
    pub build_jobs: Option<usize>,
    /// Use Debian's prebuilt 6.12 cloud kernel (image and headers fetched with apt-get download,
    /// no root, no kernel build) instead of building one: C modules only, Rust modules SKIP. The
    /// newest ABI apt's lists offer when first fetched, or =ABI (e.g. =6.12.117+deb12)
    #[arg(
        long,
        value_name = "ABI",
        num_args = 0..=1,
        require_equals = true,
        conflicts_with_all = ["kernel_src", "kernel_config", "build_jobs"]
    )]
    pub kernel_prebuilt: Option<Option<String>>,
}

#[derive(Args, Debug, Clone)]
pub struct ModuleOpts {
    /// Folder whose subfolders are modules [default: this repository's modules/]
    #[arg(long, value_name = "DIR")]
    pub modules_dir: Option<PathBuf>,
    /// Don't check or install host requirements first
    #[arg(long)]
    pub no_setup: bool,
}

#[derive(Args, Debug)]
pub struct TestArgs {
    /// Modules to test: a name from the modules folder, NAME/TEST for one test, or a path to a
    /// module folder. None: every module
    #[arg(value_name = "MODULE")]
    pub modules: Vec<String>,
    #[command(flatten)]
    pub kernel: KernelOpts,
    #[command(flatten)]
    pub module_opts: ModuleOpts,
    #[command(flatten)]
    pub vms: VmOpts,
    /// Time limit per test in seconds, overriding the specs' timeout_s
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Time limit for the whole run in seconds; tests not finished by then get TIMEOUT
    #[arg(long, value_name = "SECS")]
    pub run_timeout: Option<u64>,
    /// How tests share VMs: `test` gives each test a fresh kernel; `all` runs them in one VM and
    /// starts a fresh one after any crash or timeout (each test is still judged on its own log and
    /// taint); `module` gives each module folder a VM; `auto` is `test` where VMs restore from a
    /// snapshot and the kernel has no kmemleak (which holds each VM 5 s), else `all`
    #[arg(long, value_enum, default_value_t = Isolate::Auto)]
    pub isolate: Isolate,
    /// Show each test's kernel log and the VM's life
    #[arg(short, long)]
    pub verbose: bool,
    /// Where run folders are kept [default: the cache's runs/]
    #[arg(long, value_name = "DIR")]
    pub runs_dir: Option<PathBuf>,
    /// QEMU binary
    #[arg(long, value_name = "PATH", default_value = "qemu-system-x86_64")]
    pub qemu: PathBuf,
    // Boxed so that `Command` stays small where binaries embed it (xtask's own enum).
    #[command(flatten)]
    pub output: Box<OutputOpts>,
}

/// How the tests' VMs run, for `test` and `watch`.
#[derive(Args, Debug, Clone)]
pub struct VmOpts {
    /// Accelerator: auto uses KVM only after a probe boot has shown it works on this machine
    #[arg(long, value_enum, default_value_t = Accel::Auto)]
    pub accel: Accel,
    /// VMs to run at once, across modules and tests (fewer if the memory available does not fit
    /// them) [default: number of CPUs]
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
    /// Boot every VM instead of restoring the snapshot of a booted one (saved once per kernel,
    /// agent and VM shape in the cache)
    #[arg(long)]
    pub no_snapshot: bool,
}

/// Where the verdicts go besides the terminal.
#[derive(Args, Debug, Clone, Default)]
pub struct OutputOpts {
    /// What stdout shows: lines for people, or one KTAP document (then progress goes to stderr)
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Also write the verdicts as JUnit XML to FILE, for CI test reports
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Also write every verdict and the run's facts as JSON to FILE
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also write a self-contained HTML report to FILE: verdicts, each test's kernel log with the
    /// failure lines marked, and a timeline of its kernel messages by CPU
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Human,
    Ktap,
}

#[derive(Args, Debug)]
pub struct ParseArgs {
    /// Saved logs: kmodlab run folders (judged again from their recorded events) or kernel logs
    /// (dmesg, a console log, `kunit.py run --raw_output`); `-` reads stdin
    #[arg(value_name = "LOG", required = true)]
    pub logs: Vec<PathBuf>,
    /// Show each test's kernel log
    #[arg(short, long)]
    pub verbose: bool,
    #[command(flatten)]
    pub output: Box<OutputOpts>,
}

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Modules to watch: names, NAME/TEST, or paths to module folders
    #[arg(value_name = "MODULE", required = true)]
    pub modules: Vec<String>,
    #[command(flatten)]
    pub kernel: KernelOpts,
    #[command(flatten)]
    pub module_opts: ModuleOpts,
    #[command(flatten)]
    pub vms: VmOpts,
    /// Rewrite this HTML report after every round (reload it in the browser to see the latest)
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Modules to build (names or paths). None: every module
    #[arg(value_name = "MODULE")]
    pub modules: Vec<String>,
    #[command(flatten)]
    pub kernel: KernelOpts,
    #[command(flatten)]
    pub module_opts: ModuleOpts,
}

#[derive(Args, Debug)]
pub struct KernelArgs {
    /// Only show whether the kernel is built and where; never build
    #[arg(long)]
    pub status: bool,
    #[command(flatten)]
    pub kernel: KernelOpts,
    /// Don't check or install host requirements first
    #[arg(long)]
    pub no_setup: bool,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Folder whose subfolders are modules [default: this repository's modules/]
    #[arg(long, value_name = "DIR")]
    pub modules_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct NewArgs {
    /// The module's name: letters, digits and underscores; also the folder's and the .ko's name
    pub name: String,
    /// Language of the new module
    #[arg(long, value_enum, default_value_t = Lang::C)]
    pub lang: Lang,
    /// Start from a copy of this example (a name under the modules folder, or a path), renamed
    #[arg(long, value_name = "EXAMPLE")]
    pub from: Option<String>,
    /// Folder to create the module in [default: this repository's modules/]
    #[arg(long, value_name = "DIR")]
    pub modules_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// The module folder (a Kbuild or Makefile naming obj-m) [default: the current folder]
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub kernel: KernelOpts,
    /// Don't check or install host requirements first
    #[arg(long)]
    pub no_setup: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    C,
    Rust,
}

#[derive(Args, Debug)]
pub struct SetupArgs {
    /// Only report what is missing; install nothing (exit 2 if anything is missing)
    #[arg(long)]
    pub check: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolate {
    Auto,
    All,
    Module,
    Test,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Auto,
    Kvm,
    Tcg,
}

impl From<Accel> for AccelChoice {
    fn from(accel: Accel) -> Self {
        match accel {
            Accel::Auto => AccelChoice::Auto,
            Accel::Kvm => AccelChoice::Kvm,
            Accel::Tcg => AccelChoice::Tcg,
        }
    }
}

#[derive(Args, Debug)]
pub struct ShellArgs {
    /// Modules whose .ko files go to /lib/modules/<release>/extra: a name from the modules
    /// folder or a path to a module folder. None: no modules
    #[arg(value_name = "MODULE")]
    pub modules: Vec<String>,
    #[command(flatten)]
    pub kernel: KernelOpts,
    #[command(flatten)]
    pub module_opts: ModuleOpts,
    /// Accelerator: auto uses KVM only after a probe boot has shown it works on this machine
    #[arg(long, value_enum, default_value_t = Accel::Auto)]
    pub accel: Accel,
    /// Guest memory in MiB
    #[arg(long, value_name = "MB", default_value_t = 256)]
    pub memory: u32,
    /// Extra words for the kernel command line, e.g. `loglevel=8` to see every message on the console
    #[arg(long, value_name = "ARGS")]
    pub append: Option<String>,
    /// QEMU binary
    #[arg(long, value_name = "PATH", default_value = "qemu-system-x86_64")]
    pub qemu: PathBuf,
    /// Static busybox for the guest
    #[arg(long, value_name = "PATH", default_value = "/bin/busybox")]
    pub busybox: PathBuf,
}

#[derive(Args, Debug)]
pub struct InitramfsArgs {
    /// A description in the kernel's gen_init_cpio format (`file <name> <location> <mode> <uid>
    /// <gid>`, `dir`, `nod`, `slink`, `pipe`, `sock`; relative locations are taken from the
    /// description's folder), or a folder whose tree to pack (owned by root)
    #[arg(
        value_name = "DESC|DIR",
        required_unless_present = "list",
        conflicts_with = "list"
    )]
    pub input: Option<PathBuf>,
    /// The archive to write
    #[arg(
        short,
        long,
        value_name = "FILE",
        required_unless_present = "list",
        conflicts_with = "list"
    )]
    pub output: Option<PathBuf>,
    /// Compress the archive; the kernel unpacks it only with CONFIG_RD_GZIP / CONFIG_RD_ZSTD
    /// (kmodlab's default kernel has neither: boot it uncompressed)
    #[arg(long, value_enum, value_name = "HOW", conflicts_with = "list")]
    pub compress: Option<Compress>,
    /// Print the entries of an existing archive (gzip, zstd or uncompressed) instead: type and
    /// mode, uid/gid, size or device numbers, name, symlink target
    #[arg(long, value_name = "FILE")]
    pub list: Option<PathBuf>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compress {
    /// gzip -9, in process
    Gzip,
    /// zstd -19, with the zstd program
    Zstd,
}

impl ModuleOpts {
    /// `--modules-dir`, else the calling binary's folder of modules.
    pub fn modules_dir_or(&self, default: &Path) -> PathBuf {
        self.modules_dir
            .clone()
            .unwrap_or_else(|| default.to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn kernel_prebuilt_takes_an_optional_abi_after_an_equals_sign() {
        let prebuilt = |args: &[&str]| {
            let all = ["kmodlab", "kernel"].iter().chain(args).copied();
            match Cli::try_parse_from(all).map(|cli| cli.command) {
                Ok(Command::Kernel(k)) => Ok(k.kernel.kernel_prebuilt),
                Ok(other) => panic!("{other:?}"),
                Err(e) => Err(e.kind()),
            }
        };
        assert_eq!(prebuilt(&[]), Ok(None));
        assert_eq!(prebuilt(&["--kernel-prebuilt"]), Ok(Some(None)));
        assert_eq!(
            prebuilt(&["--kernel-prebuilt=6.12.117+deb12"]),
            Ok(Some(Some("6.12.117+deb12".to_string())))
        );
        assert!(prebuilt(&["--kernel-prebuilt", "--kernel-config", "debug"]).is_err());
    }

    #[test]
    fn every_subcommand_has_help_text() {
        let cli = Cli::command();
        for sub in cli.get_subcommands() {
            assert!(
                sub.get_about().is_some(),
                "`{}` has no help text",
                sub.get_name()
            );
            for arg in sub.get_arguments() {
                assert!(
                    arg.get_help().is_some(),
                    "`{} --{}` has no help text",
                    sub.get_name(),
                    arg.get_id()
                );
            }
        }
    }
}
