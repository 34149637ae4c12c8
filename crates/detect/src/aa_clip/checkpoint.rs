//! AA-CLIP checkpoints (`spec/aa-clip.md` §11).
//!
//! No trained weights were released; what exists is what the official `train.py` writes and what
//! our trainer writes:
//! * `text_adapter.pth`: `{"epoch", "text_adapter": state dict, "text_optimizer": Adam state}` with
//!   keys `N.fc.0.weight` (`N < text_adapt_until`: adapters `[W, W]`; the last: the EOT projector
//!   `[E, W]`);
//! * `image_adapter.pth`, `image_adapter_N.pth`: `{"epoch", "image_adapter", "image_optimizer"}`
//!   with `layer_adapters.N.fc.0.weight` `[D, D]`, `seg_proj.K.fc.weight` and `det_proj.fc.weight`
//!   `[E, D]` (`fc.0.weight` instead of `fc.weight` when trained with `--relu`);
//! * our safetensors files: the same keys under `text_adapter.` / `image_adapter.` (the layout of a
//!   flattened official checkpoint), PyTorch `[out, in]` layout, f32, with the config, epoch and
//!   single-image calibration in the metadata (`vlad.aa_clip.*`). PyTorch reads them with
//!   `safetensors.torch.load_file` and the official modules load them after stripping the prefix.
//!
//! Every missing, unused or mis-shaped tensor is reported; optimizer state is skipped on purpose.
use std::collections::BTreeMap;

use burn::tensor::Device;
use vlad_clip::ClipConfig;
use vlad_clip::weights::{Entry, WeightFile, WeightReader};

use super::adapters::{Adapter, ImageAdapter, Projector, TextAdapter};
use super::scoring::AaClipCalibration;
use super::AaClipConfig;
use crate::DetectError;
pub use crate::checkpoint_io::{NamedTensor, safetensors_bytes};
use crate::checkpoint_io::linear_tensor;
#[cfg(not(target_arch = "wasm32"))]
use crate::checkpoint_io::write_safetensors;

/// Metadata key of the model config (JSON of [`AaClipConfig`]).
pub const META_CONFIG: &str = "vlad.aa_clip.config";
/// Metadata key of the epoch.
pub const META_EPOCH: &str = "vlad.aa_clip.epoch";
/// Metadata key of the calibration (JSON of [`AaClipCalibration`]).
pub const META_CALIBRATION: &str = "vlad.aa_clip.calibration";
/// Metadata key naming the part(s) in a file (`text`, `image`, `text+image`).
pub const META_PARTS: &str = "vlad.aa_clip.parts";

/// Loaded adapter weights with what the files said about them.
#[derive(Debug)]
pub struct AaClipWeights {
    /// The model config (from the metadata, else the backbone default with the counts read from
    /// the key names).
    pub config: AaClipConfig,
    /// Text adapters and EOT projector (`None`: use CLIP's own text encoder).
    pub text: Option<TextAdapter>,
    /// Vision adapters and projectors.
    pub image: ImageAdapter,
    /// Single-image calibration stored with the weights.
    pub calibration: Option<AaClipCalibration>,
    /// Epoch of the image adapter, if recorded.
    pub epoch: Option<usize>,
    /// Where each part came from.
    pub origins: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Text,
    Image,
}

/// Which part a key belongs to, and the key inside that part; `Ok(None)` for optimizer state.
fn classify(key: &str) -> Result<Option<(Part, &str)>, ()> {
    if let Some(rest) = key.strip_prefix("text_adapter.") {
        return Ok(Some((Part::Text, rest)));
    }
    if let Some(rest) = key.strip_prefix("image_adapter.") {
        return Ok(Some((Part::Image, rest)));
    }
    if key.starts_with("text_optimizer.") || key.starts_with("image_optimizer.") {
        return Ok(None);
    }
    if key.starts_with("layer_adapters.") || key.starts_with("seg_proj.") || key.starts_with("det_proj.") {
        return Ok(Some((Part::Image, key)));
    }
    let mut parts = key.splitn(2, '.');
    match (parts.next().map(|n| n.parse::<usize>()), parts.next()) {
        (Some(Ok(_)), Some(rest)) if rest.starts_with("fc.") => Ok(Some((Part::Text, key))),
        _ => Err(()),
    }
}

