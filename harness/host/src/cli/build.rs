//! `build`, `kernel`, `list` and `new`: the commands that build, show or create without booting.

use super::args::{BuildArgs, KernelArgs, Lang, ListArgs, NewArgs};
use super::exit::{EXIT_FAIL, EXIT_PASS};
use super::{kernel_request, Context};
use crate::build::module;
use crate::host::paths::display_path;
use crate::host::setup;
use crate::kernel::{self, Kernel};
use crate::spec::{self, select};
use anyhow::Result;
use std::path::PathBuf;

pub(super) fn build(args: BuildArgs, ctx: &Context) -> Result<i32> {
    let modules_dir = args.module_opts.modules_dir_or(&ctx.modules_dir);
    let selection = select::select(&modules_dir, &args.modules)?;
    if !args.module_opts.no_setup {
        setup::ensure(true)?;
    }
    let kernel = kernel::ensure(&kernel_request(&args.kernel, ctx)?)?;
    let mut any_failed = false;
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
        for failed in &build.failed {
            let why = failed.summary();
            println!("  {}.ko did not build: {}", failed.module, why.trim());
        }
        any_failed |= !build.failed.is_empty();
    }
    Ok(if any_failed { EXIT_FAIL } else { EXIT_PASS })
}

pub(super) fn kernel(args: KernelArgs, ctx: &Context) -> Result<i32> {
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
    show_kernel(&kernel);
    Ok(EXIT_PASS)
}

fn show_kernel(kernel: &Kernel) {
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
}

pub(super) fn list(args: ListArgs, ctx: &Context) -> Result<i32> {
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
                if spec.discovered {
                    println!(
                        "{:<16} tests: one per .ko it builds (no {})",
                        "",
                        spec::SPEC_FILE
                    );
                } else {
                    println!("{:<16} tests: {}", "", tests.join(", "));
                }
            }
            Err(e) => println!(
                "{:<16} invalid spec: {e:#}",
                dir.file_name().unwrap_or_default().to_string_lossy()
            ),
        }
    }
    Ok(EXIT_PASS)
}

pub(super) fn new_module(args: NewArgs, ctx: &Context) -> Result<i32> {
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
    let dir = spec::scaffold::create(&modules_dir, &args.name, language, from.as_deref())?;
    println!("created {}", display_path(&dir).display());
    println!("next: cargo xtask test {}", args.name);
    Ok(EXIT_PASS)
}
