//! Reading the kernel log from `/dev/kmsg`, one record per `read(2)`.
//!
//! A record looks like `prio,seq,ts_us,flags[,more];text\n` optionally followed by dictionary lines
//! that start with a space (` KEY=value\n`). The kernel already escapes non-printable bytes in the
//! text as `\xNN`, so the text is kept exactly as given.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;

use kmodlab_protocol::{Caller, KmsgRecord};

/// The kernel formats a record into at most 8 KiB (CONSOLE_EXT_LOG_MAX); a smaller buffer makes
/// `read` fail with EINVAL, so leave generous room.
const RECORD_BUFFER: usize = 16 * 1024;

/// Parses one record as `/dev/kmsg` returns it. Dictionary lines are ignored.
pub fn parse_record(raw: &[u8]) -> Result<KmsgRecord, String> {
    // The text never contains a raw newline (the kernel escapes it), so the first line is the record.
    let first_line = raw.split(|&b| b == b'\n').next().unwrap_or_default();
    let split_at = first_line
        .iter()
        .position(|&b| b == b';')
        .ok_or_else(|| "no ';' between header and text".to_string())?;
    let (header, text) = first_line.split_at(split_at);
    let text = text.get(1..).unwrap_or_default();
    let header = std::str::from_utf8(header).map_err(|_| "header is not UTF-8".to_string())?;

    let mut fields = header.split(',');
    let prio: u32 = number(fields.next(), "priority")?;
    let seq: u64 = number(fields.next(), "sequence number")?;
    let ts_us: u64 = number(fields.next(), "timestamp")?;
    // The flags field ('-' or 'c') must be there even though we have no use for it.
    if fields.next().is_none() {
        return Err("missing flags field".to_string());
    }
    // Later fields are `key=value`; the kernel adds `caller=` with CONFIG_PRINTK_CALLER.
    let caller = fields
        .filter_map(|field| field.strip_prefix("caller="))
        .find_map(parse_caller);
    let facility = u8::try_from(prio >> 3).map_err(|_| format!("priority {prio} out of range"))?;
    // Truncation is the point: the level is the low three bits.
    let level = (prio & 7) as u8;

    Ok(KmsgRecord {
        seq,
        level,
        facility,
        ts_us,
        text: String::from_utf8_lossy(text).into_owned(),
        caller,
    })
}

/// `T123` (task 123) or `C1` (interrupt context on CPU 1). The task's CPU and name are filled in
/// later, by [`observe_task`], and only for the records that are forwarded.
fn parse_caller(id: &str) -> Option<Caller> {
    let (kind, number) = id.split_at_checked(1)?;
    let number: u32 = number.parse().ok()?;
    match kind {
        "T" => Some(Caller::Task {
            pid: number,
            comm: None,
            cpu: None,
        }),
        "C" => Some(Caller::Interrupt { cpu: number }),
        _ => None,
    }
}

/// Fills in where a record's task is now: its name and the CPU it last ran on, from
/// `/proc/PID/stat`. Read right after the record, so for per-CPU workers and bound threads it is
/// the CPU that printed; a thread that has exited keeps `None`.
pub fn observe_task(record: &mut KmsgRecord) {
    if let Some(Caller::Task { pid, comm, cpu }) = record.caller.as_mut() {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            if let Some((name, processor)) = parse_stat(&stat) {
                *comm = Some(name);
                *cpu = Some(processor);
            }
        }
    }
}

/// The name and the `processor` field (the 39th) of a `/proc/PID/stat` line. The name is in
/// parentheses and may itself hold spaces and parentheses, so fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<(String, u32)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_string();
    // After the name come fields 3 (state) onwards; `processor` is field 39.
    let processor = stat.get(close + 1..)?.split_whitespace().nth(39 - 3)?;
    Some((name, processor.parse().ok()?))
}

fn number<T: std::str::FromStr>(field: Option<&str>, what: &str) -> Result<T, String> {
    let field = field.ok_or_else(|| format!("missing {what}"))?;
    field.parse().map_err(|_| format!("bad {what} {field:?}"))
}

/// What one attempt to read the next record gave.
#[derive(Debug)]
pub enum Read1 {
    Record(KmsgRecord),
    /// A record that did not parse, with the reason and the raw bytes (lossy).
    Malformed {
        reason: String,
        raw: String,
    },
    /// Nothing new right now.
    Empty,
    /// Records were overwritten before we read them; reading continues with the oldest left.
    Overwritten,
}

/// The open `/dev/kmsg`, non-blocking.
pub struct Kmsg {
    file: File,
    buf: Vec<u8>,
}

