//! kmemleak, on kernels built with it (the debug profile): one scan after the last test, whose
//! report the host puts to the tests whose modules allocated what leaked.

use std::path::Path;
use std::time::Duration;

const KMEMLEAK: &str = "/sys/kernel/debug/kmemleak";

/// kmemleak never reports an object younger than this (`MSECS_MIN_AGE`, 5 s, in mm/kmemleak.c,
/// fixed at build time), so the scan waits until the last test's allocations are this old; the
/// margin covers the jiffies the age is counted in.
pub const MIN_AGE: Duration = Duration::from_millis(5_200);

/// Whether this kernel has kmemleak, enabled and reachable.
pub fn available() -> bool {
    Path::new(KMEMLEAK).exists()
}

/// Scans memory now; the write returns when the scan is over. kmemleak reports an object only
/// when its content did not change since the scan before (a checksum it first takes in a scan),
/// so a leak needs two scans: one right after the tests, one once the objects are old enough.
pub fn scan() -> Result<(), String> {
    std::fs::write(KMEMLEAK, "scan").map_err(|e| format!("scan ({KMEMLEAK}): {e}"))
}

/// The report of every unreferenced object found so far.
pub fn report() -> Result<String, String> {
    std::fs::read_to_string(KMEMLEAK).map_err(|e| format!("read {KMEMLEAK}: {e}"))
}
