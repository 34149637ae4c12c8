//! Bad input gets a clear error; entry points agree with each other.

use vlad_metrics::{
    MapShape, MetricsError, PixelEvaluator, ProConvention, aupro, binary_metrics, pixel_metrics,
};

#[test]
fn pixel_inputs_are_checked_against_the_shape() {
    let maps = vec![0.5f32; 12];
    let masks = vec![0u8; 12];
    let err = pixel_metrics(&maps, &masks[..11], MapShape::new(2, 2, 3), None).unwrap_err();
    assert_eq!(err, MetricsError::LengthMismatch { what: "masks", expected: 12, found: 11 });
    assert_eq!(err.to_string(), "masks: expected 12 values, found 11");
    let err = pixel_metrics(&maps, &masks, MapShape::new(2, 3, 3), None).unwrap_err();
    assert_eq!(err.to_string(), "maps: expected 18 values, found 12");
    let err = pixel_metrics(&maps, &masks, MapShape::new(0, 2, 3), None).unwrap_err();
    assert!(matches!(err, MetricsError::InvalidShape { n: 0, .. }), "{err}");
    let mut bad = maps.clone();
    bad[7] = f32::INFINITY;
    let err = aupro(&bad, &masks, MapShape::new(2, 2, 3), ProConvention::ClipAd).unwrap_err();
    assert_eq!(err.to_string(), "maps: non-finite value inf at index 7");
    let err = PixelEvaluator::new(&bad, &masks, MapShape::new(2, 2, 3)).err().unwrap();
    assert!(matches!(err, MetricsError::NonFiniteScore { what: "maps", index: 7, .. }));
}

#[test]
fn image_inputs_are_checked() {
    let err = binary_metrics(&[0.1, 0.2, f32::NAN], &[true, false, true]).unwrap_err();
    assert_eq!(err.to_string(), "scores: non-finite value NaN at index 2");
    let err = binary_metrics(&[0.1, 0.2], &[1u8]).unwrap_err();
    assert_eq!(err.to_string(), "labels: expected 2 values, found 1");
}

/// A small deterministic class: two anomalous images with blobs, one normal image.
fn class() -> (Vec<f32>, Vec<u8>, MapShape) {
    let shape = MapShape::new(3, 12, 14);
    let (mut maps, mut masks) = (Vec::new(), Vec::new());
    for n in 0..shape.n {
        for r in 0..shape.height {
            for c in 0..shape.width {
                let inside = n < 2 && (r as i32 - 5).pow(2) + (c as i32 - 4 - 4 * n as i32).pow(2) <= 6;
                let noise = ((r * 7 + c * 13 + n * 29) as u64 * 2_654_435_761 % 997) as f32 / 997.0;
                maps.push(noise * 0.7 + if inside { 0.4 } else { 0.0 });
                masks.push(if inside { 255 } else { 0 });
            }
        }
    }
    (maps, masks, shape)
}

#[test]
fn entry_points_agree() {
    let (maps, masks, shape) = class();
    let eval = PixelEvaluator::new(&maps, &masks, shape).unwrap();
    let bools: Vec<bool> = masks.iter().map(|&m| m != 0).collect();
    for convention in [ProConvention::Anomalib, ProConvention::AnomalibLegacy, ProConvention::ClipAd] {
        let value = aupro(&maps, &masks, shape, convention).unwrap();
        assert!(value.is_some_and(|v| (0.0..=1.0).contains(&v)), "{convention:?}: {value:?}");
        assert_eq!(eval.aupro(convention).0, value, "{convention:?}");
        assert_eq!(aupro(&maps, &bools, shape, convention).unwrap(), value, "{convention:?} with bool masks");
        let all = pixel_metrics(&maps, &masks, shape, Some(convention)).unwrap();
        assert_eq!((all.aupro, all.regions), (value, Some(2)));
    }
    let flat = binary_metrics(&maps, &masks).unwrap();
    assert_eq!(eval.binary_metrics(), flat);
}

#[test]
fn curves_are_consistent_with_the_metrics() {
    let (maps, masks, shape) = class();
    let eval = PixelEvaluator::new(&maps, &masks, shape).unwrap();
    let m = eval.binary_metrics();
    let roc = eval.roc_curve().unwrap();
    let area: f64 = roc.fpr.windows(2).zip(roc.tpr.windows(2)).map(|(x, y)| (x[1] - x[0]) * (y[1] + y[0]) / 2.0).sum();
    assert!((area - m.auroc.unwrap()).abs() < 1e-12);
    let pr = eval.pr_curve().unwrap();
    let ap: f64 = pr.recall.windows(2).zip(&pr.precision).map(|(r, p)| (r[0] - r[1]) * p).sum();
    assert!((ap - m.average_precision.unwrap()).abs() < 1e-12);
    let small = roc.downsample(5);
    assert_eq!((small.fpr.len(), small.fpr[0], *small.fpr.last().unwrap()), (5, 0.0, 1.0));
    for convention in [ProConvention::Anomalib, ProConvention::AnomalibLegacy, ProConvention::ClipAd] {
        let curve = eval.pro_curve(convention).0.unwrap();
        assert!(curve.fpr.windows(2).all(|w| w[0] <= w[1]), "{convention:?}: FPR must not decrease");
        assert!(curve.fpr.iter().all(|&f| f <= 0.3 + 1e-12), "{convention:?}");
    }
}

#[test]
fn brute_force_auroc_agrees_on_random_ties() {
    // AUROC = P(score_pos > score_neg) + ½ P(tie), counted over all pairs.
    let mut state = 88172645463325252u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let scores: Vec<f32> = (0..700).map(|_| (next() % 50) as f32 / 10.0 - 2.0).collect();
    let labels: Vec<bool> = (0..700).map(|_| next() % 3 == 0).collect();
    let (mut wins, mut pairs) = (0.0f64, 0.0f64);
    let positives: Vec<f32> = scores.iter().zip(&labels).filter(|(_, l)| **l).map(|(s, _)| *s).collect();
    let negatives: Vec<f32> = scores.iter().zip(&labels).filter(|(_, l)| !**l).map(|(s, _)| *s).collect();
    for &si in &positives {
        for &sj in &negatives {
            pairs += 1.0;
            wins += if si > sj { 1.0 } else if si == sj { 0.5 } else { 0.0 };
        }
    }
    let m = binary_metrics(&scores, &labels).unwrap();
    assert!((m.auroc.unwrap() - wins / pairs).abs() < 1e-12);
}
