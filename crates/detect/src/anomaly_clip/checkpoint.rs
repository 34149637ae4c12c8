//! AnomalyCLIP checkpoints (`spec/baselines.md` §5.3).
//!
//! The released `checkpoints/9_12_4_multiscale*/epoch_N.pth` and `train.py`'s files are
//! `torch.save({"prompt_learner": state_dict})` with
//! * `ctx_pos`, `ctx_neg` `[1, 1, n_ctx, W]` and `compound_prompts_text.{0..depth−2}` `[t_n_ctx, W]`
//!   (learned);
//! * `compound_prompt_projections.{i}.weight` `[896, W]` / `.bias` `[896]`: never used in the
//!   forward pass; read, checked and reported as dead;
//! * buffers `token_prefix_{pos,neg}` `[1, 1, 1, W]`, `token_suffix_{pos,neg}` `[1, 1, T−1−n_ctx, W]`
//!   (used, as the official `load_state_dict` overwrites the freshly built ones) and the integer
//!   `tokenized_prompts_{pos,neg}` (skipped; the ids are rebuilt from the tokenizer).
//!
//! Ours: safetensors with the learned tensors and the float buffers under the same names and
//! shapes, the config in the metadata. Missing or mis-shaped tensors and unknown keys are errors
//! naming the file and key.
use std::collections::BTreeMap;

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use vlad_clip::ClipConfig;
use vlad_clip::weights::{Entry, WeightFile};

use super::{AnomalyClipConfig, PromptFrame, PromptLearner, prompt_texts};
use crate::DetectError;
use crate::checkpoint_io::NamedTensor;

/// The top-level key of the official files.
pub const TOP_LEVEL_KEY: &str = "prompt_learner";
/// Metadata key of the config.
pub const META_CONFIG: &str = "vlad.anomaly_clip.config";

/// Loaded prompt-learner weights.
pub struct AnomalyClipWeights {
    /// The config (taps and size from the metadata, else the backbone default; prompt sizes from
    /// the tensors).
    pub config: AnomalyClipConfig,
    /// The learned tensors.
    pub learner: PromptLearner,
    /// The frozen rows stored with them (official files and ours), if present.
    pub frame: Option<PromptFrame>,
    /// What the loader noticed (dead weights).
    pub notes: Vec<String>,
}

/// The top-level key for a file starting with `first_bytes` (PyTorch zips only).
pub fn top_level_key(first_bytes: &[u8]) -> Option<&'static str> {
    first_bytes.starts_with(b"PK\x03\x04").then_some(TOP_LEVEL_KEY)
}

/// Opens an official `.pth` (its `prompt_learner`) or one of our files.
#[cfg(not(target_arch = "wasm32"))]
pub fn open(path: &std::path::Path) -> Result<WeightFile, DetectError> {
    use std::io::Read;
    let mut head = [0u8; 4];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| DetectError::Invalid(format!("{}: cannot read the AnomalyCLIP checkpoint: {e}", path.display())))?;
    Ok(WeightFile::open(path, top_level_key(&head[..n])).map_err(vlad_clip::ClipError::from)?)
}

fn tensor(entries: &BTreeMap<String, Entry>, origin: &str, name: &str, expected: &[usize], device: &Device) -> Result<Tensor<2>, DetectError> {
    let entry = entries.get(name).ok_or_else(|| DetectError::Invalid(format!("{origin}: `{name}` is missing (expected shape {expected:?})")))?;
    if entry.shape != expected {
        return Err(DetectError::Invalid(format!("{origin}: `{name}` has shape {:?}, expected {expected:?}", entry.shape)));
    }
    let values = entry.to_f32(name).map_err(vlad_clip::ClipError::from)?;
    let rows = expected.iter().rev().skip(1).product::<usize>();
    let w = *expected.last().expect("a shape");
    Ok(Tensor::from_data(TensorData::new(values, [rows, w]), device))
}

