//! AUPRO: area under the per-region-overlap curve up to a global FPR of 0.3, in the three conventions
//! in circulation (spec §2.4).
//!
//! A PRO curve pairs, at each threshold, the global false-positive rate over all normal pixels of the
//! class with the mean overlap (recall) of the connected ground-truth regions (8-connectivity), every
//! region of every image weighted equally.

use std::cmp::Ordering;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::components::label_components;
use crate::numeric::{CompensatedSum, trapezoid};
use crate::pixel::{MapShape, Regions};
use crate::sorted::{BinaryLabel, SortedScores};

/// The FPR limit every convention integrates to.
pub const FPR_LIMIT: f64 = 0.3;

/// Which AUPRO definition to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProConvention {
    /// The official MVTec AD reference, also implemented by anomalib ≥ 2.3 `AUPRO`: the exact PRO curve
    /// at every distinct score, integrated (trapezoid) up to FPR = 0.3 with linear interpolation at the
    /// limit, divided by 0.3. The canonical "exact AUPRO" of this project.
    Anomalib,
    /// anomalib ≤ 2.2 `AUPRO` (the version behind anomalib results published before 2025): one ROC per
    /// region over (background ∪ region), truncated at FPR 0.3 with interpolation, resampled by index onto
    /// the grid of the global ROC's points with FPR ≤ 0.3, averaged over regions, integrated and divided by
    /// the last averaged FPR.
    AnomalibLegacy,
    /// VAND `cal_pro_score` / AnomalyCLIP / zqhang WinCLIP: about 200 thresholds `np.arange(min, max,
    /// (max−min)/200)`, keep FPR < 0.3, min–max rescale the kept FPRs to [0, 1], trapezoid.
    ClipAd,
}

impl ProConvention {
    /// A short name for tables and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Anomalib => "anomalib",
            Self::AnomalibLegacy => "anomalib-legacy",
            Self::ClipAd => "clip-ad",
        }
    }
}

/// The PRO curve of one class up to the FPR limit, and its normalised area.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProCurve {
    /// Global false-positive rate of each point, non-decreasing (for CLIP-AD: before rescaling).
    pub fpr: Vec<f64>,
    /// Mean per-region overlap at each point.
    pub pro: Vec<f64>,
    /// AUPRO in [0, 1] under the curve's convention; `None` when the area is undefined.
    pub aupro: Option<f64>,
}

#[inline]
fn within_limit(false_positives: u64, negatives: u64) -> bool {
    false_positives as f64 / negatives as f64 <= FPR_LIMIT
}

// ------------------------------------------------------------------------------------------------
// anomalib ≥ 2.3 / official MVTec reference
// ------------------------------------------------------------------------------------------------

/// Exact PRO curve: one pass over all pixels sorted by score, from the highest.
/// With `keep_points` false only the area is computed (the curve can have millions of points).
pub(crate) fn anomalib_curve(negatives: &[u32], regions: &Regions, keep_points: bool) -> Option<ProCurve> {
    let n_neg = negatives.len() as u64;
    if n_neg == 0 || regions.areas.is_empty() {
        return None;
    }
    let n_regions = regions.areas.len() as f64;
    let weights: Vec<f64> = regions.areas.iter().map(|&a| 1.0 / a as f64).collect();
    let mut positives: Vec<u64> = regions.pixels.iter().map(|&(region, key)| (u64::from(key) << 32) | u64::from(region)).collect();
    positives.par_sort_unstable();

    let mut fpr = vec![0.0];
    let mut pro = vec![0.0];
    let (mut x0, mut y0) = (0.0, 0.0);
    let (mut pos, mut neg) = (positives.as_slice(), negatives);
    let mut false_positives = 0u64;
    let mut overlap_sum = CompensatedSum::default();
    let mut area = CompensatedSum::default();
    let limit_point = loop {
        let key = match (pos.last(), neg.last()) {
            (None, None) => break None, // unreachable: the last point has FPR 1 > limit
            (Some(&p), None) => (p >> 32) as u32,
            (None, Some(&n)) => n,
            (Some(&p), Some(&n)) => ((p >> 32) as u32).max(n),
        };
        while let Some((&last, rest)) = pos.split_last() {
            if (last >> 32) as u32 != key {
                break;
            }
            overlap_sum.add(weights[(last & 0xffff_ffff) as usize]);
            pos = rest;
        }
        while let Some((&last, rest)) = neg.split_last() {
            if last != key {
                break;
            }
            false_positives += 1;
            neg = rest;
        }
        let x = (false_positives as f64 / n_neg as f64).min(1.0);
        let y = (overlap_sum.value() / n_regions).min(1.0);
        if !within_limit(false_positives, n_neg) {
            break Some((x0, y0, x, y));
        }
        area.add((x - x0) * (y + y0) / 2.0);
        (x0, y0) = (x, y);
        if keep_points {
            fpr.push(x);
            pro.push(y);
        }
    };
    let (x0, y0, x1, y1) = limit_point?;
    let mut end = x0;
    if x0 < FPR_LIMIT {
        // Interpolate the curve at the limit, as anomalib and the MVTec `trapezoid(x_max=0.3)` do.
        let y_limit = y0 + (y1 - y0) * (FPR_LIMIT - x0) / (x1 - x0);
        area.add((FPR_LIMIT - x0) * (y_limit + y0) / 2.0);
        fpr.push(FPR_LIMIT);
        pro.push(y_limit);
        end = FPR_LIMIT;
    }
    Some(ProCurve { fpr, pro, aupro: Some(area.value() / end) })
}

