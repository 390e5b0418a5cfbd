//! `cargo xtask`: kmodlab's command line inside this repository. It says where the repository's
//! modules, kernel config fragments and agent sources are; everything else is the harness library.
//! `ci` is the one command of its own: the project's checks, as a new machine or CI runs them.

mod bench;

use clap::{Parser, Subcommand};
use kmodlab::cli::{AgentSource, Context};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "kmodlab inside its own repository: build, boot and judge kernel modules"
)]
struct Xtask {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    // Boxed: kmodlab's commands are far larger than the two below.
    #[command(flatten)]
    Kmodlab(Box<kmodlab::cli::Command>),
    /// The project's own checks, as CI runs them: host set-up, kernel, fmt, clippy, then every test
    /// including the end-to-end ones that boot QEMU
    Ci,
    /// Measure where a warm test run's time goes (medians of several runs, for docs/PERFORMANCE.md)
    Bench {
        /// The module to run
        #[arg(default_value = "hello")]
        module: String,
        /// How many runs [default: 7, or 5 with --snapshots]
        #[arg(long)]
        runs: Option<usize>,
        /// Also run all the examples with one VM at a time and with one per CPU, alternated
        #[arg(long)]
        examples: bool,
        /// Instead: VMs restored from a snapshot against booted ones (ready time, the save,
        /// per-test cost, `--jobs`, whole commands), alternated
        #[arg(long, conflicts_with = "examples")]
        snapshots: bool,
    },
}

fn main() {
    kmodlab::cli::quiet_on_broken_pipe();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let ctx = Context {
        modules_dir: root.join("modules"),
        configs_dir: Some(root.join("kernel-configs")),
        agent: AgentSource::Workspace(root.clone()),
    };
    let code = match Xtask::parse().command {
        Task::Kmodlab(command) => kmodlab::cli::run_command(*command, &ctx),
        Task::Ci => ci(&root, &ctx),
        Task::Bench {
            module,
            runs,
            examples,
            snapshots,
        } => kmodlab::cli::code_or_unable(
            bench_task(&root, &ctx, &module, runs, examples, snapshots)
                .map(|()| kmodlab::cli::EXIT_PASS),
        ),
    };
    std::process::exit(code);
}

fn bench_task(
    root: &Path,
    ctx: &Context,
    module: &str,
    runs: Option<usize>,
    examples: bool,
    snapshots: bool,
) -> anyhow::Result<()> {
    if snapshots {
        return bench::bench_snapshots(root, ctx, runs.unwrap_or(5).max(1));
    }
    let runs = runs.unwrap_or(7).max(1);
    bench::bench(root, ctx, module, runs)?;
    if examples {
        bench::bench_examples(root, ctx, runs)?;
    }
    Ok(())
}

fn ci(root: &Path, ctx: &Context) -> i32 {
    // Set-up and the kernel first, with their progress visible, so the tests find them ready.
    kmodlab::cli::code_or_unable(prepare_ci(root, ctx).map(|()| run_checks(root)))
}

fn prepare_ci(root: &Path, ctx: &Context) -> anyhow::Result<()> {
    // What kmodlab needs and what only this project's tests need (a headless browser, ...), in one
    // install: `test` itself never installs the test-only tools.
    let requirements = [
        kmodlab::host::setup::REQUIREMENTS,
        kmodlab::host::setup::TEST_REQUIREMENTS,
    ]
    .concat();
    kmodlab::host::setup::ensure_requirements(&requirements, true)?;
    let request = kmodlab::cli::kernel_request(&Default::default(), ctx)?;
    kmodlab::kernel::ensure(&request)?;
    kmodlab::build::agent::build_in_workspace(root)?;
    Ok(())
}

/// fmt, clippy and the tests, each as its own cargo run; the first failure ends the run.
fn run_checks(root: &Path) -> i32 {
    let steps: [(&str, &[&str]); 4] = [
        ("formatting", &["fmt", "--all", "--", "--check"]),
        (
            "lints",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--quiet",
                "--",
                "-D",
                "warnings",
            ],
        ),
        (
            "unit tests",
            &["test", "--workspace", "--exclude", "kmodlab-e2e"],
        ),
        // Last, so that the run ends with the summary of the tests that boot real kernels.
        ("end-to-end tests", &["test", "--package", "kmodlab-e2e"]),
    ];
    for (what, args) in steps {
        eprintln!("==> {what}: cargo {}", args.join(" "));
        let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(root)
            .args(args)
            .status();
        match status {
            Ok(status) if status.success() => {}
            Ok(status) => {
                eprintln!("error: {what} failed ({status})");
                return kmodlab::cli::EXIT_FAIL;
            }
            Err(e) => {
                eprintln!("error: running cargo for {what}: {e}");
                return kmodlab::cli::EXIT_UNABLE;
            }
        }
    }
    kmodlab::cli::EXIT_PASS
}
