//! Folder layouts: MVTec-AD style (`<cls>/{train,test}/<folder>/`, `<cls>/ground_truth/<defect>/`) and the plain
//! folder layout (`good/`, one folder per defect type, `ground_truth/<defect>/`, either at the root for one
//! class or under one folder per class).
//!
//! Rules shared by both:
//! * a folder named `good` or `ok` (BTAD) holds normal images; every other folder is a defect type and its
//!   images are anomalous (the AnomalyCLIP/AdaCLIP generators' rule, evaluation.md §4.3, §4.7);
//! * masks are paired with images **by file stem** (evaluation.md §4.1 suggests this over the generators'
//!   sorted-index pairing): for image `<stem>.<ext>` in defect folder `d`, the mask is
//!   `ground_truth/d/<stem>_mask.<ext>` (MVTec, MPDD, DTD-Synthetic), `ground_truth/d/<stem>.<ext>` (BTAD,
//!   Bayes-PFL's standardised sets) or `ground_truth/d/<stem>_GT.<ext>` (KSDD2 naming), any image extension;
//! * a class without any `ground_truth/` folder is classification-only: its anomalous images have no mask and
//!   load with an all-zero mask (HeadCT/BrainMRI/Br35H in AdaCLIP's layout);
//! * an anomalous image whose mask is missing while `ground_truth/` exists is reported as a [`Problem`] and
//!   keeps the expected mask path, so loading it fails with an error naming that file; masks without an image
//!   are reported too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::fs::{file_name, file_stem, is_image_file, list_dir, require_dir};
use crate::error::DataError;
use crate::index::{DatasetFormat, DatasetIndex, Label, Problem, Sample, Split};

/// Folder names that hold normal images.
pub const NORMAL_FOLDERS: &[&str] = &["good", "ok"];

/// Name of the ground-truth folder.
pub const GROUND_TRUTH: &str = "ground_truth";

/// Mask-name suffixes tried, in order, after the image stem.
const MASK_SUFFIXES: &[&str] = &["_mask", "", "_GT"];

/// True for `good` / `ok`.
pub fn is_normal_folder(name: &str) -> bool {
    NORMAL_FOLDERS.contains(&name)
}

/// Read an MVTec-style dataset rooted at `root` (class folders directly below it).
pub fn read_mvtec(root: &Path) -> Result<DatasetIndex, DataError> {
    require_dir(root, "dataset root")?;
    let mut samples = Vec::new();
    let mut problems = Vec::new();
    let mut found_class = false;
    for class_dir in list_dir(root)?.dirs {
        let class_name = file_name(&class_dir);
        let test_dir = class_dir.join("test");
        if !test_dir.is_dir() {
            if class_dir.join("train").is_dir() {
                problems.push(Problem {
                    class_name: class_name.clone(),
                    path: class_dir.clone(),
                    message: "has train/ but no test/ folder; class skipped".into(),
                });
            }
            continue;
        }
        found_class = true;
        let gt_dir = class_dir.join(GROUND_TRUTH);
        let gt = gt_dir.is_dir().then_some(gt_dir.as_path());
        let train_dir = class_dir.join("train");
        if train_dir.is_dir() {
            index_image_folders(
                &class_name,
                &train_dir,
                gt,
                Split::Train,
                &[],
                &mut samples,
                &mut problems,
            )?;
        }
        index_image_folders(
            &class_name,
            &test_dir,
            gt,
            Split::Test,
            &[],
            &mut samples,
            &mut problems,
        )?;
        if let Some(gt) = gt {
            report_orphan_masks(&class_name, gt, &samples, &mut problems)?;
        }
    }
    if !found_class {
        return Err(DataError::Layout {
            path: root.to_path_buf(),
            message: "no MVTec-style class folder found (expected <class>/test/<good|defect>/ below the root)".into(),
        });
    }
    Ok(DatasetIndex {
        root: root.to_path_buf(),
        format: DatasetFormat::Mvtec,
        samples,
        problems,
    })
}

/// Read a plain folder layout. If `root` itself has a `good/` folder it is one class named after the root
/// folder; otherwise every sub-folder with a `good/` or `ok/` folder is a class. All images are in the test
/// split.
pub fn read_folder(root: &Path) -> Result<DatasetIndex, DataError> {
    require_dir(root, "dataset root")?;
    let has_normal = |dir: &Path| NORMAL_FOLDERS.iter().any(|n| dir.join(n).is_dir());
    let class_dirs: Vec<PathBuf> = if has_normal(root) {
        vec![root.to_path_buf()]
    } else {
        list_dir(root)?
            .dirs
            .into_iter()
            .filter(|d| has_normal(d))
            .collect()
    };
    if class_dirs.is_empty() {
        return Err(DataError::Layout {
            path: root.to_path_buf(),
            message: "no plain-folder class found (expected good/ or ok/ below the root or below a class folder)"
                .into(),
        });
    }
    let mut samples = Vec::new();
    let mut problems = Vec::new();
    for class_dir in class_dirs {
        let class_name = match file_name(&class_dir) {
            name if name.is_empty() => "dataset".to_string(),
            name => name,
        };
        let gt_dir = class_dir.join(GROUND_TRUTH);
        let gt = gt_dir.is_dir().then_some(gt_dir.as_path());
        index_image_folders(
            &class_name,
            &class_dir,
            gt,
            Split::Test,
            &[GROUND_TRUTH],
            &mut samples,
            &mut problems,
        )?;
        if let Some(gt) = gt {
            report_orphan_masks(&class_name, gt, &samples, &mut problems)?;
        }
    }
    Ok(DatasetIndex {
        root: root.to_path_buf(),
        format: DatasetFormat::Folder,
        samples,
        problems,
    })
}

