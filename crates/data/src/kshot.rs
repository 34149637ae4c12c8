//! k-shot sampling.
//!
//! Two different things are called "k-shot" in the papers (evaluation.md §6):
//! * **AA-CLIP few-shot training sets** ([`aa_clip_kshot`]): k/2 normal + k/2 anomalous images per class of the
//!   *auxiliary* dataset's test split (the author's answer in Mwxinnn/AA-CLIP issue #8; 2-shot VisA = 24 images).
//!   The official subsets and seed were never released, so no run can pick the same files.
//! * **Reference images of the target class** ([`reference_shots`]): k normal images of the target class's
//!   train split for WinCLIP+ and VAND few-shot. VAND draws with replacement (`torch.randint`); WinCLIP+ (anomalib)
//!   and MVFA use distinct images.
//!
//! Draws use [`SeededRng`] (ChaCha8) with one stream per class and label, derived from the seed and the class
//! name, over the candidates sorted by image path. The picks for a class therefore depend only on (seed, class,
//! that class's files), not on the other classes or on the order of the index. Results are returned sorted by
//! image path (normal images first), which is also the order of the written subsets.

use serde::Serialize;

use crate::error::DataError;
use crate::index::{DatasetIndex, Label, Sample, Split};
use crate::rng::SeededRng;

/// With or without replacement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replacement {
    /// Distinct images (AA-CLIP subsets, WinCLIP+, MVFA).
    Without,
    /// Independent uniform draws, duplicates possible (VAND/APRIL-GAN few-shot memory, `torch.randint`).
    With,
}

/// The shots drawn for one class.
#[derive(Clone, Debug, Serialize)]
pub struct ClassShots {
    /// Class name.
    pub class_name: String,
    /// Chosen normal samples, sorted by image path.
    pub normal: Vec<Sample>,
    /// Chosen anomalous samples, sorted by image path.
    pub anomalous: Vec<Sample>,
}

impl ClassShots {
    /// Normal then anomalous samples.
    pub fn all(&self) -> impl Iterator<Item = &Sample> {
        self.normal.iter().chain(&self.anomalous)
    }
}

/// AA-CLIP k-shot training set: for every class, k/2 normal and k/2 anomalous images drawn without replacement
/// from `split` (normally [`Split::Test`], the auxiliary dataset's training pool). `k` must be even and ≥ 2; a
/// class with too few images of either label is an error naming the class and the counts.
pub fn aa_clip_kshot(
    index: &DatasetIndex,
    k: usize,
    seed: u64,
    split: Split,
) -> Result<Vec<ClassShots>, DataError> {
    if k < 2 || !k.is_multiple_of(2) {
        return Err(DataError::Argument(format!(
            "AA-CLIP k-shot needs an even k >= 2 (k/2 normal + k/2 anomalous per class), got {k}"
        )));
    }
    index
        .classes()
        .iter()
        .map(|class_name| {
            sample_class(
                index,
                class_name,
                split,
                k / 2,
                k / 2,
                seed,
                Replacement::Without,
            )
        })
        .collect()
}

/// Few-shot reference images for one target class: `k` normal images of its train split (WinCLIP+, VAND).
pub fn reference_shots(
    index: &DatasetIndex,
    class_name: &str,
    k: usize,
    seed: u64,
    replacement: Replacement,
) -> Result<Vec<Sample>, DataError> {
    if k == 0 {
        return Err(DataError::Argument("reference shots need k >= 1".into()));
    }
    Ok(sample_class(index, class_name, Split::Train, k, 0, seed, replacement)?.normal)
}

/// Draw `n_normal` normal and `n_anomalous` anomalous samples of one class and split.
pub fn sample_class(
    index: &DatasetIndex,
    class_name: &str,
    split: Split,
    n_normal: usize,
    n_anomalous: usize,
    seed: u64,
    replacement: Replacement,
) -> Result<ClassShots, DataError> {
    if !index.samples.iter().any(|s| s.class_name == class_name) {
        return Err(DataError::Request(format!(
            "class {class_name:?} is not in the dataset at {} (classes: {})",
            index.root.display(),
            index.classes().join(", ")
        )));
    }
    let draw = |label: Label, count: usize| -> Result<Vec<Sample>, DataError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let mut pool: Vec<&Sample> = index
            .select(class_name, split)
            .filter(|s| s.label == label)
            .collect();
        pool.sort_by(|a, b| a.image_path.cmp(&b.image_path));
        let label_name = match label {
            Label::Normal => "normal",
            Label::Anomalous => "anomalous",
        };
        if pool.is_empty() || (replacement == Replacement::Without && pool.len() < count) {
            return Err(DataError::Request(format!(
                "class {class_name:?} has {} {label_name} images in the {split} split; {count} are needed",
                pool.len()
            )));
        }
        let mut rng = SeededRng::derive(seed, &format!("kshot/{class_name}/{label_name}"));
        let picks: Vec<usize> = match replacement {
            Replacement::Without => rng.choose_distinct(pool.len(), count),
            Replacement::With => (0..count).map(|_| rng.index(pool.len())).collect(),
        };
        let mut chosen: Vec<Sample> = picks.into_iter().map(|i| pool[i].clone()).collect();
        chosen.sort_by(|a, b| a.image_path.cmp(&b.image_path));
        Ok(chosen)
    };
    Ok(ClassShots {
        class_name: class_name.to_string(),
        normal: draw(Label::Normal, n_normal)?,
        anomalous: draw(Label::Anomalous, n_anomalous)?,
    })
}
