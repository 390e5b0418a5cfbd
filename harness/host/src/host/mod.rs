//! The machine kmodlab runs on: the tools it needs and how to install them, the cache
//! folder, paths as messages show them, and the progress a person sees while it works.

pub mod cache;
pub mod child;
pub mod paths;
pub mod progress;
mod requirements;
pub mod setup;
