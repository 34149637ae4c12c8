//! vlad-data: dataset readers, k-shot sampling, training augmentations and a synthetic benchmark.
//!
//! * [`readers`]: MVTec-AD layout (also BTAD, MPDD, DTD-Synthetic, KSDD2 converted), VisA with its split csv,
//!   `meta.json`, AA-CLIP JSON Lines and a plain folder layout, plus format auto-detection
//!   ([`readers::open_dataset`]). All produce a [`DatasetIndex`].
//! * [`load`]: decoding an image and its binary mask at a target size with the mask rule of the method being
//!   reproduced ([`MaskRule`]); per-sample `Result`s so one bad file does not stop a run.
//! * [`kshot`]: AA-CLIP k-shot training subsets and WinCLIP+/VAND few-shot reference images, seeded (ChaCha8).
//! * [`augment`]: the training augmentations of AA-CLIP (torchvision) and Bayes-PFL (albumentations), applied
//!   jointly to image and mask, plus the 2×2 mosaic of VAND/Bayes-PFL.
//! * [`npy`]: the `.npy` inputs of `vlad metrics` (scores, labels, maps, masks), read with every size checked.
//! * [`synth`]: the synthetic benchmark behind `vlad data synth` (not a substitute for MVTec/VisA).
//!
//! The specifications are `spec/evaluation.md` §3–§6, `spec/aa-clip.md` §8.4–§8.5, `spec/bayes-pfl.md` §9–§10
//! and `spec/baselines.md` §3.4, §4.5–§4.6.

pub mod augment;
pub mod error;
pub mod index;
pub mod kshot;
pub mod load;
pub mod npy;
pub mod readers;
pub mod rng;
pub mod synth;

pub use error::{DataError, Result};
pub use index::{ClassSummary, DatasetFormat, DatasetIndex, Label, Problem, Sample, Split};
pub use kshot::{ClassShots, Replacement, aa_clip_kshot, reference_shots, sample_class};
pub use load::{LoadOptions, LoadedSample, MaskRule, load_all, load_sample};
pub use readers::{FormatChoice, OpenOptions, detect_format, open_dataset};
pub use rng::SeededRng;
