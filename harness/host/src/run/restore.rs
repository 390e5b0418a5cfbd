//! Whether this run's VMs start from a snapshot: one found whole in the cache, or one saved in the
//! background while the modules build, so that nobody waits for it twice.

use super::{RunEvent, RunOptions, Runner};
use crate::guest::qemu::{self, Boot};
use crate::guest::snapshot::{self, FileStamp, Snapshot, Source};
use crate::guest::vm::{self, Accelerator};
use crate::host::cache;
use crate::kernel::Kernel;
use anyhow::Result;
use std::path::PathBuf;
use std::thread::JoinHandle;

/// A snapshot the run's VMs restore, and the slot it lives in (to forget it if a restore fails).
#[derive(Debug, Clone)]
pub struct Restorable {
    pub snapshot: Snapshot,
    pub slot: PathBuf,
}

/// A snapshot on its way.
pub(super) enum Prepared {
    /// `--no-snapshot`.
    Off,
    /// The kernel cannot be restored, or the cache could not hold a snapshot: why.
    Unavailable(String),
    Working(JoinHandle<Found>),
}

/// What the background thread found: the snapshot, and why it had to be saved anew (if it had).
pub(super) type Found = Result<(Restorable, Option<String>), String>;

/// Starts finding (or saving) the snapshot for this run's VMs.
pub(super) fn prepare(opts: &RunOptions, kernel: &Kernel, accel: Accelerator) -> Prepared {
    if !opts.snapshots {
        return Prepared::Off;
    }
    if let Some(why) = snapshot::unsupported(kernel) {
        return Prepared::Unavailable(why);
    }
    let source = match source(opts, kernel, accel) {
        Ok(source) => source,
        Err(e) => return Prepared::Unavailable(format!("{e:#}")),
    };
    let slot = match snapshot::slot(kernel, accel, opts.memory_mb, opts.cpus) {
        Ok(slot) => slot,
        Err(e) => return Prepared::Unavailable(format!("{e:#}")),
    };
    let qemu = opts.qemu.clone();
    let worker = std::thread::Builder::new()
        .name("snapshot".into())
        .spawn(move || {
            let why_new = match snapshot::find(&slot, &source) {
                Ok(snapshot) => return Ok((Restorable { snapshot, slot }, None)),
                Err(why) => why,
            };
            // One process saves; another that wanted to meanwhile takes what it saved.
            let _lock = cache::lock(&slot.join("lock"), "saving a VM snapshot")
                .map_err(|e| format!("{e:#}"))?;
            if let Ok(snapshot) = snapshot::find(&slot, &source) {
                return Ok((Restorable { snapshot, slot }, None));
            }
            match snapshot::make(&slot, &source, &qemu) {
                Ok(snapshot) => Ok((Restorable { snapshot, slot }, Some(why_new))),
                Err(e) => Err(format!("{why_new}, and saving one failed: {e:#}")),
            }
        });
    match worker {
        Ok(handle) => Prepared::Working(handle),
        Err(e) => Prepared::Unavailable(format!("starting the snapshot thread: {e}")),
    }
}

/// Everything a restored VM must share with the snapshot it restores, as the run's VMs have it.
pub fn source(opts: &RunOptions, kernel: &Kernel, accel: Accelerator) -> Result<Source> {
    let cmdline = vm::cmdline_for(kernel, accel, &kernel.detector_args());
    let boot = Boot {
        qemu: opts.qemu.clone(),
        image: kernel.boot_image(),
        initramfs: PathBuf::new(),
        cmdline: cmdline.clone(),
        accel,
        memory_mb: opts.memory_mb,
        cpus: opts.cpus,
    };
    Ok(Source {
        qemu_version: qemu::version(&opts.qemu)?,
        kernel_image: FileStamp::of(&kernel.boot_image())?,
        agent: FileStamp::of(&opts.agent)?,
        cmdline,
        accel,
        memory_mb: opts.memory_mb,
        cpus: opts.cpus,
        machine: Source::machine_of(&boot)?,
    })
}

impl Runner<'_> {
    /// Waits for the snapshot, and says why VMs will boot if they will.
    pub(super) fn take_snapshot(&mut self, prepared: Prepared) -> Option<Restorable> {
        let found = match prepared {
            Prepared::Off => return None,
            Prepared::Unavailable(why) => Err(why),
            Prepared::Working(handle) => handle
                .join()
                .unwrap_or_else(|_| Err("the thread saving a snapshot panicked".into())),
        };
        match found {
            Ok((restorable, None)) => Some(restorable),
            Ok((restorable, Some(why_new))) => {
                self.tell(RunEvent::Notice(format!(
                    "snapshot: {why_new}; booted one in {:.2} s and saved it in {:.2} s, for VMs to restore from now on",
                    restorable.snapshot.boot.as_secs_f64(),
                    restorable.snapshot.save.as_secs_f64()
                )));
                Some(restorable)
            }
            Err(why) => {
                self.tell(RunEvent::Notice(format!(
                    "snapshot: none to restore ({why}); every VM boots"
                )));
                None
            }
        }
    }
}
