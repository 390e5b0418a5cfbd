//! kmodlab's host library: everything between "here is a module folder" and "here are its verdicts".
//!
//! One concern per module: `setup` (host tools), `kernel` (provisioning and build), `kbuild` (module
//! builds), `spec` (module test specs), `initramfs` (newc writer), `agent` (the guest binary), `vm` (QEMU),
//! `ktap` and `oops` (reading what the kernel printed), `verdict` (judging), `report` (output),
//! `run` (the `test` pipeline and its run folder), `cli` (the command line shared by both binaries).

pub mod agent;
pub mod cache;
pub mod cli;
pub mod initramfs;
pub mod kbuild;
pub mod kernel;
pub mod ktap;
pub mod oops;
pub mod report;
pub mod run;
pub mod setup;
pub mod spec;
pub mod verdict;
pub mod vm;
