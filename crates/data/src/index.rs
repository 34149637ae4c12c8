//! The dataset index: one record per image, whatever the on-disk format was.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::DataError;

/// Normal or anomalous.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    /// A defect-free image (all-zero mask).
    Normal,
    /// An image with a defect.
    Anomalous,
}

impl Label {
    /// 0 for normal, 1 for anomalous (the `anomaly` / `label` field of the metadata formats).
    pub fn as_int(self) -> u8 {
        match self {
            Label::Normal => 0,
            Label::Anomalous => 1,
        }
    }
}

/// The split an image belongs to in its dataset. Remember that the trained methods *train* on the auxiliary
/// dataset's `Test` split (evaluation.md §6); nothing here falls back from one split to the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// The training split (normal images only in MVTec-style sets).
    Train,
    /// The test split.
    Test,
}

impl Split {
    /// "train" or "test".
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Split {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, DataError> {
        match s {
            "train" => Ok(Split::Train),
            "test" => Ok(Split::Test),
            other => Err(DataError::Argument(format!(
                "unknown split {other:?} (expected train or test)"
            ))),
        }
    }
}

/// The on-disk format a [`DatasetIndex`] was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetFormat {
    /// `<cls>/{train,test}/<folder>/…` with `<cls>/ground_truth/<defect>/…` (MVTec-AD, BTAD, MPDD, DTD-Synthetic,
    /// Bayes-PFL's standardised sets, KSDD2 converted, the synthetic benchmark).
    Mvtec,
    /// VisA with `split_csv/<file>.csv`.
    Visa,
    /// `meta.json` (VAND, AnomalyCLIP, AdaCLIP, Bayes-PFL).
    MetaJson,
    /// AA-CLIP's JSON Lines (`full-shot.jsonl`).
    Jsonl,
    /// A plain folder: `good/`, one folder per defect type, `ground_truth/<defect>/`.
    Folder,
    /// The BMAD-derived medical layout of MVFA-AD / AA-CLIP: `<Obj>_AD/{valid,test}/{good,Ungood}/img/`.
    Bmad,
}

impl DatasetFormat {
    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetFormat::Mvtec => "mvtec",
            DatasetFormat::Visa => "visa",
            DatasetFormat::MetaJson => "meta-json",
            DatasetFormat::Jsonl => "jsonl",
            DatasetFormat::Folder => "folder",
            DatasetFormat::Bmad => "bmad",
        }
    }
}

impl fmt::Display for DatasetFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One image of a dataset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// Class name as stored in the dataset (folder name, `cls_name`, `class_name` or VisA `object`).
    pub class_name: String,
    /// Full path of the image (dataset root joined with the relative path).
    pub image_path: PathBuf,
    /// Full path of the mask, if the sample has one. `None` for normal images and for anomalous images of
    /// classification-only sets (HeadCT, BrainMRI, Br35H): both load as an all-zero mask.
    pub mask_path: Option<PathBuf>,
    /// Normal or anomalous.
    pub label: Label,
    /// Defect type: the folder name (`good`/`ok` for normal images), `specie_name` of meta.json, or the label
    /// word for formats without defect types (VisA: `normal`/`anomaly`; jsonl: `good`/`anomaly`).
    pub defect_type: String,
    /// Train or test split.
    pub split: Split,
}

/// A non-fatal problem found while indexing (an anomalous image without its mask file, a mask without its
/// image, an unreadable folder entry). The affected samples stay in the index when they can still be used; a
/// sample whose mask is missing keeps the expected mask path, so loading it reports the missing file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Class the problem belongs to (empty when it concerns the whole dataset).
    pub class_name: String,
    /// The file or folder concerned.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

/// All samples of a dataset plus the problems found while indexing it.
#[derive(Clone, Debug, Serialize)]
pub struct DatasetIndex {
    /// The dataset root all relative paths were resolved against.
    pub root: PathBuf,
    /// The format that was read.
    pub format: DatasetFormat,
    /// Samples, in a deterministic order (class, then split, then defect type, then file name for folder
    /// layouts; file order for csv/json/jsonl metadata).
    pub samples: Vec<Sample>,
    /// Non-fatal problems (see [`Problem`]).
    pub problems: Vec<Problem>,
}

/// Per-class counts, as printed by `vlad data list`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ClassSummary {
    /// Normal images per split.
    pub normal: BTreeMap<Split, usize>,
    /// Anomalous images per split.
    pub anomalous: BTreeMap<Split, usize>,
    /// Image count per defect type (all splits).
    pub defect_types: BTreeMap<String, usize>,
    /// Anomalous images that have no mask file recorded (classification-only images).
    pub anomalous_without_mask: usize,
    /// Problems found for this class.
    pub problems: usize,
}

impl DatasetIndex {
    /// Class names in order of first appearance.
    pub fn classes(&self) -> Vec<String> {
        let mut seen = Vec::<String>::new();
        for s in &self.samples {
            if !seen.iter().any(|c| c == &s.class_name) {
                seen.push(s.class_name.clone());
            }
        }
        seen
    }

    /// Samples of one class and split, in index order.
    pub fn select<'a>(
        &'a self,
        class_name: &'a str,
        split: Split,
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples
            .iter()
            .filter(move |s| s.class_name == class_name && s.split == split)
    }

    /// Samples of one split, in index order.
    pub fn split(&self, split: Split) -> impl Iterator<Item = &Sample> + '_ {
        self.samples.iter().filter(move |s| s.split == split)
    }

    /// A copy of the index with only the given classes (in the given order of the original index); an unknown
    /// class name is an error that lists the known ones.
    pub fn restrict_classes(&self, classes: &[String]) -> Result<DatasetIndex, DataError> {
        let known = self.classes();
        for c in classes {
            if !known.contains(c) {
                return Err(DataError::Request(format!(
                    "class {c:?} is not in the dataset at {} (classes: {})",
                    self.root.display(),
                    known.join(", ")
                )));
            }
        }
        Ok(DatasetIndex {
            root: self.root.clone(),
            format: self.format,
            samples: self
                .samples
                .iter()
                .filter(|s| classes.contains(&s.class_name))
                .cloned()
                .collect(),
            problems: self
                .problems
                .iter()
                .filter(|p| classes.contains(&p.class_name))
                .cloned()
                .collect(),
        })
    }

    /// Counts per class, keyed by class name in first-appearance order.
    pub fn summary(&self) -> Vec<(String, ClassSummary)> {
        let mut out: Vec<(String, ClassSummary)> = self
            .classes()
            .into_iter()
            .map(|c| (c, ClassSummary::default()))
            .collect();
        let slot = |out: &mut Vec<(String, ClassSummary)>, name: &str| {
            out.iter().position(|(c, _)| c == name)
        };
        for s in &self.samples {
            let i = slot(&mut out, &s.class_name).expect("class listed");
            let entry = &mut out[i].1;
            let counts = match s.label {
                Label::Normal => &mut entry.normal,
                Label::Anomalous => &mut entry.anomalous,
            };
            *counts.entry(s.split).or_default() += 1;
            *entry.defect_types.entry(s.defect_type.clone()).or_default() += 1;
            if s.label == Label::Anomalous && s.mask_path.is_none() {
                entry.anomalous_without_mask += 1;
            }
        }
        for p in &self.problems {
            if let Some(i) = slot(&mut out, &p.class_name) {
                out[i].1.problems += 1;
            }
        }
        out
    }

    /// Paths relative to the root where possible (for printing and JSON output).
    pub fn relative<'a>(&self, path: &'a Path) -> &'a Path {
        path.strip_prefix(&self.root).unwrap_or(path)
    }
}