impl Kmsg {
    pub fn open() -> std::io::Result<Kmsg> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")?;
        Ok(Kmsg {
            file,
            buf: vec![0; RECORD_BUFFER],
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Reads the next record without blocking. An `Err` means the device is unusable.
    pub fn read_next(&mut self) -> std::io::Result<Read1> {
        loop {
            return match self.file.read(&mut self.buf) {
                Ok(0) => Ok(Read1::Empty),
                Ok(n) => {
                    let raw = self.buf.get(..n).unwrap_or_default();
                    Ok(match parse_record(raw) {
                        Ok(record) => Read1::Record(record),
                        Err(reason) => Read1::Malformed {
                            reason,
                            raw: String::from_utf8_lossy(raw).into_owned(),
                        },
                    })
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(Read1::Empty),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => Ok(Read1::Overwritten),
                Err(e) => Err(e),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<KmsgRecord, String> {
        parse_record(s.as_bytes())
    }

    #[test]
    fn kernel_record_has_facility_zero() {
        let r = parse("6,339,5140900,-;NET: Registered protocol family 10\n").unwrap();
        assert_eq!(
            r,
            KmsgRecord {
                seq: 339,
                level: 6,
                facility: 0,
                ts_us: 5140900,
                text: "NET: Registered protocol family 10".into(),
                caller: None,
            }
        );
    }

    #[test]
    fn priority_splits_into_facility_and_level() {
        // 30 = daemon (3) * 8 + info (6)
        let r = parse("30,340,5690716,-;udevd[80]: starting\n").unwrap();
        assert_eq!((r.facility, r.level), (3, 6));
        let r = parse("0,1,0,-;emergency\n").unwrap();
        assert_eq!((r.facility, r.level), (0, 0));
        // 15 = user (1) * 8 + debug (7)
        let r = parse("15,2,3,-;from userspace\n").unwrap();
        assert_eq!((r.facility, r.level), (1, 7));
    }

    #[test]
    fn dictionary_lines_are_ignored() {
        let r =
            parse("6,2,100,-;pci 0000:00:00.0: ok\n SUBSYSTEM=pci\n DEVICE=+pci:0000:00:00.0\n")
                .unwrap();
        assert_eq!(r.text, "pci 0000:00:00.0: ok");
        assert_eq!(r.seq, 2);
    }

    #[test]
    fn extra_header_fields_and_continuation_flag_are_accepted() {
        let r = parse("4,77,123,c,caller=T1;  continued\n").unwrap();
        assert_eq!((r.level, r.seq, r.ts_us), (4, 77, 123));
        assert_eq!(r.text, "  continued");
    }

    #[test]
    fn the_caller_names_a_task_or_a_cpu() {
        let task = parse("6,8,9,-,caller=T245;hello\n").unwrap();
        assert_eq!(
            task.caller,
            Some(Caller::Task {
                pid: 245,
                comm: None,
                cpu: None
            })
        );
        let irq = parse("6,8,9,-,caller=C1;tasklet ran\n").unwrap();
        assert_eq!(irq.caller, Some(Caller::Interrupt { cpu: 1 }));
        assert_eq!(parse("6,8,9,-;no caller\n").unwrap().caller, None);
        // An id the agent does not understand is dropped, not an error.
        assert_eq!(parse("6,8,9,-,caller=X3;odd\n").unwrap().caller, None);
        assert_eq!(parse("6,8,9,-,caller=T;odd\n").unwrap().caller, None);
    }

    #[test]
    fn stat_gives_the_name_and_the_last_cpu() {
        // A real line from a guest's /proc/PID/stat, name with a space and a parenthesis added.
        let stat = "45 (kworker/1:1 (x)) I 2 0 0 0 -1 69238880 0 0 0 0 0 1 0 0 20 0 1 0 53 0 0 \
                    18446744073709551615 0 0 0 0 0 0 0 2147483647 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
        assert_eq!(parse_stat(stat), Some(("kworker/1:1 (x)".to_string(), 1)));
        assert_eq!(parse_stat("45 (short) R 1 2\n"), None);
    }

    #[test]
    fn escapes_and_semicolons_in_text_are_kept() {
        let r = parse("3,5,6,-;a\\x09b; c\\x5cd\n").unwrap();
        assert_eq!(r.text, "a\\x09b; c\\x5cd");
    }

    #[test]
    fn missing_newline_and_empty_text_are_fine() {
        assert_eq!(parse("6,1,2,-;x").unwrap().text, "x");
        assert_eq!(parse("6,1,2,-;\n").unwrap().text, "");
    }

    #[test]
    fn invalid_utf8_is_replaced_not_rejected() {
        let r = parse_record(b"6,1,2,-;a\xffb\n").unwrap();
        assert_eq!(r.text, "a\u{fffd}b");
    }

    #[test]
    fn malformed_records_are_errors() {
        for bad in [
            "",
            "\n",
            "6,1,2,- no semicolon\n",
            "x,1,2,-;text\n",
            "6,,2,-;text\n",
            "6,1,-;text\n",
            "6,1,2;text\n",
            "-1,1,2,-;text\n",
            "4096,1,2,-;text\n",
            // The header is on its own line only in a corrupted record.
            "6,1,2,-\n;text\n",
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
        assert_eq!(parse("6,1,2;x").unwrap_err(), "missing flags field");
        assert_eq!(parse("a,1,2,-;x").unwrap_err(), "bad priority \"a\"");
    }

    #[test]
    fn escaped_newlines_separate_lines() {
        let r = parse("6,9,1,-;KTAP version 1\\x0a1..2\\x0aok 1 - a\n").unwrap();
        assert_eq!(
            r.lines().collect::<Vec<_>>(),
            ["KTAP version 1", "1..2", "ok 1 - a"]
        );
        // An escaped backslash followed by "x0a" is not a newline.
        let escaped = parse("6,10,1,-;a\\x5cx0a\n").unwrap();
        assert_eq!(escaped.lines().collect::<Vec<_>>(), ["a\\x5cx0a"]);
    }

    #[test]
    fn largest_facility_is_accepted() {
        let r = parse("2047,1,2,-;x").unwrap();
        assert_eq!((r.facility, r.level), (255, 7));
    }
}
