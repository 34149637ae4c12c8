//! vlad-detect: the anomaly detectors, behind one interface shared by the CLI, the evaluation
//! harness and the browser.
//!
//! A [`Detector`] is built from a config and weights, is told the class it inspects (prompts depend
//! on it), optionally fits normal reference images (few-shot memory), and scores batches of
//! preprocessed images into a [`Detection`]: image scores and anomaly maps at patch and output
//! resolution, as device tensors (browsers read them back asynchronously). Per-method code lives in
//! one module per method, named after it, so that it can be read against `spec/<method>.md`; the
//! shared post-processing is in [`postprocess`].
use burn::tensor::{Device, Tensor};
use vlad_clip::preprocess::Preprocess;

pub mod aa_clip;
pub mod ada_clip;
pub mod anomaly_clip;
pub mod baseline;
pub mod bayes_pfl;
pub mod calibration;
pub mod checkpoint_io;
pub mod clip_ad;
pub mod losses;
pub mod mvfa;
pub mod postprocess;
pub mod prompts;
pub mod vand;
pub mod winclip;
pub mod winclip_prompts;
pub mod zero_shot;

pub use calibration::Calibration;

/// Errors of the detectors.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The backbone failed (weights, shapes, tokenizer).
    #[error(transparent)]
    Clip(#[from] vlad_clip::ClipError),
    /// A detector option or input is wrong.
    #[error("{0}")]
    Invalid(String),
    /// The detector does not support the operation.
    #[error("{detector} does not support {what}")]
    Unsupported {
        /// Detector name.
        detector: &'static str,
        /// The operation.
        what: &'static str,
    },
}

/// Outputs for a batch of B images (device tensors).
pub struct Detection {
    /// The single-image (deployable) score per image, `[B]`, higher = more anomalous; never
    /// normalised over a set.
    pub image_score: Tensor<1>,
    /// Anomaly map at output resolution `[B, S, S]`, before any per-set normalisation.
    pub map: Tensor<3>,
    /// Anomaly map at patch resolution `[B, G, G]`.
    pub patch_map: Tensor<3>,
    /// Named raw components of the image score that the official per-set fusion uses
    /// (e.g. `("det", …)` for AA-CLIP, `("text", …)` for Bayes-PFL), each `[B]`.
    pub components: Vec<(String, Tensor<1>)>,
    /// Named raw maps `[B, S, S]` that the official per-set fusion mixes ([`SetFusion::MapMix`]:
    /// MVFA's few-shot `("zero", …)` and `("few", …)`); empty for most detectors.
    pub map_components: Vec<(String, Tensor<3>)>,
}

/// Statistic of a map that enters an image score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MapStatistic {
    /// The maximum.
    Max,
    /// The mean of the `k` largest values.
    TopKMean(usize),
}

/// How the official code forms image scores over a whole test set of one class (transductive; for
/// parity with published tables only, `spec/evaluation.md` §7).
#[derive(Debug, Clone, PartialEq)]
pub enum SetFusion {
    /// The detector's image score as it is.
    None,
    /// Min–max normalise the maps of the class (see [`MapRange`]) and, when
    /// `normalize_component`, the named component over the class, then
    /// `map_weight · stat(normalised map) + component_weight · component`.
    MinMax {
        /// Which component (none: map only).
        component: Option<String>,
        /// Weight of the map statistic.
        map_weight: f32,
        /// Weight of the component.
        component_weight: f32,
        /// Statistic of the normalised map.
        statistic: MapStatistic,
        /// What the map range is taken over.
        map_range: MapRange,
        /// Min–max normalise the component over the class too (AA-CLIP, Bayes-PFL, CLIP-AD); VAND
        /// adds its text probability as it is.
        normalize_component: bool,
    },
    /// Named maps ([`Detection::map_components`]) each min–max normalised over every pixel of the
    /// class and mixed, `Σ wᵢ · mm(mapᵢ)`: the fused maps the pixel metrics are reported on. The
    /// image score is the maximum of the fused map when `components` is empty, else the mix
    /// `Σ wⱼ · mm(componentⱼ)` of named score components (MVFA few-shot: the seg head mixes
    /// `zero`/`few` maps 0.5/0.5 and takes the maximum; the det head mixes `det`/`few_det` scores).
    MapMix {
        /// `(map component, weight)`.
        maps: Vec<(String, f32)>,
        /// `(score component, weight)`; empty: the maximum of the fused map.
        components: Vec<(String, f32)>,
    },
}

