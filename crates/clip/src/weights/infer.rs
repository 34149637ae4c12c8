//! Recognising the architecture of a weight file from its shapes (for `vlad inspect` and to catch
//! a wrong `--arch` early with a clear message).
use std::collections::BTreeMap;

use super::Entry;
use crate::config::{ClipConfig, TextConfig, VisionConfig};

fn count_blocks(entries: &BTreeMap<String, Entry>, prefix: &str) -> usize {
    let mut n = 0;
    while entries.contains_key(&format!("{prefix}{n}.attn.in_proj_weight")) {
        n += 1;
    }
    n
}

/// The architecture the canonical tensors describe. Known presets are returned by name (with their
/// native activation); anything else as a `custom` config assuming 64-wide heads.
pub fn infer_config(entries: &BTreeMap<String, Entry>) -> Option<ClipConfig> {
    let conv = &entries.get("visual.conv1.weight")?.shape;
    let pos = &entries.get("visual.positional_embedding")?.shape;
    let proj = &entries.get("visual.proj")?.shape;
    let tok = &entries.get("token_embedding.weight")?.shape;
    let tpos = &entries.get("positional_embedding")?.shape;
    let (&[width, _, patch, _], &[rows, _], &[_, embed], &[vocab, twidth], &[context, _]) =
        (&conv[..], &pos[..], &proj[..], &tok[..], &tpos[..])
    else {
        return None;
    };
    let grid = ((rows.saturating_sub(1)) as f64).sqrt().round() as usize;
    if grid * grid + 1 != rows {
        return None;
    }
    let vision = VisionConfig {
        width,
        layers: count_blocks(entries, "visual.transformer.resblocks."),
        heads: (width / 64).max(1),
        patch_size: patch,
        image_size: grid * patch,
    };
    let text = TextConfig {
        width: twidth,
        layers: count_blocks(entries, "transformer.resblocks."),
        heads: (twidth / 64).max(1),
        context_length: context,
        vocab_size: vocab,
    };
    for name in ClipConfig::preset_names() {
        let preset = ClipConfig::preset(name).ok()?;
        let same_shapes = preset.vision.width == vision.width
            && preset.vision.layers == vision.layers
            && preset.vision.patch_size == vision.patch_size
            && preset.vision.image_size == vision.image_size
            && preset.text.width == text.width
            && preset.text.layers == text.layers
            && preset.embed_dim == embed;
        if same_shapes {
            return Some(preset);
        }
    }
    Some(ClipConfig {
        name: "custom".into(),
        source: "inferred from tensor shapes (heads assume a head width of 64)".into(),
        embed_dim: embed,
        activation: crate::config::Activation::QuickGelu,
        vision,
        text,
    })
}
