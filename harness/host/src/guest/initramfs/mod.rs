//! Writes initramfs archives in the kernel's "newc" cpio format (magic `070701`).
//!
//! kmodlab writes every initramfs itself, device nodes included, so a run needs no root, no `mknod`
//! and no `cpio` binary. The format is the one `init/initramfs.c` unpacks (see the kernel's
//! `Documentation/driver-api/early-userspace/buffer-format.rst`):
//!
//! ```text
//! entry   := header(110 bytes) + name + "\0" + pad to 4 + data + pad to 4
//! archive := entry* + trailer ("TRAILER!!!" entry)
//! ```
//!
//! Every header field is eight hex digits. Owners are root unless [`Writer::set_owner`] says
//! otherwise, times are zero and inode numbers count up from one, so the same calls always give the
//! same bytes: archives can be cached and compared.
//!
//! [`read_archive`] reads such archives back (ours, the kernel's `gen_init_cpio`'s, GNU cpio's
//! `-H newc`), for listing them and for tests.
//!
//! `kmodlab initramfs` builds standalone archives ([`build`]) from a description in the kernel's
//! `gen_init_cpio` format ([`desc`]) or from a folder ([`write_tree`]), optionally compressed
//! ([`Compression`]), and lists them back ([`list`]).
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use kmodlab::guest::initramfs::Writer;
//! let mut w = Writer::new(std::fs::File::create("initramfs.cpio")?);
//! w.base_layout()?;
//! w.file_from_path("/init", 0o755, std::path::Path::new("target/agent"))?;
//! w.symlink("/bin/sh", "/init")?;
//! w.finish()?;
//! # Ok(())
//! # }
//! ```

mod build;
mod compress;
pub mod desc;
mod list;
mod reader;
mod tree;
mod writer;

pub use build::{build, Built};
pub use compress::Compression;
pub use list::{list, list_bytes, Listed};
pub use reader::{read_archive, Entry};
pub use tree::write_tree;
pub use writer::Writer;

const MAGIC: &[u8] = b"070701";
/// The same format with a checksum of each file's data in the last field (`cpio -H crc`).
const MAGIC_CRC: &[u8] = b"070702";
const HEADER_LEN: usize = 110;
const TRAILER: &str = "TRAILER!!!";
/// `mode` arguments carry only these bits; the writer owns the file-type bits.
const PERMISSION_BITS: u32 = 0o7777;

/// Bytes of zeros that bring `offset` to a multiple of 4.
fn padding(offset: u64) -> usize {
    ((4 - offset % 4) % 4) as usize
}
