//! Pixel-level metrics of one class: every pixel of every test image pooled (spec §1), one sort shared
//! by AUROC, AP, F1-max and the sorted AUPRO conventions.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::binary::{BinaryMetrics, PrCurve, RocCurve};
use crate::components::label_components;
use crate::error::{MetricsError, Result};
use crate::pro::{self, ProConvention, ProCurve};
use crate::sorted::{BinaryLabel, SortedScores, check_finite, score_key};

/// Shape of a stack of anomaly maps or masks: `n` images of `height × width`, row-major, C order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapShape {
    /// Number of images.
    pub n: usize,
    /// Rows per image.
    pub height: usize,
    /// Columns per image.
    pub width: usize,
}

impl MapShape {
    /// A shape of `n` maps of `height × width`.
    pub fn new(n: usize, height: usize, width: usize) -> Self {
        Self { n, height, width }
    }

    /// Pixels per image.
    pub fn image_len(&self) -> usize {
        self.height * self.width
    }

    /// Total number of values, or an error for a zero or overflowing dimension.
    pub fn value_count(&self) -> Result<usize> {
        let invalid = |reason| MetricsError::InvalidShape { n: self.n, h: self.height, w: self.width, reason };
        if self.n == 0 || self.height == 0 || self.width == 0 {
            return Err(invalid("every dimension must be at least 1"));
        }
        self.n
            .checked_mul(self.height)
            .and_then(|v| v.checked_mul(self.width))
            .filter(|&v| v < u32::MAX as usize * 4)
            .ok_or_else(|| invalid("too many values"))
    }
}

/// Connected ground-truth regions of all images of a class, with the score of each region pixel.
#[derive(Debug, Clone)]
pub(crate) struct Regions {
    /// Pixel count of each region; region ids are global across images, in image order then in
    /// skimage's raster order within an image.
    pub areas: Vec<u64>,
    /// One `(region id, score key)` per anomalous pixel.
    pub pixels: Vec<(u32, u32)>,
}

impl Regions {
    pub(crate) fn collect<L: BinaryLabel>(maps: &[f32], masks: &[L], shape: MapShape) -> Self {
        let image_len = shape.image_len();
        // Per image: region areas and (local region id, key) of each anomalous pixel.
        type ImageRegions = (Vec<u64>, Vec<(u32, u32)>);
        let per_image: Vec<ImageRegions> = masks
            .par_chunks(image_len)
            .zip(maps.par_chunks(image_len))
            .map(|(mask, map)| {
                let comps = label_components(mask, shape.height, shape.width);
                let pixels = comps
                    .labels
                    .iter()
                    .zip(map)
                    .filter(|(label, _)| **label != 0)
                    .map(|(&label, &score)| (label - 1, score_key(score)))
                    .collect();
                (comps.areas, pixels)
            })
            .collect();
        let mut areas = Vec::new();
        let mut pixels = Vec::with_capacity(per_image.iter().map(|p| p.1.len()).sum());
        for (image_areas, image_pixels) in per_image {
            let offset = areas.len() as u32;
            pixels.extend(image_pixels.into_iter().map(|(region, key)| (region + offset, key)));
            areas.extend(image_areas);
        }
        Self { areas, pixels }
    }
}

/// Pixel AUROC / AP / F1-max and AUPRO of one class.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PixelMetrics {
    /// AUROC, AP (both conventions) and F1-max over all pixels.
    pub binary: BinaryMetrics,
    /// AUPRO under `pro_convention`, when one was asked for; `None` also when undefined.
    pub aupro: Option<f64>,
    /// The AUPRO convention used, if any.
    pub pro_convention: Option<ProConvention>,
    /// Number of connected ground-truth regions (8-connectivity), when AUPRO was computed.
    pub regions: Option<usize>,
}

/// Validated maps and masks of one class, sorted once for every pixel metric.
///
/// Memory, beyond the caller's maps and masks: 4 bytes per pixel for the sorted score keys (8 while
/// sorting); while an AUPRO is computed, 16 bytes per anomalous pixel and one label image per worker
/// thread; the legacy-anomalib AUPRO adds 40 bytes per point of its resampling grid (at most the
/// number of distinct scores with FPR ≤ 0.3). A 45 M-pixel MVTec class with ~3 % anomalous pixels
/// needs about 0.4 GB with the maps and masks included.
pub struct PixelEvaluator<'a, L: BinaryLabel> {
    maps: &'a [f32],
    masks: &'a [L],
    shape: MapShape,
    sorted: SortedScores,
}

