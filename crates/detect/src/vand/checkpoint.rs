//! VAND checkpoints (`spec/baselines.md` §4.2).
//!
//! * Official: `torch.save({'trainable_linearlayer': linearlayer.state_dict()}, 'epoch_N.pth')`
//!   with `fc.{i}.weight` `[E, D]` and `fc.{i}.bias` `[E]`, one `i` per tap (ViT-L: 4 × 768 × 1024
//!   weights and 4 × 768 biases, 3,148,800 values). The released `exps/pretrained/mvtec_pretrained.pth`
//!   (trained on MVTec, for testing VisA) and `visa_pretrained.pth` (trained on VisA, for testing
//!   MVTec) have this layout.
//! * Ours: safetensors with the same keys (PyTorch `[out, in]` layout, f32), the config and epoch
//!   in the metadata (`vlad.vand.*`). `safetensors.torch.load_file` + `load_state_dict` reads it
//!   in the official code.
//!
//! CLIP-AD's SDP+ files (`{'linear_layers': …}`, the same `fc.N` keys) load through the same code
//! with their key ([`open_keyed`]).
//!
//! Every missing, unused or mis-shaped tensor is an error naming the file and key.
use std::collections::BTreeMap;

use burn::tensor::Device;
use vlad_clip::ClipConfig;
use vlad_clip::weights::{Entry, WeightFile, WeightReader};

use super::{LinearLayers, VandConfig};
use crate::DetectError;
use crate::checkpoint_io::{NamedTensor, bias_tensor, linear_tensor};

/// The top-level key of the official `.pth` files.
pub const TOP_LEVEL_KEY: &str = "trainable_linearlayer";
/// Metadata key of the config (JSON of [`VandConfig`]).
pub const META_CONFIG: &str = "vlad.vand.config";
/// Metadata key of the epoch.
pub const META_EPOCH: &str = "vlad.vand.epoch";

/// Loaded linear layers with what the file said about them.
#[derive(Debug)]
pub struct VandWeights {
    /// The config (from the metadata, else the backbone default with the tap count checked).
    pub config: VandConfig,
    /// The layers.
    pub layers: LinearLayers,
    /// Epoch, if recorded.
    pub epoch: Option<usize>,
    /// Where they came from.
    pub origin: String,
}

/// The top-level key to read a file with: the official key for PyTorch zip files (told apart by
/// their first bytes), none for safetensors and burnpack.
pub fn top_level_key(first_bytes: &[u8]) -> Option<&'static str> {
    keyed(first_bytes, TOP_LEVEL_KEY)
}

/// [`top_level_key`] for another method's key (CLIP-AD's `linear_layers`).
pub fn keyed<'k>(first_bytes: &[u8], key: &'k str) -> Option<&'k str> {
    first_bytes.starts_with(b"PK\x03\x04").then_some(key)
}

/// Opens an official `.pth` (reading its `trainable_linearlayer`) or one of our files.
#[cfg(not(target_arch = "wasm32"))]
pub fn open(path: &std::path::Path) -> Result<WeightFile, DetectError> {
    open_keyed(path, TOP_LEVEL_KEY)
}

/// [`open`] with another method's top-level key (CLIP-AD: `linear_layers`).
#[cfg(not(target_arch = "wasm32"))]
pub fn open_keyed(path: &std::path::Path, key: &str) -> Result<WeightFile, DetectError> {
    use std::io::Read;
    let mut head = [0u8; 4];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| DetectError::Invalid(format!("{}: cannot read the VAND checkpoint: {e}", path.display())))?;
    Ok(WeightFile::open(path, keyed(&head[..n], key)).map_err(vlad_clip::ClipError::from)?)
}

