//! `shell` and `initramfs`: a guest to use by hand, and the archives guests boot from.

use super::args::{Compress, InitramfsArgs, ShellArgs};
use super::exit::{EXIT_FAIL, EXIT_PASS};
use super::{agent_binary, kernel_request, Context};
use crate::guest::shell::{self, ShellEnd};
use crate::host::setup;
use crate::spec::select;
use anyhow::{bail, Result};

pub(super) fn shell_command(args: ShellArgs, ctx: &Context) -> Result<i32> {
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
        agent: agent_binary(ctx)?,
        append: args.append.unwrap_or_default(),
    };
    Ok(match shell::run(&options)? {
        ShellEnd::ExitKey | ShellEnd::Halted | ShellEnd::Rebooted => EXIT_PASS,
        ShellEnd::Panicked => EXIT_FAIL,
        ShellEnd::Signal(sig) => 128 + sig,
    })
}

pub(super) fn initramfs_command(args: InitramfsArgs) -> Result<i32> {
    use crate::guest::initramfs::{self, Compression};
    use std::io::Write as _;
    if let Some(path) = &args.list {
        let mut out = std::io::stdout().lock();
        let listed = initramfs::list(path)?;
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
    let built = initramfs::build(input, output, compression)?;
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
