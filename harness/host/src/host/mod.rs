//! The machine kmodlab runs on: the tools it needs and how to install them, `doctor`, the cache
//! folder, and the progress a person sees while it works.

pub mod cache;
pub mod child;
pub mod doctor;
pub mod progress;
pub mod setup;
