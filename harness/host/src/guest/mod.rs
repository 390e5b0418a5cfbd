//! The guest: its initramfs, the QEMU command line that boots it, the running VM and its two
//! channels, the choice between KVM and TCG, and the interactive `shell`.

pub mod accel;
pub mod image;
pub mod initramfs;
pub mod qemu;
pub mod qmp;
pub mod shell;
pub mod snapshot;
pub mod vm;
