//! Readers, one per on-disk format, and format auto-detection.
//!
//! [`open_dataset`] is the entry point. With [`FormatChoice::Auto`] the format is decided by these rules,
//! checked in order (the first that matches wins):
//! 1. a metadata file was given explicitly: `.jsonl` → AA-CLIP JSON Lines (paths relative to the dataset root),
//!    anything else → `meta.json`;
//! 2. `<root>/meta.json` exists → `meta.json`; otherwise exactly one `<root>/meta_*.json` (Bayes-PFL's
//!    `meta_mvtec.json`, …) → that file; several → an error listing them (name one with `--meta`);
//! 3. `<root>/split_csv/1cls.csv` exists → VisA;
//! 4. exactly one `<root>/*.jsonl` → AA-CLIP JSON Lines;
//! 5. `<root>/test/{good,Ungood}/img/` or such a folder one level down → the BMAD medical layout (MVFA);
//! 6. some `<root>/<class>/test/` folder exists → MVTec layout;
//! 7. `<root>/good/` or `<root>/ok/`, or such a folder one level down → plain folder layout;
//! 8. otherwise an error saying what was looked for.
//!
//! Metadata files win over folder layouts because they are the curated list the papers evaluate (for example
//! Bayes-PFL's balanced KSDD2 subsample lives in a folder tree that holds more images than its `meta.json`).

pub mod bmad;
pub mod fs;
pub mod meta;
pub mod mvtec;
pub mod visa;

use std::path::{Path, PathBuf};

pub use bmad::{SeedLine, fewshot_samples, parse_fewshot_seed, read_bmad};
pub use meta::{MetaEntry, parse_jsonl, parse_meta_json, read_jsonl, read_meta_json, write_meta_json};
pub use mvtec::{read_folder, read_mvtec};
pub use visa::{DEFAULT_SPLIT_CSV, parse_visa_csv, read_visa};

use crate::error::DataError;
use crate::index::{DatasetFormat, DatasetIndex};

/// Which reader to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FormatChoice {
    /// Detect from the folder contents (rules in the module documentation).
    #[default]
    Auto,
    /// Use this format.
    Fixed(DatasetFormat),
}

impl std::str::FromStr for FormatChoice {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, DataError> {
        Ok(match s {
            "auto" => FormatChoice::Auto,
            "mvtec" | "btad" | "mpdd" | "dtd" | "ksdd2" => {
                FormatChoice::Fixed(DatasetFormat::Mvtec)
            }
            "visa" => FormatChoice::Fixed(DatasetFormat::Visa),
            "meta" | "meta-json" | "meta.json" => FormatChoice::Fixed(DatasetFormat::MetaJson),
            "jsonl" | "aa-clip" => FormatChoice::Fixed(DatasetFormat::Jsonl),
            "folder" | "plain" => FormatChoice::Fixed(DatasetFormat::Folder),
            "bmad" | "mvfa" | "medical" => FormatChoice::Fixed(DatasetFormat::Bmad),
            other => {
                return Err(DataError::Argument(format!(
                    "unknown dataset format {other:?} (expected auto, mvtec, visa, meta-json, jsonl, folder or bmad)"
                )));
            }
        })
    }
}

/// How to open a dataset.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// Reader choice.
    pub format: FormatChoice,
    /// A metadata file (`meta.json`, `meta_<name>.json` or `*.jsonl`) to use instead of looking in the root.
    pub metadata: Option<PathBuf>,
    /// VisA split file relative to the root (default [`DEFAULT_SPLIT_CSV`]).
    pub visa_split_csv: Option<String>,
}

