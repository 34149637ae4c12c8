//! Backbone commands: tokenize, preprocess, encode-image, encode-text, convert, inspect.
use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::Tensor;
use vlad_clip::preprocess::{Preprocess, Resize};
use vlad_clip::tokenizer::CONTEXT_LENGTH;
use vlad_clip::weights::{WriteOptions, canonicalize, detect_naming, infer_config, write_burnpack};
use vlad_clip::{ClipTokenizer, VisionForward};

use super::common::{ModelArgs, host_values, open_weights, parse_list};
use crate::npy;

/// `vlad tokenize`.
#[derive(clap::Args, Debug)]
pub struct TokenizeArgs {
    /// Context length (ids per text, zero-padded; overlong text keeps EOT in the last slot).
    #[arg(long, default_value_t = CONTEXT_LENGTH)]
    pub context_length: usize,
    /// Texts to tokenize.
    #[arg(required = true)]
    pub text: Vec<String>,
}

/// Prints a JSON array of id arrays.
pub fn tokenize(args: TokenizeArgs) -> Result<()> {
    let tok = ClipTokenizer::openai()?;
    let ids = args.text.iter().map(|t| tok.tokenize(t, args.context_length)).collect::<Result<Vec<_>, _>>()?;
    println!("{}", serde_json::to_string(&ids)?);
    Ok(())
}

/// Image size and resize mode.
#[derive(clap::Args, Debug)]
pub struct PreprocessOptions {
    /// Model input side S (default: the architecture's native size).
    #[arg(long)]
    pub image_size: Option<u32>,
    /// `squash` (resize to S×S, what the anomaly methods do) or `crop` (shorter side + centre crop).
    #[arg(long, default_value = "squash")]
    pub resize: String,
}

impl PreprocessOptions {
    fn pipeline(&self, native: u32) -> Result<Preprocess> {
        let size = self.image_size.unwrap_or(native);
        Ok(match Resize::parse(&self.resize)? {
            Resize::Squash => Preprocess::squash(size),
            Resize::Crop => Preprocess::crop(size),
        })
    }
}

/// `vlad preprocess`.
#[derive(clap::Args, Debug)]
pub struct PreprocessArgs {
    #[command(flatten)]
    pub pre: PreprocessOptions,
    /// Input image.
    #[arg(long)]
    pub image: PathBuf,
    /// Output `.npy` (f32 `[1, 3, S, S]`).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,
}

/// Writes the normalised model input.
pub fn preprocess(args: PreprocessArgs) -> Result<()> {
    let Some(size) = args.pre.image_size else { bail!("--image-size is required") };
    let pipeline = args.pre.pipeline(size)?;
    let x = pipeline.load(&args.image)?;
    let s = size as usize;
    npy::write_f32(&args.out, &[1, 3, s, s], &x, args.force)
}

/// `vlad encode-image`.
#[derive(clap::Args, Debug)]
pub struct EncodeImageArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub pre: PreprocessOptions,
    /// Input image.
    #[arg(long)]
    pub image: PathBuf,
    /// Output `.npy`: the projected image embedding, f32 `[1, E]`, not normalised.
    #[arg(long)]
    pub out: PathBuf,
    /// 1-based blocks whose raw residual stream to save, e.g. `6,12,18,24`.
    #[arg(long)]
    pub taps: Option<String>,
    /// Output `.npy` for the taps: f32 `[T, 1+G², D]`.
    #[arg(long, requires = "taps")]
    pub taps_out: Option<PathBuf>,
    /// Replace existing output files.
    #[arg(long)]
    pub force: bool,
}

/// Writes the image embedding and optional taps.
pub fn encode_image(args: EncodeImageArgs) -> Result<()> {
    let taps = args.taps.as_deref().map(|t| parse_list(t, "--taps")).transpose()?.unwrap_or_default();
    if !taps.is_empty() && args.taps_out.is_none() {
        bail!("--taps needs --taps-out FILE");
    }
    let device = args.model.device()?;
    let model = args.model.load(&device)?;
    let native = model.config.vision.image_size as u32;
    let pipeline = args.pre.pipeline(native)?;
    let x = pipeline.batch(&[pipeline.load(&args.image)?], &device)?;
    let out = model.visual.forward(x, VisionForward { taps: &taps, ..Default::default() })?;
    let tap_tensors = out.taps;
    let emb = model.visual.pool(out.last);
    let [_, e] = emb.dims();
    npy::write_f32(&args.out, &[1, e], &host_values(emb)?, args.force)?;
    if let Some(path) = args.taps_out {
        let stacked = Tensor::cat(tap_tensors, 0);
        let dims = stacked.dims();
        npy::write_f32(&path, &dims, &host_values(stacked)?, args.force)?;
    }
    Ok(())
}

/// `vlad encode-text`.
#[derive(clap::Args, Debug)]
pub struct EncodeTextArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A text (repeat for several).
    #[arg(long, required = true)]
    pub text: Vec<String>,
    /// Output `.npy`: f32 `[N, E]`, not normalised.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,
}

