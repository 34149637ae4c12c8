//! DBSCAN as scikit-learn defines it (`sklearn.cluster.DBSCAN`, metric `euclidean`), for CLIP-AD's
//! Representative Vector Selection. No well-kept Rust crate matches it without pulling ndarray into
//! the wasm build (linfa-clustering), so it is written out here and tested against scikit-learn.
//!
//! * the neighbourhood of a point is every point at distance ≤ `eps`, itself included;
//! * a point is a core point when its neighbourhood has at least `min_samples` points;
//! * points are visited in index order; an unlabelled core point starts a new cluster (labels
//!   0, 1, … in order of discovery) that grows depth-first through core points; a non-core point
//!   takes the label of the first cluster that reaches it and does not expand it;
//! * points no cluster reaches are noise, label −1.
//!
//! Distances are computed in f64 from the f32 inputs.

/// Cluster labels of `points` (`n` rows of `dim` values, row-major); −1 for noise.
pub fn dbscan(points: &[f32], dim: usize, eps: f64, min_samples: usize) -> Vec<i64> {
    assert!(dim > 0 && points.len().is_multiple_of(dim), "{} values do not form rows of {dim}", points.len());
    let n = points.len() / dim;
    let row = |i: usize| &points[i * dim..(i + 1) * dim];
    let eps2 = eps * eps;
    let neighbourhoods: Vec<Vec<usize>> = (0..n)
        .map(|i| {
            (0..n)
                .filter(|&j| {
                    let d2: f64 = row(i).iter().zip(row(j)).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum();
                    d2 <= eps2
                })
                .collect()
        })
        .collect();
    let core: Vec<bool> = neighbourhoods.iter().map(|nb| nb.len() >= min_samples).collect();
    let mut labels = vec![-1i64; n];
    let mut next_label = 0i64;
    let mut stack = Vec::new();
    for start in 0..n {
        if labels[start] != -1 || !core[start] {
            continue;
        }
        let mut i = start;
        loop {
            if labels[i] == -1 {
                labels[i] = next_label;
                if core[i] {
                    stack.extend(neighbourhoods[i].iter().copied().filter(|&j| labels[j] == -1));
                }
            }
            match stack.pop() {
                Some(j) => i = j,
                None => break,
            }
        }
        next_label += 1;
    }
    labels
}

/// The label of the largest cluster (ties: the smallest label, as `np.argmax(np.bincount(…))`);
/// `None` when every point is noise.
pub fn largest_cluster(labels: &[i64]) -> Option<i64> {
    let clusters = labels.iter().copied().max().filter(|&m| m >= 0)? as usize + 1;
    let mut counts = vec![0usize; clusters];
    for &l in labels.iter().filter(|&&l| l >= 0) {
        counts[l as usize] += 1;
    }
    let best = counts.iter().copied().max()?;
    counts.iter().position(|&c| c == best).map(|p| p as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_border_and_noise() {
        // 1-D: a dense run 0..4 (core with eps 1.0, min 3), a border point at 5, noise at 20, and a
        // second run at 10..12.
        let pts = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 20.0, 10.0, 11.0, 12.0];
        let labels = dbscan(&pts, 1, 1.0, 3);
        assert_eq!(labels, vec![0, 0, 0, 0, 0, 0, -1, 1, 1, 1]);
        assert_eq!(largest_cluster(&labels), Some(0));
        assert_eq!(largest_cluster(&[-1, -1]), None);
        assert_eq!(largest_cluster(&[1, 0, 1, 0]), Some(0));
    }
}