/// Builds the learner from a checkpoint for the backbone `clip`.
pub fn load_weight_file(file: &WeightFile, clip: &ClipConfig, device: &Device) -> Result<AnomalyClipWeights, DetectError> {
    let origin = file.origin.as_str();
    let entries: BTreeMap<String, Entry> =
        file.entries.iter().map(|(k, v)| (k.strip_prefix("prompt_learner.").unwrap_or(k).to_string(), v.clone())).collect();
    let w = clip.text.width;
    let ctx_shape = entries.get("ctx_pos").map(|e| e.shape.clone()).ok_or_else(|| {
        DetectError::Invalid(format!("{origin}: holds no AnomalyCLIP prompt learner (`ctx_pos` is missing; keys: {})", entries.keys().take(6).cloned().collect::<Vec<_>>().join(", ")))
    })?;
    let n_ctx = match ctx_shape.as_slice() {
        [1, 1, n, width] if *width == w => *n,
        other => return Err(DetectError::Invalid(format!("{origin}: `ctx_pos` has shape {other:?}, expected [1, 1, n_ctx, {w}] for text width {w}"))),
    };
    let mut deep: Vec<usize> = entries.keys().filter_map(|k| k.strip_prefix("compound_prompts_text.")?.parse().ok()).collect();
    deep.sort_unstable();
    if deep.iter().enumerate().any(|(i, &n)| i != n) {
        return Err(DetectError::Invalid(format!("{origin}: compound_prompts_text indices {deep:?} are not 0..{}", deep.len())));
    }
    let t_n_ctx = match deep.first().map(|_| entries["compound_prompts_text.0"].shape.clone()) {
        Some(shape) if shape.len() == 2 && shape[1] == w => shape[0],
        Some(shape) => return Err(DetectError::Invalid(format!("{origin}: `compound_prompts_text.0` has shape {shape:?}, expected [t_n_ctx, {w}]"))),
        None => 0,
    };
    let mut config = match file.metadata.get(META_CONFIG) {
        Some(json) => serde_json::from_str(json).map_err(|e| DetectError::Invalid(format!("{origin}: metadata `{META_CONFIG}` is not valid: {e}")))?,
        None => AnomalyClipConfig::for_backbone(clip),
    };
    config.n_ctx = n_ctx;
    config.depth = deep.len() + 1;
    if t_n_ctx > 0 {
        config.t_n_ctx = t_n_ctx;
    }
    config.validate(clip)?;

    let mut used = std::collections::BTreeSet::new();
    let mut take = |name: &str, shape: &[usize]| -> Result<Tensor<2>, DetectError> {
        used.insert(name.to_string());
        tensor(&entries, origin, name, shape, device)
    };
    let learner = PromptLearner {
        ctx_pos: Param::from_tensor(take("ctx_pos", &[1, 1, n_ctx, w])?),
        ctx_neg: Param::from_tensor(take("ctx_neg", &[1, 1, n_ctx, w])?),
        compound_prompts_text: (0..deep.len()).map(|i| take(&format!("compound_prompts_text.{i}"), &[config.t_n_ctx, w]).map(Param::from_tensor)).collect::<Result<_, _>>()?,
    };
    let context = clip.text.context_length;
    let buffers = ["token_prefix_pos", "token_prefix_neg", "token_suffix_pos", "token_suffix_neg"];
    let frame = if buffers.iter().all(|b| entries.contains_key(*b)) {
        let suffix = context - 1 - n_ctx;
        let tokenizer = vlad_clip::ClipTokenizer::openai()?;
        let ids = tokenizer.tokenize_batch(&prompt_texts(n_ctx))?;
        Some(PromptFrame {
            prefix: [take("token_prefix_pos", &[1, 1, 1, w])?, take("token_prefix_neg", &[1, 1, 1, w])?],
            suffix: [take("token_suffix_pos", &[1, 1, suffix, w])?, take("token_suffix_neg", &[1, 1, suffix, w])?],
            ids: [ids[0].clone(), ids[1].clone()],
        })
    } else if buffers.iter().any(|b| entries.contains_key(*b)) {
        return Err(DetectError::Invalid(format!("{origin}: has only some of the prompt buffers {buffers:?}")));
    } else {
        None
    };
    let mut notes = Vec::new();
    let dead: Vec<&String> = entries.keys().filter(|k| k.starts_with("compound_prompt_projections.")).collect();
    for key in &dead {
        let shape = &entries[*key].shape;
        let ok = (key.ends_with(".weight") && shape.as_slice() == [896, w]) || (key.ends_with(".bias") && shape.as_slice() == [896]);
        if !ok {
            return Err(DetectError::Invalid(format!("{origin}: `{key}` has shape {shape:?}, expected [896, {w}] / [896]")));
        }
    }
    if !dead.is_empty() {
        notes.push(format!("{origin}: {} compound_prompt_projections tensors are never used by AnomalyCLIP's forward pass (dead weights, as in the official code)", dead.len()));
    }
    let unknown: Vec<String> =
        entries.keys().filter(|k| !used.contains(*k) && !k.starts_with("compound_prompt_projections.")).map(|k| format!("`{k}` {:?}", entries[k].shape)).collect();
    if !unknown.is_empty() {
        return Err(DetectError::Invalid(format!("{origin}: tensors that are not AnomalyCLIP prompt-learner weights: {}", unknown.join(", "))));
    }
    Ok(AnomalyClipWeights { config, learner, frame, notes })
}

