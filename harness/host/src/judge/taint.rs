//! The kernel's taint flags (include/linux/panic.h, kernel/panic.c in 6.12), decoded for people.

/// Bit, letter and meaning of each taint flag, in bit order.
const FLAGS: [(u32, char, &str); 19] = [
    (0, 'P', "proprietary module was loaded"),
    (1, 'F', "module was force loaded"),
    (2, 'S', "kernel running on an out of specification system"),
    (3, 'R', "module was force unloaded"),
    (4, 'M', "processor reported a machine check exception"),
    (5, 'B', "bad page referenced or unexpected page flags"),
    (6, 'U', "taint requested by a user-space application"),
    (7, 'D', "kernel died recently (oops or BUG)"),
    (8, 'A', "an ACPI table was overridden by the user"),
    (9, 'W', "kernel issued a warning"),
    (10, 'C', "staging driver was loaded"),
    (11, 'I', "workaround for a platform firmware bug applied"),
    (12, 'O', "externally-built (out-of-tree) module was loaded"),
    (13, 'E', "unsigned module was loaded"),
    (14, 'L', "soft lockup occurred"),
    (15, 'K', "kernel has been live patched"),
    (16, 'X', "auxiliary taint, defined for and used by distros"),
    (
        17,
        'T',
        "kernel was built with the struct randomization plugin",
    ),
    (18, 'N', "an in-kernel test has been run"),
];

/// Taints every out-of-tree test module brings with it: not a failure.
pub const EXPECTED: u64 = (1 << 12) | (1 << 13);

/// One taint flag that is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag {
    pub bit: u32,
    pub letter: char,
    pub meaning: &'static str,
}

/// The flags set in `value`, in bit order; unknown bits are reported as `?`.
pub fn decode(value: u64) -> Vec<Flag> {
    (0..64)
        .filter(|bit| value & (1u64 << bit) != 0)
        .map(|bit| match FLAGS.iter().find(|(b, _, _)| *b == bit) {
            Some(&(bit, letter, meaning)) => Flag {
                bit,
                letter,
                meaning,
            },
            None => Flag {
                bit,
                letter: '?',
                meaning: "unknown taint bit",
            },
        })
        .collect()
}

/// Flags set in `after` but not in `before`, other than the expected out-of-tree ones.
pub fn unexpected_new(before: u64, after: u64) -> Vec<Flag> {
    decode(after & !before & !EXPECTED)
}

/// `W (kernel issued a warning), D (kernel died recently (oops or BUG))`
pub fn describe(flags: &[Flag]) -> String {
    flags
        .iter()
        .map(|f| format!("{} ({})", f.letter, f.meaning))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_tree_taint_is_expected_and_warnings_are_not() {
        let oot = 1 << 12;
        assert!(unexpected_new(0, oot | (1 << 13)).is_empty());
        let new = unexpected_new(oot, oot | (1 << 9) | (1 << 7));
        assert_eq!(new.iter().map(|f| f.letter).collect::<String>(), "DW");
        assert_eq!(describe(&new[1..]), "W (kernel issued a warning)");
        // A flag already set before the test is not the test's doing.
        assert!(unexpected_new(1 << 9, 1 << 9).is_empty());
        assert_eq!(decode(1 << 40)[0].letter, '?');
    }
}
