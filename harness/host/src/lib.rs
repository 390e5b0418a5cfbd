//! kmodlab's host library: everything between "here is a module folder" and "here are its verdicts".
//!
//! The folders follow the path a test's data takes (docs/ARCHITECTURE.md walks one test through them):
//!
//! - [`cli`]: the command line both binaries share, its exit codes, `watch` and `doctor`.
//! - [`host`]: the machine kmodlab runs on: tools and their set-up, the cache, progress display.
//! - [`kernel`]: kernel sources, Kconfig fragments, configuration, builds and prebuilt kernels.
//! - [`spec`]: module folders and their `kmodlab.toml`, choosing modules for a run, `new`.
//! - [`build`]: out-of-tree module builds, user-space companions, the guest agent binary.
//! - [`guest`]: what runs in QEMU: the initramfs, the one QEMU command line, VMs, KVM or TCG, `shell`.
//! - [`judge`]: turning what the guest recorded into verdicts: records, KTAP, crash reports, taint.
//! - [`run`]: the `test` pipeline, the VM session loop, and the run folder (written and read back).
//! - [`report`]: verdicts for people and machines (human, KTAP, JUnit, JSON, HTML).

// The host never panics on a fallible operation outside tests: errors carry context instead.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod build;
pub mod cli;
pub mod guest;
pub mod host;
pub mod judge;
pub mod kernel;
pub mod report;
pub mod run;
pub mod spec;
#[cfg(test)]
mod test_support;
