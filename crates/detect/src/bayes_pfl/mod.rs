//! Bayes-PFL, *Bayesian Prompt Flow Learning for Zero-Shot Anomaly Detection* (Qu et al., CVPR
//! 2025), as its official code behaves (`spec/bayes-pfl.md`, commit 8f155a07).
//!
//! * **Backbone** (`spec/bayes-pfl.md` §2): OpenAI ViT-L/14@336 with **exact GELU** in both towers,
//!   input 518 (37×37 grid, positional table resized by rule A), patch features = the raw residual
//!   stream after blocks 6/12/18/24 without CLS; `g = ln_post(CLS₂₄) @ proj`, not normalised.
//! * **Prompt bank** (§3): B = 3 prompts of P = 5 context and Q = 5 state vectors replace the
//!   placeholder `X` of `"X " + class word` (real words: pcb1 → "printed circuit board"); the EOT
//!   feature is read at the original EOT index + 9 ([`text`]).
//! * **Prompt flows** (§4, [`flow`], [`head`]): Gaussian encoders give (μ, h) with the official
//!   "variance" `exp(½h)`, so the sampling std is `exp(¼h)`; K = 10 planar steps. The
//!   image-specific flow (context) is amortised from g; the two image-agnostic flows (normal and
//!   abnormal states) share one encoder and have free parameters. R Monte-Carlo samples per image;
//!   the state samples are drawn **once per run** and reused for every image; ε comes from a
//!   [`noise::McNoise`] source (seeded sampling, zero, or recorded draws).
//! * **RCA** (§6): per layer, text queries (`q_proj_pre`) attend over the unit-normalised projected
//!   patch tokens with no K/V projections, 4 heads, softmax scale 1/√768; residual + renormalise.
//! * **Scoring** (§7): the map is the mean of the L·B·R = 120 maps `σ(up(S^a − S^n))` (bilinear,
//!   align_corners = true), accumulated in chunks so that the full-size maps are never all held;
//!   metrics use it after a Gaussian (σ = 8, reflect); s_map = top-k mean (20 or 2000 by class) of
//!   the unsmoothed map; s_text = mean of `σ(logit_a − logit_n)` with the stage-2 image head
//!   `n(image_mapping(g + fuse(patches)))` of the released checkpoints.
//! * **Checkpoints** ([`checkpoint`]): the released `{'MyModel': state_dict}` files (131 keys with
//!   aliases and dead decoder keys), the per-epoch files, and vlad's burnpack; written back in the
//!   official format by a small PyTorch zip writer ([`pth`]).
//! * **Training** (feature `train`, [`train`]): the losses (CE, focal, dice, KL terms, orthogonality),
//!   prompt-pair subsampling, the four learning-rate groups, cosine schedule with warm-up, the two
//!   stages and the official stage-switch rule.
//!
//! The detector's deployable image score is `½·s_text + ½·s_map`; the official transductive
//! per-class min–max fusion needs the components `text` and `map_topk` of every image of a class.
pub mod checkpoint;
pub mod detector;
pub mod flow;
pub mod head;
pub mod noise;
#[cfg(not(target_arch = "wasm32"))]
pub mod pth;
pub mod text;
#[cfg(feature = "train")]
pub mod train;

pub use checkpoint::{BayesPflCheckpoint, DeadWeights, ImportReport, StageChoice, load_checkpoint};
pub use detector::{BayesPfl, BayesPflOptions, BayesPflOutput, LayerOutput};
pub use head::{BayesPflHead, HeadConfig, Stage, StateKind};
pub use noise::{FixedNoise, McNoise, NoiseMode, SeededNoise, ZeroNoise};
