//! Threshold-free binary metrics: AUROC, average precision, F1-max, and their curves.
//!
//! All of them are computed in one pass over the distinct score values from the highest down
//! (ties grouped as sklearn's `_binary_clf_curve` groups them), with integer counts and `f64`
//! accumulation, after a single sort ([`SortedScores`]).

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::numeric::{CompensatedSum, even_indices};
use crate::sorted::{BinaryLabel, SortedScores, key_score};

/// Which area-under-the-precision-recall-curve definition to report as "AP".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApConvention {
    /// sklearn `average_precision_score`: `Σ (R_n − R_{n−1})·P_n`, no interpolation. Used by the research
    /// repositories and by anomalib ≥ 2.7 `AUPR`.
    #[default]
    Step,
    /// Trapezoid under the recall-sorted PR curve (torchmetrics `auc(recall, precision, reorder=True)`),
    /// as anomalib ≤ 2.6 `AUPR` and mala-lab's WinCLIP compute it.
    Trapezoid,
}

/// The best F1 over all thresholds, where it is reached, and the precision/recall there.
///
/// Computed as `2·TP / (TP + FP + P)`, which equals `2PR/(P+R)` exactly. The repositories' variants
/// that add ε to the denominator (anomalib `F1Max` 1e-10, Bayes-PFL 1e-8 / 1e-6) differ from it by less
/// than ε.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct F1Max {
    /// `max 2PR/(P+R)` over the precision-recall curve (finite values only, as VAND/AdaCLIP do).
    pub f1: f64,
    /// Score threshold (predict anomalous when `score >= threshold`); on exact ties of F1 the lowest
    /// such threshold, as anomalib's `F1Max` picks it.
    pub threshold: f32,
    /// Precision at that threshold.
    pub precision: f64,
    /// Recall at that threshold.
    pub recall: f64,
}

/// AUROC, AP (both conventions) and F1-max of one set of scores and labels.
///
/// Every metric is `None` when the labels hold a single value (all normal or all anomalous): sklearn
/// raises for AUROC there and the research repositories report 0; here it is undefined, and the zero
/// convention is an explicit option of [`crate::MetricsTable::macro_mean`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BinaryMetrics {
    /// Number of anomalous samples.
    pub positives: u64,
    /// Number of normal samples.
    pub negatives: u64,
    /// Area under the ROC curve (sklearn `roc_auc_score`).
    pub auroc: Option<f64>,
    /// sklearn `average_precision_score` (step-wise).
    pub average_precision: Option<f64>,
    /// Trapezoid PR-AUC of anomalib ≤ 2.6 (`AUPR`, torchmetrics ≥ 1.0 curve: not cut at full recall).
    pub aupr_trapezoid: Option<f64>,
    /// F1-max over the precision-recall curve.
    pub f1_max: Option<F1Max>,
}

impl BinaryMetrics {
    /// Computes every metric in one pass over sorted scores.
    pub fn from_sorted(sorted: &SortedScores) -> Self {
        let (n_pos, n_neg) = (sorted.positives(), sorted.negatives());
        let undefined = Self {
            positives: n_pos,
            negatives: n_neg,
            auroc: None,
            average_precision: None,
            aupr_trapezoid: None,
            f1_max: None,
        };
        if n_pos == 0 || n_neg == 0 {
            return undefined;
        }
        let p_total = n_pos as f64;

        let (mut tp, mut fp) = (0u64, 0u64);
        // Twice the ROC area in units of one positive × one negative: exact in integers.
        let mut roc_area2: u128 = 0;
        let mut ap_sum = CompensatedSum::default();
        let mut best: Option<F1Max> = None;
        // Trapezoid PR state: the previous recall level (tp count) with the precision at its highest
        // threshold, and the current level with the precision at its lowest threshold so far.
        // Level 0 starts at the curve's artificial (recall 0, precision 1) end point.
        let mut trap_area = CompensatedSum::default();
        let (mut prev_level_tp, mut prev_level_first_precision) = (0u64, 1.0f64);
        let mut current_level: Option<(u64, f64, f64)> = None; // (tp, first precision, last precision)

        for level in sorted.levels() {
            let (tp0, fp0) = (tp, fp);
            tp += level.positives;
            fp += level.negatives;
            roc_area2 += u128::from(fp - fp0) * u128::from(tp + tp0);

            let precision = tp as f64 / (tp + fp) as f64;
            if level.positives > 0 {
                ap_sum.add(level.positives as f64 * precision);
            }
            if tp > 0 {
                let f1 = 2.0 * tp as f64 / (tp + fp + n_pos) as f64;
                if best.is_none_or(|b| f1 >= b.f1) {
                    best = Some(F1Max {
                        f1,
                        threshold: key_score(level.key),
                        precision,
                        recall: tp as f64 / p_total,
                    });
                }
            }

            if tp > 0 {
                match current_level {
                    Some((level_tp, first, _)) if level_tp == tp => {
                        current_level = Some((level_tp, first, precision));
                    }
                    Some((level_tp, first, last)) => {
                        trap_area.add(
                            (level_tp - prev_level_tp) as f64 / p_total * (prev_level_first_precision + last) / 2.0,
                        );
                        (prev_level_tp, prev_level_first_precision) = (level_tp, first);
                        current_level = Some((tp, precision, precision));
                    }
                    None => current_level = Some((tp, precision, precision)),
                }
            }
        }
        // The last recall level (full recall) runs down to the lowest threshold: torchmetrics ≥ 1.0 no
        // longer cuts the curve at the first full-recall point.
        if let Some((level_tp, _, last)) = current_level {
            trap_area.add((level_tp - prev_level_tp) as f64 / p_total * (prev_level_first_precision + last) / 2.0);
        }

        Self {
            auroc: Some(roc_area2 as f64 / (2.0 * n_pos as f64 * n_neg as f64)),
            average_precision: Some(ap_sum.value() / p_total),
            aupr_trapezoid: Some(trap_area.value()),
            f1_max: best,
            ..undefined
        }
    }

