//! Error type for bad metric inputs.

/// Why a metric could not be computed from the given inputs.
///
/// Undefined metrics (for example AUROC of a class with a single label value) are not errors: they are
/// returned as `None`. Errors are reserved for inputs that are malformed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    /// Two inputs that must pair up element by element have different lengths.
    #[error("{what}: expected {expected} values, found {found}")]
    LengthMismatch {
        /// Which input is wrong, e.g. "labels" or "masks".
        what: &'static str,
        /// The length implied by the other input or the shape.
        expected: usize,
        /// The length that was passed.
        found: usize,
    },
    /// A score is NaN or infinite (sklearn rejects these too).
    #[error("{what}: non-finite value {value} at index {index}")]
    NonFiniteScore {
        /// Which input holds the value, e.g. "scores" or "maps".
        what: &'static str,
        /// Flat index of the first offending value.
        index: usize,
        /// The offending value.
        value: f32,
    },
    /// A map shape with a zero or overflowing dimension.
    #[error("invalid map shape {n}x{h}x{w}: {reason}")]
    InvalidShape {
        /// Number of maps.
        n: usize,
        /// Map height.
        h: usize,
        /// Map width.
        w: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No values at all were given.
    #[error("{what}: no values")]
    Empty {
        /// Which input is empty.
        what: &'static str,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, MetricsError>;
