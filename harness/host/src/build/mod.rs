//! Building what goes into the guest: the user's modules (Kbuild, in a copy), their user-space
//! companions, and the agent binary.

pub mod agent;
pub mod companion;
pub mod copy;
pub mod depmod;
pub mod module;
pub mod partial;

use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What the module folders of one run built: every `.ko` by its module name, and every companion
/// program by its path in the guest. Both `test` and `shell` put their guest together from it.
#[derive(Debug, Default)]
pub struct Products {
    pub objects: BTreeMap<String, PathBuf>,
    pub programs: BTreeMap<String, PathBuf>,
}

impl Products {
    /// Adds one folder's build and returns the modules it added (by file name without `.ko`).
    /// Two folders that build a module of the same name cannot both be loaded: that is an error
    /// naming both. `objects` are keyed by the kernel's names (`hello_1` for `hello-1.ko`).
    pub fn add(&mut self, build: &module::ModuleBuild) -> Result<Vec<(String, PathBuf)>> {
        let mut added = Vec::new();
        for (stem, path) in &build.objects {
            let name = crate::spec::kernel_name(stem);
            match self.objects.get(&name) {
                Some(other) if other != path => bail!(
                    "two module folders build the module {name} ({} and {}); rename one",
                    other.display(),
                    path.display()
                ),
                Some(_) => {}
                None => {
                    self.objects.insert(name, path.clone());
                    added.push((stem.clone(), path.clone()));
                }
            }
        }
        for (name, path) in &build.companions {
            self.programs
                .insert(companion::guest_path(&build.module, name), path.clone());
        }
        Ok(added)
    }
}
