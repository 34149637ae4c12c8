//! `meta.json` (VAND, AnomalyCLIP, AdaCLIP, Bayes-PFL; evaluation.md §5.1) and AA-CLIP's JSON Lines
//! (evaluation.md §5.2), plus the writer for `meta.json`.
//!
//! `meta.json`: `{"train": {<cls>: [entry, …]}, "test": {<cls>: [entry, …]}}` with entry fields `img_path`,
//! `mask_path` (`""` for none), `cls_name`, `specie_name`, `anomaly` (0/1) and optionally `dataset_name`. Paths
//! are relative to the folder holding the file. Class order follows the file. A malformed `test` split is an
//! error naming the file, class and entry; a malformed `train` split is reported as a [`Problem`] and skipped,
//! because Bayes-PFL writes a placeholder there and no method reads it (evaluation.md §5.3: the training split
//! of the trained methods is `test`).
//!
//! JSON Lines: one object per line with `image_path`, `label` (0/1 as int or float), `class_name` and
//! `mask_path` (absent, empty or null for normal images). All lines are test-split images. BMAD-derived medical
//! sets store masks under `…/label/…` in AA-CLIP's files and under `…/anomaly_mask/…` in MVFA's layout: when the
//! listed mask does not exist, the other folder name is tried (evaluation.md §4.9).

use std::path::{Path, PathBuf};

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::fs::join_relative;
use crate::error::DataError;
use crate::index::{DatasetFormat, DatasetIndex, Label, Problem, Sample, Split};

/// A JSON object read as a list of key/value pairs in file order (serde_json's `Map` sorts keys unless the
/// workspace-wide `preserve_order` feature is on, which we do not impose on other crates).
struct Ordered<V>(Vec<(String, V)>);

struct OrderedVisitor<V>(std::marker::PhantomData<V>);

impl<'de, V: Deserialize<'de>> Visitor<'de> for OrderedVisitor<V> {
    type Value = Ordered<V>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, V>()? {
            out.push((k, v));
        }
        Ok(Ordered(out))
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(OrderedVisitor(std::marker::PhantomData))
    }
}

