//! `test` and `parse`: the commands that end in verdicts, shown on stdout and written to the
//! report files.

use super::args::{Format, Isolate, OutputOpts, ParseArgs, TestArgs};
use super::exit::{exit_code, EXIT_UNABLE};
use super::{agent_binary, kernel_request, Context};
use crate::host::setup;
use crate::judge::verdict::Verdict;
use crate::report;
use crate::run::{self, Isolation, RunEvent, RunOptions};
use crate::spec::select;
use anyhow::{bail, Result};
use std::time::Duration;

/// What stdout shows while events come in: lines for people, or one KTAP document.
enum Screen {
    Human(report::Human),
    Ktap(report::ktap::Ktap),
}

impl Screen {
    fn new(output: &OutputOpts, verbose: bool) -> Screen {
        match output.format {
            Format::Human => Screen::Human(report::Human::stdout(verbose)),
            Format::Ktap => Screen::Ktap(report::ktap::Ktap::new(verbose)),
        }
    }

    fn on_event(&mut self, event: &RunEvent) {
        match self {
            Screen::Human(human) => human.on_event(event),
            Screen::Ktap(ktap) => ktap.on_event(event),
        }
    }
}

pub(super) fn test(args: TestArgs, ctx: &Context) -> Result<i32> {
    let modules_dir = args.module_opts.modules_dir_or(&ctx.modules_dir);
    // Bad names and specs are reported before anything slow happens.
    let selection = select::select(&modules_dir, &args.modules)?;
    if !args.module_opts.no_setup {
        setup::ensure(true)?;
    }
    let options = RunOptions {
        accel: args.vms.accel.into(),
        runs_dir: args.runs_dir,
        timeout: args.timeout.map(Duration::from_secs),
        run_timeout: args.run_timeout.map(Duration::from_secs),
        isolation: match args.isolate {
            Isolate::Auto => None,
            Isolate::All => Some(Isolation::All),
            Isolate::Module => Some(Isolation::Module),
            Isolate::Test => Some(Isolation::Test),
        },
        jobs: args.vms.jobs.unwrap_or_else(run::default_jobs),
        snapshots: !args.vms.no_snapshot,
        ..RunOptions::new(
            selection,
            kernel_request(&args.kernel, ctx)?,
            agent_binary(ctx)?,
            setup::require_tool(&args.qemu.to_string_lossy())?,
        )
    };
    let mut screen = Screen::new(&args.output, args.verbose);
    let mut kernel_release = None;
    let report = run::run(&options, &mut |event| {
        if let RunEvent::KernelReady { release, .. } = event {
            kernel_release = Some(release.clone());
        }
        screen.on_event(event);
    })?;
    match &mut screen {
        Screen::Human(human) => human.finish(&report),
        Screen::Ktap(ktap) => ktap.finish(&report.verdicts),
    }
    let info = report::json::RunInfo::of(&report, kernel_release, options.cpus);
    write_reports(&args.output, &report.verdicts, &info)?;
    if let Some(cause) = &report.infrastructure {
        // Every test has its verdict in the reports; the exit code says the run could not happen.
        eprintln!("error: {cause}");
        return Ok(EXIT_UNABLE);
    }
    Ok(exit_code(&report.verdicts))
}

/// The `--junit`, `--json` and `--html` files.
fn write_reports(
    output: &OutputOpts,
    verdicts: &[Verdict],
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

pub(super) fn parse(args: ParseArgs) -> Result<i32> {
    let mut screen = Screen::new(&args.output, args.verbose);
    let mut verdicts = Vec::new();
    let mut info = report::json::RunInfo::default();
    let mut found_anything = false;
    for path in &args.logs {
        let parsed = crate::run::parse::parse_path(path)?;
        for note in parsed.notes {
            screen.on_event(&RunEvent::Notice(note));
        }
        if !parsed.found_anything {
            screen.on_event(&RunEvent::Notice(format!(
                "{}: no KTAP document, crash report or recorded test in it",
                path.display()
            )));
        }
        found_anything |= parsed.found_anything;
        for verdict in parsed.verdicts {
            screen.on_event(&RunEvent::Verdict(verdict.clone()));
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
    match &mut screen {
        Screen::Human(_) => println!("{}", report::summary_line(&verdicts)),
        Screen::Ktap(ktap) => ktap.finish(&verdicts),
    }
    write_reports(&args.output, &verdicts, &info)?;
    Ok(exit_code(&verdicts))
}
