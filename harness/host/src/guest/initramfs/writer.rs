//! [`Writer`]: streams a newc archive, one entry per call.

use super::{padding, HEADER_LEN, MAGIC, PERMISSION_BITS, TRAILER};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

/// The kernel skips any entry whose name (with its NUL) is longer than this, and any symlink whose
/// target is; silently, so we refuse such entries up front.
const PATH_MAX: usize = 4096;
/// Longest single path component Linux filesystems accept.
const NAME_MAX: usize = 255;
/// The kernel packs device numbers as `major << 20 | minor` (`MKDEV`): wider values would alias.
const MAX_MAJOR: u32 = (1 << 12) - 1;
const MAX_MINOR: u32 = (1 << 20) - 1;
/// Mode of the parent directories the writer adds by itself.
const AUTO_DIR_MODE: u32 = 0o755;

/// What an entry is; decides its file-type bits and link count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

impl Kind {
    fn type_bits(self) -> u32 {
        match self {
            Kind::Dir => 0o040000,
            Kind::File => 0o100000,
            Kind::Symlink => 0o120000,
            Kind::CharDevice => 0o020000,
            Kind::BlockDevice => 0o060000,
            Kind::Fifo => 0o010000,
            Kind::Socket => 0o140000,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Dir => "a directory",
            Kind::File => "a regular file",
            Kind::Symlink => "a symlink",
            Kind::CharDevice => "a character device",
            Kind::BlockDevice => "a block device",
            Kind::Fifo => "a fifo",
            Kind::Socket => "a socket",
        }
    }
}

/// What the archive already holds at a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Existing {
    /// A parent directory the writer added on its own; one later `dir()` call may claim it.
    AutoDir,
    Explicit(Kind),
}

/// An entry's header facts other than its name, size and inode.
#[derive(Clone, Copy)]
struct Meta {
    kind: Kind,
    /// Permission bits only.
    mode: u32,
    /// Device number of a device node: (major, minor).
    rdev: (u32, u32),
}

impl Meta {
    fn new(kind: Kind, mode: u32) -> Self {
        Meta {
            kind,
            mode,
            rdev: (0, 0),
        }
    }
}

/// The bytes that follow an entry's name.
enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// An open source file and the size its header promises.
    Stream(File, u64, &'a Path),
}

/// Streams a newc cpio archive to `out`, one entry per call, then [`Writer::finish`].
///
/// Paths may start with `/` or not; they are stored relative (`dev/null`), which is what the kernel
/// and `cpio --no-absolute-filenames` expect. Missing parent directories are added (mode 0755) just
/// before the entry that needs them. Every error names the entry's path, and a rejected call writes
/// nothing, so the archive stays usable. Only a failed write to `out` (or a source file that shrinks
/// while being copied) leaves a half-written entry; every later call then fails.
///
/// `out` gets one `write_all` per header and per data block; wrap a `File` in a `BufWriter` only if
/// you add many tiny entries.
#[must_use = "an archive is only complete after finish() writes its trailer"]
pub struct Writer<W: Write> {
    out: W,
    /// Bytes written so far; all padding is relative to the archive's start.
    offset: u64,
    next_ino: u32,
    entries: HashMap<String, Existing>,
    /// Set once a write failed part-way: the stream no longer ends on an entry boundary.
    broken: bool,
    /// (uid, gid) of the entries added from now on.
    owner: (u32, u32),
}

impl<W: Write> Writer<W> {
    /// Starts an archive at the current position of `out`, which is taken to be offset 0.
    pub fn new(out: W) -> Self {
        Writer {
            out,
            offset: 0,
            next_ino: 1,
            entries: HashMap::new(),
            broken: false,
            owner: (0, 0),
        }
    }

    /// Sets the owner (uid, gid) of the entries added from now on; the default is root (0, 0).
    /// Parent directories the writer adds by itself stay root's.
    pub fn set_owner(&mut self, uid: u32, gid: u32) {
        self.owner = (uid, gid);
    }

