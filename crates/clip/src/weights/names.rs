//! Key names: OpenAI/OpenCLIP state dicts are the canonical form; Hugging Face `CLIPModel` names
//! are mapped onto them (`spec/clip.md` §11.2): renames, q/k/v packed back into `in_proj`, and the
//! two projection matrices transposed.
use std::collections::BTreeMap;

use super::{Entry, WeightError, WeightFile};

/// Which naming a file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// `visual.conv1.weight`, `transformer.resblocks.0.attn.in_proj_weight`, …
    OpenAi,
    /// `vision_model.embeddings.patch_embedding.weight`, `…self_attn.q_proj.weight`, …
    HuggingFace,
}

const OPENAI_ANCHOR: &str = "visual.conv1.weight";
const HF_ANCHOR: &str = "vision_model.embeddings.patch_embedding.weight";

/// Finds the naming and the key prefix (e.g. `module.`, `state_dict.`) under which the CLIP
/// tensors sit. `None` when no CLIP vision tower is present.
pub fn detect_naming(file: &WeightFile) -> Option<(Naming, String)> {
    for (naming, anchor) in [(Naming::OpenAi, OPENAI_ANCHOR), (Naming::HuggingFace, HF_ANCHOR)] {
        // The shortest key ending with the anchor wins (a detector checkpoint may hold a second copy).
        if let Some(key) = file.entries.keys().filter(|k| k.ends_with(anchor)).min_by_key(|k| k.len()) {
            let prefix = &key[..key.len() - anchor.len()];
            if prefix.is_empty() || prefix.ends_with('.') {
                return Some((naming, prefix.to_string()));
            }
        }
    }
    None
}

enum HfRule {
    Same(String),
    Transpose(String),
    /// Part 0/1/2 (q/k/v) of a packed `in_proj_{weight,bias}`.
    Packed(String, usize),
}

fn hf_block(rest: &str, prefix: &str) -> Option<HfRule> {
    let (index, tail) = rest.split_once('.')?;
    index.parse::<usize>().ok()?;
    let base = format!("{prefix}transformer.resblocks.{index}.");
    for (part, qkv) in ["q_proj.", "k_proj.", "v_proj."].iter().enumerate() {
        if let Some(kind) = tail.strip_prefix("self_attn.").and_then(|t| t.strip_prefix(qkv)) {
            return Some(HfRule::Packed(format!("{base}attn.in_proj_{kind}"), part));
        }
    }
    let mapped = match tail {
        t if t.starts_with("self_attn.out_proj.") => t.replacen("self_attn.", "attn.", 1),
        t if t.starts_with("layer_norm1.") => t.replacen("layer_norm1.", "ln_1.", 1),
        t if t.starts_with("layer_norm2.") => t.replacen("layer_norm2.", "ln_2.", 1),
        t if t.starts_with("mlp.fc1.") => t.replacen("mlp.fc1.", "mlp.c_fc.", 1),
        t if t.starts_with("mlp.fc2.") => t.replacen("mlp.fc2.", "mlp.c_proj.", 1),
        _ => return None,
    };
    Some(HfRule::Same(format!("{base}{mapped}")))
}

fn hf_rule(name: &str) -> Option<HfRule> {
    let same = |s: &str| Some(HfRule::Same(s.to_string()));
    match name {
        "vision_model.embeddings.patch_embedding.weight" => same("visual.conv1.weight"),
        "vision_model.embeddings.class_embedding" => same("visual.class_embedding"),
        "vision_model.embeddings.position_embedding.weight" => same("visual.positional_embedding"),
        "vision_model.pre_layrnorm.weight" | "vision_model.pre_layernorm.weight" => same("visual.ln_pre.weight"),
        "vision_model.pre_layrnorm.bias" | "vision_model.pre_layernorm.bias" => same("visual.ln_pre.bias"),
        "vision_model.post_layernorm.weight" => same("visual.ln_post.weight"),
        "vision_model.post_layernorm.bias" => same("visual.ln_post.bias"),
        "visual_projection.weight" => Some(HfRule::Transpose("visual.proj".into())),
        "text_model.embeddings.token_embedding.weight" => same("token_embedding.weight"),
        "text_model.embeddings.position_embedding.weight" => same("positional_embedding"),
        "text_model.final_layer_norm.weight" => same("ln_final.weight"),
        "text_model.final_layer_norm.bias" => same("ln_final.bias"),
        "text_projection.weight" => Some(HfRule::Transpose("text_projection".into())),
        "logit_scale" => same("logit_scale"),
        _ => {
            if let Some(rest) = name.strip_prefix("vision_model.encoder.layers.") {
                hf_block(rest, "visual.")
            } else if let Some(rest) = name.strip_prefix("text_model.encoder.layers.") {
                hf_block(rest, "")
            } else {
                None
            }
        }
    }
}

