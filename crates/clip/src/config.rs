//! Architectures as data: one JSON file per architecture under `configs/`, embedded at build time
//! (the open_clip convention), plus the activation switch that the methods override.
use serde::{Deserialize, Serialize};

use crate::ClipError;

/// The MLP activation of both towers. The OpenAI checkpoints were trained with QuickGELU, but
/// AA-CLIP, Bayes-PFL, VAND, AdaCLIP and MVFA rebuild the model with exact (erf) GELU
/// (`spec/clip.md` §4): it is a per-model setting, recorded alongside converted weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// `x · σ(1.702 x)`, OpenAI's training activation.
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    /// `x · Φ(x)` with the error function (never the tanh approximation).
    #[serde(rename = "gelu")]
    Gelu,
}

impl Activation {
    /// Parses the CLI spelling: `quick`/`quick_gelu` or `exact`/`gelu`.
    pub fn parse(s: &str) -> Result<Self, ClipError> {
        match s.to_ascii_lowercase().as_str() {
            "quick" | "quick_gelu" | "quickgelu" => Ok(Self::QuickGelu),
            "exact" | "gelu" | "erf" => Ok(Self::Gelu),
            other => Err(ClipError::Config(format!(
                "unknown activation `{other}`: expected `quick` (QuickGELU) or `exact` (erf GELU)"
            ))),
        }
    }

    /// The CLI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::QuickGelu => "quick",
            Self::Gelu => "exact",
        }
    }
}

/// Vision tower hyper-parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisionConfig {
    /// Residual width D.
    pub width: usize,
    /// Number of residual blocks.
    pub layers: usize,
    /// Attention heads (head width = width / heads; 64 for every released model).
    pub heads: usize,
    /// Patch side (conv1 kernel and stride).
    pub patch_size: usize,
    /// Native input side; the checkpoint's positional table has (image_size / patch_size)² + 1 rows.
    pub image_size: usize,
}

impl VisionConfig {
    /// Side of the native patch grid.
    pub fn native_grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Grid side for an input of `image_size` pixels. Like PyTorch's strided convolution, trailing
    /// pixels that do not fill a whole patch are ignored (240 px with patch 14 gives 17).
    pub fn grid_for(&self, image_size: usize) -> Result<usize, ClipError> {
        if image_size < self.patch_size {
            return Err(ClipError::Config(format!(
                "image size {image_size} is smaller than the patch size {}",
                self.patch_size
            )));
        }
        Ok(image_size / self.patch_size)
    }
}

/// Text tower hyper-parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextConfig {
    /// Residual width W.
    pub width: usize,
    /// Number of residual blocks.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Token positions (77).
    pub context_length: usize,
    /// Vocabulary rows of `token_embedding` (49408).
    pub vocab_size: usize,
}

/// A CLIP architecture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClipConfig {
    /// Canonical name, e.g. `ViT-L-14-336`.
    pub name: String,
    /// Where weights for it come from (informational).
    #[serde(default)]
    pub source: String,
    /// Joint embedding size E.
    pub embed_dim: usize,
    /// MLP activation of both towers.
    pub activation: Activation,
    /// Image tower.
    pub vision: VisionConfig,
    /// Text tower.
    pub text: TextConfig,
}

const PRESETS: &[(&str, &str)] = &[
    ("ViT-B-32", include_str!("../configs/ViT-B-32.json")),
    ("ViT-B-16", include_str!("../configs/ViT-B-16.json")),
    ("ViT-B-16-plus-240", include_str!("../configs/ViT-B-16-plus-240.json")),
    ("ViT-L-14", include_str!("../configs/ViT-L-14.json")),
    ("ViT-L-14-336", include_str!("../configs/ViT-L-14-336.json")),
    ("tiny", include_str!("../configs/tiny.json")),
];

/// Folds the spellings people use (`ViT-L/14@336px`, `vit_l_14_336`, `ViT-L-14-336`) to one key.
fn fold_name(name: &str) -> String {
    name.trim()
        .to_ascii_lowercase()
        .trim_end_matches("px")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '+' { c } else { '-' })
        .collect::<String>()
        .replace("plus", "+")
}

impl ClipConfig {
    /// Names of the built-in architectures.
    pub fn preset_names() -> Vec<&'static str> {
        PRESETS.iter().map(|(n, _)| *n).collect()
    }

    /// A built-in architecture by name (case and separators do not matter).
    pub fn preset(name: &str) -> Result<Self, ClipError> {
        let key = fold_name(name);
        let json = PRESETS
            .iter()
            .find(|(n, _)| fold_name(n) == key)
            .map(|(_, json)| *json)
            .ok_or_else(|| {
                ClipError::Config(format!(
                    "unknown architecture `{name}`; known: {}",
                    Self::preset_names().join(", ")
                ))
            })?;
        Self::from_json(json)
    }

    /// Parses a config from JSON (the format of `configs/*.json`).
    pub fn from_json(json: &str) -> Result<Self, ClipError> {
        let config: Self = serde_json::from_str(json)
            .map_err(|e| ClipError::Config(format!("invalid CLIP config JSON: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// JSON form, as stored in converted weight files.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("config serialises")
    }

    /// The same architecture with another activation.
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Checks the divisibility rules the towers rely on.
    pub fn validate(&self) -> Result<(), ClipError> {
        let v = &self.vision;
        let t = &self.text;
        let mut problems = Vec::new();
        if v.heads == 0 || !v.width.is_multiple_of(v.heads) {
            problems.push(format!("vision width {} is not divisible by {} heads", v.width, v.heads));
        }
        if t.heads == 0 || !t.width.is_multiple_of(t.heads) {
            problems.push(format!("text width {} is not divisible by {} heads", t.width, t.heads));
        }
        if v.patch_size == 0 || !v.image_size.is_multiple_of(v.patch_size) {
            problems.push(format!(
                "native image size {} is not a multiple of the patch size {}",
                v.image_size, v.patch_size
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ClipError::Config(format!("config `{}`: {}", self.name, problems.join("; "))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse_and_match_the_spec_table() {
        let l = ClipConfig::preset("ViT-L/14@336px").unwrap();
        assert_eq!((l.vision.width, l.vision.layers, l.vision.heads), (1024, 24, 16));
        assert_eq!(l.vision.native_grid(), 24);
        assert_eq!(l.vision.grid_for(518).unwrap(), 37);
        assert_eq!(l.vision.grid_for(240).unwrap(), 17);
        assert_eq!((l.text.width, l.text.heads, l.embed_dim), (768, 12, 768));
        let b = ClipConfig::preset("vit_b_16_plus_240").unwrap();
        assert_eq!((b.vision.width, b.vision.heads, b.vision.image_size), (896, 14, 240));
        assert_eq!(b.activation, Activation::Gelu);
        assert_eq!(ClipConfig::preset("ViT-B-32").unwrap().vision.native_grid(), 7);
        for name in ClipConfig::preset_names() {
            ClipConfig::preset(name).unwrap();
        }
    }

    #[test]
    fn unknown_names_and_activations_are_reported() {
        let err = ClipConfig::preset("ViT-H-14").unwrap_err().to_string();
        assert!(err.contains("ViT-H-14") && err.contains("ViT-L-14-336"), "{err}");
        assert!(Activation::parse("tanh").unwrap_err().to_string().contains("tanh"));
    }
}
