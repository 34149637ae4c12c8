//! Writing canonical tensors as burnpack (`vlad convert`): fast to load natively and in the browser.
use std::collections::BTreeMap;

use super::{Entry, WeightError};

/// How to write.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Store floats as f16 (halves the size; OpenAI weights are f16 values anyway).
    pub f16: bool,
    /// Replace an existing file.
    pub overwrite: bool,
    /// String metadata stored in the header (architecture, activation, provenance).
    pub metadata: BTreeMap<String, String>,
}

fn encode(values: &[f32], f16: bool) -> Vec<u8> {
    if f16 {
        values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect()
    } else {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }
}

/// Writes `entries` (already under their final names) to burnpack bytes.
pub fn burnpack_bytes(entries: &BTreeMap<String, Entry>, options: &WriteOptions) -> Result<Vec<u8>, WeightError> {
    let writer = writer(entries, options)?;
    let bytes = writer.into_bytes().map_err(|e| WeightError::File { path: "<memory>".into(), message: format!("cannot encode burnpack: {e}") })?;
    Ok(bytes.to_vec())
}

fn writer(entries: &BTreeMap<String, Entry>, options: &WriteOptions) -> Result<burn_pack::Writer, WeightError> {
    let dtype = if options.f16 { burn_pack::DType::F16 } else { burn_pack::DType::F32 };
    let tensors = entries
        .iter()
        .map(|(name, entry)| {
            let values = entry.to_f32(name)?;
            let bytes = burn_pack::Bytes::from_bytes_vec(encode(&values, options.f16));
            Ok(burn_pack::Tensor::new(name.clone(), dtype, entry.shape.clone(), None, bytes))
        })
        .collect::<Result<Vec<_>, WeightError>>()?;
    let mut writer = burn_pack::Writer::new(tensors);
    for (k, v) in &options.metadata {
        writer = writer.with_metadata(k, v);
    }
    Ok(writer)
}

/// Writes `entries` to a burnpack file at `path`; refuses to replace an existing file unless
/// `options.overwrite`.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_burnpack(entries: &BTreeMap<String, Entry>, path: &std::path::Path, options: &WriteOptions) -> Result<(), WeightError> {
    let origin = path.display().to_string();
    if path.exists() && !options.overwrite {
        return Err(WeightError::File { path: origin, message: "already exists (pass --force to replace it)".into() });
    }
    writer(entries, options)?
        .auto_extension(false)
        .overwrite(options.overwrite)
        .write_to_file(path)
        .map_err(|e| WeightError::File { path: origin, message: format!("cannot write burnpack: {e}") })
}