    /// The AP value under the given convention.
    pub fn ap(&self, convention: ApConvention) -> Option<f64> {
        match convention {
            ApConvention::Step => self.average_precision,
            ApConvention::Trapezoid => self.aupr_trapezoid,
        }
    }
}

/// AUROC, AP and F1-max of `scores` against `labels` (see [`BinaryMetrics`]).
pub fn binary_metrics<L: BinaryLabel>(scores: &[f32], labels: &[L]) -> Result<BinaryMetrics> {
    Ok(BinaryMetrics::from_sorted(&SortedScores::new(scores, labels)?))
}

/// ROC curve points as sklearn's `roc_curve(drop_intermediate=True)` returns them.
///
/// Memory is proportional to the number of distinct scores; use [`RocCurve::downsample`] before plotting
/// pixel-level curves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RocCurve {
    /// False-positive rates, non-decreasing from 0 to 1.
    pub fpr: Vec<f64>,
    /// True-positive rates, non-decreasing from 0 to 1.
    pub tpr: Vec<f64>,
    /// Threshold of each point (`+inf` for the first); predict anomalous when `score >= threshold`.
    pub thresholds: Vec<f32>,
}

/// Precision-recall curve points as sklearn's `precision_recall_curve` returns them: thresholds
/// ascending, plus the final `(precision 1, recall 0)` point that has no threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrCurve {
    /// Precision of each point.
    pub precision: Vec<f64>,
    /// Recall of each point, non-increasing to 0.
    pub recall: Vec<f64>,
    /// Thresholds, ascending; one fewer than the points.
    pub thresholds: Vec<f32>,
}

/// Cumulative (tp, fp, threshold key) at each distinct score from the top.
fn cumulative_points(sorted: &SortedScores) -> Vec<(u64, u64, u32)> {
    let (mut tp, mut fp) = (0, 0);
    sorted
        .levels()
        .map(|level| {
            tp += level.positives;
            fp += level.negatives;
            (tp, fp, level.key)
        })
        .collect()
}

impl RocCurve {
    /// The ROC curve of sorted scores, or `None` when the labels hold a single value.
    pub fn from_sorted(sorted: &SortedScores) -> Option<Self> {
        let (n_pos, n_neg) = (sorted.positives(), sorted.negatives());
        if n_pos == 0 || n_neg == 0 {
            return None;
        }
        let points = cumulative_points(sorted);
        // sklearn drops points whose second differences in both fps and tps are zero.
        let keep = |i: usize| {
            if i == 0 || i + 1 == points.len() || points.len() <= 2 {
                return true;
            }
            let second = |f: fn(&(u64, u64, u32)) -> u64| {
                f(&points[i + 1]) as i128 - 2 * f(&points[i]) as i128 + f(&points[i - 1]) as i128
            };
            second(|p| p.0) != 0 || second(|p| p.1) != 0
        };
        let mut curve = Self { fpr: vec![0.0], tpr: vec![0.0], thresholds: vec![f32::INFINITY] };
        for (i, &(tp, fp, key)) in points.iter().enumerate() {
            if keep(i) {
                curve.fpr.push(fp as f64 / n_neg as f64);
                curve.tpr.push(tp as f64 / n_pos as f64);
                curve.thresholds.push(key_score(key));
            }
        }
        Some(curve)
    }

