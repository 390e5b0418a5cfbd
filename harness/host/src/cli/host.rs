//! `doctor` and `setup`: what this machine has, and installing what it lacks.

use super::args::SetupArgs;
use super::doctor;
use super::exit::{EXIT_PASS, EXIT_UNABLE};
use crate::host::setup;
use anyhow::Result;

pub(super) fn doctor() -> Result<i32> {
    let findings = doctor::diagnose(&setup::Host::current());
    for finding in &findings {
        println!("{finding}");
    }
    let missing = findings
        .iter()
        .filter(|f| f.status == doctor::Status::Missing)
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

pub(super) fn setup_command(args: SetupArgs) -> Result<i32> {
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
