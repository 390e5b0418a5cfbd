//! The command line, shared by `cargo xtask` (inside this repository) and the standalone `kmodlab`
//! binary (anywhere): both parse the same arguments and differ only in their [`Context`].
//!
//! `args` holds the arguments; each group of commands has its file (`verdicts`: test and parse,
//! `watch`, `build`: build, kernel, list and new, `init`: init, `host`: doctor and setup, `guest`: shell and
//! initramfs); `exit` holds the exit codes.

mod args;
mod build;
pub mod doctor;
mod exit;
mod guest;
mod host;
mod init;
mod verdicts;
pub mod watch;

pub use args::*;
pub use exit::{code_or_unable, EXIT_FAIL, EXIT_PASS, EXIT_UNABLE};

use crate::build::agent;
use crate::kernel::{fragments, KernelRequest, SourceSpec};
use anyhow::Result;
use clap::Parser;
use std::path::PathBuf;

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
    /// Inside this kmodlab workspace: the agent built into the library (build.rs rebuilds it
    /// whenever its sources change), else a build from the workspace's sources.
    Workspace(PathBuf),
    /// `KMODLAB_AGENT`, else the agent built into the binary.
    Installed,
}

/// Makes output piped into `head` end quietly, as other command-line tools do, instead of
/// panicking on the closed pipe. Call it first thing in `main`, before any thread exists.
pub fn quiet_on_broken_pipe() {
    // SAFETY: restoring the default disposition of SIGPIPE at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
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
    code_or_unable(dispatch(command, ctx))
}

fn dispatch(command: Command, ctx: &Context) -> Result<i32> {
    match command {
        Command::Test(args) => verdicts::test(args, ctx),
        Command::Build(args) => build::build(args, ctx),
        Command::Watch(args) => watch::command(args, ctx),
        Command::Kernel(args) => build::kernel(args, ctx),
        Command::List(args) => build::list(args, ctx),
        Command::New(args) => build::new_module(args, ctx),
        Command::Init(args) => init::init(args, ctx),
        Command::Doctor => host::doctor(),
        Command::Setup(args) => host::setup_command(args),
        Command::Parse(args) => verdicts::parse(args),
        Command::Shell(args) => guest::shell_command(args, ctx),
        Command::Initramfs(args) => guest::initramfs_command(args),
    }
}

/// The kernel the options ask for.
pub fn kernel_request(opts: &KernelOpts, ctx: &Context) -> Result<KernelRequest> {
    if let Some(abi) = &opts.kernel_prebuilt {
        return Ok(KernelRequest {
            source: SourceSpec::DebianPrebuilt { abi: abi.clone() },
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
        jobs: opts.build_jobs,
    })
}

fn agent_binary(ctx: &Context) -> Result<PathBuf> {
    match &ctx.agent {
        AgentSource::Workspace(root) => agent::build_in_workspace(root),
        AgentSource::Installed => agent::locate(),
    }
}
