//! Writing checkpoints: safetensors bytes with string metadata, and PyTorch-layout tensors of
//! burn modules. Shared by the detectors that save their trained parts (AA-CLIP, VAND).
use std::collections::BTreeMap;

use burn::nn::Linear;

use crate::DetectError;

/// One tensor to write: name, shape, values (row-major).
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// A `Linear` weight in PyTorch's `[out, in]` layout, under `name`.
pub fn linear_tensor(name: String, linear: &Linear) -> Result<NamedTensor, DetectError> {
    // burn keeps [in, out]; PyTorch's Linear stores [out, in].
    let w = linear.weight.val().transpose();
    let shape = w.dims().to_vec();
    let values = w.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| DetectError::Invalid(format!("cannot read `{name}` back: {e:?}")))?;
    Ok((name, shape, values))
}

/// A `Linear` bias under `name` (`None` for a bias-free layer).
pub fn bias_tensor(name: String, linear: &Linear) -> Result<Option<NamedTensor>, DetectError> {
    let Some(bias) = linear.bias.as_ref() else { return Ok(None) };
    let b = bias.val();
    let shape = b.dims().to_vec();
    let values = b.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| DetectError::Invalid(format!("cannot read `{name}` back: {e:?}")))?;
    Ok(Some((name, shape, values)))
}

/// safetensors bytes of `tensors` (f32, little-endian) with string metadata. The format is small
/// enough to write directly: an 8-byte header length, a JSON header padded with spaces to a
/// multiple of 8, then the data in header order.
pub fn safetensors_bytes(tensors: &[NamedTensor], metadata: &BTreeMap<String, String>) -> Result<Vec<u8>, DetectError> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), serde_json::to_value(metadata).expect("strings serialise"));
    }
    let mut offset = 0usize;
    for (name, shape, values) in tensors {
        if shape.iter().product::<usize>() != values.len() {
            return Err(DetectError::Invalid(format!("`{name}`: {} values for shape {shape:?}", values.len())));
        }
        let end = offset + 4 * values.len();
        header.insert(name.clone(), serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}));
        offset = end;
    }
    let mut json = serde_json::to_vec(&serde_json::Value::Object(header)).expect("header serialises");
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + json.len() + offset);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    for (_, _, values) in tensors {
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    Ok(out)
}


/// Writes `tensors` with `metadata` as a safetensors file at `path`, through a `.partial` file
/// next to it that is renamed at the end, so an interrupted run never leaves half a checkpoint.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_safetensors(path: &std::path::Path, tensors: &[NamedTensor], metadata: &BTreeMap<String, String>) -> Result<(), DetectError> {
    let bytes = safetensors_bytes(tensors, metadata)?;
    let partial = path.with_extension("safetensors.partial");
    std::fs::write(&partial, bytes).map_err(|e| DetectError::Invalid(format!("cannot write {}: {e}", partial.display())))?;
    std::fs::rename(&partial, path).map_err(|e| DetectError::Invalid(format!("cannot move {} to {}: {e}", partial.display(), path.display())))
}
