//! Small file-system helpers shared by the readers: sorted listings and image-file recognition.

use std::path::{Path, PathBuf};

use crate::error::DataError;

/// File extensions (lower case) treated as images or masks.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "bmp", "tif", "tiff"];

/// True if the path has an image extension (case-insensitive) and is not a hidden file.
pub fn is_image_file(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'));
    let ext_ok = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
    ext_ok && !hidden
}

/// Entries of a folder, split into sub-folders and files, each sorted by file name (byte order, so the
/// listing is the same on every platform; Python's `sorted(os.listdir())` gives the same order for ASCII).
pub struct Listing {
    /// Sub-folders.
    pub dirs: Vec<PathBuf>,
    /// Files (any extension).
    pub files: Vec<PathBuf>,
}

/// List a folder; errors name it.
pub fn list_dir(dir: &Path) -> Result<Listing, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::io("list folder", dir, e))?;
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DataError::io("list folder", dir, e))?;
        let path = entry.path();
        // Follow symbolic links: datasets are often linked into place.
        if path.is_dir() {
            dirs.push(path);
        } else if path.is_file() {
            files.push(path);
        }
    }
    dirs.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(Listing { dirs, files })
}

/// The final component of a path as UTF-8 (lossy).
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The file stem as UTF-8 (lossy).
pub fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Check that a dataset root exists and is a folder.
pub fn require_dir(path: &Path, what: &'static str) -> Result<(), DataError> {
    if !path.exists() {
        return Err(DataError::NotFound {
            what,
            path: path.to_path_buf(),
        });
    }
    if !path.is_dir() {
        return Err(DataError::Layout {
            path: path.to_path_buf(),
            message: format!("{what} is not a folder"),
        });
    }
    Ok(())
}

/// Join a metadata path (always `/`-separated in the formats we read) onto a root.
/// An absolute path is used as it is.
pub fn join_relative(root: &Path, relative: &str) -> PathBuf {
    if Path::new(relative).is_absolute() {
        return PathBuf::from(relative);
    }
    let mut out = root.to_path_buf();
    for part in relative
        .split(['/', '\\'])
        .filter(|p| !p.is_empty() && *p != ".")
    {
        out.push(part);
    }
    out
}