/// One split of a `meta.json` as read: classes in file order, an (empty) list, or something else.
enum RawSplit {
    Classes(Vec<(String, Value)>),
    List(Vec<Value>),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for RawSplit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RawVisitor;
        impl<'de> Visitor<'de> for RawVisitor {
            type Value = RawSplit;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of classes")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawSplit, A::Error> {
                Ok(RawSplit::Classes(
                    OrderedVisitor::<Value>(std::marker::PhantomData)
                        .visit_map(map)?
                        .0,
                ))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RawSplit, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<Value>()? {
                    out.push(v);
                }
                Ok(RawSplit::List(out))
            }
            fn visit_bool<E>(self, _: bool) -> Result<RawSplit, E> {
                Ok(RawSplit::Other("a boolean"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<RawSplit, E> {
                Ok(RawSplit::Other("a number"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<RawSplit, E> {
                Ok(RawSplit::Other("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<RawSplit, E> {
                Ok(RawSplit::Other("a number"))
            }
            fn visit_str<E>(self, _: &str) -> Result<RawSplit, E> {
                Ok(RawSplit::Other("a string"))
            }
            fn visit_unit<E>(self) -> Result<RawSplit, E> {
                Ok(RawSplit::Other("null"))
            }
        }
        deserializer.deserialize_any(RawVisitor)
    }
}

/// Read a `meta.json` file; paths resolve against the file's folder.
pub fn read_meta_json(path: &Path) -> Result<DatasetIndex, DataError> {
    let text = read_text(path, "meta.json file")?;
    parse_meta_json(&text, path)
}

/// Parse the text of a `meta.json` file read from `path` (named in errors; paths resolve against its
/// folder). Listed files that do not exist become [`Problem`]s, as in [`read_meta_json`].
pub fn parse_meta_json(text: &str, path: &Path) -> Result<DatasetIndex, DataError> {
    let json_err = |e: serde_json::Error| DataError::Json {
        path: path.to_path_buf(),
        line: Some(e.line() as u64),
        message: e.to_string(),
    };
    let top: Ordered<RawSplit> = serde_json::from_str(text).map_err(json_err)?;
    let root = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut samples = Vec::new();
    let mut problems = Vec::new();
    let mut saw_test = false;
    for (key, value) in top.0 {
        let split = match key.as_str() {
            "train" => Split::Train,
            "test" => Split::Test,
            _ => continue,
        };
        saw_test |= split == Split::Test;
        match parse_meta_split(path, &root, split, value) {
            Ok((mut s, mut p)) => {
                samples.append(&mut s);
                problems.append(&mut p);
            }
            Err(e) if split == Split::Train => problems.push(Problem {
                class_name: String::new(),
                path: path.to_path_buf(),
                message: format!("train split ignored: {e}"),
            }),
            Err(e) => return Err(e),
        }
    }
    if !saw_test {
        return Err(DataError::Json {
            path: path.to_path_buf(),
            line: None,
            message:
                "no \"test\" key at the top level (expected {\"train\": {...}, \"test\": {...}})"
                    .into(),
        });
    }
    Ok(DatasetIndex {
        root,
        format: DatasetFormat::MetaJson,
        samples,
        problems,
    })
}

fn parse_meta_split(
    path: &Path,
    root: &Path,
    split: Split,
    value: RawSplit,
) -> Result<(Vec<Sample>, Vec<Problem>), DataError> {
    let bad = |message: String| DataError::Json {
        path: path.to_path_buf(),
        line: None,
        message,
    };
    // Generators for test-only sets write `{}` or `[]` for an empty split.
    let classes: Vec<(String, Value)> = match value {
        RawSplit::Classes(c) => c,
        RawSplit::List(l) if l.is_empty() => Vec::new(),
        RawSplit::List(_) => {
            return Err(bad(format!(
                "\"{split}\" must be an object of classes, found a list"
            )));
        }
        RawSplit::Other(k) => {
            return Err(bad(format!(
                "\"{split}\" must be an object of classes, found {k}"
            )));
        }
    };
    let mut samples = Vec::new();
    let mut problems = Vec::new();
    for (class_key, entries) in classes {
        let Value::Array(entries) = entries else {
            return Err(bad(format!(
                "\"{split}\".\"{class_key}\" must be a list of entries, found {}",
                kind(&entries)
            )));
        };
        for (i, entry) in entries.iter().enumerate() {
            let at = format!("\"{split}\".\"{class_key}\"[{i}]");
            let Value::Object(fields) = entry else {
                return Err(bad(format!(
                    "{at} must be an object, found {}",
                    kind(entry)
                )));
            };
            let string = |name: &str, required: bool| -> Result<Option<String>, DataError> {
                match fields.get(name) {
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    Some(Value::Null) | None if !required => Ok(None),
                    None => Err(bad(format!("{at}: missing field \"{name}\""))),
                    Some(other) => Err(bad(format!(
                        "{at}: \"{name}\" must be a string, found {}",
                        kind(other)
                    ))),
                }
            };
            let img = string("img_path", true)?.unwrap_or_default();
            if img.is_empty() {
                return Err(bad(format!("{at}: empty \"img_path\"")));
            }
            let mask = string("mask_path", false)?.filter(|m| !m.is_empty());
            let class_name = string("cls_name", false)?.unwrap_or_else(|| class_key.clone());
            let specie = string("specie_name", false)?.unwrap_or_default();
            let label = parse_label(fields.get("anomaly"))
                .map_err(|m| bad(format!("{at}: \"anomaly\" {m}")))?;
            let image_path = join_relative(root, &img);
            // AnomalyCLIP treats a mask path that resolves to a folder as "no mask" (evaluation.md §3).
            let mask_path = mask
                .map(|m| join_relative(root, &m))
                .filter(|p| !p.is_dir());
            check_exists(&class_name, &image_path, "image", &mut problems);
            if let Some(m) = &mask_path {
                check_exists(&class_name, m, "mask", &mut problems);
            }
            let defect_type = if specie.is_empty() {
                if label == Label::Normal {
                    "good".into()
                } else {
                    "anomaly".into()
                }
            } else {
                specie
            };
            samples.push(Sample {
                class_name,
                image_path,
                mask_path,
                label,
                defect_type,
                split,
            });
        }
    }
    Ok((samples, problems))
}

/// Read AA-CLIP JSON Lines; paths resolve against `root` (the dataset root, not the jsonl's folder).
pub fn read_jsonl(path: &Path, root: &Path) -> Result<DatasetIndex, DataError> {
    let text = read_text(path, "jsonl file")?;
    parse_jsonl(&text, path, root)
}

/// Parse the text of AA-CLIP JSON Lines read from `path` (named in errors); paths resolve against `root`.
pub fn parse_jsonl(text: &str, path: &Path, root: &Path) -> Result<DatasetIndex, DataError> {
    let mut samples = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i as u64 + 1;
        let bad = |message: String| DataError::Json {
            path: path.to_path_buf(),
            line: Some(line_no),
            message,
        };
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        let Value::Object(fields) = value else {
            return Err(bad(format!(
                "expected a JSON object, found {}",
                kind(&value)
            )));
        };
        let string = |name: &str| -> Result<Option<String>, DataError> {
            match fields.get(name) {
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Null) | None => Ok(None),
                Some(other) => Err(bad(format!(
                    "\"{name}\" must be a string, found {}",
                    kind(other)
                ))),
            }
        };
        let image = string("image_path")?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad("missing \"image_path\"".into()))?;
        let class_name = string("class_name")?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad("missing \"class_name\"".into()))?;
        let label = parse_label(fields.get("label")).map_err(|m| bad(format!("\"label\" {m}")))?;
        let mask = string("mask_path")?.filter(|s| !s.is_empty());
        let image_path = join_relative(root, &image);
        let mask_path = mask.map(|m| resolve_bmad_mask(root, &m));
        check_exists(&class_name, &image_path, "image", &mut problems);
        if let Some(m) = &mask_path {
            check_exists(&class_name, m, "mask", &mut problems);
        }
        let defect_type = if label == Label::Normal {
            "good"
        } else {
            "anomaly"
        }
        .to_string();
        samples.push(Sample {
            class_name,
            image_path,
            mask_path,
            label,
            defect_type,
            split: Split::Test,
        });
    }
    if samples.is_empty() {
        return Err(DataError::Json {
            path: path.to_path_buf(),
            line: None,
            message: "no records".into(),
        });
    }
    Ok(DatasetIndex {
        root: root.to_path_buf(),
        format: DatasetFormat::Jsonl,
        samples,
        problems,
    })
}

/// The listed mask, or the same path with `label` ↔ `anomaly_mask` swapped when only that one exists.
fn resolve_bmad_mask(root: &Path, relative: &str) -> PathBuf {
    let listed = join_relative(root, relative);
    if listed.is_file() {
        return listed;
    }
    let parts: Vec<&str> = relative.split('/').collect();
    for (from, to) in [("label", "anomaly_mask"), ("anomaly_mask", "label")] {
        if let Some(pos) = parts.iter().rposition(|p| *p == from) {
            let mut swapped = parts.clone();
            swapped[pos] = to;
            let candidate = join_relative(root, &swapped.join("/"));
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    listed
}

/// 0/1 as integer, float (AA-CLIP writes 1.0 for some sets) or boolean.
fn parse_label(value: Option<&Value>) -> Result<Label, String> {
    let Some(value) = value else {
        return Err("is missing".into());
    };
    let number = match value {
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::Number(n) => n.as_f64(),
        _ => None,
    };
    match number {
        Some(0.0) => Ok(Label::Normal),
        Some(1.0) => Ok(Label::Anomalous),
        _ => Err(format!("must be 0 or 1, found {value}")),
    }
}

fn check_exists(class_name: &str, path: &Path, what: &str, problems: &mut Vec<Problem>) {
    if !path.is_file() {
        problems.push(Problem {
            class_name: class_name.into(),
            path: path.to_path_buf(),
            message: format!("{what} file listed in the metadata does not exist"),
        });
    }
}

fn read_text(path: &Path, what: &'static str) -> Result<String, DataError> {
    if !path.is_file() {
        return Err(DataError::NotFound {
            what,
            path: path.to_path_buf(),
        });
    }
    std::fs::read_to_string(path).map_err(|e| DataError::io("read", path, e))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// One `meta.json` entry, for writers (the synthetic benchmark, converters).
#[derive(Clone, Debug, serde::Serialize)]
pub struct MetaEntry {
    /// Image path relative to the meta root, `/`-separated.
    pub img_path: String,
    /// Mask path relative to the meta root, or `""`.
    pub mask_path: String,
    /// Class name.
    pub cls_name: String,
    /// Defect folder name (`good` for normal images).
    pub specie_name: String,
    /// 0 or 1.
    pub anomaly: u8,
}

/// Serialise `{"test": {...}, "train": {...}}` with classes in the given order.
pub fn write_meta_json(
    train: &[(String, Vec<MetaEntry>)],
    test: &[(String, Vec<MetaEntry>)],
) -> String {
    // Build the text by hand around serde_json-encoded pieces so the class order is kept.
    fn split_json(classes: &[(String, Vec<MetaEntry>)]) -> String {
        let parts: Vec<String> = classes
            .iter()
            .map(|(c, entries)| {
                let key = serde_json::to_string(c).expect("string serialises");
                let list = serde_json::to_string_pretty(entries).expect("entries serialise");
                format!("{key}: {list}")
            })
            .collect();
        format!("{{{}}}", parts.join(", "))
    }
    format!(
        "{{\"test\": {}, \"train\": {}}}\n",
        split_json(test),
        split_json(train)
    )
}