/// Distinct indices `N` of keys `{prefix}N.…`, checked to be `0..n`.
fn indices(keys: &[&str], prefix: &str, what: &str) -> Result<usize, DetectError> {
    let mut found: Vec<usize> = keys
        .iter()
        .filter_map(|k| k.strip_prefix(prefix))
        .filter_map(|rest| rest.split('.').next())
        .filter_map(|n| n.parse().ok())
        .collect();
    found.sort_unstable();
    found.dedup();
    if found.iter().enumerate().any(|(i, &n)| i != n) {
        return Err(DetectError::Invalid(format!("{what} indices {found:?} are not 0..{}", found.len())));
    }
    Ok(found.len())
}

fn metadata_json<T: serde::de::DeserializeOwned>(file: &WeightFile, key: &str) -> Result<Option<T>, DetectError> {
    file.metadata
        .get(key)
        .map(|json| serde_json::from_str(json).map_err(|e| DetectError::Invalid(format!("{}: metadata `{key}` is not valid: {e}", file.origin))))
        .transpose()
}

/// Builds the adapters from weight files (official `.pth` read without a top-level key, or our
/// safetensors/burnpack files) for a backbone of architecture `clip`, on `device`.
pub fn load_weight_files(files: &[WeightFile], clip: &ClipConfig, device: &Device) -> Result<AaClipWeights, DetectError> {
    let mut parts: BTreeMap<(u8, String), (Entry, String)> = BTreeMap::new();
    let mut unknown = Vec::new();
    let mut config: Option<AaClipConfig> = None;
    let mut calibration = None;
    let mut epoch = None;
    let mut origins = Vec::new();
    for file in files {
        let mut used = false;
        for (key, entry) in &file.entries {
            match classify(key) {
                Ok(Some((part, inner))) => {
                    used = true;
                    let slot = (part as u8, inner.to_string());
                    if let Some((_, first)) = parts.get(&slot) {
                        return Err(DetectError::Invalid(format!("`{key}` is in both {first} and {}", file.origin)));
                    }
                    parts.insert(slot, (entry.clone(), file.origin.clone()));
                }
                Ok(None) => {}
                Err(()) => unknown.push(format!("{}: `{key}` {:?}", file.origin, entry.shape)),
            }
        }
        if !used {
            return Err(DetectError::Invalid(format!("{}: holds no AA-CLIP adapter weights (expected `text_adapter`/`image_adapter` keys)", file.origin)));
        }
        origins.push(file.origin.clone());
        if let Some(c) = metadata_json::<AaClipConfig>(file, META_CONFIG)? {
            if config.as_ref().is_some_and(|prev| *prev != c) {
                return Err(DetectError::Invalid(format!("{}: its AA-CLIP config differs from the other checkpoint file's", file.origin)));
            }
            config = Some(c);
        }
        if let Some(c) = metadata_json::<AaClipCalibration>(file, META_CALIBRATION)? {
            calibration = Some(c);
        }
        if let Some(e) = file.metadata.get(META_EPOCH) {
            epoch = Some(e.parse().map_err(|_| DetectError::Invalid(format!("{}: metadata epoch `{e}` is not a number", file.origin)))?);
        }
    }
    if !unknown.is_empty() {
        return Err(DetectError::Invalid(format!("tensors that are not AA-CLIP adapter weights:\n  {}", unknown.join("\n  "))));
    }
    let split = |part: Part| -> BTreeMap<String, Entry> { parts.iter().filter(|((p, _), _)| *p == part as u8).map(|((_, k), (e, _))| (k.clone(), e.clone())).collect() };
    let (text_entries, image_entries) = (split(Part::Text), split(Part::Image));
    if image_entries.is_empty() {
        return Err(DetectError::Invalid(format!("no image adapter in {}", origins.join(", "))));
    }

    // What the key names say.
    let image_keys: Vec<&str> = image_entries.keys().map(String::as_str).collect();
    let layer_adapters = indices(&image_keys, "layer_adapters.", "layer_adapters")?;
    let seg_levels = indices(&image_keys, "seg_proj.", "seg_proj")?;
    let relu = image_entries.contains_key("det_proj.fc.0.weight");
    let text_keys: Vec<&str> = text_entries.keys().map(String::as_str).collect();
    let text_modules = indices(&text_keys, "", "text_adapter")?;
    let from_metadata = config.is_some();
    let mut config = config.unwrap_or_else(|| AaClipConfig::for_backbone(clip));
    let inferred = [("vision adapters", config.image_adapt_until, layer_adapters), ("levels", config.levels.len(), seg_levels)];
    for (what, expected, found) in inferred {
        if from_metadata && expected != found {
            return Err(DetectError::Invalid(format!("the checkpoint's config has {expected} {what}, its tensors {found}")));
        }
    }
    if !from_metadata && seg_levels != config.levels.len() {
        return Err(DetectError::Invalid(format!(
            "{seg_levels} seg_proj levels, but the backbone `{}` has {} default levels {:?}; a checkpoint with other levels needs its config in the metadata",
            clip.name,
            config.levels.len(),
            config.levels
        )));
    }
    config.image_adapt_until = layer_adapters;
    config.relu = relu;
    if text_modules > 0 {
        if from_metadata && config.text_adapt_until + 1 != text_modules {
            return Err(DetectError::Invalid(format!("the checkpoint's config has {} text adapters, its tensors {}", config.text_adapt_until, text_modules - 1)));
        }
        config.text_adapt_until = text_modules - 1;
    }
    config.validate(clip)?;

    let image = {
        let mut reader = WeightReader::new(origins.join(" + "), image_entries, device);
        let mut image = ImageAdapter::new(&config, device);
        for (i, a) in image.layer_adapters.iter_mut().enumerate() {
            read_adapter(&mut reader, a, &format!("layer_adapters.{i}"));
        }
        for (k, p) in image.seg_proj.iter_mut().enumerate() {
            read_projector(&mut reader, p, &format!("seg_proj.{k}"));
        }
        read_projector(&mut reader, &mut image.det_proj, "det_proj");
        reader.finish(false).map_err(vlad_clip::ClipError::from)?;
        image
    };
    let text = if text_entries.is_empty() {
        None
    } else {
        let mut reader = WeightReader::new(origins.join(" + "), text_entries, device);
        let mut text = TextAdapter::new(&config, device);
        for (i, a) in text.adapters.iter_mut().enumerate() {
            read_adapter(&mut reader, a, &i.to_string());
        }
        read_adapter(&mut reader, &mut text.projector, &config.text_adapt_until.to_string());
        reader.finish(false).map_err(vlad_clip::ClipError::from)?;
        Some(text)
    };
    Ok(AaClipWeights { config, text, image, calibration, epoch, origins })
}