/// Builds the layers from a checkpoint for a backbone of architecture `clip`. `taps` overrides the
/// tapped blocks (needed for a file without our metadata whose layer count is not the backbone's
/// default of 4).
pub fn load_weight_file(file: &WeightFile, clip: &ClipConfig, taps: Option<&[usize]>, device: &Device) -> Result<VandWeights, DetectError> {
    let origin = &file.origin;
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    let mut unknown = Vec::new();
    for (key, entry) in &file.entries {
        // A flattened official file keeps the top-level key as a prefix.
        let inner = key.strip_prefix("trainable_linearlayer.").or_else(|| key.strip_prefix("linear_layers.")).unwrap_or(key);
        let index = inner.strip_prefix("fc.").and_then(|rest| rest.split_once('.')).and_then(|(n, leaf)| n.parse::<usize>().ok().map(|n| (n, leaf)));
        match index {
            Some((_, "weight" | "bias")) => {
                entries.insert(inner.to_string(), entry.clone());
            }
            _ => unknown.push(format!("`{key}` {:?}", entry.shape)),
        }
    }
    if !unknown.is_empty() {
        return Err(DetectError::Invalid(format!(
            "{origin}: tensors that are not VAND linear layers (expected `fc.N.weight` / `fc.N.bias`): {}",
            unknown.join(", ")
        )));
    }
    let mut found: Vec<usize> = entries.keys().filter_map(|k| k.strip_prefix("fc.")?.split('.').next()?.parse().ok()).collect();
    found.sort_unstable();
    found.dedup();
    if found.is_empty() {
        return Err(DetectError::Invalid(format!("{origin}: holds no VAND linear layers (expected `fc.N.weight` / `fc.N.bias`)")));
    }
    if found.iter().enumerate().any(|(i, &n)| i != n) {
        return Err(DetectError::Invalid(format!("{origin}: linear layer indices {found:?} are not 0..{}", found.len())));
    }
    let layers_in_file = found.len();
    let from_metadata = match file.metadata.get(META_CONFIG) {
        Some(json) => Some(serde_json::from_str::<VandConfig>(json).map_err(|e| DetectError::Invalid(format!("{origin}: metadata `{META_CONFIG}` is not valid: {e}")))?),
        None => None,
    };
    let mut config = from_metadata.clone().unwrap_or_else(|| VandConfig::for_backbone(clip));
    if let Some(taps) = taps {
        config.taps = taps.to_vec();
    }
    if config.taps.len() != layers_in_file {
        let source = if taps.is_some() { "the given taps" } else if from_metadata.is_some() { "its metadata" } else { "the backbone's default taps" };
        return Err(DetectError::Invalid(format!(
            "{origin}: {layers_in_file} linear layers, but {source} name {} taps {:?} (give the tapped blocks explicitly)",
            config.taps.len(),
            config.taps
        )));
    }
    config.validate(clip)?;
    let mut reader = WeightReader::new(origin.clone(), entries, device);
    let mut layers = LinearLayers::new(&config, device);
    for (i, fc) in layers.fc.iter_mut().enumerate() {
        reader.linear(fc, &format!("fc.{i}"));
    }
    reader.finish(false).map_err(vlad_clip::ClipError::from)?;
    let epoch = match file.metadata.get(META_EPOCH) {
        Some(e) => Some(e.parse().map_err(|_| DetectError::Invalid(format!("{origin}: metadata epoch `{e}` is not a number")))?),
        None => None,
    };
    Ok(VandWeights { config, layers, epoch, origin: origin.clone() })
}

/// The layers' tensors under the official names (`fc.N.weight` `[E, D]`, `fc.N.bias`).
pub fn tensors(layers: &LinearLayers) -> Result<Vec<NamedTensor>, DetectError> {
    let mut out = Vec::new();
    for (i, fc) in layers.fc.iter().enumerate() {
        out.push(linear_tensor(format!("fc.{i}.weight"), fc)?);
        out.extend(bias_tensor(format!("fc.{i}.bias"), fc)?);
    }
    Ok(out)
}

/// safetensors bytes of the layers with the config (and epoch) in the metadata.
pub fn to_bytes(layers: &LinearLayers, config: &VandConfig, epoch: Option<usize>) -> Result<Vec<u8>, DetectError> {
    crate::checkpoint_io::safetensors_bytes(&tensors(layers)?, &metadata(config, epoch))
}

fn metadata(config: &VandConfig, epoch: Option<usize>) -> BTreeMap<String, String> {
    let mut metadata = BTreeMap::new();
    metadata.insert("format".to_string(), "pt".to_string());
    metadata.insert(META_CONFIG.to_string(), serde_json::to_string(config).expect("config serialises"));
    if let Some(epoch) = epoch {
        metadata.insert(META_EPOCH.to_string(), epoch.to_string());
    }
    metadata
}

/// Writes the layers as a safetensors file (through a `.partial` file renamed at the end).
#[cfg(not(target_arch = "wasm32"))]
pub fn save(path: &std::path::Path, layers: &LinearLayers, config: &VandConfig, epoch: Option<usize>) -> Result<(), DetectError> {
    crate::checkpoint_io::write_safetensors(path, &tensors(layers)?, &metadata(config, epoch))
}