// ------------------------------------------------------------------------------------------------
// anomalib ≤ 2.2 (per-region ROC, index resampling)
// ------------------------------------------------------------------------------------------------

/// `torch.finfo(torch.float32).eps`, added to every slope denominator by anomalib's `interp1d`.
const INTERP_EPS: f64 = f32::EPSILON as f64;

/// `torch.searchsorted(sorted, value)` (left side), the same binary search even on unsorted input.
fn torch_lower_bound(sorted: &[f64], value: f64) -> usize {
    let (mut start, mut end) = (0, sorted.len());
    while start < end {
        let mid = start + ((end - start) >> 1);
        // `!(x >= value)`: NaN-incomparable entries also move right, as in torch.
        if matches!(sorted[mid].partial_cmp(&value), Some(Ordering::Less) | None) {
            start = mid + 1;
        } else {
            end = mid;
        }
    }
    start
}

/// `torch.allclose(a, b)` with its default tolerances.
fn torch_allclose(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-8 + 1e-5 * b.abs()
}

/// Distinct normal-pixel scores from the top with cumulative counts, as far as the legacy curve needs.
struct Background {
    /// Distinct keys, descending.
    keys: Vec<u32>,
    /// Number of normal pixels with a score at or above each key.
    cumulative: Vec<u64>,
    /// Number of leading levels whose FPR is within the limit (`T`).
    within: usize,
    /// Whether `keys` holds every distinct normal score.
    complete: bool,
    total: u64,
    inverse_total: f64,
}

impl Background {
    fn new(negatives: &[u32]) -> Self {
        let total = negatives.len() as u64;
        let (mut keys, mut cumulative) = (Vec::new(), Vec::new());
        let mut within = 0;
        let mut count = 0;
        let mut rest = negatives;
        while let Some(&key) = rest.last() {
            let run = rest.len() - rest.partition_point(|&k| k < key);
            rest = &rest[..rest.len() - run];
            count += run as u64;
            keys.push(key);
            cumulative.push(count);
            if within_limit(count, total) {
                within += 1;
            } else if keys.len() >= 2 {
                // One level past the limit (two when the very first level is past it: the edge case needs
                // the second level to know which region points share the first level's FPR).
                break;
            }
        }
        let complete = rest.is_empty();
        Self { keys, cumulative, within, complete, total, inverse_total: 1.0 / total as f64 }
    }

    /// False-positive rate of a count of normal pixels.
    #[inline]
    fn rate(&self, false_positives: u64) -> f64 {
        false_positives as f64 * self.inverse_total
    }

    /// `C_t`: normal pixels at or above the `t`-th level (`C_0 = 0`).
    fn cumulative_at(&self, t: usize) -> u64 {
        if t == 0 { 0 } else { self.cumulative[t - 1] }
    }
}

