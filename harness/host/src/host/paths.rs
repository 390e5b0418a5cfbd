//! Paths as messages show them.

use std::path::{Path, PathBuf};

/// A path relative to the current folder when it lies below it, for shorter messages.
pub fn display_path(path: &Path) -> PathBuf {
    let absolute = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    match std::env::current_dir() {
        // The working directory itself is `.`, not an empty path that prints as nothing.
        Ok(cwd) if absolute == cwd => PathBuf::from("."),
        Ok(cwd) => absolute
            .strip_prefix(&cwd)
            .map(Path::to_path_buf)
            .unwrap_or(absolute),
        Err(_) => absolute,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_show_relative_to_the_working_directory() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(display_path(&cwd), PathBuf::from("."));
        assert_eq!(
            display_path(&cwd.join("no_such_dir")),
            PathBuf::from("no_such_dir")
        );
        assert_eq!(display_path(Path::new("/")), PathBuf::from("/"));
    }
}