/// Open the dataset at `root`.
pub fn open_dataset(root: &Path, options: &OpenOptions) -> Result<DatasetIndex, DataError> {
    let (format, metadata) = match options.format {
        FormatChoice::Fixed(format) => (format, options.metadata.clone()),
        FormatChoice::Auto => detect_format(root, options.metadata.as_deref())?,
    };
    match format {
        DatasetFormat::Mvtec => read_mvtec(root),
        DatasetFormat::Folder => read_folder(root),
        DatasetFormat::Bmad => read_bmad(root),
        DatasetFormat::Visa => read_visa(root, options.visa_split_csv.as_deref()),
        DatasetFormat::MetaJson => {
            let path = match metadata {
                Some(p) => p,
                None => find_meta_json(root)?.ok_or_else(|| DataError::NotFound {
                    what: "meta.json (or a single meta_*.json)",
                    path: root.join("meta.json"),
                })?,
            };
            read_meta_json(&path)
        }
        DatasetFormat::Jsonl => {
            let path = match metadata {
                Some(p) => p,
                None => find_single_jsonl(root)?.ok_or_else(|| DataError::Layout {
                    path: root.to_path_buf(),
                    message: "no *.jsonl file in the dataset root; name it with --meta".into(),
                })?,
            };
            read_jsonl(&path, root)
        }
    }
}

/// Detect the format of `root` (see the module documentation), returning it and the metadata file to read.
pub fn detect_format(
    root: &Path,
    metadata: Option<&Path>,
) -> Result<(DatasetFormat, Option<PathBuf>), DataError> {
    fs::require_dir(root, "dataset root")?;
    if let Some(m) = metadata {
        let is_jsonl = m
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("jsonl"));
        let format = if is_jsonl {
            DatasetFormat::Jsonl
        } else {
            DatasetFormat::MetaJson
        };
        return Ok((format, Some(m.to_path_buf())));
    }
    if let Some(meta) = find_meta_json(root)? {
        return Ok((DatasetFormat::MetaJson, Some(meta)));
    }
    if root.join(DEFAULT_SPLIT_CSV).is_file() {
        return Ok((DatasetFormat::Visa, None));
    }
    if let Some(jsonl) = find_single_jsonl(root)? {
        return Ok((DatasetFormat::Jsonl, Some(jsonl)));
    }
    let listing = fs::list_dir(root)?;
    if bmad::is_bmad_dataset(root) || listing.dirs.iter().any(|d| bmad::is_bmad_dataset(d)) {
        return Ok((DatasetFormat::Bmad, None));
    }
    if listing.dirs.iter().any(|d| d.join("test").is_dir()) {
        return Ok((DatasetFormat::Mvtec, None));
    }
    let has_normal = |d: &Path| mvtec::NORMAL_FOLDERS.iter().any(|n| d.join(n).is_dir());
    if has_normal(root) || listing.dirs.iter().any(|d| has_normal(d)) {
        return Ok((DatasetFormat::Folder, None));
    }
    Err(DataError::Layout {
        path: root.to_path_buf(),
        message: "cannot detect the dataset format: no meta.json / meta_*.json, no split_csv/1cls.csv, no *.jsonl, \
                  no <Obj>_AD/test/ folder, no <class>/test/ folder and no good/ folder; pass --format and --meta"
            .into(),
    })
}

/// `<root>/meta.json`, or the only `<root>/meta_*.json`; several candidates are an error.
fn find_meta_json(root: &Path) -> Result<Option<PathBuf>, DataError> {
    let plain = root.join("meta.json");
    if plain.is_file() {
        return Ok(Some(plain));
    }
    let candidates: Vec<PathBuf> = fs::list_dir(root)?
        .files
        .into_iter()
        .filter(|f| {
            let name = fs::file_name(f);
            name.starts_with("meta_") && name.ends_with(".json")
        })
        .collect();
    match candidates.len() {
        0 => Ok(None),
        1 => Ok(candidates.into_iter().next()),
        _ => Err(DataError::Layout {
            path: root.to_path_buf(),
            message: format!(
                "several metadata files ({}); choose one with --meta",
                candidates
                    .iter()
                    .map(|c| fs::file_name(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// The only `<root>/*.jsonl`, if exactly one exists.
fn find_single_jsonl(root: &Path) -> Result<Option<PathBuf>, DataError> {
    let candidates: Vec<PathBuf> = fs::list_dir(root)?
        .files
        .into_iter()
        .filter(|f| {
            f.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("jsonl"))
        })
        .collect();
    match candidates.len() {
        0 => Ok(None),
        1 => Ok(candidates.into_iter().next()),
        _ => Err(DataError::Layout {
            path: root.to_path_buf(),
            message: format!(
                "several .jsonl files ({}); choose one with --meta",
                candidates
                    .iter()
                    .map(|c| fs::file_name(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}