fn read_adapter(reader: &mut WeightReader, adapter: &mut Adapter, prefix: &str) {
    reader.linear(&mut adapter.fc, &format!("{prefix}.fc.0"));
}

fn read_projector(reader: &mut WeightReader, projector: &mut Projector, prefix: &str) {
    let name = if projector.relu { format!("{prefix}.fc.0") } else { format!("{prefix}.fc") };
    reader.linear(&mut projector.fc, &name);
}

/// Opens and loads checkpoint files (see [`load_weight_files`]).
#[cfg(not(target_arch = "wasm32"))]
pub fn load_files(paths: &[std::path::PathBuf], clip: &ClipConfig, device: &Device) -> Result<AaClipWeights, DetectError> {
    let files = paths.iter().map(|p| WeightFile::open(p, None).map_err(vlad_clip::ClipError::from)).collect::<Result<Vec<_>, _>>()?;
    load_weight_files(&files, clip, device)
}

/// The checkpoint files to load from `--checkpoint` arguments: files are taken as they are; a
/// directory contributes `text_adapter.{safetensors,pth}` (optional) and the image adapter of
/// `epoch` (`image_adapter_N.{safetensors,pth}`), by default epoch 15 when present (the paper's
/// choice) and otherwise the latest `image_adapter.{safetensors,pth}`. Returns notes on the
/// choices made.
#[cfg(not(target_arch = "wasm32"))]
pub fn resolve_paths(paths: &[std::path::PathBuf], epoch: Option<usize>) -> Result<(Vec<std::path::PathBuf>, Vec<String>), DetectError> {
    use std::path::Path;
    let find = |dir: &Path, stem: &str| ["safetensors", "pth"].iter().map(|ext| dir.join(format!("{stem}.{ext}"))).find(|p| p.is_file());
    let mut files = Vec::new();
    let mut notes = Vec::new();
    if paths.is_empty() {
        return Err(DetectError::Invalid("AA-CLIP needs a checkpoint (a training directory or adapter files)".into()));
    }
    for path in paths {
        if path.is_file() {
            files.push(path.clone());
            continue;
        }
        if !path.is_dir() {
            return Err(DetectError::Invalid(format!("{}: no such checkpoint file or directory", path.display())));
        }
        let listing = || {
            let mut names: Vec<String> = std::fs::read_dir(path).map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
            names.sort();
            names.join(", ")
        };
        match find(path, "text_adapter") {
            Some(text) => files.push(text),
            None => notes.push(format!("{}: no text_adapter file", path.display())),
        }
        let image = match epoch {
            Some(e) => find(path, &format!("image_adapter_{e}")).ok_or_else(|| {
                DetectError::Invalid(format!("{}: no image_adapter_{e}.safetensors or .pth (found: {})", path.display(), listing()))
            })?,
            None => match find(path, "image_adapter_15") {
                Some(p) => {
                    notes.push(format!("{}: using the epoch-15 image adapter (the paper's choice)", path.display()));
                    p
                }
                None => {
                    let p = find(path, "image_adapter").ok_or_else(|| {
                        DetectError::Invalid(format!("{}: no image_adapter_15 or image_adapter file (found: {})", path.display(), listing()))
                    })?;
                    notes.push(format!("{}: no epoch-15 image adapter, using the latest ({})", path.display(), p.display()));
                    p
                }
            },
        };
        files.push(image);
    }
    Ok((files, notes))
}

