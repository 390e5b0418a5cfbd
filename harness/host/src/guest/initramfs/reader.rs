//! [`read_archive`]: newc archives read back (kmodlab's, the kernel's `gen_init_cpio`'s, GNU
//! cpio's `-H newc`), for listing them and for tests.

use super::{padding, HEADER_LEN, MAGIC, MAGIC_CRC, PERMISSION_BITS, TRAILER};
use anyhow::{anyhow, bail, Result};
use std::ops::Range;

/// One entry of a newc archive, as [`read_archive`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The stored name (normally relative: `dev/console`); bytes that are not UTF-8 are replaced.
    pub name: String,
    pub ino: u32,
    /// File-type and permission bits, as stored (`0o020600` for a console node).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub mtime: u32,
    /// Bytes of data (a symlink's data is its target).
    pub size: u32,
    /// Device holding the file: (major, minor).
    pub dev: (u32, u32),
    /// Device number of a device node: (major, minor).
    pub rdev: (u32, u32),
    /// Where the entry's data lies in the bytes that were read.
    pub data: Range<usize>,
}

impl Entry {
    /// The file type as `ls -l` shows it: `-`, `d`, `l`, `c`, `b`, `p`, `s`, or `?`.
    pub fn type_char(&self) -> char {
        match self.mode & 0o170000 {
            0o100000 => '-',
            0o040000 => 'd',
            0o120000 => 'l',
            0o020000 => 'c',
            0o060000 => 'b',
            0o010000 => 'p',
            0o140000 => 's',
            _ => '?',
        }
    }

    /// The permission bits (with setuid, setgid and sticky).
    pub fn permissions(&self) -> u32 {
        self.mode & PERMISSION_BITS
    }

    /// The mode as `ls -l` and `cpio -tv` show it, e.g. `drwxr-xr-x` or `-rwsr-xr-x`.
    pub fn mode_string(&self) -> String {
        let m = self.mode;
        let mut out = String::with_capacity(10);
        out.push(self.type_char());
        let special = [(0o4000, 's', 'S'), (0o2000, 's', 'S'), (0o1000, 't', 'T')];
        for (who, (bit, set_exec, set_only)) in special.into_iter().enumerate() {
            let shift = 6 - 3 * who as u32;
            let bits = (m >> shift) & 7;
            out.push(if bits & 4 != 0 { 'r' } else { '-' });
            out.push(if bits & 2 != 0 { 'w' } else { '-' });
            out.push(match (bits & 1 != 0, m & bit != 0) {
                (true, true) => set_exec,
                (false, true) => set_only,
                (true, false) => 'x',
                (false, false) => '-',
            });
        }
        out
    }

    /// The data of this entry within `bytes` (the bytes it was read from).
    pub fn data_in<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        bytes.get(self.data.clone()).unwrap_or_default()
    }
}

