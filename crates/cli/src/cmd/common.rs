//! Options shared by the commands that load a CLIP backbone.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use vlad_clip::model::LoadOptions;
use vlad_clip::weights::{WeightFile, canonicalize, infer_config};
use vlad_clip::{Activation, Backend, ClipConfig, ClipModel, PosEmbedResize, device_for};

/// Backbone selection and loading.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Architecture (ViT-B-32, ViT-B-16, ViT-B-16-plus-240, ViT-L-14, ViT-L-14-336, tiny). Taken from
    /// the file's metadata or shapes when omitted.
    #[arg(long)]
    pub arch: Option<String>,
    /// Weight file: safetensors, PyTorch zip (.pt/.pth/.bin) or burnpack; OpenAI/OpenCLIP or HF names.
    #[arg(long)]
    pub weights: PathBuf,
    /// MLP activation: `quick` (QuickGELU, OpenAI's training activation) or `exact` (erf GELU, what
    /// AA-CLIP, Bayes-PFL, VAND and AdaCLIP run). Default: the architecture's own.
    #[arg(long)]
    pub gelu: Option<String>,
    /// Compute backend: flex (CPU), wgpu (Vulkan/Metal), cuda (opt-in build feature).
    #[arg(long, default_value = "flex")]
    pub backend: String,
    /// Load even if tensors are missing, mis-shaped or unused (they are still listed).
    #[arg(long)]
    pub allow_partial: bool,
    /// Nested state dict inside a PyTorch file (e.g. `state_dict`).
    #[arg(long)]
    pub top_level_key: Option<String>,
    /// Positional-embedding resize rule off the native grid: a (antialiased bicubic, default),
    /// b (bicubic), c (bilinear).
    #[arg(long, default_value = "a")]
    pub pos_resize: String,
}

impl ModelArgs {
    /// The device of `--backend`.
    pub fn device(&self) -> Result<Device> {
        Ok(device_for(Backend::parse(&self.backend)?)?)
    }

    /// Loads the backbone, printing the load report's warnings to stderr.
    pub fn load(&self, device: &Device) -> Result<ClipModel> {
        let file = open_weights(&self.weights, self.top_level_key.as_deref())?;
        let config = self.config_for(&file)?;
        let pos_resize = PosEmbedResize::parse(&self.pos_resize).with_context(|| format!("unknown --pos-resize `{}`", self.pos_resize))?;
        let (model, report) = ClipModel::load(&config, &file, device, LoadOptions { allow_partial: self.allow_partial, pos_resize })?;
        if !report.is_complete() {
            eprintln!("warning: partial load\n{report}");
        }
        Ok(model)
    }

    fn config_for(&self, file: &WeightFile) -> Result<ClipConfig> {
        let config = match (&self.arch, file.metadata.get("vlad.clip_config")) {
            (Some(arch), _) => ClipConfig::preset(arch)?,
            (None, Some(json)) => ClipConfig::from_json(json)?,
            (None, None) => {
                let (_, entries) = canonicalize(file)?;
                infer_config(&entries).with_context(|| format!("{}: cannot tell the architecture; pass --arch", file.origin))?
            }
        };
        Ok(match &self.gelu {
            Some(g) => config.with_activation(Activation::parse(g)?),
            None => config,
        })
    }
}

/// Opens a weight file with a clear error naming it.
pub fn open_weights(path: &Path, top_level_key: Option<&str>) -> Result<WeightFile> {
    if !path.exists() {
        bail!("{}: no such weight file", path.display());
    }
    Ok(WeightFile::open(path, top_level_key)?)
}

/// Parses `6,12,18,24`.
pub fn parse_list(s: &str, what: &str) -> Result<Vec<usize>> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| p.trim().parse::<usize>().with_context(|| format!("{what}: `{p}` is not a number")))
        .collect()
}

/// Host copy of a tensor's values (native backends allow synchronous reads).
pub fn host_values<const D: usize>(t: burn::tensor::Tensor<D>) -> Result<Vec<f32>> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| anyhow::anyhow!("cannot read back a tensor: {e:?}"))
}

/// A dataset on disk, as `vlad data`, `vlad eval` and `vlad train` take it.
#[derive(clap::Args, Debug, Clone)]
pub struct DatasetArgs {
    /// Dataset root (any layout `vlad data list` reads).
    #[arg(long)]
    pub data: PathBuf,
    /// Dataset format: auto, mvtec (also btad, mpdd, dtd, ksdd2), visa, meta-json, jsonl or folder.
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// Metadata file (meta.json, meta_<name>.json or AA-CLIP *.jsonl) if not in the root.
    #[arg(long)]
    pub meta: Option<PathBuf>,
    /// VisA split csv relative to the root.
    #[arg(long)]
    pub visa_csv: Option<String>,
}

impl DatasetArgs {
    /// Indexes the dataset.
    pub fn open(&self) -> Result<vlad_data::DatasetIndex> {
        let options = vlad_data::OpenOptions {
            format: self.format.parse::<vlad_data::FormatChoice>()?,
            metadata: self.meta.clone(),
            visa_split_csv: self.visa_csv.clone(),
        };
        vlad_data::open_dataset(&self.data, &options).with_context(|| format!("reading dataset {}", self.data.display()))
    }
}
