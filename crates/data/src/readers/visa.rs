//! VisA with its split csv (evaluation.md §4.2): `<root>/split_csv/1cls.csv` with columns
//! `object, split, label, image, mask`; `split` ∈ {train, test}, `label` ∈ {normal, anomaly}; `image` and `mask`
//! are relative to the root and `mask` is empty for normal images. The masks store component ids, so they are
//! binarised with `> 0` when loaded (as every mask is).

use std::path::Path;

use super::fs::{join_relative, require_dir};
use crate::error::DataError;
use crate::index::{DatasetFormat, DatasetIndex, Label, Problem, Sample, Split};

/// The split file used unless another is named.
pub const DEFAULT_SPLIT_CSV: &str = "split_csv/1cls.csv";

const COLUMNS: [&str; 5] = ["object", "split", "label", "image", "mask"];

/// Read VisA from `root` using `split_csv` (relative to the root; [`DEFAULT_SPLIT_CSV`] if `None`).
///
/// A malformed row (unknown split or label, empty image, anomalous row without a mask, wrong field count) is an
/// error naming the csv file and line: silently dropping rows would change the benchmark. Image or mask files
/// that do not exist are reported as [`Problem`]s and fail when loaded.
pub fn read_visa(root: &Path, split_csv: Option<&str>) -> Result<DatasetIndex, DataError> {
    require_dir(root, "dataset root")?;
    let csv_path = join_relative(root, split_csv.unwrap_or(DEFAULT_SPLIT_CSV));
    if !csv_path.is_file() {
        return Err(DataError::NotFound {
            what: "VisA split csv",
            path: csv_path,
        });
    }
    let file = std::fs::File::open(&csv_path).map_err(|e| DataError::io("open", &csv_path, e))?;
    parse_visa_csv(file, &csv_path, root)
}

/// Parse a VisA split csv read from `csv_path` (named in errors); image and mask paths resolve against `root`.
pub fn parse_visa_csv(csv: impl std::io::Read, csv_path: &Path, root: &Path) -> Result<DatasetIndex, DataError> {
    let csv_path = csv_path.to_path_buf();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(csv);
    let headers = reader
        .headers()
        .map_err(|e| csv_error(&csv_path, 1, e))?
        .clone();
    let mut column = [0usize; 5];
    for (slot, name) in column.iter_mut().zip(COLUMNS) {
        *slot = headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| DataError::Csv {
                path: csv_path.clone(),
                line: 1,
                message: format!(
                    "missing column {name:?} (header has {:?}; expected {})",
                    headers.iter().collect::<Vec<_>>(),
                    COLUMNS.join(", ")
                ),
            })?;
    }
    let mut samples = Vec::new();
    let mut problems = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            csv_error(&csv_path, line, e)
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let bad = |message: String| DataError::Csv {
            path: csv_path.clone(),
            line,
            message,
        };
        let field = |i: usize| record.get(column[i]).unwrap_or("");
        let (object, split, label, image, mask) =
            (field(0), field(1), field(2), field(3), field(4));
        if object.is_empty() {
            return Err(bad("empty object (class) field".into()));
        }
        let split = match split {
            "train" => Split::Train,
            "test" => Split::Test,
            other => {
                return Err(bad(format!(
                    "split is {other:?}, expected \"train\" or \"test\""
                )));
            }
        };
        let label = match label {
            "normal" => Label::Normal,
            "anomaly" => Label::Anomalous,
            other => {
                return Err(bad(format!(
                    "label is {other:?}, expected \"normal\" or \"anomaly\""
                )));
            }
        };
        if image.is_empty() {
            return Err(bad("empty image path".into()));
        }
        let mask_path = match (label, mask.is_empty()) {
            (Label::Anomalous, true) => {
                return Err(bad("anomalous row without a mask path".into()));
            }
            (Label::Anomalous, false) => Some(join_relative(root, mask)),
            (Label::Normal, true) => None,
            (Label::Normal, false) => {
                return Err(bad(format!(
                    "normal row has a mask path {mask:?} (VisA normal rows have none)"
                )));
            }
        };
        let image_path = join_relative(root, image);
        for (what, path) in [("image", Some(&image_path)), ("mask", mask_path.as_ref())] {
            if let Some(path) = path.filter(|p| !p.is_file()) {
                problems.push(Problem {
                    class_name: object.into(),
                    path: path.clone(),
                    message: format!(
                        "{what} file listed in {} line {line} does not exist",
                        csv_path.display()
                    ),
                });
            }
        }
        samples.push(Sample {
            class_name: object.into(),
            image_path,
            mask_path,
            label,
            defect_type: if label == Label::Normal {
                "normal".into()
            } else {
                "anomaly".into()
            },
            split,
        });
    }
    if samples.is_empty() {
        return Err(DataError::Csv {
            path: csv_path,
            line: 1,
            message: "no rows".into(),
        });
    }
    Ok(DatasetIndex {
        root: root.to_path_buf(),
        format: DatasetFormat::Visa,
        samples,
        problems,
    })
}

fn csv_error(path: &Path, line: u64, e: csv::Error) -> DataError {
    DataError::Csv {
        path: path.to_path_buf(),
        line,
        message: e.to_string(),
    }
}
