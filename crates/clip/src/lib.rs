//! vlad-clip: the CLIP backbone as the anomaly-detection methods use it (`spec/clip.md`).
//!
//! Both towers in burn, with taps of the raw residual stream, the positional-embedding resize
//! rules, V-V attention variants, per-block hooks, prompt injection and deep prompts; weight import
//! from OpenAI/OpenCLIP and Hugging Face names in safetensors, PyTorch zip and burnpack files; the
//! tokenizer; and Pillow-exact preprocessing.
pub mod backend;
pub mod config;
pub mod model;
pub mod posembed;
pub mod precise;
pub mod preprocess;
pub mod text;
pub mod tokenizer;
pub mod transformer;
pub mod vision;
pub mod weights;

pub use backend::{Backend, device_for};
pub use config::{Activation, ClipConfig};
pub use model::ClipModel;
pub use posembed::PosEmbedResize;
pub use tokenizer::ClipTokenizer;
pub use vision::{BlockHook, VisionForward, VisionOutput, VisualPrompts, VvAttention};

/// Errors of the backbone crate; each names what is wrong and where.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    /// An architecture or option problem.
    #[error("{0}")]
    Config(String),
    /// A tensor of the wrong shape was given.
    #[error("shape error: {0}")]
    Shape(String),
    /// The tokenizer could not be built or run.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A weight file could not be read or does not fit the model.
    #[error(transparent)]
    Weights(#[from] weights::WeightError),
    /// An image could not be read or converted.
    #[error(transparent)]
    Image(#[from] vlad_imaging::ImagingError),
    /// A backend could not be initialised.
    #[error("backend: {0}")]
    Backend(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}
