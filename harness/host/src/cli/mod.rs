//! The command line, shared by `cargo xtask` (inside this repository) and the standalone `kmodlab`
//! binary (anywhere): both parse the same arguments and differ only in their [`Context`].

pub mod watch;

use crate::build::{agent, module};
use crate::guest::accel::AccelChoice;
use crate::host::setup;
use crate::kernel::{fragments, KernelRequest, SourceSpec};
use crate::run::{Isolation, RunEvent, RunOptions};
use crate::spec::select;
use crate::{kernel, report, run, spec};
use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// Exit codes: every verdict passed (or skipped) / some test failed / the run could not happen.
pub const EXIT_PASS: i32 = 0;
pub const EXIT_FAIL: i32 = 1;
pub const EXIT_UNABLE: i32 = 2;

/// What the calling binary knows about where things are.
#[derive(Debug, Clone)]
pub struct Context {
    /// The folder whose subfolders are modules, unless `--modules-dir` says otherwise.
    pub modules_dir: PathBuf,
    /// Where named kernel config fragments live; `None`: the built-in ones.
    pub configs_dir: Option<PathBuf>,
    pub agent: AgentSource,
}

#[derive(Debug, Clone)]
pub enum AgentSource {
    /// Build it from this kmodlab workspace.
    Workspace(PathBuf),
    /// `KMODLAB_AGENT`, or next to the running executable.
    Installed,
}

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
    /// Parallel jobs for the kernel build [default: number of CPUs]
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Use Debian's prebuilt cloud kernel (image and headers fetched with apt-get download, no
    /// root, no kernel build) instead of building one: C modules only, Rust modules SKIP
    #[arg(long, conflicts_with_all = ["kernel_src", "kernel_config", "jobs"])]
    pub kernel_prebuilt: bool,
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
    /// Accelerator: auto uses KVM only after a probe boot has shown it works on this machine
    #[arg(long, value_enum, default_value_t = Accel::Auto)]
    pub accel: Accel,
    /// Time limit per test in seconds, overriding the specs' timeout_s
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Time limit for the whole run in seconds; tests not finished by then get TIMEOUT
    #[arg(long, value_name = "SECS")]
    pub run_timeout: Option<u64>,
    /// How tests share VMs: `all` runs them in one VM and starts a fresh one after any crash or
    /// timeout (fastest, and each test is still judged on its own log and taint); `module` gives each
    /// module folder a VM; `test` gives each test its own
    #[arg(long, value_enum, default_value_t = Isolate::All)]
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
    /// Accelerator: auto uses KVM only after a probe boot has shown it works on this machine
    #[arg(long, value_enum, default_value_t = Accel::Auto)]
    pub accel: Accel,
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

/// Parses the process arguments and runs; returns the exit code.
pub fn main(ctx: &Context) -> i32 {
    let cli = Cli::parse();
    run_cli(cli, ctx)
}

/// Runs a parsed command line; errors are printed and become exit code 2.
pub fn run_cli(cli: Cli, ctx: &Context) -> i32 {
    run_command(cli.command, ctx)
}

/// Runs one command; errors are printed and become exit code 2.
pub fn run_command(command: Command, ctx: &Context) -> i32 {
    match dispatch(command, ctx) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            EXIT_UNABLE
        }
    }
}

fn dispatch(command: Command, ctx: &Context) -> Result<i32> {
    match command {
        Command::Test(args) => test(args, ctx),
        Command::Build(args) => build(args, ctx),
        Command::Watch(args) => watch(args, ctx),
        Command::Kernel(args) => kernel_command(args, ctx),
        Command::List(args) => list(args, ctx),
        Command::New(args) => new_module(args, ctx),
        Command::Doctor => doctor(),
        Command::Setup(args) => setup_command(args),
        Command::Parse(args) => parse_command(args),
        Command::Shell(args) => shell_command(args, ctx),
        Command::Initramfs(args) => initramfs_command(args),
    }
}