    /// Adds a directory. Claiming a directory that was already added as a parent is fine if `mode`
    /// is 0755 (the mode it got); any other mode is an error, since the entry is already written:
    /// add such directories before their contents.
    pub fn dir(&mut self, path: &str, mode: u32) -> Result<()> {
        let name = normalise(path)?;
        if self.entries.get(&name) == Some(&Existing::AutoDir) {
            check_mode(path, mode)?;
            if mode != AUTO_DIR_MODE {
                bail!(
                    "initramfs entry {path:?}: the directory was already added with mode {AUTO_DIR_MODE:04o} \
                     as the parent of an earlier entry, so it cannot get mode {mode:04o}; add it \
                     before anything inside it"
                );
            }
            if self.owner != (0, 0) {
                bail!(
                    "initramfs entry {path:?}: the directory was already added, owned by root, as the \
                     parent of an earlier entry, so it cannot be owned by {}:{}; add it before \
                     anything inside it",
                    self.owner.0,
                    self.owner.1
                );
            }
            self.entries.insert(name, Existing::Explicit(Kind::Dir));
            return Ok(());
        }
        self.add(path, name, Meta::new(Kind::Dir, mode), Body::Empty)
    }

    /// Adds a regular file with the given contents.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<()> {
        let name = normalise(path)?;
        self.add(path, name, Meta::new(Kind::File, mode), Body::Bytes(data))
    }

    /// Adds a regular file whose contents are copied from `source` (following symlinks) without
    /// reading it all into memory.
    pub fn file_from_path(&mut self, path: &str, mode: u32, source: &Path) -> Result<()> {
        let name = normalise(path)?;
        let context = || format!("initramfs entry {path:?}: reading {}", source.display());
        let file = File::open(source).with_context(context)?;
        let meta = file.metadata().with_context(context)?;
        if !meta.is_file() {
            return Err(anyhow!("not a regular file")).with_context(context);
        }
        self.add(
            path,
            name,
            Meta::new(Kind::File, mode),
            Body::Stream(file, meta.len(), source),
        )
    }

    /// Adds one regular file under several names that are hard links to each other (one inode,
    /// `nlink` = the number of names), its contents copied from `source`. As `gen_init_cpio` and GNU
    /// cpio do, every name but the last has size 0 and the last carries the data; the kernel links
    /// the later names to the first.
    pub fn hard_linked_file_from_path(
        &mut self,
        paths: &[&str],
        mode: u32,
        source: &Path,
    ) -> Result<()> {
        let Some(first) = paths.first() else {
            bail!(
                "a hard-linked file needs at least one name ({})",
                source.display()
            );
        };
        let names = paths
            .iter()
            .map(|p| Ok((*p, normalise(p)?)))
            .collect::<Result<Vec<_>>>()?;
        let context = || format!("initramfs entry {first:?}: reading {}", source.display());
        let file = File::open(source).with_context(context)?;
        let meta = file.metadata().with_context(context)?;
        if !meta.is_file() {
            return Err(anyhow!("not a regular file")).with_context(context);
        }
        self.add_links(
            &names,
            Meta::new(Kind::File, mode),
            Body::Stream(file, meta.len(), source),
        )
    }

    /// Adds a symbolic link pointing at `target`, which is stored as given (relative or absolute,
    /// `..` allowed: it is resolved in the guest, not here).
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        let name = normalise(path)?;
        if target.is_empty() {
            bail!("initramfs entry {path:?}: symlink target is empty");
        }
        if target.contains('\0') {
            bail!("initramfs entry {path:?}: symlink target {target:?} contains NUL");
        }
        if target.len() >= PATH_MAX {
            bail!(
                "initramfs entry {path:?}: symlink target is {} bytes, the kernel takes at most {}",
                target.len(),
                PATH_MAX - 1
            );
        }
        // Linux ignores a symlink's own permissions; 0777 is what every tool writes.
        self.add(
            path,
            name,
            Meta::new(Kind::Symlink, 0o777),
            Body::Bytes(target.as_bytes()),
        )
    }

    /// Adds a character device node, e.g. `char_device("/dev/null", 0o666, 1, 3)`.
    pub fn char_device(&mut self, path: &str, mode: u32, major: u32, minor: u32) -> Result<()> {
        self.device(Kind::CharDevice, path, mode, major, minor)
    }

    /// Adds a block device node, e.g. `block_device("/dev/vda", 0o660, 254, 0)`.
    pub fn block_device(&mut self, path: &str, mode: u32, major: u32, minor: u32) -> Result<()> {
        self.device(Kind::BlockDevice, path, mode, major, minor)
    }

    fn device(&mut self, kind: Kind, path: &str, mode: u32, major: u32, minor: u32) -> Result<()> {
        let name = normalise(path)?;
        check_device(path, major, minor)?;
        self.add(
            path,
            name,
            Meta {
                kind,
                mode,
                rdev: (major, minor),
            },
            Body::Empty,
        )
    }

    /// Adds a named pipe.
    pub fn fifo(&mut self, path: &str, mode: u32) -> Result<()> {
        let name = normalise(path)?;
        self.add(path, name, Meta::new(Kind::Fifo, mode), Body::Empty)
    }

    /// Adds a socket node (only a name in the filesystem; nothing listens on it).
    pub fn socket(&mut self, path: &str, mode: u32) -> Result<()> {
        let name = normalise(path)?;
        self.add(path, name, Meta::new(Kind::Socket, mode), Body::Empty)
    }

    /// Adds what every kmodlab guest needs before its agent runs: mount points for devtmpfs, proc,
    /// sysfs and tmpfs, and the two device nodes PID 1 uses before devtmpfs is mounted (the kernel
    /// opens `/dev/console` for init's stdio; without it init starts with no output at all).
    pub fn base_layout(&mut self) -> Result<()> {
        self.dir("/dev", 0o755)?;
        self.char_device("/dev/console", 0o600, 5, 1)?;
        self.char_device("/dev/null", 0o666, 1, 3)?;
        self.dir("/proc", 0o555)?;
        self.dir("/sys", 0o555)?;
        self.dir("/tmp", 0o1777)?;
        self.dir("/run", 0o755)?;
        Ok(())
    }

    /// Whether the archive already has an entry (or an added parent directory) at `path`.
    pub fn contains(&self, path: &str) -> bool {
        normalise(path).is_ok_and(|name| self.entries.contains_key(&name))
    }

    /// How many entries the archive has so far (added parents and hard links included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing was added yet.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the `TRAILER!!!` entry, pads to 4 bytes, flushes and hands back the output.
    pub fn finish(mut self) -> Result<W> {
        self.check_usable(TRAILER)?;
        let header = header(0, 0, (0, 0), 1, 0, (0, 0), TRAILER);
        self.put(&header).context("writing the initramfs trailer")?;
        self.out.flush().context("flushing the initramfs")?;
        Ok(self.out)
    }

    fn check_usable(&self, path: &str) -> Result<()> {
        if self.broken {
            bail!(
                "initramfs entry {path:?}: cannot add it, an earlier write failed part-way \
                 and the archive is incomplete"
            );
        }
        Ok(())
    }

    /// Adds one entry under one name.
    fn add(&mut self, path: &str, name: String, meta: Meta, body: Body) -> Result<()> {
        self.add_links(&[(path, name)], meta, body)
    }

    /// Validates everything first, so a rejected entry writes nothing; then writes the missing
    /// parents and the entry under each of its names (`names`: the caller's path and its stored
    /// form; several names are hard links to one inode).
    fn add_links(&mut self, names: &[(&str, String)], meta: Meta, body: Body) -> Result<()> {
        let Some((path, _)) = names.first() else {
            bail!("initramfs entry without a name");
        };
        self.check_usable(path)?;
        check_mode(path, meta.mode)?;
        for (i, (path, name)) in names.iter().enumerate() {
            if let Some(existing) = self.entries.get(name) {
                let what = match existing {
                    Existing::AutoDir => "a directory (added as a parent)",
                    Existing::Explicit(k) => k.describe(),
                };
                bail!(
                    "initramfs entry {path:?}: duplicate path, the archive already has {what} there"
                );
            }
            if names[..i].iter().any(|(_, earlier)| earlier == name) {
                bail!("initramfs entry {path:?}: the same name is given twice for one file");
            }
        }
        let size = match &body {
            Body::Empty => 0,
            Body::Bytes(data) => data.len() as u64,
            Body::Stream(_, len, _) => *len,
        };
        let Ok(size) = u32::try_from(size) else {
            bail!("initramfs entry {path:?}: {size} bytes do not fit a newc entry (at most 4 GiB - 1)");
        };
        let Ok(nlink) = u32::try_from(names.len()) else {
            bail!("initramfs entry {path:?}: too many hard links");
        };
        let mut planned: Vec<String> = Vec::new();
        let mut missing: Vec<Vec<String>> = Vec::new();
        for (path, name) in names {
            let parents = self.missing_parents(path, name, &planned, names)?;
            planned.extend(parents.iter().cloned());
            missing.push(parents);
        }
        let needed = u32::try_from(planned.len() + 1).unwrap_or(u32::MAX);
        if self.next_ino.checked_add(needed).is_none() {
            bail!("initramfs entry {path:?}: too many entries, inode numbers are exhausted");
        }

        let nlink = if meta.kind == Kind::Dir { 2 } else { nlink };
        let written = self.write_entry(&missing, names, meta, nlink, size, body);
        if let Err(err) = written {
            self.broken = true;
            return Err(err.context(format!("initramfs entry {path:?}: writing it")));
        }
        for parent in planned {
            self.entries.insert(parent, Existing::AutoDir);
        }
        for (_, name) in names {
            self.entries
                .insert(name.clone(), Existing::Explicit(meta.kind));
        }
        Ok(())
    }

    /// The ancestors of `name` that neither the archive nor `planned` (parents this call adds
    /// already) has, outermost first; an error if one is not a directory, or is one of `names`.
    fn missing_parents(
        &self,
        path: &str,
        name: &str,
        planned: &[String],
        names: &[(&str, String)],
    ) -> Result<Vec<String>> {
        let mut missing = Vec::new();
        for (end, _) in name.match_indices('/') {
            let parent = &name[..end];
            match self.entries.get(parent) {
                None if names.iter().any(|(_, n)| n == parent) => bail!(
                    "initramfs entry {path:?}: its parent {parent:?} is another name of the same \
                     file, not a directory"
                ),
                None if planned.iter().any(|p| p == parent) => {}
                None => missing.push(parent.to_string()),
                Some(Existing::AutoDir) | Some(Existing::Explicit(Kind::Dir)) => {}
                Some(Existing::Explicit(kind)) => bail!(
                    "initramfs entry {path:?}: its parent {parent:?} is {}, not a directory",
                    kind.describe()
                ),
            }
        }
        Ok(missing)
    }

    /// Writes each name's missing parents and then the name; the data follows the last name.
    fn write_entry(
        &mut self,
        parents: &[Vec<String>],
        names: &[(&str, String)],
        meta: Meta,
        nlink: u32,
        size: u32,
        body: Body,
    ) -> Result<()> {
        let mut ino = None;
        for (i, ((_, name), parents)) in names.iter().zip(parents).enumerate() {
            for parent in parents {
                let parent_ino = self.take_ino();
                let bytes = header(
                    parent_ino,
                    Kind::Dir.type_bits() | AUTO_DIR_MODE,
                    (0, 0),
                    2,
                    0,
                    (0, 0),
                    parent,
                );
                self.put(&bytes)?;
            }
            let entry_ino = match ino {
                Some(ino) => ino,
                None => *ino.insert(self.take_ino()),
            };
            if i + 1 < names.len() {
                let bytes = header(
                    entry_ino,
                    meta.kind.type_bits() | meta.mode,
                    self.owner,
                    nlink,
                    0,
                    meta.rdev,
                    name,
                );
                self.put(&bytes)?;
                continue;
            }
            let bytes = header(
                entry_ino,
                meta.kind.type_bits() | meta.mode,
                self.owner,
                nlink,
                size,
                meta.rdev,
                name,
            );
            self.put(&bytes)?;
        }
        match body {
            Body::Empty => {}
            Body::Bytes(data) => self.put(data)?,
            Body::Stream(file, len, source) => {
                let copy_error = || format!("copying {}", source.display());
                let copied = std::io::copy(&mut (&file).take(len), &mut self.out)
                    .with_context(copy_error)?;
                self.offset += copied;
                // The header already promised `len` bytes: a file that changed size since (or a
                // pseudo-file that reports size 0) would otherwise be archived cut short.
                let more = (&file).read(&mut [0u8; 1]).with_context(copy_error)?;
                if copied != len || more != 0 {
                    bail!(
                        "{} changed size while being copied (expected {len} bytes)",
                        source.display()
                    );
                }
            }
        }
        let pad = padding(self.offset);
        self.put(&[0; 3][..pad])?;
        Ok(())
    }

    fn take_ino(&mut self) -> u32 {
        let ino = self.next_ino;
        // `add` checked there is room for every inode this entry takes.
        self.next_ino += 1;
        ino
    }

    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }
}

