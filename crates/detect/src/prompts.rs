//! Text prompts and text prototypes shared by the prompt-ensemble detectors.
use burn::tensor::Tensor;
use vlad_clip::{ClipModel, ClipTokenizer};

use crate::DetectError;

/// `x / ‖x‖₂` along the last axis (no epsilon, as the official code divides by the norm).
pub fn l2_normalize<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let norm = x.clone().powf_scalar(2.0).sum_dim(D - 1).sqrt();
    x / norm
}

/// How a group of prompt embeddings becomes one prototype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Averaging {
    /// Normalise each embedding, average, renormalise (plain CLIP ensembles, mala-lab WinCLIP).
    NormalizedMean,
    /// Average the raw embeddings (anomalib / zqhang WinCLIP); cosines normalise afterwards.
    RawMean,
}

/// Encodes `prompts` with the standard text tower and averages them into one `[E]` prototype
/// (not normalised for [`Averaging::RawMean`], unit length for [`Averaging::NormalizedMean`]).
pub fn prototype(model: &ClipModel, tokenizer: &ClipTokenizer, prompts: &[String], averaging: Averaging) -> Result<Tensor<1>, DetectError> {
    if prompts.is_empty() {
        return Err(DetectError::Invalid("empty prompt group".into()));
    }
    let ids = tokenizer.tokenize_batch(prompts)?;
    let emb = model.encode_text(&ids)?;
    let [_, e] = emb.dims();
    Ok(match averaging {
        Averaging::NormalizedMean => l2_normalize(l2_normalize(emb).mean_dim(0)).reshape([e]),
        Averaging::RawMean => emb.mean_dim(0).reshape([e]),
    })
}

/// Fills `{}` in each template with `name`.
pub fn fill(templates: &[&str], name: &str) -> Vec<String> {
    templates.iter().map(|t| t.replace("{}", name)).collect()
}