impl<'a, L: BinaryLabel> PixelEvaluator<'a, L> {
    /// Checks `maps` and `masks` against `shape` (row-major `[n, height, width]`) and sorts the scores.
    pub fn new(maps: &'a [f32], masks: &'a [L], shape: MapShape) -> Result<Self> {
        check_lengths(maps, masks, shape)?;
        let sorted = SortedScores::with_names(maps, masks, "maps", "masks")?;
        Ok(Self { maps, masks, shape, sorted })
    }

    /// The shape the maps were given with.
    pub fn shape(&self) -> MapShape {
        self.shape
    }

    /// Pixel AUROC, AP (both conventions) and F1-max.
    pub fn binary_metrics(&self) -> BinaryMetrics {
        BinaryMetrics::from_sorted(&self.sorted)
    }

    /// sklearn-style pixel ROC curve (see [`RocCurve`]); `None` when every pixel has the same label.
    pub fn roc_curve(&self) -> Option<RocCurve> {
        RocCurve::from_sorted(&self.sorted)
    }

    /// sklearn-style pixel precision-recall curve; `None` when every pixel has the same label.
    pub fn pr_curve(&self) -> Option<PrCurve> {
        PrCurve::from_sorted(&self.sorted)
    }

    fn regions(&self) -> Regions {
        Regions::collect(self.maps, self.masks, self.shape)
    }

    /// AUPRO under `convention` and the number of regions; the value is `None` when undefined
    /// (no anomalous or no normal pixel, or a degenerate curve; see [`ProConvention`]).
    pub fn aupro(&self, convention: ProConvention) -> (Option<f64>, usize) {
        let (curve, regions) = self.pro_curve_inner(convention, false);
        (curve.and_then(|c| c.aupro), regions)
    }

    /// The PRO curve under `convention` (its points up to the FPR limit) with its AUPRO, and the number
    /// of regions. `None` when the curve is undefined.
    pub fn pro_curve(&self, convention: ProConvention) -> (Option<ProCurve>, usize) {
        self.pro_curve_inner(convention, true)
    }

    fn pro_curve_inner(&self, convention: ProConvention, keep_points: bool) -> (Option<ProCurve>, usize) {
        match convention {
            ProConvention::Anomalib => {
                let regions = self.regions();
                (pro::anomalib_curve(self.sorted.negative_keys(), &regions, keep_points), regions.areas.len())
            }
            ProConvention::AnomalibLegacy => {
                let regions = self.regions();
                (pro::anomalib_legacy_curve(&self.sorted, &regions), regions.areas.len())
            }
            ProConvention::ClipAd => pro::clip_ad_curve(self.maps, self.masks, self.shape),
        }
    }

    /// Every pixel metric at once; AUPRO only when `pro` is given.
    pub fn metrics(&self, pro: Option<ProConvention>) -> PixelMetrics {
        let binary = self.binary_metrics();
        let (aupro, regions) = match pro {
            Some(convention) => {
                let (value, regions) = self.aupro(convention);
                (value, Some(regions))
            }
            None => (None, None),
        };
        PixelMetrics { binary, aupro, pro_convention: pro, regions }
    }
}

/// Checks that `maps` and `masks` both hold `shape`'s number of values.
fn check_lengths<L>(maps: &[f32], masks: &[L], shape: MapShape) -> Result<()> {
    let len = shape.value_count()?;
    if maps.len() != len {
        return Err(MetricsError::LengthMismatch { what: "maps", expected: len, found: maps.len() });
    }
    if masks.len() != len {
        return Err(MetricsError::LengthMismatch { what: "masks", expected: len, found: masks.len() });
    }
    Ok(())
}

/// Pixel metrics of one class from maps and masks of shape `[n, height, width]` (row-major).
pub fn pixel_metrics<L: BinaryLabel>(
    maps: &[f32],
    masks: &[L],
    shape: MapShape,
    pro: Option<ProConvention>,
) -> Result<PixelMetrics> {
    Ok(PixelEvaluator::new(maps, masks, shape)?.metrics(pro))
}

/// AUPRO of one class under `convention` (see [`ProConvention`]); `Ok(None)` when undefined.
pub fn aupro<L: BinaryLabel>(
    maps: &[f32],
    masks: &[L],
    shape: MapShape,
    convention: ProConvention,
) -> Result<Option<f64>> {
    if convention == ProConvention::ClipAd {
        // Threshold histograms, no sort needed.
        check_lengths(maps, masks, shape)?;
        check_finite("maps", maps)?;
        return Ok(pro::clip_ad_curve(maps, masks, shape).0.and_then(|c| c.aupro));
    }
    Ok(PixelEvaluator::new(maps, masks, shape)?.aupro(convention).0)
}
