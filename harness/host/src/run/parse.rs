//! Turning saved logs into verdicts, as `kunit.py parse` does for KUnit: `kmodlab parse LOG...`.
//! A directory is a run folder, judged again by [`replay`]; any other file (or `-` for stdin) is
//! a kernel log, judged by [`kernel_log`].

use super::replay;
use crate::judge::kernel_log::{self, KernelLog};
use crate::judge::verdict::Verdict;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// What the logs said.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub verdicts: Vec<Verdict>,
    pub kernel_release: Option<String>,
    /// VMs whose events were read (0 for a plain log).
    pub vms: u32,
    /// Set when the input was a run folder.
    pub run_folder: Option<PathBuf>,
    /// Whether the input had anything to judge: a KTAP document, a crash report, a recorded test.
    pub found_anything: bool,
    /// What the reader had to guess, worth telling the user.
    pub notes: Vec<String>,
}

impl From<KernelLog> for Parsed {
    fn from(log: KernelLog) -> Parsed {
        Parsed {
            verdicts: log.verdicts,
            kernel_release: log.kernel_release,
            found_anything: log.found_anything,
            ..Parsed::default()
        }
    }
}

/// Reads a run folder (a directory) or a kernel log (a file, or `-` for stdin).
pub fn parse_path(path: &Path) -> Result<Parsed> {
    let bytes = if path == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
            .context("reading the log from stdin")?;
        bytes
    } else {
        let meta =
            std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
        if meta.is_dir() {
            return replay::run_folder(path);
        }
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
    };
    // Kernel logs are not always valid UTF-8 (a dying kernel prints what it prints).
    Ok(kernel_log::kernel_log(&String::from_utf8_lossy(&bytes)).into())
}