/// Writes the text embeddings.
pub fn encode_text(args: EncodeTextArgs) -> Result<()> {
    let device = args.model.device()?;
    let model = args.model.load(&device)?;
    let ids = ClipTokenizer::openai()?.tokenize_batch(&args.text)?;
    let emb = model.encode_text(&ids)?;
    let dims = emb.dims();
    npy::write_f32(&args.out, &dims, &host_values(emb)?, args.force)
}

/// `vlad convert`.
#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    /// Input weights (safetensors, PyTorch zip, burnpack; OpenAI/OpenCLIP or HF names).
    #[arg(long)]
    pub weights: PathBuf,
    /// Output burnpack file.
    #[arg(long)]
    pub out: PathBuf,
    /// Store f16 values (half the size; lossless for OpenAI's f16 checkpoints).
    #[arg(long)]
    pub f16: bool,
    /// Architecture to record (default: recognised from the shapes).
    #[arg(long)]
    pub arch: Option<String>,
    /// Activation to record with the weights (`quick` or `exact`), so that they are not paired with
    /// the wrong one later.
    #[arg(long)]
    pub gelu: Option<String>,
    /// Nested state dict inside a PyTorch file.
    #[arg(long)]
    pub top_level_key: Option<String>,
    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,
}

/// Writes canonical (OpenAI-named) tensors as burnpack with the architecture in the metadata.
pub fn convert(args: ConvertArgs) -> Result<()> {
    let file = open_weights(&args.weights, args.top_level_key.as_deref())?;
    let (naming, entries) = canonicalize(&file)?;
    let mut config = match &args.arch {
        Some(a) => vlad_clip::ClipConfig::preset(a)?,
        None => infer_config(&entries).with_context(|| format!("{}: cannot recognise the architecture; pass --arch", file.origin))?,
    };
    if let Some(g) = &args.gelu {
        config = config.with_activation(vlad_clip::Activation::parse(g)?);
    }
    // Check that the tensors fit the architecture before writing anything.
    let device = vlad_clip::device_for(vlad_clip::Backend::Flex)?;
    let mut reader = vlad_clip::weights::WeightReader::new(file.origin.clone(), entries.clone(), &device);
    let _ = vlad_clip::ClipModel::from_reader(&config, &mut reader);
    let report = reader.report();
    if !report.problems.is_empty() {
        bail!("the weights do not fit {}:\n{report}", config.name);
    }
    let mut metadata = BTreeMap::new();
    metadata.insert("vlad.clip_config".to_string(), config.to_json());
    metadata.insert("vlad.naming".to_string(), "openai".to_string());
    metadata.insert("vlad.source".to_string(), format!("{} ({}, {:?} names)", args.weights.display(), file.format, naming));
    let options = WriteOptions { f16: args.f16, overwrite: args.force, metadata };
    write_burnpack(&entries, &args.out, &options)?;
    let size = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "wrote {} ({} tensors, {:.1} MB, {}, architecture {}, activation {})",
        args.out.display(),
        entries.len(),
        size as f64 / 1e6,
        if args.f16 { "f16" } else { "f32" },
        config.name,
        config.activation.as_str()
    );
    if !report.unused.is_empty() {
        eprintln!("note: {} tensors are not part of the CLIP backbone and were kept as they are", report.unused.len());
    }
    Ok(())
}

/// `vlad inspect`.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// Weight file.
    pub file: PathBuf,
    /// Nested state dict inside a PyTorch file.
    #[arg(long)]
    pub top_level_key: Option<String>,
}

/// Lists tensors, the container, the naming and the recognised architecture.
pub fn inspect(args: InspectArgs) -> Result<()> {
    let file = open_weights(&args.file, args.top_level_key.as_deref())?;
    println!("file: {}", file.origin);
    println!("format: {}", file.format);
    for (k, v) in &file.metadata {
        println!("metadata: {k} = {v}");
    }
    match detect_naming(&file) {
        Some((naming, prefix)) => {
            println!("naming: {naming:?}{}", if prefix.is_empty() { String::new() } else { format!(" under prefix `{prefix}`") });
            let (_, entries) = canonicalize(&file)?;
            match infer_config(&entries) {
                Some(c) => println!("architecture: {} (vision {}x{} patch {} at {} px, text {}x{}, embed {})", c.name, c.vision.width, c.vision.layers, c.vision.patch_size, c.vision.image_size, c.text.width, c.text.layers, c.embed_dim),
                None => println!("architecture: not recognised"),
            }
        }
        None => println!("naming: no CLIP tower found"),
    }
    let total: usize = file.entries.values().map(|e| e.len()).sum();
    println!("tensors: {} ({:.1} M values)", file.entries.len(), total as f64 / 1e6);
    for (name, entry) in &file.entries {
        println!("  {name:<70} {:<5} {:?}", entry.dtype.to_string(), entry.shape);
    }
    for (name, why) in &file.skipped {
        println!("  {name:<70} skipped ({why})");
    }
    Ok(())
}
