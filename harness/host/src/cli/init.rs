//! `init`: a `kmodlab.toml` for a folder without one, from what its build produces.

use super::args::InitArgs;
use super::exit::EXIT_PASS;
use super::{kernel_request, Context};
use crate::build::module;
use crate::host::paths::display_path;
use crate::host::setup;
use crate::kernel;
use crate::spec::{self, init};
use anyhow::{bail, Context as _, Result};

pub(super) fn init(args: InitArgs, ctx: &Context) -> Result<i32> {
    let dir = match args.dir {
        Some(dir) => dir,
        None => std::env::current_dir().context("finding the current folder")?,
    };
    let spec_path = dir.join(spec::SPEC_FILE);
    if spec_path.exists() {
        bail!(
            "{} exists already; kmodlab init never overwrites it (move it away to write a new one)",
            display_path(&spec_path).display()
        );
    }
    if !spec::kbuild::builds_modules(&dir) {
        bail!(
            "{} has no Kbuild or Makefile naming obj-m: kmodlab init describes a folder that builds modules",
            display_path(&dir).display()
        );
    }
    let spec = spec::load(&dir)?;
    if !args.no_setup {
        setup::ensure(true)?;
    }
    let kernel = kernel::ensure(&kernel_request(&args.kernel, ctx)?)?;
    let build = module::build(&spec, &kernel)?;
    let found: Vec<init::Found> = build
        .objects
        .iter()
        .map(|(file, _)| init::Found {
            file: file.clone(),
            load: build
                .load_orders
                .get(file)
                .cloned()
                .unwrap_or_else(|| vec![file.clone()]),
        })
        .collect();
    let not_built: Vec<init::NotBuilt> = build
        .failed
        .iter()
        .map(|f| init::NotBuilt {
            file: f.module.clone(),
            why: f.summary(),
        })
        .collect();
    if found.is_empty() {
        bail!(
            "no module of {} built, so there is nothing to describe; `kmodlab test` there shows why",
            display_path(&dir).display()
        );
    }
    let text = init::describe(&spec.name, spec.language, &found, &not_built);
    // `create_new`: a spec written meanwhile is not overwritten either.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&spec_path)
        .with_context(|| format!("creating {}", spec_path.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .with_context(|| format!("writing {}", spec_path.display()))?;
    println!(
        "wrote {}: {} tests ({} modules did not build)",
        display_path(&spec_path).display(),
        found.len(),
        not_built.len()
    );
    println!("next: refine it (expect, params, ktap), then run kmodlab test there");
    Ok(EXIT_PASS)
}
