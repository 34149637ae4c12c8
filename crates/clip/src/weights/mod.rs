//! Weight files: safetensors, PyTorch zip (`.pt/.pth/.bin`) and burnpack, read into one map of
//! named tensors; OpenAI/OpenCLIP and Hugging Face names; reports of every missing, unused or
//! mis-shaped tensor (`spec/clip.md` §11).
mod file;
mod hashed;
mod infer;
mod names;
mod random;
mod reader;
mod torch_zip;
mod write;

pub use infer::infer_config;
pub use file::{Entry, SourceDType, WeightFile, WeightFormat};
pub use hashed::{fixture_hash, hashed_parameter};
pub use names::{Naming, canonicalize, detect_naming};
pub use random::random_entries;
pub use reader::{LoadReport, Problem, WeightReader};
pub use write::{WriteOptions, burnpack_bytes};
#[cfg(not(target_arch = "wasm32"))]
pub use write::write_burnpack;

/// Errors while reading weights or fitting them to a model.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    /// The file could not be opened or parsed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A tensor's data could not be converted.
    #[error("tensor `{name}`: {message}")]
    Tensor {
        /// The tensor.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// The file's tensors do not fit the model; every problem is listed.
    #[error("{report}")]
    Mismatch {
        /// The full report.
        report: LoadReport,
    },
}
