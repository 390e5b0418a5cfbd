//! kmodlab's host library: everything between "here is a module folder" and "here are its verdicts".
//!
//! One concern per module: `setup` (host tools), `kernel` (provisioning and build), `kbuild` (module
//! builds), `spec` (module test specs), `initramfs` (newc writer), `agent` (the guest binary), `vm` (QEMU),
//! `accel` (KVM or TCG), `ktap` and `oops` (reading what the kernel printed), `taint`, `verdict` (judging),
//! `report` (output), `run` (the `test` pipeline and its run folder), `progress` (what a person sees while
//! it works), `cli` (the command line of both binaries).

pub mod accel;
pub mod agent;
pub mod cache;
pub mod cli;
pub mod companion;
pub mod doctor;
pub mod initramfs;
pub mod initramfs_desc;
pub mod kbuild;
pub mod kernel;
pub mod ktap;
pub mod oops;
pub mod parse;
pub mod progress;
pub mod report;
pub mod run;
pub mod scaffold;
pub mod setup;
pub mod shell;
pub mod spec;
pub mod taint;
#[cfg(test)]
mod test_support;
pub mod verdict;
pub mod vm;
pub mod watch;
