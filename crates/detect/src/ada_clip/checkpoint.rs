//! AdaCLIP checkpoints (`spec/baselines.md` §6.6, audit D5).
//!
//! * Official: `AdaCLIP_Trainer.save` keeps the state-dict entries of the six learned modules, as
//!   a flat `torch.save` dict with the `clip_model.` prefix — 38 tensors for depth 4, length 5 and
//!   4 taps: `text_prompter.static_prompts.{0..3}` `[5, E]`, `visual_prompter.static_prompts.{0..3}`
//!   `[5, D]`, `patch_token_layer.head.{0..3}.{weight,bias}` `[E, D]`/`[E]`,
//!   `cls_token_layer.head.0.{weight,bias}` `[E, E]`/`[E]`,
//!   `dynamic_visual_prompt_generator.head.{0..4}.{weight,bias}` `[D, E]`/`[D]`,
//!   `dynamic_text_prompt_generator.head.{0..4}.{weight,bias}` `[E, E]`/`[E]` (the text-side `E` is
//!   the text width W on backbones where W ≠ E, which the official code cannot run; ViT-L/14: 10,665,472
//!   values). The released `pretrained_mvtec_colondb.pth`, `pretrained_visa_clinicdb.pth` and
//!   `pretrained_all.pth` have this layout. The official loader is non-strict (a truncated file
//!   loads silently); here every key must be present and every tensor used.
//! * Ours: safetensors with the same keys (PyTorch layout, f32) and the config in the metadata.
use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor};
use vlad_clip::ClipConfig;
use vlad_clip::weights::{Entry, WeightFile, WeightReader};

use super::{AdaClipConfig, AdaClipLearned};
use crate::DetectError;
use crate::checkpoint_io::{NamedTensor, bias_tensor, linear_tensor};

/// The prefix `AdaCLIP_Trainer.state_dict` gives the learned modules.
pub const PREFIX: &str = "clip_model.";
/// Metadata key of the config (JSON of [`AdaClipConfig`]).
pub const META_CONFIG: &str = "vlad.ada_clip.config";

/// Loaded learned tensors with their config.
#[derive(Debug)]
pub struct AdaClipWeights {
    /// The config (metadata, else the backbone default with the file's depth, length and taps).
    pub config: AdaClipConfig,
    /// The tensors.
    pub learned: AdaClipLearned,
    /// Where they came from.
    pub origin: String,
}

/// Opens an official `.pth` or one of our files.
#[cfg(not(target_arch = "wasm32"))]
pub fn open(path: &std::path::Path) -> Result<WeightFile, DetectError> {
    Ok(WeightFile::open(path, None).map_err(vlad_clip::ClipError::from)?)
}

fn count(entries: &BTreeMap<String, Entry>, prefix: &str, leaf: &str) -> Result<usize, String> {
    let mut found: Vec<usize> = entries
        .keys()
        .filter_map(|k| {
            let rest = k.strip_prefix(prefix)?;
            let (n, tail) = rest.split_once('.').unwrap_or((rest, ""));
            (tail == leaf).then(|| n.parse().ok()).flatten()
        })
        .collect();
    found.sort_unstable();
    if found.iter().enumerate().any(|(i, &n)| i != n) {
        return Err(format!("`{prefix}N` indices {found:?} are not 0..{}", found.len()));
    }
    Ok(found.len())
}