/// How one region's resampled curve is evaluated.
enum RegionShape {
    /// Strictly increasing sample positions `x_i = (i / d) · (M − 1)` for `i in 0..len`.
    Regular { len: usize, d: usize },
    /// anomalib's edge case (the first normal score already exceeds the FPR limit): a short, possibly
    /// unsorted list of positions.
    Explicit { x: Vec<f64>, fpr: Vec<f64>, tpr: Vec<f64> },
}

/// One ground-truth region prepared for the legacy resampling.
struct LegacyRegion {
    inverse_area: f64,
    /// Cumulative pixel count of the region at each of its distinct scores (descending).
    cumulative: Vec<u64>,
    /// Union index (position in the region's ROC) of each distinct score.
    union_index: Vec<usize>,
    /// `region_only_before[m]`: how many of the first `m` distinct scores are absent from the normal
    /// scores (those points exist only in this region's ROC).
    region_only_before: Vec<usize>,
    shape: RegionShape,
    /// Where the last grid point is sampled.
    last_position: f64,
}

impl LegacyRegion {
    fn new(keys_ascending: &[u32], background: &Background, grid_len: usize) -> Self {
        let area = keys_ascending.len();
        let bg = background;
        let floor = *bg.keys.last().expect("at least one normal level");
        let mut cumulative = Vec::new();
        let mut union_index = Vec::new();
        let mut region_only_before = vec![0];
        let mut values = Vec::new();
        let mut rest = keys_ascending;
        let mut count = 0u64;
        let mut region_only_count = 0usize;
        while let Some(&key) = rest.last() {
            if !bg.complete && key < floor {
                break; // below every level the curve can reach
            }
            let run = rest.len() - rest.partition_point(|&k| k < key);
            rest = &rest[..rest.len() - run];
            count += run as u64;
            let above = bg.keys.partition_point(|&b| b > key);
            let shared = above < bg.keys.len() && bg.keys[above] == key;
            if !shared {
                region_only_count += 1;
            }
            cumulative.push(count);
            union_index.push(above + usize::from(shared) + region_only_count);
            region_only_before.push(region_only_count);
            values.push(key);
        }
        let mut region = Self {
            inverse_area: 1.0 / area as f64,
            cumulative,
            union_index,
            region_only_before,
            shape: RegionShape::Regular { len: 0, d: 1 },
            last_position: 0.0,
        };
        let m1 = (grid_len - 1) as f64;
        // Region-only distinct scores strictly above `cut` (all of them for `None`); values descend.
        let region_only_above = |cut: Option<u32>| {
            let above = cut.map_or(values.len(), |c| values.partition_point(|&v| v > c));
            region.region_only_before[above]
        };
        let n_bg = bg.total as f64;
        if bg.within >= 1 {
            // Normal case: kept points are the union values above L_{T+1}.
            let t = bg.within;
            let k = t + region_only_above(Some(bg.keys[t]));
            let fpr_k = bg.cumulative_at(t) as f64 / n_bg;
            if torch_allclose(fpr_k, FPR_LIMIT) {
                region.shape = RegionShape::Regular { len: k + 1, d: k };
                region.last_position = m1;
            } else {
                let fpr_next = bg.cumulative_at(t + 1) as f64 / n_bg;
                let slope = 1.0 - (fpr_next - FPR_LIMIT) / (fpr_next - fpr_k);
                let d = k + 1;
                let x_k = k as f64 * (m1 / d as f64); // as `accumulate` places the points
                let x_next = m1;
                region.shape = RegionShape::Regular { len: k + 2, d };
                region.last_position = x_k + (x_next - x_k) * slope;
            }
        } else {
            // Edge case: every point with FPR ≤ limit has FPR 0; anomalib keeps the points up to the first
            // FPR above the limit instead, and may append that point's index a second time.
            let cut = bg.keys.get(1).copied();
            let k = 1 + region_only_above(cut);
            let t0 = 1 + region_only_above(Some(bg.keys[0]));
            let f_star = bg.cumulative_at(1) as f64 / n_bg;
            let mut indices: Vec<usize> = (0..=k).collect();
            let mut slope = None;
            if !torch_allclose(f_star, FPR_LIMIT) {
                indices.push(t0);
                slope = Some(1.0 - (f_star - FPR_LIMIT) / f_star);
            }
            let d = k as f64;
            let x: Vec<f64> = indices.iter().map(|&i| (i as f64 / d) * m1).collect();
            let (fpr, tpr): (Vec<f64>, Vec<f64>) = indices
                .iter()
                .map(|&i| {
                    let (fp, tp) = region.point(i, bg);
                    (bg.rate(fp), region.rate(tp))
                })
                .unzip();
            region.last_position = match slope {
                Some(s) => x[x.len() - 2] + (x[x.len() - 1] - x[x.len() - 2]) * s,
                None => m1,
            };
            region.shape = RegionShape::Explicit { x, fpr, tpr };
        }
        region
    }