/// Index `<dir>/<folder>/<images>` for one class and split.
fn index_image_folders(
    class_name: &str,
    dir: &Path,
    gt: Option<&Path>,
    split: Split,
    skip: &[&str],
    samples: &mut Vec<Sample>,
    problems: &mut Vec<Problem>,
) -> Result<(), DataError> {
    let listing = list_dir(dir)?;
    for stray in listing.files.iter().filter(|f| is_image_file(f)) {
        problems.push(Problem {
            class_name: class_name.into(),
            path: stray.clone(),
            message: "image outside a good/defect folder; ignored".into(),
        });
    }
    // The naming convention used by this class's masks decides the expected name of a missing one.
    let expected_suffix = gt
        .map(mask_suffix_convention)
        .transpose()?
        .unwrap_or("_mask");
    for folder in listing.dirs {
        let folder_name = file_name(&folder);
        if skip.contains(&folder_name.as_str()) {
            continue;
        }
        let label = if is_normal_folder(&folder_name) {
            Label::Normal
        } else {
            Label::Anomalous
        };
        let masks = match (label, gt) {
            (Label::Anomalous, Some(gt)) => Some(masks_by_stem(&gt.join(&folder_name))?),
            _ => None,
        };
        for image in list_dir(&folder)?
            .files
            .into_iter()
            .filter(|f| is_image_file(f))
        {
            let mask_path = match (&masks, gt) {
                (Some(masks), Some(gt)) => {
                    let stem = file_stem(&image);
                    let found = MASK_SUFFIXES
                        .iter()
                        .find_map(|suffix| masks.get(&format!("{stem}{suffix}")));
                    Some(match found {
                        Some(path) => path.clone(),
                        None => {
                            let expected = gt
                                .join(&folder_name)
                                .join(format!("{stem}{expected_suffix}.png"));
                            problems.push(Problem {
                                class_name: class_name.into(),
                                path: image.clone(),
                                message: format!(
                                    "anomalous image has no mask (expected {})",
                                    expected.display()
                                ),
                            });
                            expected
                        }
                    })
                }
                _ => None,
            };
            samples.push(Sample {
                class_name: class_name.into(),
                image_path: image,
                mask_path,
                label,
                defect_type: folder_name.clone(),
                split,
            });
        }
    }
    Ok(())
}

/// Mask files of one ground-truth folder keyed by stem (empty when the folder does not exist).
fn masks_by_stem(dir: &Path) -> Result<BTreeMap<String, PathBuf>, DataError> {
    if !dir.is_dir() {
        return Ok(BTreeMap::new());
    }
    Ok(list_dir(dir)?
        .files
        .into_iter()
        .filter(|f| is_image_file(f))
        .map(|f| (file_stem(&f), f))
        .collect())
}

/// `"_mask"` if any mask of the class ends in `_mask`, `"_GT"` for KSDD2-style names, else `""`.
fn mask_suffix_convention(gt: &Path) -> Result<&'static str, DataError> {
    for defect in list_dir(gt)?.dirs {
        if let Some(first) = list_dir(&defect)?.files.iter().find(|f| is_image_file(f)) {
            let stem = file_stem(first);
            return Ok(if stem.ends_with("_mask") {
                "_mask"
            } else if stem.ends_with("_GT") {
                "_GT"
            } else {
                ""
            });
        }
    }
    Ok("_mask")
}

/// Report mask files that no sample of the class uses.
fn report_orphan_masks(
    class_name: &str,
    gt: &Path,
    samples: &[Sample],
    problems: &mut Vec<Problem>,
) -> Result<(), DataError> {
    let used: std::collections::HashSet<&Path> = samples
        .iter()
        .filter(|s| s.class_name == class_name)
        .filter_map(|s| s.mask_path.as_deref())
        .collect();
    for defect in list_dir(gt)?.dirs {
        for mask in list_dir(&defect)?
            .files
            .into_iter()
            .filter(|f| is_image_file(f))
        {
            if !used.contains(mask.as_path()) {
                problems.push(Problem {
                    class_name: class_name.into(),
                    path: mask,
                    message: "mask has no matching image; ignored".into(),
                });
            }
        }
    }
    Ok(())
}
