//! Judging: pure functions from what the guest recorded (agent events, kernel log lines) to
//! verdicts. Nothing here starts a VM, so every rule is tested with saved logs.

pub mod evidence;
pub mod kernel_log;
pub mod ktap;
pub mod oops;
pub mod records;
pub mod rules;
pub mod taint;
pub mod unload;
pub mod verdict;
