//! Taking tensors out of a canonical map into modules, recording every problem by name.
use std::collections::{BTreeMap, BTreeSet};

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Device, Tensor, TensorData};

use super::names::is_known_extra;
use super::{Entry, WeightError};

/// One thing that did not fit.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// The model needs this tensor; the file lacks it.
    Missing {
        /// Canonical name.
        name: String,
        /// Shape the model expects.
        expected: Vec<usize>,
    },
    /// Present with another shape.
    Shape {
        /// Canonical name.
        name: String,
        /// Shape the model expects.
        expected: Vec<usize>,
        /// Shape in the file.
        found: Vec<usize>,
    },
    /// Present but unreadable.
    Unreadable {
        /// Canonical name.
        name: String,
        /// Why.
        message: String,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing { name, expected } => write!(f, "missing `{name}` (expected shape {expected:?})"),
            Self::Shape { name, expected, found } => write!(f, "`{name}` has shape {found:?}, expected {expected:?}"),
            Self::Unreadable { name, message } => write!(f, "`{name}`: {message}"),
        }
    }
}

/// What a load did: problems, unused tensors, ignored extras.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Where the weights came from.
    pub origin: String,
    /// Tensors loaded.
    pub loaded: usize,
    /// Missing, mis-shaped or unreadable tensors.
    pub problems: Vec<Problem>,
    /// Tensors in the file that nothing used, with their shapes.
    pub unused: Vec<(String, Vec<usize>)>,
    /// Known extras that were skipped on purpose (`position_ids`, `attn_mask`, …).
    pub ignored: Vec<String>,
}

impl LoadReport {
    /// True when every needed tensor was loaded and nothing was left over.
    pub fn is_complete(&self) -> bool {
        self.problems.is_empty() && self.unused.is_empty()
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{}: {} tensors loaded, {} problems, {} unused (pass --allow-partial to load anyway)",
            self.origin,
            self.loaded,
            self.problems.len(),
            self.unused.len()
        )?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        for (name, shape) in &self.unused {
            writeln!(f, "  - unused `{name}` {shape:?}")?;
        }
        Ok(())
    }
}

/// Hands out tensors by canonical name and keeps the books.
pub struct WeightReader {
    origin: String,
    entries: BTreeMap<String, Entry>,
    used: BTreeSet<String>,
    problems: Vec<Problem>,
    device: Device,
}

impl WeightReader {
    /// A reader over canonical entries, creating tensors on `device`.
    pub fn new(origin: impl Into<String>, entries: BTreeMap<String, Entry>, device: &Device) -> Self {
        Self { origin: origin.into(), entries, used: BTreeSet::new(), problems: Vec::new(), device: device.clone() }
    }

    /// The device tensors are created on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Whether `name` exists (without taking it).
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Shape of `name` in the file, if present.
    pub fn shape_of(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    /// Values of `name` checked against `expected`; `None` (and a recorded problem) otherwise.
    pub fn values(&mut self, name: &str, expected: &[usize]) -> Option<Vec<f32>> {
        let Some(entry) = self.entries.get(name) else {
            self.problems.push(Problem::Missing { name: name.to_string(), expected: expected.to_vec() });
            return None;
        };
        self.used.insert(name.to_string());
        if entry.shape != expected {
            self.problems.push(Problem::Shape { name: name.to_string(), expected: expected.to_vec(), found: entry.shape.clone() });
            return None;
        }
        match entry.to_f32(name) {
            Ok(v) => Some(v),
            Err(e) => {
                self.problems.push(Problem::Unreadable { name: name.to_string(), message: e.to_string() });
                None
            }
        }
    }

    /// A tensor of rank `D`.
    pub fn tensor<const D: usize>(&mut self, name: &str, expected: [usize; D]) -> Option<Tensor<D>> {
        self.values(name, &expected).map(|v| Tensor::from_data(TensorData::new(v, expected), &self.device))
    }

    /// Replaces `param` by the tensor `name` if it loads (its current shape is the expectation).
    pub fn param<const D: usize>(&mut self, param: &mut Param<Tensor<D>>, name: &str) {
        let expected: [usize; D] = param.lazy_shape().dims();
        if let Some(t) = self.tensor(name, expected) {
            *param = Param::from_tensor(t);
        }
    }

    /// PyTorch `Linear` at `prefix` (`.weight` `[out, in]`, transposed into burn's `[in, out]`; `.bias`).
    pub fn linear(&mut self, linear: &mut Linear, prefix: &str) {
        self.linear_named(linear, &format!("{prefix}.weight"), &format!("{prefix}.bias"));
    }

    /// A PyTorch linear map stored under explicit names (OpenAI's `in_proj_weight`/`in_proj_bias`).
    pub fn linear_named(&mut self, linear: &mut Linear, weight: &str, bias: &str) {
        let [d_in, d_out] = linear.weight.lazy_shape().dims();
        if let Some(w) = self.tensor::<2>(weight, [d_out, d_in]) {
            linear.weight = Param::from_tensor(w.transpose());
        }
        if let Some(b) = linear.bias.as_mut() {
            self.param(b, bias);
        }
    }

    /// LayerNorm at `prefix` (`.weight` → gamma, `.bias` → beta).
    pub fn layer_norm(&mut self, ln: &mut LayerNorm, prefix: &str) {
        self.param(&mut ln.gamma, &format!("{prefix}.weight"));
        if let Some(beta) = ln.beta.as_mut() {
            self.param(beta, &format!("{prefix}.bias"));
        }
    }

    /// Conv2d at `prefix` (same layout as PyTorch).
    pub fn conv2d(&mut self, conv: &mut Conv2d, prefix: &str) {
        self.param(&mut conv.weight, &format!("{prefix}.weight"));
        if let Some(bias) = conv.bias.as_mut() {
            self.param(bias, &format!("{prefix}.bias"));
        }
    }

    /// Marks `name` as used without loading it (a tensor the model deliberately does not need).
    pub fn skip(&mut self, name: &str) {
        if self.entries.contains_key(name) {
            self.used.insert(name.to_string());
        }
    }

    /// Marks every key under `prefix` as used (documented dead weights).
    pub fn skip_prefix(&mut self, prefix: &str) -> Vec<String> {
        let names: Vec<String> = self.entries.keys().filter(|k| k.starts_with(prefix)).cloned().collect();
        self.used.extend(names.iter().cloned());
        names
    }

    /// The books so far: problems, unused tensors, ignored extras.
    pub fn report(&self) -> LoadReport {
        let mut unused = Vec::new();
        let mut ignored = Vec::new();
        for (name, entry) in &self.entries {
            if self.used.contains(name) {
                continue;
            }
            if is_known_extra(name) {
                ignored.push(name.clone());
            } else {
                unused.push((name.clone(), entry.shape.clone()));
            }
        }
        LoadReport { origin: self.origin.clone(), loaded: self.used.len(), problems: self.problems.clone(), unused, ignored }
    }

    /// Ends the load: an error listing everything wrong unless the load was complete or
    /// `allow_partial` is set (then the report is returned for the caller to print).
    pub fn finish(self, allow_partial: bool) -> Result<LoadReport, WeightError> {
        let report = self.report();
        if report.is_complete() || allow_partial {
            Ok(report)
        } else {
            Err(WeightError::Mismatch { report })
        }
    }
}