    /// At most `max_points` points spread evenly along the curve, keeping both ends (for plotting).
    pub fn downsample(&self, max_points: usize) -> Self {
        let idx = even_indices(self.fpr.len(), max_points);
        Self {
            fpr: idx.iter().map(|&i| self.fpr[i]).collect(),
            tpr: idx.iter().map(|&i| self.tpr[i]).collect(),
            thresholds: idx.iter().map(|&i| self.thresholds[i]).collect(),
        }
    }
}

impl PrCurve {
    /// The PR curve of sorted scores, or `None` when the labels hold a single value.
    pub fn from_sorted(sorted: &SortedScores) -> Option<Self> {
        let (n_pos, n_neg) = (sorted.positives(), sorted.negatives());
        if n_pos == 0 || n_neg == 0 {
            return None;
        }
        let points = cumulative_points(sorted);
        let mut curve = Self {
            precision: Vec::with_capacity(points.len() + 1),
            recall: Vec::with_capacity(points.len() + 1),
            thresholds: Vec::with_capacity(points.len()),
        };
        for &(tp, fp, key) in points.iter().rev() {
            curve.precision.push(tp as f64 / (tp + fp) as f64);
            curve.recall.push(tp as f64 / n_pos as f64);
            curve.thresholds.push(key_score(key));
        }
        curve.precision.push(1.0);
        curve.recall.push(0.0);
        Some(curve)
    }

    /// At most `max_points` points spread evenly along the curve, keeping both ends (for plotting).
    /// The returned thresholds belong to the kept points; the final `(1, 0)` point keeps none.
    pub fn downsample(&self, max_points: usize) -> Self {
        let idx = even_indices(self.precision.len(), max_points);
        Self {
            precision: idx.iter().map(|&i| self.precision[i]).collect(),
            recall: idx.iter().map(|&i| self.recall[i]).collect(),
            thresholds: idx.iter().filter_map(|&i| self.thresholds.get(i).copied()).collect(),
        }
    }
}

/// sklearn-style ROC curve of `scores` against `labels`; `None` when the labels hold a single value.
pub fn roc_curve<L: BinaryLabel>(scores: &[f32], labels: &[L]) -> Result<Option<RocCurve>> {
    Ok(RocCurve::from_sorted(&SortedScores::new(scores, labels)?))
}

/// sklearn-style precision-recall curve; `None` when the labels hold a single value.
pub fn precision_recall_curve<L: BinaryLabel>(scores: &[f32], labels: &[L]) -> Result<Option<PrCurve>> {
    Ok(PrCurve::from_sorted(&SortedScores::new(scores, labels)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_example() {
        // sklearn: roc_auc_score([0,0,1,1],[.1,.4,.35,.8]) = 0.75, average_precision_score = 0.8333...
        let m = binary_metrics(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap();
        assert_eq!(m.auroc, Some(0.75));
        assert!((m.average_precision.unwrap() - 5.0 / 6.0).abs() < 1e-15);
        let f1 = m.f1_max.unwrap();
        // Thresholds 0.8: P=1,R=.5 → 2/3; 0.35: P=2/3,R=1 → 0.8.
        assert!((f1.f1 - 0.8).abs() < 1e-15);
        assert_eq!(f1.threshold, 0.35);
    }

    #[test]
    fn single_label_value_is_undefined() {
        let m = binary_metrics(&[0.1, 0.4], &[true, true]).unwrap();
        assert_eq!((m.auroc, m.average_precision, m.aupr_trapezoid, m.f1_max), (None, None, None, None));
        assert_eq!(m.positives, 2);
        assert!(roc_curve(&[0.1, 0.4], &[0u8, 0]).unwrap().is_none());
    }

    #[test]
    fn constant_scores_are_chance() {
        let m = binary_metrics(&[0.3; 5], &[1u8, 0, 0, 1, 0]).unwrap();
        assert_eq!(m.auroc, Some(0.5));
        assert_eq!(m.average_precision, Some(0.4));
    }
}
