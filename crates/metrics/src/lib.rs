//! # vlad-metrics
//!
//! The anomaly-detection metrics of the CLIP-based papers, computed exactly as their reference code does
//! (see `spec/evaluation.md` §1–§2): image and pixel AUROC, average precision (sklearn's step-wise sum, or
//! anomalib's older trapezoid), F1-max, and AUPRO in three conventions ([`ProConvention`]).
//!
//! * **Exact on real sizes.** One sort per class (`O(n log n)`, both cores via rayon), integer counts and
//!   `f64` accumulation. An MVTec class at 518² is about 45 M pixels; the sorted keys take 4 bytes per
//!   pixel (see [`PixelEvaluator`] for the full memory account).
//! * **Undefined is not zero.** A class whose labels hold a single value has undefined AUROC/AP/F1
//!   (`None`); the repositories' "0" convention is an explicit [`UndefinedPolicy`] of the macro mean.
//! * **Ties** are grouped by exact `f32` equality (`-0.0 == 0.0`), as sklearn groups them.
//!
//! Reference versions matter: anomalib's `AUPRO` changed in 2.3 (from per-region resampled curves,
//! [`ProConvention::AnomalibLegacy`], to the official MVTec definition, [`ProConvention::Anomalib`]) and
//! its `AUPR` in 2.7 (from a trapezoid, [`ApConvention::Trapezoid`], to sklearn's step-wise AP). The
//! parity fixtures pin sklearn 1.9.1, skimage 0.26.0, anomalib 2.7.0 / 2.2.0 and torchmetrics 1.8.2
//! (`tools/fixtures/metrics.py`).
//!
//! ```
//! use vlad_metrics::{binary_metrics, pixel_metrics, MapShape, ProConvention};
//!
//! let image = binary_metrics(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap();
//! assert_eq!(image.auroc, Some(0.75));
//!
//! let maps = [0.9, 0.2, 0.1, 0.3, /* image 2 */ 0.2, 0.1, 0.0, 0.4];
//! let masks = [1u8, 0, 0, 0, /* image 2 */ 0, 0, 0, 0];
//! let pixel = pixel_metrics(&maps, &masks, MapShape::new(2, 2, 2), Some(ProConvention::Anomalib)).unwrap();
//! assert_eq!(pixel.binary.auroc, Some(1.0));
//! assert_eq!(pixel.aupro, Some(1.0));
//! ```

mod binary;
mod components;
mod error;
mod numeric;
mod pixel;
mod pro;
mod sorted;
mod table;

pub use binary::{
    ApConvention, BinaryMetrics, F1Max, PrCurve, RocCurve, binary_metrics, precision_recall_curve, roc_curve,
};
pub use components::{Components, label_components};
pub use error::{MetricsError, Result};
pub use pixel::{MapShape, PixelEvaluator, PixelMetrics, aupro, pixel_metrics};
pub use pro::{FPR_LIMIT, ProConvention, ProCurve, clip_ad_thresholds};
pub use sorted::{BinaryLabel, SortedScores, key_score, score_key};
pub use table::{ClassMetrics, Metric, MetricsTable, UndefinedPolicy};
