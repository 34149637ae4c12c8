//! The BMAD-derived medical layout of MVFA-AD and AA-CLIP (`spec/evaluation.md` §4.9):
//! `<root>/<Obj>_AD/{valid,test}/{good,Ungood}/img/*`, the masks of `Ungood` images under
//! `Ungood/anomaly_mask/` (MVFA) or `Ungood/label/` (AA-CLIP's copy) with the image's file name.
//! Brain, Liver and Retina_RESC have masks; Retina_OCT2017, Chest and Histopathology are
//! classification-only (no mask folder: anomalous images load with an all-zero mask). The root may
//! also be one `<Obj>_AD` folder itself.
//!
//! The class name is the folder name without `_AD` (`Brain`, `Liver`, `Retina_RESC`, …, as MVFA's
//! `--obj`). The `valid` split — MVFA's labelled few-shot pool (MVFA issue #4) — is indexed as
//! [`Split::Train`]; `test` as [`Split::Test`].
//!
//! MVFA's few-shot seed lists (`dataset/fewshot_seed/<obj>/<k>-shot.txt`, lines `a-<i>: f1 f2 …`
//! for anomalous and `n-<i>: …` for normal `valid` images) are read by [`parse_fewshot_seed`] and
//! resolved against an index by [`fewshot_samples`].
use std::path::{Path, PathBuf};

use super::fs::{file_name, is_image_file, list_dir, require_dir};
use crate::error::DataError;
use crate::index::{DatasetFormat, DatasetIndex, Label, Problem, Sample, Split};

/// The suffix of the dataset folders.
pub const SUFFIX: &str = "_AD";
/// Mask folder names, MVFA's first.
pub const MASK_FOLDERS: &[&str] = &["anomaly_mask", "label"];

/// Whether `dir` looks like one `<Obj>_AD` folder (`test/good/img` or `test/Ungood/img`).
pub fn is_bmad_dataset(dir: &Path) -> bool {
    dir.join("test").join("good").join("img").is_dir() || dir.join("test").join("Ungood").join("img").is_dir()
}

/// Read the BMAD layout at `root` (several `<Obj>_AD` folders, or one).
pub fn read_bmad(root: &Path) -> Result<DatasetIndex, DataError> {
    require_dir(root, "dataset root")?;
    let datasets: Vec<PathBuf> = if is_bmad_dataset(root) { vec![root.to_path_buf()] } else { list_dir(root)?.dirs.into_iter().filter(|d| is_bmad_dataset(d)).collect() };
    if datasets.is_empty() {
        return Err(DataError::Layout {
            path: root.to_path_buf(),
            message: "no BMAD dataset folder (expected <Obj>_AD/test/{good,Ungood}/img/)".into(),
        });
    }
    let mut samples = Vec::new();
    let mut problems = Vec::new();
    for dir in datasets {
        let name = file_name(&dir);
        let class_name = name.strip_suffix(SUFFIX).unwrap_or(&name).to_string();
        for (split_dir, split) in [("valid", Split::Train), ("test", Split::Test)] {
            let base = dir.join(split_dir);
            if !base.is_dir() {
                continue;
            }
            for (kind, label) in [("good", Label::Normal), ("Ungood", Label::Anomalous)] {
                let img_dir = base.join(kind).join("img");
                if !img_dir.is_dir() {
                    continue;
                }
                let mask_dir = MASK_FOLDERS.iter().map(|m| base.join(kind).join(m)).find(|d| d.is_dir());
                let mut images: Vec<PathBuf> = list_dir(&img_dir)?.files.into_iter().filter(|f| is_image_file(f)).collect();
                images.sort();
                for image in images {
                    let mask_path = match (&label, &mask_dir) {
                        (Label::Anomalous, Some(m)) => {
                            let mask = m.join(file_name(&image));
                            if !mask.is_file() {
                                problems.push(Problem { class_name: class_name.clone(), path: mask.clone(), message: format!("mask of {} is missing", image.display()) });
                            }
                            Some(mask)
                        }
                        _ => None,
                    };
                    samples.push(Sample { class_name: class_name.clone(), image_path: image, mask_path, label, defect_type: kind.to_string(), split });
                }
            }
        }
    }
    Ok(DatasetIndex { root: root.to_path_buf(), format: DatasetFormat::Bmad, samples, problems })
}

/// One line of a few-shot seed list: the iteration and its file names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedLine {
    /// `a` (anomalous) or `n` (normal).
    pub anomalous: bool,
    /// The iteration (`--iterate`).
    pub iterate: usize,
    /// File names in the `valid` split.
    pub files: Vec<String>,
}

/// Parse a `<k>-shot.txt` seed list; `origin` names the file in errors.
pub fn parse_fewshot_seed(text: &str, origin: &Path) -> Result<Vec<SeedLine>, DataError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut words = line.split_whitespace();
        let Some(head) = words.next() else { continue };
        let bad = |message: String| DataError::Layout { path: origin.to_path_buf(), message: format!("line {}: {message}", n + 1) };
        let tag = head.strip_suffix(':').ok_or_else(|| bad(format!("expected `a-<i>:` or `n-<i>:`, found {head:?}")))?;
        let (kind, iterate) = tag.split_once('-').ok_or_else(|| bad(format!("expected `a-<i>:` or `n-<i>:`, found {head:?}")))?;
        let anomalous = match kind {
            "a" => true,
            "n" => false,
            other => return Err(bad(format!("unknown kind {other:?} (a or n)"))),
        };
        let iterate = iterate.parse().map_err(|_| bad(format!("iteration {iterate:?} is not a number")))?;
        let files: Vec<String> = words.map(str::to_string).collect();
        if files.is_empty() {
            return Err(bad(format!("`{head}` lists no files")));
        }
        out.push(SeedLine { anomalous, iterate, files });
    }
    Ok(out)
}

/// The `valid`-split samples of `class_name` a seed list names for `iterate`: (anomalous, normal),
/// in the list's order. A missing line or a file not in the index is an error naming it.
pub fn fewshot_samples(index: &DatasetIndex, class_name: &str, seeds: &[SeedLine], iterate: usize, origin: &Path) -> Result<(Vec<Sample>, Vec<Sample>), DataError> {
    let pick = |anomalous: bool| -> Result<Vec<Sample>, DataError> {
        let tag = if anomalous { 'a' } else { 'n' };
        let line = seeds.iter().find(|s| s.anomalous == anomalous && s.iterate == iterate).ok_or_else(|| DataError::Layout {
            path: origin.to_path_buf(),
            message: format!("no `{tag}-{iterate}:` line"),
        })?;
        let label = if anomalous { Label::Anomalous } else { Label::Normal };
        line.files
            .iter()
            .map(|f| {
                index
                    .samples
                    .iter()
                    .find(|s| s.class_name == class_name && s.split == Split::Train && s.label == label && file_name(&s.image_path) == *f)
                    .cloned()
                    .ok_or_else(|| DataError::Layout {
                        path: origin.to_path_buf(),
                        message: format!("`{tag}-{iterate}:` names {f:?}, which is not a {} valid image of {class_name:?} in {}", if anomalous { "Ungood" } else { "good" }, index.root.display()),
                    })
            })
            .collect()
    };
    Ok((pick(true)?, pick(false)?))
}