/// Keys that real checkpoints carry but no model needs: reported as ignored, never as unused.
pub fn is_known_extra(canonical: &str) -> bool {
    canonical.ends_with("position_ids")
        || canonical == "attn_mask"
        || canonical.ends_with(".attn_mask")
        || matches!(canonical, "input_resolution" | "context_length" | "vocab_size")
}

/// Returns the file's tensors under canonical OpenAI names: the CLIP prefix is stripped and Hugging
/// Face names are mapped. Keys that are not CLIP keys are kept under their original names (so that
/// a detector can take its own and the rest is reported as unused).
pub fn canonicalize(file: &WeightFile) -> Result<(Naming, BTreeMap<String, Entry>), WeightError> {
    let (naming, prefix) = detect_naming(file).ok_or_else(|| WeightError::File {
        path: file.origin.clone(),
        message: format!("no CLIP image tower found: neither `{OPENAI_ANCHOR}` (OpenAI/OpenCLIP names) nor `{HF_ANCHOR}` (Hugging Face names) is present"),
    })?;
    let mut out = BTreeMap::new();
    // q/k/v parts waiting to be packed: canonical name → [q, k, v].
    let mut packed: BTreeMap<String, [Option<(String, Entry)>; 3]> = BTreeMap::new();
    for (key, entry) in &file.entries {
        let Some(name) = key.strip_prefix(prefix.as_str()) else {
            out.insert(key.clone(), entry.clone());
            continue;
        };
        if naming == Naming::OpenAi {
            out.insert(name.to_string(), entry.clone());
            continue;
        }
        match hf_rule(name) {
            Some(HfRule::Same(canonical)) => {
                out.insert(canonical, entry.clone());
            }
            Some(HfRule::Transpose(canonical)) => {
                let mut e = entry.clone();
                if e.shape.len() != 2 {
                    return Err(WeightError::Tensor { name: key.clone(), message: format!("expected a matrix, found shape {:?}", e.shape) });
                }
                e.shape.swap(0, 1);
                e.transpose = true;
                out.insert(canonical, e);
            }
            Some(HfRule::Packed(canonical, part)) => {
                packed.entry(canonical).or_default()[part] = Some((key.clone(), entry.clone()));
            }
            None => {
                out.insert(key.clone(), entry.clone());
            }
        }
    }
    for (canonical, parts) in packed {
        match parts {
            [Some(q), Some(k), Some(v)] => {
                let shape = &q.1.shape;
                for (name, e) in [&k, &v] {
                    if &e.shape != shape {
                        return Err(WeightError::Tensor { name: name.clone(), message: format!("shape {:?} differs from the q projection's {:?}", e.shape, shape) });
                    }
                }
                let mut values = q.1.to_f32(&q.0)?;
                values.extend(k.1.to_f32(&k.0)?);
                values.extend(v.1.to_f32(&v.0)?);
                let mut packed_shape = shape.clone();
                packed_shape[0] *= 3;
                out.insert(canonical, Entry::from_values(packed_shape, values));
            }
            parts => {
                // Keep what exists under its HF name so it is reported, and let the packed tensor be missing.
                for (name, e) in parts.into_iter().flatten() {
                    out.insert(name, e);
                }
            }
        }
    }
    Ok((naming, out))
}