fn test(args: TestArgs, ctx: &Context) -> Result<i32> {
    let modules_dir = args
        .module_opts
        .modules_dir
        .clone()
        .unwrap_or_else(|| ctx.modules_dir.clone());
    // Bad names and specs are reported before anything slow happens.
    let selection = select::select(&modules_dir, &args.modules)?;
    if !args.module_opts.no_setup {
        setup::ensure(true)?;
    }
    let options = RunOptions {
        selection,
        kernel: kernel_request(&args.kernel, ctx)?,
        agent: agent_binary(ctx)?,
        accel: args.accel.into(),
        qemu: setup::require_tool(&args.qemu.to_string_lossy())?,
        runs_dir: args.runs_dir,
        timeout: args.timeout.map(Duration::from_secs),
        run_timeout: args.run_timeout.map(Duration::from_secs),
        isolation: match args.isolate {
            Isolate::All => Isolation::All,
            Isolate::Module => Isolation::Module,
            Isolate::Test => Isolation::Test,
        },
        memory_mb: 256,
        cpus: 2,
    };
    let mut human =
        (args.output.format == Format::Human).then(|| report::Human::stdout(args.verbose));
    let mut ktap = report::ktap::Ktap::new(args.verbose);
    let mut kernel_release = None;
    let report = run::run(&options, &mut |event| {
        if let run::RunEvent::KernelReady { release, .. } = event {
            kernel_release = Some(release.clone());
        }
        match human.as_mut() {
            Some(human) => human.on_event(event),
            None => ktap.on_event(event),
        }
    })?;
    match human.as_mut() {
        Some(human) => human.finish(&report),
        None => ktap.finish(&report.verdicts),
    }
    let info = report::json::RunInfo::of(&report, kernel_release, options.cpus);
    write_reports(&args.output, &report.verdicts, &info)?;
    Ok(exit_code(&report.verdicts))
}

fn exit_code(verdicts: &[crate::judge::verdict::Verdict]) -> i32 {
    if verdicts.iter().any(|v| v.outcome.is_failure()) {
        EXIT_FAIL
    } else {
        EXIT_PASS
    }
}

/// The `--junit`, `--json` and `--html` files.
fn write_reports(
    output: &OutputOpts,
    verdicts: &[crate::judge::verdict::Verdict],
    info: &report::json::RunInfo,
) -> Result<()> {
    if let Some(path) = &output.junit {
        report::junit::write(path, verdicts, info.kernel_release.as_deref())?;
    }
    if let Some(path) = &output.json {
        report::json::write(path, verdicts, info)?;
    }
    if let Some(path) = &output.html {
        report::html::write(path, verdicts, info)?;
    }
    Ok(())
}

fn parse_command(args: ParseArgs) -> Result<i32> {
    let mut human =
        (args.output.format == Format::Human).then(|| report::Human::stdout(args.verbose));
    let mut ktap = report::ktap::Ktap::new(args.verbose);
    let mut show = |event: run::RunEvent| match human.as_mut() {
        Some(human) => human.on_event(&event),
        None => ktap.on_event(&event),
    };
    let mut verdicts = Vec::new();
    let mut info = report::json::RunInfo::default();
    let mut found_anything = false;
    for path in &args.logs {
        let parsed = crate::run::parse::parse_path(path)?;
        for note in parsed.notes {
            show(run::RunEvent::Notice(note));
        }
        if !parsed.found_anything {
            show(run::RunEvent::Notice(format!(
                "{}: no KTAP document, crash report or recorded test in it",
                path.display()
            )));
        }
        found_anything |= parsed.found_anything;
        for verdict in parsed.verdicts {
            show(run::RunEvent::Verdict(verdict.clone()));
            verdicts.push(verdict);
        }
        info.vms += parsed.vms;
        info.kernel_release = info.kernel_release.or(parsed.kernel_release);
        // One run folder is the report's; several inputs have none in particular.
        info.run_folder = match (args.logs.len(), parsed.run_folder) {
            (1, folder) => folder,
            _ => None,
        };
    }
    if !found_anything {
        bail!("nothing to judge: no KTAP document, crash report or kmodlab run in the given logs");
    }
    match human.as_mut() {
        Some(_) => println!("{}", report::summary_line(&verdicts)),
        None => ktap.finish(&verdicts),
    }
    write_reports(&args.output, &verdicts, &info)?;
    Ok(exit_code(&verdicts))
}

