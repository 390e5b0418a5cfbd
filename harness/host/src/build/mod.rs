//! Building what goes into the guest: the user's modules (Kbuild, in a copy), their user-space
//! companions, and the agent binary.

pub mod agent;
pub mod companion;
pub mod module;
