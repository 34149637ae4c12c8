//! MVFA-AD checkpoints (`spec/baselines.md` §7).
//!
//! * Official: `torch.save({'seg_adapters': …, 'det_adapters': …}, 'ckpt/{zero-shot,few-shot}/{obj}.pth')`,
//!   one file per target dataset, keys `{i}.fc1.0.weight` `[768, 1024]` and `{i}.fc2.0.weight`
//!   `[1024, 768]` per tap `i` in each list (ViT-L/14: 16 tensors, 12,582,912 values).
//! * Ours: safetensors with the flattened names (`seg_adapters.0.fc1.0.weight`, …) and the config
//!   in the metadata.
//!
//! Every missing, unused or mis-shaped tensor is an error naming the file and key.
use std::collections::BTreeMap;

use burn::tensor::Device;
use vlad_clip::ClipConfig;
use vlad_clip::weights::{Entry, WeightFile, WeightReader};

use super::{MvfaAdapters, MvfaConfig};
use crate::DetectError;
use crate::checkpoint_io::{NamedTensor, linear_tensor};

/// Metadata key of the config (JSON of [`MvfaConfig`]).
pub const META_CONFIG: &str = "vlad.mvfa.config";
/// The two adapter lists.
pub const LISTS: [&str; 2] = ["seg_adapters", "det_adapters"];

/// Loaded adapters with their config.
#[derive(Debug)]
pub struct MvfaWeights {
    /// The config (metadata, else the backbone default with the file's tap count checked).
    pub config: MvfaConfig,
    /// The adapters.
    pub adapters: MvfaAdapters,
    /// Where they came from.
    pub origin: String,
}

/// Opens an official `.pth` or one of our files.
#[cfg(not(target_arch = "wasm32"))]
pub fn open(path: &std::path::Path) -> Result<WeightFile, DetectError> {
    Ok(WeightFile::open(path, None).map_err(vlad_clip::ClipError::from)?)
}

/// Builds the adapters from a checkpoint for a backbone of architecture `clip`.
pub fn load_weight_file(file: &WeightFile, clip: &ClipConfig, device: &Device) -> Result<MvfaWeights, DetectError> {
    let origin = &file.origin;
    let entries: BTreeMap<String, Entry> = file.entries.clone();
    let count = |list: &str| entries.keys().filter(|k| k.starts_with(&format!("{list}.")) && k.ends_with(".fc1.0.weight")).count();
    let (seg, det) = (count(LISTS[0]), count(LISTS[1]));
    if seg == 0 || seg != det {
        return Err(DetectError::Invalid(format!(
            "{origin}: not an MVFA checkpoint ({seg} seg and {det} det adapters; expected `seg_adapters.N.fc1.0.weight` and `det_adapters.N.fc1.0.weight` for every tap)"
        )));
    }
    let mut config = match file.metadata.get(META_CONFIG) {
        Some(json) => serde_json::from_str(json).map_err(|e| DetectError::Invalid(format!("{origin}: metadata `{META_CONFIG}` is not valid: {e}")))?,
        None => MvfaConfig::for_backbone(clip),
    };
    if config.taps.len() != seg {
        return Err(DetectError::Invalid(format!("{origin}: {seg} adapters per list, but the config names {} taps {:?}", config.taps.len(), config.taps)));
    }
    if let Some(e) = entries.get("seg_adapters.0.fc1.0.weight") {
        config.bottleneck = e.shape[0];
    }
    config.validate(clip)?;
    let mut adapters = MvfaAdapters::new(&config, clip, device);
    let mut reader = WeightReader::new(origin.clone(), entries, device);
    for (list, adapters) in [(LISTS[0], &mut adapters.seg), (LISTS[1], &mut adapters.det)] {
        for (i, a) in adapters.iter_mut().enumerate() {
            reader.linear(&mut a.fc1, &format!("{list}.{i}.fc1.0"));
            reader.linear(&mut a.fc2, &format!("{list}.{i}.fc2.0"));
        }
    }
    reader.finish(false).map_err(vlad_clip::ClipError::from)?;
    Ok(MvfaWeights { config, adapters, origin: origin.clone() })
}

/// The adapters under the official (flattened) names.
pub fn tensors(adapters: &MvfaAdapters) -> Result<Vec<NamedTensor>, DetectError> {
    let mut out = Vec::new();
    for (list, adapters) in [(LISTS[0], &adapters.seg), (LISTS[1], &adapters.det)] {
        for (i, a) in adapters.iter().enumerate() {
            out.push(linear_tensor(format!("{list}.{i}.fc1.0.weight"), &a.fc1)?);
            out.push(linear_tensor(format!("{list}.{i}.fc2.0.weight"), &a.fc2)?);
        }
    }
    Ok(out)
}

fn metadata(config: &MvfaConfig) -> BTreeMap<String, String> {
    BTreeMap::from([("format".to_string(), "pt".to_string()), (META_CONFIG.to_string(), serde_json::to_string(config).expect("config serialises"))])
}

/// safetensors bytes with the config in the metadata.
pub fn to_bytes(adapters: &MvfaAdapters, config: &MvfaConfig) -> Result<Vec<u8>, DetectError> {
    crate::checkpoint_io::safetensors_bytes(&tensors(adapters)?, &metadata(config))
}

/// Writes [`to_bytes`] to `path`.
#[cfg(not(target_arch = "wasm32"))]
pub fn save(path: &std::path::Path, adapters: &MvfaAdapters, config: &MvfaConfig) -> Result<(), DetectError> {
    crate::checkpoint_io::write_safetensors(path, &tensors(adapters)?, &metadata(config))
}
