use std::path::PathBuf;

/// Everything that can go wrong while reading or converting an image.
#[derive(Debug, thiserror::Error)]
pub enum ImagingError {
    /// The file could not be read.
    #[error("cannot read image file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Decoding the contents of a file failed; wraps the decoding error with the file name.
    #[error("{path}: {source}")]
    InFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: Box<ImagingError>,
    },
    /// The bytes are not in a format this crate decodes.
    #[error(
        "unrecognised image format (PNG, JPEG, TIFF and BMP are supported); data starts with {start}"
    )]
    UnknownFormat {
        /// The first bytes of the data, in hex.
        start: String,
    },
    /// The decoder rejected the data.
    #[error("cannot decode {format} data: {message}")]
    Decode {
        /// The container format.
        format: &'static str,
        /// The decoder's message.
        message: String,
    },
    /// The data decodes, but its pixel layout has no Pillow "L"/"RGB" conversion here.
    #[error("unsupported {format} pixel layout: {layout}")]
    UnsupportedLayout {
        /// The container format.
        format: &'static str,
        /// The layout found.
        layout: String,
    },
    /// The header declares more pixels than the limit allows (a possible decompression bomb).
    #[error(
        "{format} image of {width}x{height} = {pixels} pixels is over the limit of {limit} pixels (twice the warning threshold, Pillow's rule) \
         and could be a decompression bomb; if the file is trusted, raise the limit \
         (vlad: --max-image-pixels N, 0 for none)"
    )]
    TooManyPixels {
        /// The container format.
        format: &'static str,
        /// Width in the header.
        width: u32,
        /// Height in the header.
        height: u32,
        /// width × height.
        pixels: u64,
        /// The largest accepted pixel count.
        limit: u64,
    },
    /// A raw pixel buffer does not have the length its dimensions require.
    #[error("{what} has {found} values, expected {expected} for {width}x{height}")]
    BufferLength {
        /// Which buffer.
        what: &'static str,
        /// Required length.
        expected: usize,
        /// Actual length.
        found: usize,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
}

impl ImagingError {
    pub(crate) fn in_file(self, path: impl Into<PathBuf>) -> Self {
        ImagingError::InFile {
            path: path.into(),
            source: Box::new(self),
        }
    }
}