fn watch(args: WatchArgs, ctx: &Context) -> Result<i32> {
    let modules_dir = args
        .module_opts
        .modules_dir
        .clone()
        .unwrap_or_else(|| ctx.modules_dir.clone());
    // Bad names and specs are reported before anything slow happens.
    let first = select::select(&modules_dir, &args.modules)?;
    if !args.module_opts.no_setup {
        setup::ensure(true)?;
    }
    let kernel = kernel_request(&args.kernel, ctx)?;
    let agent = agent_binary(ctx)?;
    let qemu = setup::require_tool("qemu-system-x86_64")?;
    let accel: AccelChoice = args.accel.into();
    let dirs: Vec<PathBuf> = first.iter().map(|s| s.spec.dir.clone()).collect();
    let run_once = || -> Result<Vec<crate::judge::verdict::Verdict>> {
        // Specs are read again each round: saving kmodlab.toml is an edit like any other.
        let options = RunOptions {
            selection: select::select(&modules_dir, &args.modules)?,
            kernel: kernel.clone(),
            agent: agent.clone(),
            accel,
            qemu: qemu.clone(),
            runs_dir: None,
            timeout: None,
            run_timeout: None,
            isolation: Isolation::All,
            memory_mb: 256,
            cpus: 2,
        };
        // On a terminal, what the round is doing now; the round's changes are printed after it.
        let mut live = crate::host::progress::Live::stdout();
        let mut kernel_release = None;
        let report = run::run(&options, &mut |event| {
            let line = match event {
                RunEvent::KernelReady { release, .. } => {
                    kernel_release = Some(release.clone());
                    return;
                }
                RunEvent::ModuleBuilding { module } => {
                    if let Some(live) = live.as_mut() {
                        live.show(&format!("module  {module}: building"));
                    }
                    return;
                }
                RunEvent::VmStarted { label } => {
                    if let Some(live) = live.as_mut() {
                        live.show(&format!("qemu    {label}: booting"));
                    }
                    return;
                }
                RunEvent::TestStarted { id } => {
                    if let Some(live) = live.as_mut() {
                        live.show(&format!("test    {id}: running"));
                    }
                    return;
                }
                RunEvent::Notice(text) => format!("note    {text}"),
                RunEvent::ModuleBuilt(build) if !build.warnings.trim().is_empty() => format!(
                    "{}: compiler warnings:\n{}",
                    build.module,
                    build.warnings.trim_end()
                ),
                _ => return,
            };
            match live.as_ref() {
                Some(live) => live.suspend(|| println!("{line}")),
                None => println!("{line}"),
            }
        });
        drop(live);
        let report = report?;
        if let Some(path) = &args.html {
            let info = report::json::RunInfo::of(&report, kernel_release, options.cpus);
            report::html::write(path, &report.verdicts, &info)?;
        }
        Ok(report.verdicts)
    };
    crate::cli::watch::watch(&dirs, run_once, &mut std::io::stdout())?;
    Ok(EXIT_PASS)
}

fn build(args: BuildArgs, ctx: &Context) -> Result<i32> {
    let modules_dir = args
        .module_opts
        .modules_dir
        .clone()
        .unwrap_or_else(|| ctx.modules_dir.clone());
    let selection = select::select(&modules_dir, &args.modules)?;
    if !args.module_opts.no_setup {
        setup::ensure(true)?;
    }
    let kernel = kernel::ensure(&kernel_request(&args.kernel, ctx)?)?;
    for selected in &selection {
        let build = module::build(&selected.spec, &kernel)?;
        let how = if build.reused {
            "up to date".to_string()
        } else {
            format!("built in {:.1}s", build.duration.as_secs_f64())
        };
        println!("{}: {how}", build.module);
        if !build.warnings.trim().is_empty() {
            println!("{}", build.warnings.trim_end());
        }
        for (_, path) in &build.objects {
            println!("  {}", path.display());
        }
    }
    Ok(EXIT_PASS)
}

