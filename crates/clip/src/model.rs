//! The two towers together, built from a config and filled from a weight file.
use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};

use crate::ClipError;
use crate::config::{Activation, ClipConfig};
use crate::posembed::PosEmbedResize;
use crate::text::TextTransformer;
use crate::transformer::ResidualBlock;
use crate::vision::VisionTransformer;
use crate::weights::{LoadReport, WeightFile, WeightReader, canonicalize};

/// A CLIP model.
#[derive(Module, Debug)]
pub struct ClipModel {
    /// Image tower.
    pub visual: VisionTransformer,
    /// Text tower.
    pub text: TextTransformer,
    /// The checkpoint's learned `logit_scale` (ln 100 for OpenAI); the methods use fixed
    /// temperatures instead, so it is kept for reference only.
    #[module(skip)]
    pub logit_scale: f32,
    /// The architecture.
    #[module(skip)]
    pub config: ClipConfig,
}

/// How to load.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Load despite missing, mis-shaped or unused tensors (they are still reported).
    pub allow_partial: bool,
    /// Positional-embedding resize rule for inputs off the native grid.
    pub pos_resize: PosEmbedResize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { allow_partial: false, pos_resize: PosEmbedResize::AntialiasBicubic }
    }
}

fn load_block(r: &mut WeightReader, block: &mut ResidualBlock, prefix: &str) {
    r.layer_norm(&mut block.ln_1, &format!("{prefix}.ln_1"));
    r.linear_named(&mut block.attn.in_proj, &format!("{prefix}.attn.in_proj_weight"), &format!("{prefix}.attn.in_proj_bias"));
    r.linear(&mut block.attn.out_proj, &format!("{prefix}.attn.out_proj"));
    r.layer_norm(&mut block.ln_2, &format!("{prefix}.ln_2"));
    r.linear(&mut block.mlp.c_fc, &format!("{prefix}.mlp.c_fc"));
    r.linear(&mut block.mlp.c_proj, &format!("{prefix}.mlp.c_proj"));
}

impl ClipModel {
    /// Randomly initialised model (parameters are lazy until used).
    pub fn new(config: &ClipConfig, device: &Device) -> Self {
        Self {
            visual: VisionTransformer::new(&config.vision, config.embed_dim, config.activation, device),
            text: TextTransformer::new(&config.text, config.embed_dim, config.activation, device),
            logit_scale: 100f32.ln(),
            config: config.clone(),
        }
    }

    /// Builds the model and takes every CLIP tensor (canonical OpenAI names) from `reader`; what is
    /// missing keeps its random initialisation and is recorded in the reader.
    pub fn from_reader(config: &ClipConfig, reader: &mut WeightReader) -> Self {
        let mut model = Self::new(config, reader.device());
        let v = &mut model.visual;
        reader.conv2d(&mut v.conv1, "visual.conv1");
        reader.param(&mut v.class_embedding, "visual.class_embedding");
        reader.param(&mut v.positional_embedding, "visual.positional_embedding");
        reader.layer_norm(&mut v.ln_pre, "visual.ln_pre");
        for (i, block) in v.resblocks.iter_mut().enumerate() {
            load_block(reader, block, &format!("visual.transformer.resblocks.{i}"));
        }
        reader.layer_norm(&mut v.ln_post, "visual.ln_post");
        reader.param(&mut v.proj, "visual.proj");
        let t = &mut model.text;
        let [vocab, width] = t.token_embedding.lazy_shape().dims();
        let table_device = crate::text::token_table_device(reader.device(), vocab, width);
        if let Some(v) = reader.values("token_embedding.weight", &[vocab, width]) {
            t.token_embedding = Param::from_tensor(Tensor::from_data(TensorData::new(v, [vocab, width]), &table_device));
        }
        reader.param(&mut t.positional_embedding, "positional_embedding");
        for (i, block) in t.resblocks.iter_mut().enumerate() {
            load_block(reader, block, &format!("transformer.resblocks.{i}"));
        }
        reader.layer_norm(&mut t.ln_final, "ln_final");
        reader.param(&mut t.text_projection, "text_projection");
        if reader.contains("logit_scale") {
            // Stored as a 0-d tensor; read whatever single value it holds.
            let shape = reader.shape_of("logit_scale").map(<[usize]>::to_vec).unwrap_or_default();
            if let Some(v) = reader.values("logit_scale", &shape)
                && let [value] = v[..]
            {
                model.logit_scale = value;
            }
        }
        model
    }

    /// Loads a weight file (any supported container and naming) into the architecture `config`.
    pub fn load(config: &ClipConfig, file: &WeightFile, device: &Device, options: LoadOptions) -> Result<(Self, LoadReport), ClipError> {
        let (_, entries) = canonicalize(file)?;
        let mut reader = WeightReader::new(file.origin.clone(), entries, device);
        let mut model = Self::from_reader(config, &mut reader);
        model.visual.pos_resize = options.pos_resize;
        let report = reader.finish(options.allow_partial)?;
        Ok((model, report))
    }

    /// The same model with another MLP activation in both towers.
    pub fn with_activation(mut self, activation: Activation) -> Self {
        self.visual.activation = activation;
        self.text.activation = activation;
        self.config.activation = activation;
        self
    }

    /// Pixels `[B, 3, S, S]` → image embeddings `[B, E]` (not normalised).
    pub fn encode_image(&self, pixels: Tensor<4>) -> Result<Tensor<2>, ClipError> {
        self.visual.encode_image(pixels)
    }

    /// Token rows → text embeddings `[N, E]` (not normalised).
    pub fn encode_text(&self, ids: &[Vec<u32>]) -> Result<Tensor<2>, ClipError> {
        Ok(self.text.encode_ids(ids)?.projected)
    }
}
