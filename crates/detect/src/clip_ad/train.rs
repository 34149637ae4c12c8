//! Training SDP+'s linear layers natively (`spec/clip-ad.md` §6, the official `train.py`): VAND's
//! trainer ([`crate::vand::train`]) on CLIP-AD's original-path taps (aliased, as the released
//! files were trained) with CLIP-AD's prototypes. The official run: the auxiliary dataset's test
//! split in dataset order (no shuffling), batch 8, Adam lr 1e-4 with PyTorch's default betas
//! (0.9, 0.999), 5 epochs, seed 42, no mosaic, Focal + Dice per tap. [`official_options`] holds them.
use std::path::Path;

use burn::tensor::{Device, Tensor};
use vlad_clip::{ClipModel, ClipTokenizer};

use super::{ClipAd, ClipAdConfig, ClipAdOptions, staged_dual_path, text_prototypes};
use crate::vand::train::{LinearLayerMethod, TrainOptions};
use crate::vand::{LinearLayers, VandConfig, checkpoint};
use crate::{DetectError, Detector};

/// `train.py`'s settings for `config` on `clip`.
pub fn official_options(config: &ClipAdConfig, clip: &vlad_clip::ClipConfig) -> TrainOptions {
    TrainOptions { epochs: 5, lr: 1e-4, betas: (0.9, 0.999), batch_size: 8, aug_rate: 0.0, seed: 42, shuffle: false, ..TrainOptions::official(config.linear_config(clip)) }
}

/// CLIP-AD's side of [`LinearLayerMethod`].
pub struct ClipAdMethod<'a> {
    /// The frozen backbone.
    pub clip: &'a ClipModel,
    /// The CLIP-AD settings (taps, RVS of the training dataset, σ of the validation).
    pub config: ClipAdConfig,
    linear: VandConfig,
    tokenizer: ClipTokenizer,
}

impl<'a> ClipAdMethod<'a> {
    /// CLIP-AD on `clip` with `config`.
    pub fn new(clip: &'a ClipModel, config: ClipAdConfig) -> Result<Self, DetectError> {
        let linear = config.linear_config(&clip.config);
        linear.validate(&clip.config)?;
        Ok(Self { clip, config, linear, tokenizer: ClipTokenizer::openai()? })
    }
}

impl LinearLayerMethod for ClipAdMethod<'_> {
    fn name(&self) -> &'static str {
        "clip-ad"
    }

    fn config(&self) -> &VandConfig {
        &self.linear
    }

    fn features(&self, pixels: Tensor<4>) -> Result<Vec<Tensor<3>>, DetectError> {
        Ok(staged_dual_path(&self.clip.visual, pixels, &self.config.taps, self.config.clean_taps)?.original)
    }

    fn prototypes(&self, class_name: &str) -> Result<Tensor<2>, DetectError> {
        Ok(text_prototypes(self.clip, &self.tokenizer, class_name, self.config.rvs)?.0)
    }

    fn detector(&self, layers: LinearLayers) -> Result<Box<dyn Detector>, DetectError> {
        Ok(Box::new(ClipAd::new(self.clip.clone(), Some(layers), self.config.clone(), ClipAdOptions::default())?))
    }

    fn save(&self, path: &Path, layers: &LinearLayers, epoch: usize) -> Result<(), DetectError> {
        checkpoint::save(path, layers, &self.linear, Some(epoch))
    }

    fn device(&self) -> Device {
        self.clip.visual.proj.device()
    }
}