fn kernel_command(args: KernelArgs, ctx: &Context) -> Result<i32> {
    let request = kernel_request(&args.kernel, ctx)?;
    let kernel = if args.status {
        match kernel::cached(&request)? {
            Some(kernel) => kernel,
            None => {
                println!(
                    "kernel {} is not built yet; `kernel` without --status builds it",
                    kernel::key(&request)?
                );
                return Ok(EXIT_FAIL);
            }
        }
    } else {
        if !args.no_setup {
            setup::ensure(true)?;
        }
        kernel::ensure(&request)?
    };
    println!("key:       {}", kernel.key);
    println!("release:   {}", kernel.release);
    println!("image:     {}", kernel.image.display());
    println!("build dir: {}", kernel.build_dir.display());
    println!("source:    {}", kernel.source_dir.display());
    let fragments: Vec<String> = kernel
        .fragments
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    if kernel.is_prebuilt() {
        println!("fragments: none (Debian's prebuilt kernel, its own .config)");
    } else {
        println!("fragments: {}", fragments.join(" + "));
    }
    println!(
        "rust:      {}",
        if kernel.option("CONFIG_RUST") == Some("y") {
            "yes"
        } else {
            "no"
        }
    );
    Ok(EXIT_PASS)
}

fn list(args: ListArgs, ctx: &Context) -> Result<i32> {
    let modules_dir = args.modules_dir.unwrap_or_else(|| ctx.modules_dir.clone());
    for dir in spec::discover(&modules_dir)? {
        match spec::load(&dir) {
            Ok(spec) => {
                let requires = if spec.requires.is_empty() {
                    String::new()
                } else {
                    format!(" (needs {})", spec.requires.join(", "))
                };
                println!(
                    "{:<16} {:<5} {}{requires}",
                    spec.name,
                    spec.language.to_string(),
                    spec.description
                );
                let tests: Vec<&str> = spec.tests.iter().map(|t| t.name.as_str()).collect();
                println!("{:<16} tests: {}", "", tests.join(", "));
            }
            Err(e) => println!(
                "{:<16} invalid spec: {e:#}",
                dir.file_name().unwrap_or_default().to_string_lossy()
            ),
        }
    }
    Ok(EXIT_PASS)
}

fn new_module(args: NewArgs, ctx: &Context) -> Result<i32> {
    let modules_dir = args.modules_dir.unwrap_or_else(|| ctx.modules_dir.clone());
    let language = match args.lang {
        Lang::C => spec::Language::C,
        Lang::Rust => spec::Language::Rust,
    };
    let from = args.from.map(|example| {
        let as_path = PathBuf::from(&example);
        if as_path.join(spec::SPEC_FILE).is_file() {
            as_path
        } else {
            ctx.modules_dir.join(example)
        }
    });
    let dir = crate::spec::scaffold::create(&modules_dir, &args.name, language, from.as_deref())?;
    println!("created {}", module::display_path(&dir).display());
    println!("next: cargo xtask test {}", args.name);
    Ok(EXIT_PASS)
}

fn doctor() -> Result<i32> {
    let findings = crate::host::doctor::diagnose(&setup::Host::current());
    for finding in &findings {
        println!("{finding}");
    }
    let missing = findings
        .iter()
        .filter(|f| f.status == crate::host::doctor::Status::Missing)
        .count();
    if missing == 0 {
        println!("kmodlab has everything it needs");
        Ok(EXIT_PASS)
    } else {
        println!(
            "{missing} problem{} to fix; `cargo xtask setup` installs the packages and tools",
            if missing == 1 { "" } else { "s" }
        );
        Ok(EXIT_UNABLE)
    }
}