    /// True-positive rate (overlap) of a count of region pixels.
    #[inline]
    fn rate(&self, true_positives: u64) -> f64 {
        true_positives as f64 * self.inverse_area
    }

    /// `(false positives, true positives)` of the `i`-th point of this region's ROC (point 0 is (0, 0)).
    fn point(&self, i: usize, bg: &Background) -> (u64, u64) {
        if i == 0 {
            return (0, 0);
        }
        let reached = self.union_index.partition_point(|&u| u <= i);
        let tp = if reached == 0 { 0 } else { self.cumulative[reached - 1] };
        (bg.cumulative_at(i - self.region_only_before[reached]), tp)
    }

    /// Adds this region's resampled (FPR, TPR) at grid points `start..start + fpr_out.len()`.
    fn accumulate(&self, start: usize, bg: &Background, m1: f64, grid_len: usize, fpr_out: &mut [f64], tpr_out: &mut [f64]) {
        match &self.shape {
            RegionShape::Explicit { x, fpr, tpr } => {
                for (offset, (f_out, t_out)) in fpr_out.iter_mut().zip(tpr_out.iter_mut()).enumerate() {
                    let j = start + offset;
                    let q = if j + 1 == grid_len { self.last_position } else { j as f64 };
                    let s = torch_lower_bound(x, q).saturating_sub(1).min(x.len() - 2);
                    let dx = INTERP_EPS + (x[s + 1] - x[s]);
                    *f_out += fpr[s] + (fpr[s + 1] - fpr[s]) / dx * (q - x[s]);
                    *t_out += tpr[s] + (tpr[s + 1] - tpr[s]) / dx * (q - x[s]);
                }
            }
            &RegionShape::Regular { len, d } => {
                // anomalib: `idx / idx.max() * (M - 1)` (in float32); one multiplication here.
                let scale = m1 / d as f64;
                let position = |i: usize| i as f64 * scale;
                // Segment of a position q: s = (first i with x_i >= q) - 1, clamped to [0, len - 2].
                let segment_of = |q: f64| {
                    let (mut lo, mut hi) = (0, len);
                    while lo < hi {
                        let mid = lo + (hi - lo) / 2;
                        if position(mid) < q { lo = mid + 1 } else { hi = mid }
                    }
                    lo.saturating_sub(1).min(len - 2)
                };
                let mut segment: Option<Segment> = None;
                for (offset, (f_out, t_out)) in fpr_out.iter_mut().zip(tpr_out.iter_mut()).enumerate() {
                    let j = start + offset;
                    if j + 1 == grid_len {
                        let q = self.last_position;
                        let last = Segment::at(self, bg, segment_of(q), position);
                        *f_out += last.fpr(q);
                        *t_out += last.tpr(q);
                        continue;
                    }
                    let q = j as f64;
                    let seg = segment.get_or_insert_with(|| Segment::at(self, bg, segment_of(q), position));
                    while seg.s + 2 < len && seg.x1 < q {
                        seg.advance(position);
                    }
                    *f_out += seg.fpr(q);
                    *t_out += seg.tpr(q);
                }
            }
        }
    }
}

/// The segment between points `s` and `s + 1` of a region's resampled ROC, walked forward point by point.
struct Segment<'r> {
    region: &'r LegacyRegion,
    bg: &'r Background,
    s: usize,
    /// Region distinct scores whose union index is ≤ s + 1.
    reached: usize,
    x0: f64,
    x1: f64,
    fpr0: f64,
    fpr1: f64,
    tpr0: f64,
    tpr1: f64,
    fpr_slope: f64,
    tpr_slope: f64,
}

