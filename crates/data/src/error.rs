//! The crate's error type. Every variant names the file (and where useful the line, key, shape or class)
//! that caused it, so a user can fix the input without reading the code.

use std::path::PathBuf;

/// Errors from reading, loading, sampling, augmenting or writing datasets.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An input file or folder that should exist does not.
    #[error("{what} not found: {path}")]
    NotFound {
        /// What was expected there ("dataset root", "mask file", ...).
        what: &'static str,
        /// The path that was looked up.
        path: PathBuf,
    },
    /// An operating-system error while reading or writing a path.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What we tried to do ("read", "list", "create folder", ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An image or mask that exists but cannot be decoded.
    #[error("cannot decode {what} {path}: {source}")]
    Decode {
        /// "image" or "mask".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        #[source]
        source: vlad_imaging::ImagingError,
    },
    /// A mask whose size differs from its image.
    #[error("mask {mask} is {mask_w}x{mask_h} but its image {image} is {image_w}x{image_h}")]
    MaskSize {
        /// The mask file.
        mask: PathBuf,
        /// The image file.
        image: PathBuf,
        /// Mask width.
        mask_w: u32,
        /// Mask height.
        mask_h: u32,
        /// Image width.
        image_w: u32,
        /// Image height.
        image_h: u32,
    },
    /// A malformed row of a csv split file.
    #[error("{path}, line {line}: {message}")]
    Csv {
        /// The csv file.
        path: PathBuf,
        /// 1-based line number of the offending record.
        line: u64,
        /// What is wrong with it.
        message: String,
    },
    /// A malformed JSON or JSON Lines metadata file.
    #[error("{path}{}: {message}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Json {
        /// The metadata file.
        path: PathBuf,
        /// 1-based line (JSON Lines record, or the line serde_json reports).
        line: Option<u64>,
        /// What is wrong.
        message: String,
    },
    /// The folder does not match the layout that was asked for, or auto-detection found none.
    #[error("{path}: {message}")]
    Layout {
        /// The dataset root (or the folder inside it) that was inspected.
        path: PathBuf,
        /// What was expected and what was found.
        message: String,
    },
    /// A request that the dataset cannot satisfy (too few images for a k-shot draw, unknown class, ...).
    #[error("{0}")]
    Request(String),
    /// Invalid arguments to a transform or generator (sizes, probabilities, channel counts).
    #[error("invalid argument: {0}")]
    Argument(String),
    /// Encoding or writing an output image failed.
    #[error("cannot write image {path}: {source}")]
    Encode {
        /// The output file.
        path: PathBuf,
        /// The encoder's error.
        #[source]
        source: image::ImageError,
    },
}

/// Shorthand for results in this crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

impl DataError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            // A missing file is the common case; keep its message short and obvious.
            return DataError::NotFound {
                what: "file or folder",
                path: path.into(),
            };
        }
        DataError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