/// Builds the learned tensors from a checkpoint for a backbone of architecture `clip`.
pub fn load_weight_file(file: &WeightFile, clip: &ClipConfig, device: &Device) -> Result<AdaClipWeights, DetectError> {
    let origin = &file.origin;
    let entries: BTreeMap<String, Entry> =
        file.entries.iter().map(|(k, v)| (k.strip_prefix(PREFIX).unwrap_or(k).to_string(), v.clone())).collect();
    let bad = |m: String| DetectError::Invalid(format!("{origin}: {m}"));
    let depth = count(&entries, "text_prompter.static_prompts.", "").map_err(bad)?;
    let taps = count(&entries, "patch_token_layer.head.", "weight").map_err(bad)?;
    let length = count(&entries, "dynamic_text_prompt_generator.head.", "weight").map_err(bad)?;
    if depth == 0 || taps == 0 || length == 0 {
        return Err(DetectError::Invalid(format!(
            "{origin}: not an AdaCLIP checkpoint ({depth} text static prompts, {taps} patch projections, {length} dynamic text heads; \
             expected `clip_model.text_prompter.static_prompts.N`, `clip_model.patch_token_layer.head.N.weight`, …)"
        )));
    }
    let mut config = match file.metadata.get(META_CONFIG) {
        Some(json) => serde_json::from_str(json).map_err(|e| DetectError::Invalid(format!("{origin}: metadata `{META_CONFIG}` is not valid: {e}")))?,
        None => AdaClipConfig::for_backbone(clip),
    };
    if config.taps.len() != taps {
        return Err(DetectError::Invalid(format!("{origin}: {taps} patch projections, but the config names {} taps {:?}", config.taps.len(), config.taps)));
    }
    config.prompting_depth = depth;
    config.prompting_length = length;
    config.validate(clip)?;
    let mut learned = AdaClipLearned::new(&config, clip, device);
    let mut reader = WeightReader::new(origin.clone(), entries, device);
    for (i, p) in learned.text_static.iter_mut().enumerate() {
        reader.param(p, &format!("text_prompter.static_prompts.{i}"));
    }
    for (i, p) in learned.visual_static.iter_mut().enumerate() {
        reader.param(p, &format!("visual_prompter.static_prompts.{i}"));
    }
    for (i, l) in learned.patch_token_layer.iter_mut().enumerate() {
        reader.linear(l, &format!("patch_token_layer.head.{i}"));
    }
    reader.linear(&mut learned.cls_token_layer, "cls_token_layer.head.0");
    for (i, l) in learned.dynamic_visual.iter_mut().enumerate() {
        reader.linear(l, &format!("dynamic_visual_prompt_generator.head.{i}"));
    }
    for (i, l) in learned.dynamic_text.iter_mut().enumerate() {
        reader.linear(l, &format!("dynamic_text_prompt_generator.head.{i}"));
    }
    reader.finish(false).map_err(vlad_clip::ClipError::from)?;
    Ok(AdaClipWeights { config, learned, origin: origin.clone() })
}

fn named(name: String, t: Tensor<2>) -> Result<NamedTensor, DetectError> {
    let shape = t.dims().to_vec();
    let values = super::host_values(t, &name)?;
    Ok((name, shape, values))
}

/// The learned tensors under the official names (with the `clip_model.` prefix).
pub fn tensors(learned: &AdaClipLearned) -> Result<Vec<NamedTensor>, DetectError> {
    let mut out = Vec::new();
    for (i, p) in learned.text_static.iter().enumerate() {
        out.push(named(format!("{PREFIX}text_prompter.static_prompts.{i}"), p.val())?);
    }
    for (i, p) in learned.visual_static.iter().enumerate() {
        out.push(named(format!("{PREFIX}visual_prompter.static_prompts.{i}"), p.val())?);
    }
    let mut linear = |name: String, l: &burn::nn::Linear| -> Result<(), DetectError> {
        out.push(linear_tensor(format!("{name}.weight"), l)?);
        out.extend(bias_tensor(format!("{name}.bias"), l)?);
        Ok(())
    };
    for (i, l) in learned.patch_token_layer.iter().enumerate() {
        linear(format!("{PREFIX}patch_token_layer.head.{i}"), l)?;
    }
    linear(format!("{PREFIX}cls_token_layer.head.0"), &learned.cls_token_layer)?;
    for (i, l) in learned.dynamic_visual.iter().enumerate() {
        linear(format!("{PREFIX}dynamic_visual_prompt_generator.head.{i}"), l)?;
    }
    for (i, l) in learned.dynamic_text.iter().enumerate() {
        linear(format!("{PREFIX}dynamic_text_prompt_generator.head.{i}"), l)?;
    }
    Ok(out)
}

fn metadata(config: &AdaClipConfig) -> BTreeMap<String, String> {
    BTreeMap::from([("format".to_string(), "pt".to_string()), (META_CONFIG.to_string(), serde_json::to_string(config).expect("config serialises"))])
}

/// safetensors bytes with the config in the metadata.
pub fn to_bytes(learned: &AdaClipLearned, config: &AdaClipConfig) -> Result<Vec<u8>, DetectError> {
    crate::checkpoint_io::safetensors_bytes(&tensors(learned)?, &metadata(config))
}

/// Writes our safetensors file (through a `.partial` file renamed at the end).
#[cfg(not(target_arch = "wasm32"))]
pub fn save(path: &std::path::Path, learned: &AdaClipLearned, config: &AdaClipConfig) -> Result<(), DetectError> {
    crate::checkpoint_io::write_safetensors(path, &tensors(learned)?, &metadata(config))
}