impl<'r> Segment<'r> {
    fn at(region: &'r LegacyRegion, bg: &'r Background, s: usize, position: impl Fn(usize) -> f64) -> Self {
        let (fp, tp) = region.point(s, bg);
        let i = s + 1;
        let reached = region.union_index.partition_point(|&u| u <= i);
        let mut segment = Self {
            region,
            bg,
            s,
            reached,
            x0: position(s),
            x1: 0.0,
            fpr0: bg.rate(fp),
            fpr1: 0.0,
            tpr0: region.rate(tp),
            tpr1: 0.0,
            fpr_slope: 0.0,
            tpr_slope: 0.0,
        };
        segment.load_end(position(s + 1));
        segment
    }

    /// Loads point `s + 1` (whose union-index counters are current) and the slopes, as anomalib's
    /// `interp1d` computes them: `Δy / (eps + Δx)`.
    fn load_end(&mut self, x1: f64) {
        let tp = if self.reached == 0 { 0 } else { self.region.cumulative[self.reached - 1] };
        let fp = self.bg.cumulative_at(self.s + 1 - self.region.region_only_before[self.reached]);
        self.x1 = x1;
        self.fpr1 = self.bg.rate(fp);
        self.tpr1 = self.region.rate(tp);
        let inverse_dx = 1.0 / (INTERP_EPS + (self.x1 - self.x0));
        self.fpr_slope = (self.fpr1 - self.fpr0) * inverse_dx;
        self.tpr_slope = (self.tpr1 - self.tpr0) * inverse_dx;
    }

    fn advance(&mut self, position: impl Fn(usize) -> f64) {
        self.s += 1;
        (self.x0, self.fpr0, self.tpr0) = (self.x1, self.fpr1, self.tpr1);
        let i = self.s + 1;
        let union_index = &self.region.union_index;
        while self.reached < union_index.len() && union_index[self.reached] <= i {
            self.reached += 1;
        }
        self.load_end(position(i));
    }

    #[inline]
    fn fpr(&self, q: f64) -> f64 {
        self.fpr0 + self.fpr_slope * (q - self.x0)
    }

    #[inline]
    fn tpr(&self, q: f64) -> f64 {
        self.tpr0 + self.tpr_slope * (q - self.x0)
    }
}

/// Grid points handled per parallel task.
const GRID_CHUNK: usize = 1 << 15;

pub(crate) fn anomalib_legacy_curve(sorted: &SortedScores, regions: &Regions) -> Option<ProCurve> {
    anomalib_legacy_curve_chunked(sorted, regions, GRID_CHUNK)
}

/// As [`anomalib_legacy_curve`], with the parallel grid split into tasks of `chunk` points (each grid
/// point sums the regions in the same order whatever the split, so the result does not depend on it).
fn anomalib_legacy_curve_chunked(sorted: &SortedScores, regions: &Regions, chunk: usize) -> Option<ProCurve> {
    let negatives = sorted.negative_keys();
    let n_neg = negatives.len() as u64;
    if n_neg == 0 || regions.areas.is_empty() {
        return None;
    }
    // Grid size: points of the global ROC (all pixels, plus its (0, 0) start) with FPR within the limit.
    let mut fp = 0u64;
    let mut grid_len = 1usize;
    for level in sorted.levels() {
        fp += level.negatives;
        if !within_limit(fp, n_neg) {
            break;
        }
        grid_len += 1;
    }
    if grid_len < 2 {
        return None; // anomalib: a single point, area 0 / FPR 0 = NaN
    }
    let background = Background::new(negatives);
    let mut by_region: Vec<(u32, u32)> = regions.pixels.clone();
    by_region.par_sort_unstable();
    let mut starts = Vec::with_capacity(regions.areas.len() + 1);
    starts.push(0);
    let mut acc = 0usize;
    for &a in &regions.areas {
        acc += a as usize;
        starts.push(acc);
    }
    let prepared: Vec<LegacyRegion> = (0..regions.areas.len())
        .into_par_iter()
        .map(|r| {
            let keys: Vec<u32> = by_region[starts[r]..starts[r + 1]].iter().map(|&(_, k)| k).collect();
            LegacyRegion::new(&keys, &background, grid_len)
        })
        .collect();
    drop(by_region);

    let m1 = (grid_len - 1) as f64;
    let mut fpr = vec![0.0f64; grid_len];
    let mut tpr = vec![0.0f64; grid_len];
    fpr.par_chunks_mut(chunk).zip(tpr.par_chunks_mut(chunk)).enumerate().for_each(|(index, (f, t))| {
        let start = index * chunk;
        for region in &prepared {
            region.accumulate(start, &background, m1, grid_len, f, t);
        }
    });
    let n_regions = prepared.len() as f64;
    for v in fpr.iter_mut().chain(tpr.iter_mut()) {
        *v /= n_regions;
    }
    // torchmetrics `auc(fpr, tpr, reorder=True)`: stable sort by FPR, then trapezoid.
    let mut order: Vec<usize> = (0..grid_len).collect();
    order.sort_by(|&a, &b| fpr[a].total_cmp(&fpr[b]));
    let xs: Vec<f64> = order.iter().map(|&i| fpr[i]).collect();
    let ys: Vec<f64> = order.iter().map(|&i| tpr[i]).collect();
    let end = fpr[grid_len - 1];
    let area = trapezoid(&xs, &ys);
    Some(ProCurve { fpr: xs, pro: ys, aupro: Some(area / end).filter(|v| v.is_finite()) })
}