fn setup_command(args: SetupArgs) -> Result<i32> {
    if args.check {
        let missing = setup::check();
        if missing.is_empty() {
            println!("everything kmodlab needs is installed");
            return Ok(EXIT_PASS);
        }
        for item in &missing {
            println!("missing: {item}");
        }
        return Ok(EXIT_UNABLE);
    }
    setup::ensure(true)?;
    println!("everything kmodlab needs is installed");
    Ok(EXIT_PASS)
}

fn shell_command(args: ShellArgs, ctx: &Context) -> Result<i32> {
    let modules_dir = args
        .module_opts
        .modules_dir
        .clone()
        .unwrap_or_else(|| ctx.modules_dir.clone());
    // With no names, no modules (not every module, as `test` does): a shell should start quickly.
    let selection = if args.modules.is_empty() {
        Vec::new()
    } else {
        select::select(&modules_dir, &args.modules)?
    };
    if !args.module_opts.no_setup {
        setup::ensure(true)?;
    }
    let options = crate::guest::shell::ShellOptions {
        kernel: kernel_request(&args.kernel, ctx)?,
        selection,
        qemu: setup::require_tool(&args.qemu.to_string_lossy())?,
        accel: args.accel.into(),
        memory_mb: args.memory,
        cpus: 2,
        busybox: args.busybox,
        append: args.append.unwrap_or_default(),
    };
    crate::guest::shell::run(&options)
}

fn initramfs_command(args: InitramfsArgs) -> Result<i32> {
    use crate::guest::initramfs::desc::{self, Compression};
    use std::io::Write as _;
    if let Some(path) = &args.list {
        let mut out = std::io::stdout().lock();
        let listed = desc::list(path)?;
        let parts = listed.last().map_or(0, |l| l.part);
        let mut part = 0;
        for entry in &listed {
            if parts > 1 && entry.part != part {
                part = entry.part;
                writeln!(out, "# archive {part} ({})", entry.compression)?;
            }
            writeln!(out, "{}", entry.line())?;
        }
        return Ok(EXIT_PASS);
    }
    let (Some(input), Some(output)) = (&args.input, &args.output) else {
        bail!("give DESC|DIR and -o FILE, or --list FILE");
    };
    let compression = match args.compress {
        None => Compression::None,
        Some(Compress::Gzip) => Compression::Gzip,
        Some(Compress::Zstd) => Compression::Zstd,
    };
    let started = std::time::Instant::now();
    let built = desc::build(input, output, compression)?;
    let size = if compression == Compression::None {
        format!("{} bytes", built.file_bytes)
    } else {
        format!(
            "{} bytes ({compression}; {} uncompressed)",
            built.file_bytes, built.archive_bytes
        )
    };
    println!(
        "wrote {}: {} entries, {size}, in {:.2}s",
        output.display(),
        built.entries,
        started.elapsed().as_secs_f64()
    );
    Ok(EXIT_PASS)
}

/// The kernel the options ask for.
pub fn kernel_request(opts: &KernelOpts, ctx: &Context) -> Result<KernelRequest> {
    if opts.kernel_prebuilt {
        return Ok(KernelRequest {
            source: SourceSpec::DebianPrebuilt,
            fragments: Vec::new(),
            jobs: None,
        });
    }
    let fragments = fragments::requested(&opts.kernel_config, ctx.configs_dir.as_deref())?;
    let source = match &opts.kernel_src {
        Some(dir) => SourceSpec::Dir(dir.clone()),
        None => SourceSpec::Debian,
    };
    Ok(KernelRequest {
        source,
        fragments,
        jobs: opts.jobs,
    })
}

fn agent_binary(ctx: &Context) -> Result<PathBuf> {
    match &ctx.agent {
        AgentSource::Workspace(root) => agent::build_in_workspace(root),
        AgentSource::Installed => agent::locate(),
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
