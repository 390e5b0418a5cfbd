//! End-to-end: every test here builds real modules, boots a real kernel under QEMU and checks the
//! verdicts kmodlab gives. One binary, so that a run ends with one summary of them all.

mod cli;
mod companions;
mod debug_fixtures;
mod examples;
mod fixtures;
mod full_kernel;
mod html;
mod install;
mod kernel;
mod outside;
mod parallel;
mod prebuilt;
mod prebuilt_abi;
mod reports;
mod scaffold;
mod shell;
mod snapshot;
mod try_this;
mod zero_config;