/// The range a [`SetFusion::MinMax`] normalises the map statistic with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapRange {
    /// The minimum and maximum over every pixel of every map of the class, applied to the maps
    /// before the statistic (AA-CLIP, Bayes-PFL).
    AllPixels,
    /// The minimum and maximum of the per-image statistics over the class (VAND few-shot,
    /// CLIP-AD: `minmax(max(map))`).
    Statistics,
}

/// The interface every detector implements.
pub trait Detector {
    /// Short name (`zero-shot`, `winclip`, `aa-clip`, `bayes-pfl`, …).
    fn name(&self) -> &'static str;

    /// The device the detector runs on.
    fn device(&self) -> Device;

    /// How images must be preprocessed (input side S, resize rule, normalisation).
    fn preprocess(&self) -> Preprocess;

    /// Patch-grid side G of the maps.
    fn grid(&self) -> usize;

    /// Prepares the class-dependent parts (prompts, text features). `name` is the class or object
    /// name, e.g. `bottle`; detectors use their own naming rules (AA-CLIP's "real names", …).
    fn set_class(&mut self, name: &str) -> Result<(), DetectError>;

    /// Scores a batch `[B, 3, S, S]` of preprocessed images.
    fn detect(&self, pixels: Tensor<4>) -> Result<Detection, DetectError>;

    /// Stores normal reference images `[K, 3, S, S]` of the current class (few-shot memory).
    fn fit_reference(&mut self, _normal: Tensor<4>) -> Result<(), DetectError> {
        Err(DetectError::Unsupported { detector: self.name(), what: "reference images" })
    }

    /// The official per-set fusion of the method (for table parity).
    fn set_fusion(&self) -> SetFusion {
        SetFusion::None
    }

    /// Detectors whose scoring reads values back to the host mid-way (AdaCLIP's k-means) expose
    /// the steps here, so that a browser can await each read-back ([`HostStaged`]); `detect` runs
    /// the same steps with synchronous reads.
    fn host_staged(&self) -> Option<&dyn HostStaged> {
        None
    }
}

/// One step of a [`HostStaged`] scoring.
pub enum Staged {
    /// Read these tensors back and call [`HostStaged::stage_continue`] with their values and `state`.
    Read {
        /// The tensors, each flattened.
        tensors: Vec<Tensor<1>>,
        /// What the detector keeps between the steps.
        state: Box<dyn std::any::Any>,
    },
    /// The result.
    Done(Box<Detection>),
}

/// Scoring in device and host turns.
pub trait HostStaged {
    /// Starts scoring a batch `[B, 3, S, S]`.
    fn stage_start(&self, pixels: Tensor<4>) -> Result<Staged, DetectError>;
    /// Continues with the host values of the requested tensors (in order).
    fn stage_continue(&self, state: Box<dyn std::any::Any>, host: Vec<Vec<f32>>) -> Result<Staged, DetectError>;
}

/// Runs a [`HostStaged`] scoring with synchronous read-backs (native and the CPU engine).
pub fn run_staged(staged: &dyn HostStaged, pixels: Tensor<4>) -> Result<Detection, DetectError> {
    let mut step = staged.stage_start(pixels)?;
    loop {
        match step {
            Staged::Done(detection) => return Ok(*detection),
            Staged::Read { tensors, state } => {
                let host = tensors
                    .into_iter()
                    .map(|t| t.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| DetectError::Invalid(format!("cannot read a staged value back: {e:?}"))))
                    .collect::<Result<Vec<_>, _>>()?;
                step = staged.stage_continue(state, host)?;
            }
        }
    }
}