// ------------------------------------------------------------------------------------------------
// CLIP-AD repositories (VAND `cal_pro_score`)
// ------------------------------------------------------------------------------------------------

/// The thresholds of `np.arange(min, max, (max - min) / 200)` as NumPy 1.x evaluates them on `float32`
/// maps: the step is a `float64` (a `float32` scalar divided by a Python int), the length is
/// `ceil(float32(max - min) / step)`, the values come from NumPy's `DOUBLE_fill`
/// (`start + i·((start + step) − start)`), and `map > th` compares in `float32` (value-based casting of
/// the `float64` scalar). Returns the thresholds as compared, i.e. rounded to `f32`.
pub fn clip_ad_thresholds(min: f32, max: f32) -> Vec<f32> {
    const STEPS: f64 = 200.0;
    let range = f64::from(max - min);
    let delta = range / STEPS;
    if range == 0.0 {
        return Vec::new(); // NumPy: a zero-length range gives an empty arange
    }
    let len = (range / delta).ceil() as usize;
    let start = f64::from(min);
    let second = start + delta;
    let step = second - start;
    (0..len)
        .map(|i| match i {
            0 => start,
            1 => second,
            _ => start + i as f64 * step,
        } as f32)
        .collect()
}

pub(crate) fn clip_ad_curve<L: BinaryLabel>(maps: &[f32], masks: &[L], shape: MapShape) -> (Option<ProCurve>, usize) {
    let (min, max) = maps
        .par_iter()
        .fold(|| (f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)))
        .reduce(|| (f32::INFINITY, f32::NEG_INFINITY), |a, b| (a.0.min(b.0), a.1.max(b.1)));
    let thresholds = clip_ad_thresholds(min, max);
    let n_th = thresholds.len();
    let image_len = shape.image_len();
    // Per image: for each threshold, normal pixels above it, and per region its pixels above it.
    struct ImageCounts {
        negatives: u64,
        fp_hist: Vec<u64>,
        region_hists: Vec<Vec<u64>>,
        areas: Vec<u64>,
    }
    let per_image: Vec<ImageCounts> = masks
        .par_chunks(image_len)
        .zip(maps.par_chunks(image_len))
        .map(|(mask, map)| {
            let comps = label_components(mask, shape.height, shape.width);
            // bucket b = number of thresholds strictly below the score: the pixel is predicted
            // anomalous at thresholds 0..b.
            let mut fp_hist = vec![0u64; n_th + 1];
            let mut region_hists = vec![vec![0u64; n_th + 1]; comps.count()];
            let mut negatives = 0;
            for (&label, &score) in comps.labels.iter().zip(map) {
                let b = thresholds.partition_point(|&t| t < score);
                if label == 0 {
                    fp_hist[b] += 1;
                    negatives += 1;
                } else {
                    region_hists[label as usize - 1][b] += 1;
                }
            }
            ImageCounts { negatives, fp_hist, region_hists, areas: comps.areas }
        })
        .collect();
    let n_regions: usize = per_image.iter().map(|c| c.areas.len()).sum();
    let n_neg: u64 = per_image.iter().map(|c| c.negatives).sum();
    if n_th == 0 || n_regions == 0 || n_neg == 0 {
        return (None, n_regions);
    }
    // Suffix sums turn "bucket" histograms into "above threshold i" counts.
    let above = |hist: &[u64]| {
        let mut out = vec![0u64; n_th];
        let mut acc = 0;
        for i in (0..n_th).rev() {
            acc += hist[i + 1];
            out[i] = acc;
        }
        out
    };
    let mut fp = vec![0u64; n_th];
    let mut overlap_sum = vec![0.0f64; n_th];
    for image in &per_image {
        for (total, v) in fp.iter_mut().zip(above(&image.fp_hist)) {
            *total += v;
        }
        for (hist, &area) in image.region_hists.iter().zip(&image.areas) {
            for (sum, v) in overlap_sum.iter_mut().zip(above(hist)) {
                *sum += v as f64 / area as f64;
            }
        }
    }
    // Thresholds ascend, so FPR descends; keep FPR < limit (strict), then rescale the kept FPRs.
    let mut kept_fpr = Vec::new();
    let mut kept_pro = Vec::new();
    for i in 0..n_th {
        let f = fp[i] as f64 / n_neg as f64;
        if f < FPR_LIMIT {
            kept_fpr.push(f);
            kept_pro.push(overlap_sum[i] / n_regions as f64);
        }
    }
    let aupro = if kept_fpr.len() < 2 {
        None // sklearn `auc` needs two points (and the rescaling divides by zero)
    } else {
        let lo = kept_fpr.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = kept_fpr.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let scaled: Vec<f64> = kept_fpr.iter().map(|f| (f - lo) / (hi - lo)).collect();
        // FPR descends along the thresholds: sklearn `auc` flips the sign of the trapezoid.
        Some(-trapezoid(&scaled, &kept_pro)).filter(|v| v.is_finite())
    };
    kept_fpr.reverse();
    kept_pro.reverse();
    (Some(ProCurve { fpr: kept_fpr, pro: kept_pro, aupro }), n_regions)
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::pixel::Regions;

    /// Smooth-ish deterministic maps with a few regions, including ties.
    fn sample() -> (Vec<f32>, Vec<u8>, MapShape) {
        let shape = MapShape::new(3, 17, 23);
        let mut maps = Vec::new();
        let mut masks = Vec::new();
        for n in 0..shape.n {
            for r in 0..shape.height {
                for c in 0..shape.width {
                    let inside = n < 2 && (r as i32 - 8 - n as i32).pow(2) + (c as i32 - 11).pow(2) < 20 + 10 * n as i32;
                    let noise = ((r * 31 + c * 17 + n * 7) as u64 * 2_654_435_761 % 1000) as f32 / 1000.0;
                    let value = noise * 0.6 + if inside { 0.5 } else { 0.0 };
                    maps.push((value * 400.0).round() / 400.0);
                    masks.push(u8::from(inside));
                }
            }
        }
        (maps, masks, shape)
    }

    #[test]
    fn legacy_result_does_not_depend_on_grid_chunking() {
        let (maps, masks, shape) = sample();
        let sorted = SortedScores::new(&maps, &masks).unwrap();
        let regions = Regions::collect(&maps, &masks, shape);
        let whole = anomalib_legacy_curve_chunked(&sorted, &regions, GRID_CHUNK).unwrap();
        assert!(whole.fpr.len() > 20, "grid too small to split: {}", whole.fpr.len());
        for chunk in [1, 2, 3, 7, 64] {
            assert_eq!(anomalib_legacy_curve_chunked(&sorted, &regions, chunk).unwrap(), whole, "chunk {chunk}");
        }
    }

    #[test]
    fn torch_lower_bound_matches_left_search() {
        let x = [0.0, 1.0, 1.0, 2.0];
        assert_eq!([-1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0].map(|v| torch_lower_bound(&x, v)), [0, 0, 1, 1, 3, 3, 4]);
    }

    #[test]
    fn clip_ad_thresholds_are_empty_for_constant_maps() {
        assert!(clip_ad_thresholds(0.5, 0.5).is_empty());
        let th = clip_ad_thresholds(0.0, 1.0);
        assert_eq!((th.len(), th[0], th[1]), (200, 0.0, 0.005));
    }
}