fn named(name: &str, t: Tensor<2>, shape: Vec<usize>) -> Result<NamedTensor, DetectError> {
    let values = t.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| DetectError::Invalid(format!("cannot read `{name}` back: {e:?}")))?;
    Ok((name.to_string(), shape, values))
}

/// The learner and frame under the official names and shapes.
pub fn tensors(learner: &PromptLearner, frame: &PromptFrame) -> Result<Vec<NamedTensor>, DetectError> {
    let [n_ctx, w] = learner.ctx_pos.val().dims();
    let mut out = vec![named("ctx_pos", learner.ctx_pos.val(), vec![1, 1, n_ctx, w])?, named("ctx_neg", learner.ctx_neg.val(), vec![1, 1, n_ctx, w])?];
    for (i, p) in learner.compound_prompts_text.iter().enumerate() {
        let dims = p.val().dims().to_vec();
        out.push(named(&format!("compound_prompts_text.{i}"), p.val(), dims)?);
    }
    for (i, tag) in ["pos", "neg"].iter().enumerate() {
        let s = frame.suffix[i].dims()[0];
        out.push(named(&format!("token_prefix_{tag}"), frame.prefix[i].clone(), vec![1, 1, 1, w])?);
        out.push(named(&format!("token_suffix_{tag}"), frame.suffix[i].clone(), vec![1, 1, s, w])?);
    }
    Ok(out)
}

/// safetensors bytes with the config in the metadata.
pub fn to_bytes(learner: &PromptLearner, frame: &PromptFrame, config: &AnomalyClipConfig) -> Result<Vec<u8>, DetectError> {
    crate::checkpoint_io::safetensors_bytes(&tensors(learner, frame)?, &metadata(config))
}

fn metadata(config: &AnomalyClipConfig) -> BTreeMap<String, String> {
    BTreeMap::from([("format".to_string(), "pt".to_string()), (META_CONFIG.to_string(), serde_json::to_string(config).expect("config serialises"))])
}

/// Writes our safetensors file.
#[cfg(not(target_arch = "wasm32"))]
pub fn save(path: &std::path::Path, learner: &PromptLearner, frame: &PromptFrame, config: &AnomalyClipConfig) -> Result<(), DetectError> {
    crate::checkpoint_io::write_safetensors(path, &tensors(learner, frame)?, &metadata(config))
}