/// Reads the newc archive (magic `070701`, or `070702` with checksums) that starts at `start` in
/// `bytes`, up to and including its `TRAILER!!!` entry. Returns the entries (not the trailer) and
/// the offset just past the trailer and its padding, where another archive may follow.
///
/// Padding is counted from the start of `bytes`, as the kernel counts it from the start of the
/// initramfs, so a later archive must start on a multiple of 4 there.
pub fn read_archive(bytes: &[u8], start: usize) -> Result<(Vec<Entry>, usize)> {
    let mut entries = Vec::new();
    let mut at = start;
    loop {
        if at >= bytes.len() {
            bail!(
                "the archive ends at offset {} without a {TRAILER} entry (cut short?)",
                bytes.len()
            );
        }
        if !at.is_multiple_of(4) {
            bail!("offset {at}: a newc header must start on a multiple of 4");
        }
        let Some(head) = bytes.get(at..at + HEADER_LEN) else {
            bail!("offset {at}: the archive ends inside an entry's header (cut short?)");
        };
        let magic = &head[..6];
        if magic != MAGIC && magic != MAGIC_CRC {
            let what = match magic {
                b"070707" => "an old portable (odc) cpio header; only newc is read".to_string(),
                _ if head[..2] == [0xc7, 0x71] || head[..2] == [0x71, 0xc7] => {
                    "an old binary cpio header; only newc is read".to_string()
                }
                _ => format!(
                    "not a newc cpio header (it starts with {:02x?})",
                    &head[..6.min(head.len())]
                ),
            };
            bail!("offset {at}: {what}");
        }
        let mut fields = [0u32; 13];
        for (i, field) in fields.iter_mut().enumerate() {
            let hex = &head[6 + 8 * i..14 + 8 * i];
            let parsed = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u32::from_str_radix(h, 16).ok());
            *field = parsed.ok_or_else(|| {
                anyhow!(
                    "offset {at}: header field {} is not 8 hex digits: {:?}",
                    i + 1,
                    String::from_utf8_lossy(hex)
                )
            })?;
        }
        let [ino, mode, uid, gid, nlink, mtime, size, dev_major, dev_minor, rdev_major, rdev_minor, namesize, _checksum] =
            fields;
        let name_start = at + HEADER_LEN;
        let namesize = namesize as usize;
        let Some(raw_name) = bytes.get(name_start..name_start + namesize) else {
            bail!("offset {at}: the archive ends inside an entry's name (cut short?)");
        };
        let Some((&0, raw_name)) = raw_name.split_last() else {
            bail!("offset {at}: the entry's name is not NUL-terminated (namesize {namesize})");
        };
        let name = String::from_utf8_lossy(raw_name).into_owned();
        let data_start = name_start + namesize;
        let data_start = data_start + padding(data_start as u64);
        let data_end = data_start + size as usize;
        if data_end > bytes.len() {
            bail!(
                "entry {name:?} at offset {at}: its {size} bytes of data run past the end of the \
                 archive (cut short?)"
            );
        }
        at = data_end + padding(data_end as u64);
        if name == TRAILER {
            return Ok((entries, at.min(bytes.len())));
        }
        entries.push(Entry {
            name,
            ino,
            mode,
            uid,
            gid,
            nlink,
            mtime,
            size,
            dev: (dev_major, dev_minor),
            rdev: (rdev_major, rdev_minor),
            data: data_start..data_end,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::initramfs::writer::tests::archive;

    #[test]
    fn the_reader_reads_back_what_the_writer_wrote() {
        let bytes = archive(|w| {
            w.base_layout()?;
            w.file("bin/tool", 0o4755, b"abc")?;
            w.symlink("bin/sh", "tool")?;
            w.block_device("dev/vda", 0o660, 254, 16)?;
            w.set_owner(7, 8);
            w.fifo("run/p", 0o1600)
        });
        let (all, end) = read_archive(&bytes, 0).unwrap();
        assert_eq!(end, bytes.len());
        let by = |n: &str| all.iter().find(|e| e.name == n).unwrap();
        assert_eq!(by("dev/console").mode_string(), "crw-------");
        assert_eq!(by("dev/console").rdev, (5, 1));
        assert_eq!(by("tmp").mode_string(), "drwxrwxrwt");
        let tool = by("bin/tool");
        assert_eq!((tool.mode_string().as_str(), tool.size), ("-rwsr-xr-x", 3));
        assert_eq!(tool.data_in(&bytes), b"abc");
        assert_eq!(by("bin/sh").data_in(&bytes), b"tool");
        assert_eq!(by("bin/sh").type_char(), 'l');
        assert_eq!(by("dev/vda").rdev, (254, 16));
        let fifo = by("run/p");
        assert_eq!(
            (fifo.mode_string().as_str(), fifo.uid, fifo.gid),
            ("prw------T", 7, 8)
        );

        // Two archives back to back, as the kernel accepts them.
        let mut twice = bytes.clone();
        twice.extend_from_slice(&[0; 8]);
        twice.extend_from_slice(&bytes);
        let (_, end) = read_archive(&twice, 0).unwrap();
        assert_eq!(end, bytes.len());
        assert_eq!(
            read_archive(&twice, end + 8).unwrap().0,
            all_shifted(&all, end + 8)
        );

        // Without the trailer (the last 124 bytes: header, name, padding).
        let err = read_archive(&bytes[..bytes.len() - 124], 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("without a TRAILER!!!"), "{err}");
        let err = read_archive(&bytes[..200], 0).unwrap_err().to_string();
        assert!(err.contains("cut short"), "{err}");
        let err = read_archive(b"070707000000", 0).unwrap_err().to_string();
        assert!(err.contains("cut short"), "{err}");
        let mut odc = bytes.clone();
        odc[5] = b'7';
        let err = read_archive(&odc, 0).unwrap_err().to_string();
        assert!(err.contains("odc"), "{err}");
    }

    fn all_shifted(all: &[Entry], by: usize) -> Vec<Entry> {
        all.iter()
            .map(|e| Entry {
                data: e.data.start + by..e.data.end + by,
                ..e.clone()
            })
            .collect()
    }
}
