//! Line-level KTAP recognition shared by the agent (to know when a module's KTAP is complete)
//! and the host's parser (harness/host/src/ktap.rs), so both read lines the same way.
//!
//! PLACEHOLDER: the KTAP helper replaces the bodies below; the signatures are the contract.

/// Tracks whether a module's KTAP document has printed every result its plan announced.
#[derive(Debug, Default, Clone)]
pub struct Completion {
    complete: bool,
}

impl Completion {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one kernel log line (timestamps and `module: ` prefixes allowed).
    pub fn feed(&mut self, _line: &str) {}

    /// True once a top-level document has its plan and all the results the plan announced.
    pub fn is_complete(&self) -> bool {
        self.complete
    }
}
