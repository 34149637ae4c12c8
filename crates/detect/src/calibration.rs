//! Single-image calibration. The official repositories normalise scores over a whole test set per
//! class, which a deployed detector cannot do; instead a raw score is mapped to [0, 1] with
//! statistics of normal reference images, anomalib-style: `clamp((x − t)/(hi − lo) + 0.5, 0, 1)`,
//! where `t` is the threshold (by default the largest normal score, so every reference normal maps
//! to ≤ 0.5) and `lo`/`hi` the range of the normal scores. Raw scores stay available beside it.
use serde::{Deserialize, Serialize};

/// Statistics for one score (image score or pixel values).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoreCalibration {
    /// Raw score mapped to 0.5.
    pub threshold: f32,
    /// Smallest normal reference score.
    pub low: f32,
    /// Largest normal reference score.
    pub high: f32,
}

impl ScoreCalibration {
    /// From raw scores of normal references (at least one).
    pub fn from_normal(scores: &[f32]) -> Option<Self> {
        let finite: Vec<f32> = scores.iter().copied().filter(|v| v.is_finite()).collect();
        let low = finite.iter().copied().reduce(f32::min)?;
        let high = finite.iter().copied().reduce(f32::max)?;
        Some(Self { threshold: high, low, high })
    }

    /// Calibrated value in [0, 1].
    pub fn apply(&self, raw: f32) -> f32 {
        let range = (self.high - self.low).max(f32::EPSILON * self.high.abs().max(1.0));
        ((raw - self.threshold) / range + 0.5).clamp(0.0, 1.0)
    }
}

/// Calibration of a detector for one class: image scores and map values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// For image scores.
    pub image: ScoreCalibration,
    /// For map values (statistics over all pixels of the normal reference maps).
    pub pixel: ScoreCalibration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normals_map_below_half_and_outliers_above() {
        let c = ScoreCalibration::from_normal(&[0.2, 0.3, 0.25]).unwrap();
        assert_eq!(c.apply(0.3), 0.5);
        assert!(c.apply(0.2) < 0.5 && c.apply(0.2) >= 0.0);
        assert!(c.apply(0.33) > 0.5);
        assert_eq!(c.apply(10.0), 1.0);
        assert!(ScoreCalibration::from_normal(&[]).is_none());
        assert_eq!(ScoreCalibration::from_normal(&[1.0]).unwrap().apply(1.0), 0.5);
    }
}