/// The text adapter's tensors under their official names, prefixed `text_adapter.`.
pub fn text_tensors(text: &TextAdapter) -> Result<Vec<NamedTensor>, DetectError> {
    let mut out = Vec::new();
    for (i, a) in text.adapters.iter().enumerate() {
        out.push(linear_tensor(format!("text_adapter.{i}.fc.0.weight"), &a.fc)?);
    }
    out.push(linear_tensor(format!("text_adapter.{}.fc.0.weight", text.adapters.len()), &text.projector.fc)?);
    Ok(out)
}

/// The image adapter's tensors under their official names, prefixed `image_adapter.`.
pub fn image_tensors(image: &ImageAdapter) -> Result<Vec<NamedTensor>, DetectError> {
    let proj = |p: &Projector| if p.relu { "fc.0" } else { "fc" };
    let mut out = Vec::new();
    for (i, a) in image.layer_adapters.iter().enumerate() {
        out.push(linear_tensor(format!("image_adapter.layer_adapters.{i}.fc.0.weight"), &a.fc)?);
    }
    for (k, p) in image.seg_proj.iter().enumerate() {
        out.push(linear_tensor(format!("image_adapter.seg_proj.{k}.{}.weight", proj(p)), &p.fc)?);
    }
    out.push(linear_tensor(format!("image_adapter.det_proj.{}.weight", proj(&image.det_proj)), &image.det_proj.fc)?);
    Ok(out)
}

/// What to record with saved weights.
#[derive(Debug, Clone)]
pub struct SaveInfo<'a> {
    /// The model config.
    pub config: &'a AaClipConfig,
    /// Epoch (stage-1 epochs for a text file, stage-2 epochs for an image file).
    pub epoch: Option<usize>,
    /// Single-image calibration.
    pub calibration: Option<&'a AaClipCalibration>,
}

/// Writes adapters (either or both parts) as one safetensors file with our metadata.
#[cfg(not(target_arch = "wasm32"))]
pub fn save(path: &std::path::Path, text: Option<&TextAdapter>, image: Option<&ImageAdapter>, info: &SaveInfo<'_>) -> Result<(), DetectError> {
    let mut tensors = Vec::new();
    let mut parts = Vec::new();
    if let Some(text) = text {
        tensors.extend(text_tensors(text)?);
        parts.push("text");
    }
    if let Some(image) = image {
        tensors.extend(image_tensors(image)?);
        parts.push("image");
    }
    let mut metadata = BTreeMap::new();
    metadata.insert("format".to_string(), "pt".to_string());
    metadata.insert(META_PARTS.to_string(), parts.join("+"));
    metadata.insert(META_CONFIG.to_string(), serde_json::to_string(info.config).expect("config serialises"));
    if let Some(epoch) = info.epoch {
        metadata.insert(META_EPOCH.to_string(), epoch.to_string());
    }
    if let Some(c) = info.calibration {
        metadata.insert(META_CALIBRATION.to_string(), serde_json::to_string(c).expect("calibration serialises"));
    }
    write_safetensors(path, &tensors, &metadata)
}