/// One header with its name, NUL and padding. Assumes the header starts 4-aligned, which every
/// entry does because each one ends padded.
fn header(
    ino: u32,
    mode: u32,
    (uid, gid): (u32, u32),
    nlink: u32,
    size: u32,
    rdev: (u32, u32),
    name: &str,
) -> Vec<u8> {
    let namesize = name.len() as u32 + 1;
    // Order as in buffer-format.rst. mtime 0 keeps archives reproducible; the device holding the
    // file means nothing in an archive (the kernel only matches it between hard links); the
    // checksum is only for 070702.
    let (mtime, dev_major, dev_minor, checksum) = (0, 0, 0, 0);
    let fields = [
        ino, mode, uid, gid, nlink, mtime, size, dev_major, dev_minor, rdev.0, rdev.1, namesize,
        checksum,
    ];
    let mut out = Vec::with_capacity(HEADER_LEN + name.len() + 4);
    out.extend_from_slice(MAGIC);
    for field in fields {
        out.extend_from_slice(format!("{field:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    out.resize(out.len() + padding(out.len() as u64), 0);
    out
}

/// The stored form of a user path: no leading '/', no empty, `.` or `..` components, no NUL, and
/// within the kernel's limits.
fn normalise(path: &str) -> Result<String> {
    let bad = |why: &str| anyhow!("initramfs entry {path:?}: {why}");
    let rel = path.strip_prefix('/').unwrap_or(path);
    if rel.is_empty() {
        return Err(bad("the archive root always exists and cannot be an entry"));
    }
    if rel.contains('\0') {
        return Err(bad("path contains NUL"));
    }
    for component in rel.split('/') {
        match component {
            "" => return Err(bad("empty path component (doubled or trailing '/')")),
            "." | ".." => return Err(bad("'.' and '..' are not allowed in archive paths")),
            c if c.len() > NAME_MAX => {
                return Err(bad(&format!(
                    "a path component is {} bytes, at most {NAME_MAX} are allowed",
                    c.len()
                )))
            }
            _ => {}
        }
    }
    if rel.len() >= PATH_MAX {
        return Err(bad(&format!(
            "path is {} bytes, the kernel takes at most {}",
            rel.len(),
            PATH_MAX - 1
        )));
    }
    Ok(rel.to_string())
}

fn check_mode(path: &str, mode: u32) -> Result<()> {
    if mode & !PERMISSION_BITS != 0 {
        bail!(
            "initramfs entry {path:?}: mode {mode:#o} has bits beyond the permission bits (0o7777); \
             pass permissions only, the writer sets the file type"
        );
    }
    Ok(())
}

fn check_device(path: &str, major: u32, minor: u32) -> Result<()> {
    if major > MAX_MAJOR || minor > MAX_MINOR {
        bail!(
            "initramfs entry {path:?}: device {major}:{minor} does not fit Linux device numbers \
             (major at most {MAX_MAJOR}, minor at most {MAX_MINOR})"
        );
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::guest::initramfs) fn archive(
        build: impl FnOnce(&mut Writer<Vec<u8>>) -> Result<()>,
    ) -> Vec<u8> {
        let mut w = Writer::new(Vec::new());
        build(&mut w).unwrap();
        w.finish().unwrap()
    }

    /// Splits an archive into (header fields, name, data) using the format's own rules.
    fn entries(bytes: &[u8]) -> Vec<([u32; 13], String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            assert_eq!(at % 4, 0, "header at {at} is not 4-aligned");
            assert_eq!(&bytes[at..at + 6], MAGIC);
            let mut fields = [0u32; 13];
            for (i, f) in fields.iter_mut().enumerate() {
                let hex = std::str::from_utf8(&bytes[at + 6 + 8 * i..at + 14 + 8 * i]).unwrap();
                *f = u32::from_str_radix(hex, 16).unwrap();
            }
            let namesize = fields[11] as usize;
            let name_start = at + HEADER_LEN;
            assert_eq!(
                bytes[name_start + namesize - 1],
                0,
                "name not NUL-terminated"
            );
            let name =
                String::from_utf8(bytes[name_start..name_start + namesize - 1].to_vec()).unwrap();
            let data_start = (name_start + namesize + 3) & !3;
            let data_end = data_start + fields[6] as usize;
            let data = bytes[data_start..data_end].to_vec();
            at = (data_end + 3) & !3;
            let done = name == TRAILER;
            out.push((fields, name, data));
            if done {
                assert_eq!(at, bytes.len(), "bytes after the trailer");
                return out;
            }
        }
    }

    #[test]
    fn header_layout_matches_the_kernel_documentation() {
        let bytes = archive(|w| w.file("init", 0o755, b"hello"));
        // 110-byte header, "init\0" (5) padded to 116, 5 data bytes padded to 124, then the trailer.
        let expected_header = concat!(
            "070701", "00000001", "000081ed", "00000000", "00000000", "00000001", "00000000",
            "00000005", "00000000", "00000000", "00000000", "00000000", "00000005", "00000000",
        );
        assert_eq!(&bytes[..HEADER_LEN], expected_header.as_bytes());
        assert_eq!(&bytes[HEADER_LEN..116], b"init\0\0");
        assert_eq!(&bytes[116..124], b"hello\0\0\0");
        assert_eq!(&bytes[124..130], MAGIC);
        // Trailer: 110 + "TRAILER!!!\0" (11) = 121, padded to 124.
        assert_eq!(bytes.len(), 124 + 124);
        assert!(bytes.ends_with(b"TRAILER!!!\0\0\0\0"));
    }

    #[test]
    fn entries_carry_type_links_devices_and_unique_inodes() {
        let bytes = archive(|w| {
            w.base_layout()?;
            w.symlink("/bin/sh", "busybox")?;
            w.block_device("dev/vda", 0o660, 254, 16)?;
            w.fifo("run/pipe", 0o600)?;
            w.socket("/run/sock", 0o755)
        });
        let all = entries(&bytes);
        let names: Vec<&str> = all.iter().map(|(_, n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "dev",
                "dev/console",
                "dev/null",
                "proc",
                "sys",
                "tmp",
                "run",
                "bin",
                "bin/sh",
                "dev/vda",
                "run/pipe",
                "run/sock",
                TRAILER
            ]
        );
        let by_name = |n: &str| all.iter().find(|(_, name, _)| name == n).unwrap();
        let (console, _, _) = by_name("dev/console");
        assert_eq!(
            (console[1], console[4], console[9], console[10]),
            (0o020600, 1, 5, 1)
        );
        let (tmp, _, _) = by_name("tmp");
        assert_eq!((tmp[1], tmp[4]), (0o041777, 2));
        let (bin, _, _) = by_name("bin");
        assert_eq!(bin[1], 0o040755, "auto-added parent");
        let (sh, _, target) = by_name("bin/sh");
        assert_eq!(
            (sh[1], sh[6], target.as_slice()),
            (0o120777, 7, &b"busybox"[..])
        );
        let (vda, _, _) = by_name("dev/vda");
        assert_eq!((vda[1], vda[9], vda[10]), (0o060660, 254, 16));
        assert_eq!(by_name("run/pipe").0[1], 0o010600);
        assert_eq!(by_name("run/sock").0[1], 0o140755);
        for (fields, _, _) in &all {
            assert_eq!(
                (fields[2], fields[3], fields[5]),
                (0, 0, 0),
                "uid, gid, mtime"
            );
        }
        let mut inodes: Vec<u32> = all[..all.len() - 1].iter().map(|(f, _, _)| f[0]).collect();
        inodes.sort_unstable();
        inodes.dedup();
        assert_eq!(inodes.len(), all.len() - 1);
    }

    #[test]
    fn paths_are_normalised_or_rejected() {
        assert_eq!(normalise("/a/b").unwrap(), "a/b");
        assert_eq!(normalise("a/b").unwrap(), "a/b");
        for bad in [
            "", "/", "//a", "a//b", "a/", "a/../b", "..", "./a", "a/./b", "a\0b",
        ] {
            let err = normalise(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
        let long_component = "x".repeat(NAME_MAX + 1);
        assert!(normalise(&long_component).is_err());
        assert!(normalise(&"x".repeat(NAME_MAX)).is_ok());
        // 15 components of 255 bytes and 14 slashes: 3839 bytes; the tail brings it to the limit.
        let base = vec!["y".repeat(NAME_MAX); 15].join("/");
        let longest = format!("{base}/{}", "z".repeat(PATH_MAX - 1 - base.len() - 1));
        assert_eq!(longest.len(), PATH_MAX - 1);
        assert_eq!(normalise(&format!("/{longest}")).unwrap(), longest);
        let too_long = format!("{base}/{}/w", "z".repeat(PATH_MAX - base.len() - 3));
        assert_eq!(too_long.len(), PATH_MAX);
        let err = normalise(&too_long).unwrap_err().to_string();
        assert!(err.contains("the kernel takes at most 4095"), "{err}");
    }

    #[test]
    fn rejected_calls_write_nothing() {
        let mut w = Writer::new(Vec::new());
        w.file("a/b", 0o644, b"x").unwrap();
        let before = w.out.len();
        assert!(w
            .file("/a/b", 0o644, b"y")
            .unwrap_err()
            .to_string()
            .contains("duplicate"));
        assert!(w
            .dir("a/b", 0o755)
            .unwrap_err()
            .to_string()
            .contains("regular file"));
        assert!(w
            .file("a/b/c", 0o644, b"")
            .unwrap_err()
            .to_string()
            .contains("not a directory"));
        assert!(w
            .file("c", 0o100644, b"")
            .unwrap_err()
            .to_string()
            .contains("permission bits"));
        assert!(w.char_device("d", 0o600, 4096, 0).is_err());
        assert!(w.char_device("d", 0o600, 0, 1 << 20).is_err());
        assert!(w.symlink("e", "").is_err());
        assert!(w.symlink("e", &"t".repeat(PATH_MAX)).is_err());
        assert!(w.dir("/", 0o755).is_err());
        assert_eq!(w.out.len(), before);
        assert!(w.contains("/a") && w.contains("a/b") && !w.contains("c"));
    }

    #[test]
    fn claiming_an_added_parent_needs_its_mode() {
        let mut w = Writer::new(Vec::new());
        w.file("etc/passwd", 0o644, b"").unwrap();
        let before = w.out.len();
        let err = w.dir("etc", 0o700).unwrap_err().to_string();
        assert!(err.contains("\"etc\"") && err.contains("0755"), "{err}");
        w.dir("/etc", 0o755).unwrap();
        assert_eq!(w.out.len(), before, "claiming writes no second entry");
        assert!(w
            .dir("etc", 0o755)
            .unwrap_err()
            .to_string()
            .contains("duplicate"));
    }

    #[test]
    fn a_source_larger_than_its_reported_size_is_an_error() {
        // procfs files report size 0 but have contents: copying them must not silently cut them.
        let mut w = Writer::new(Vec::new());
        let err = format!(
            "{:#}",
            w.file_from_path("status", 0o644, Path::new("/proc/self/status"))
                .unwrap_err()
        );
        assert!(
            err.contains("\"status\"")
                && err.contains("/proc/self/status")
                && err.contains("changed size"),
            "{err}"
        );
    }

    #[test]
    fn owners_apply_to_later_entries_but_not_to_added_parents() {
        let bytes = archive(|w| {
            w.file("a", 0o644, b"")?;
            w.set_owner(1000, 100);
            w.file("home/u/f", 0o600, b"x")?;
            w.set_owner(0, 0);
            w.file("b", 0o644, b"")
        });
        let all = entries(&bytes);
        let owner = |n: &str| {
            let (f, _, _) = all.iter().find(|(_, name, _)| name == n).unwrap();
            (f[2], f[3])
        };
        assert_eq!(owner("a"), (0, 0));
        assert_eq!(owner("home"), (0, 0), "added parent");
        assert_eq!(owner("home/u/f"), (1000, 100));
        assert_eq!(owner("b"), (0, 0));

        let mut w = Writer::new(Vec::new());
        w.file("etc/x", 0o644, b"").unwrap();
        w.set_owner(5, 5);
        let err = w.dir("etc", 0o755).unwrap_err().to_string();
        assert!(
            err.contains("owned by root") && err.contains("5:5"),
            "{err}"
        );
    }

    #[test]
    fn hard_links_share_an_inode_and_the_last_carries_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("src");
        std::fs::write(&source, b"payload").unwrap();
        let bytes = archive(|w| {
            w.file("first", 0o644, b"")?;
            w.hard_linked_file_from_path(&["/bin/a", "sbin/b", "c"], 0o755, &source)
        });
        let all = entries(&bytes);
        let names: Vec<&str> = all.iter().map(|(_, n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["first", "bin", "bin/a", "sbin", "sbin/b", "c", TRAILER]
        );
        let links: Vec<_> = all
            .iter()
            .filter(|(_, n, _)| ["bin/a", "sbin/b", "c"].contains(&n.as_str()))
            .collect();
        let ino = links[0].0[0];
        for (fields, _, _) in &links {
            assert_eq!((fields[0], fields[1], fields[4]), (ino, 0o100755, 3));
        }
        assert_eq!(links[0].2, b"");
        assert_eq!(links[1].2, b"");
        assert_eq!(links[2].2, b"payload");
        let inos: Vec<u32> = all[..all.len() - 1].iter().map(|(f, _, _)| f[0]).collect();
        assert_eq!(inos, [1, 2, 3, 4, 3, 3], "parents get their own inodes");

        let mut w = Writer::new(Vec::new());
        w.file("x", 0o644, b"").unwrap();
        let before = w.out.len();
        for bad in [&["y", "x"][..], &["y", "/y"], &["y", "y/z"], &[]] {
            assert!(
                w.hard_linked_file_from_path(bad, 0o644, &source).is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(w.out.len(), before);
    }

    /// Accepts a few bytes, then fails, like a full disk.
    struct FailAfter(usize);
    impl Write for FailAfter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("disk full"));
            }
            let n = buf.len().min(self.0);
            self.0 -= n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failed_write_makes_every_later_call_fail() {
        let mut w = Writer::new(FailAfter(50));
        let err = format!("{:#}", w.file("x", 0o644, b"data").unwrap_err());
        assert!(err.contains("\"x\"") && err.contains("disk full"), "{err}");
        let err = w.file("y", 0o644, b"").unwrap_err().to_string();
        assert!(
            err.contains("\"y\"") && err.contains("earlier write failed"),
            "{err}"
        );
        assert!(w.finish().is_err());
    }
}
