//! `kmodlab initramfs DESC|DIR -o FILE`: one archive file from a description or a folder.

use super::compress::{Compression, Sink};
use super::desc::{parse, write_entries};
use super::tree::write_tree;
use super::Writer;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// What [`build`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Built {
    /// Entries in the archive, parent directories added on the way included.
    pub entries: usize,
    /// Size of the cpio archive before compression.
    pub archive_bytes: u64,
    /// Size of the file written.
    pub file_bytes: u64,
}

/// Builds `output` from a description file or a folder. The file appears only when complete.
pub fn build(input: &Path, output: &Path, compression: Compression) -> Result<Built> {
    let meta = std::fs::metadata(input).with_context(|| format!("reading {}", input.display()))?;
    let desc = if meta.is_dir() {
        None
    } else {
        let text = std::fs::read_to_string(input)
            .with_context(|| format!("reading the description {}", input.display()))?;
        Some(parse(&text, input, &|var| std::env::var(var).ok())?)
    };
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let temp = tempfile::NamedTempFile::new_in(parent)
        .with_context(|| format!("creating a file in {}", parent.display()))?;
    let file = temp
        .reopen()
        .with_context(|| format!("opening {}", temp.path().display()))?;
    let mut writer = Writer::new(Counting::new(Sink::new(file, compression)?));
    match &desc {
        Some(entries) => write_entries(entries, input, &mut writer)?,
        None => {
            write_tree(input, &mut writer)?;
        }
    }
    let entries = writer.len();
    let counting = writer.finish()?;
    let archive_bytes = counting.count;
    counting.inner.finish()?;
    temp.persist(output)
        .with_context(|| format!("writing {}", output.display()))?;
    let file_bytes = std::fs::metadata(output)
        .with_context(|| format!("reading {}", output.display()))?
        .len();
    Ok(Built {
        entries,
        archive_bytes,
        file_bytes,
    })
}

/// Counts the bytes written through it.
struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W> Counting<W> {
    fn new(inner: W) -> Self {
        Counting { inner, count: 0 }
    }
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::initramfs::{list, Listed};

    #[test]
    fn a_description_and_a_folder_give_the_entries_they_describe() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("tree");
        std::fs::create_dir_all(src.join("bin")).unwrap();
        std::fs::create_dir_all(src.join("etc/empty")).unwrap();
        std::fs::write(src.join("bin/tool"), b"#!/bin/sh\n").unwrap();
        std::fs::hard_link(src.join("bin/tool"), src.join("etc/tool-link")).unwrap();
        std::os::unix::fs::symlink("tool", src.join("bin/sh")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(src.join("bin/tool"), std::fs::Permissions::from_mode(0o750))
            .unwrap();
        std::fs::set_permissions(
            src.join("etc/empty"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        let out = dir.path().join("tree.cpio");
        let built = build(&src, &out, Compression::None).unwrap();
        assert_eq!(built.entries, 6);
        let listed = list(&out).unwrap();
        let lines: Vec<String> = listed.iter().map(Listed::line).collect();
        let names: Vec<&str> = listed.iter().map(|l| l.entry.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/sh",
                "etc",
                "etc/empty",
                "bin/tool",
                "etc/tool-link"
            ],
            "{lines:#?}"
        );
        assert_eq!(lines[1], "lrwxrwxrwx       0/0          4 bin/sh -> tool");
        assert_eq!(lines[3], "drwx------       0/0          0 etc/empty");
        let tool = &listed[4].entry;
        let link = &listed[5].entry;
        assert_eq!((tool.ino, tool.nlink, tool.size), (link.ino, 2, 0));
        assert_eq!((link.size, link.mode), (10, 0o100750));

        let desc = dir.path().join("list.txt");
        std::fs::write(
            &desc,
            "dir /dev 0755 0 0\nnod /dev/console 0600 0 0 c 5 1\nfile /init tree/bin/tool 0755 0 0\n\
             slink /bin/sh /init 0777 0 0\npipe /run/p 0620 1 2\n",
        )
        .unwrap();
        for compression in [Compression::None, Compression::Gzip] {
            let out = dir.path().join(format!("desc.{compression}"));
            let built = build(&desc, &out, compression).unwrap();
            assert_eq!(built.entries, 7, "with the parents bin and run");
            let lines: Vec<String> = list(&out).unwrap().iter().map(Listed::line).collect();
            assert_eq!(
                lines,
                [
                    "drwxr-xr-x       0/0          0 dev",
                    "crw-------       0/0       5, 1 dev/console",
                    "-rwxr-xr-x       0/0         10 init",
                    "drwxr-xr-x       0/0          0 bin",
                    "lrwxrwxrwx       0/0          5 bin/sh -> /init",
                    "drwxr-xr-x       0/0          0 run",
                    "prw--w----       1/2          0 run/p",
                ],
                "{compression}"
            );
        }
        let gz = std::fs::read(dir.path().join("desc.gzip")).unwrap();
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
    }

    #[test]
    fn a_failed_build_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let desc = dir.path().join("list.txt");
        std::fs::write(&desc, "dir /a 0755 0 0\nfile /a/b nowhere 0644 0 0\n").unwrap();
        let out = dir.path().join("out.cpio");
        let err = format!("{:#}", build(&desc, &out, Compression::Gzip).unwrap_err());
        assert!(err.contains("list.txt:2:"), "{err}");
        assert!(!out.exists());
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "only the description remains");
    }
}
