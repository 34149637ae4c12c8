//! Connected components of a binary mask with 8-connectivity.
//!
//! This is the connectivity of skimage `label` by default (full connectivity in 2-D), of
//! `cv2.connectedComponents` (anomalib) and of `scipy.ndimage.label` with a 3×3 structure (MVTec
//! reference). Components are numbered from 1 in the raster order of their first pixel, as skimage
//! numbers them; 0 is background.

use crate::sorted::BinaryLabel;

/// Labelled components of one `height × width` mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Components {
    /// Row-major component id per pixel: 0 for background, `1..=count` for foreground.
    pub labels: Vec<u32>,
    /// Pixel count of each component; `areas[k]` belongs to id `k + 1`.
    pub areas: Vec<u64>,
}

impl Components {
    /// Number of components.
    pub fn count(&self) -> usize {
        self.areas.len()
    }
}

fn find(parent: &mut [u32], mut x: u32) -> u32 {
    while parent[x as usize] != x {
        let grand = parent[parent[x as usize] as usize];
        parent[x as usize] = grand; // path halving
        x = grand;
    }
    x
}

fn union(parent: &mut [u32], a: u32, b: u32) -> u32 {
    let (ra, rb) = (find(parent, a), find(parent, b));
    // The smaller provisional id stays the root, so every root is its component's first raster pixel.
    let (root, child) = if ra <= rb { (ra, rb) } else { (rb, ra) };
    parent[child as usize] = root;
    root
}

/// Labels the 8-connected foreground components of a row-major `height × width` mask.
///
/// Panics if `mask.len() != height * width` (callers validate shapes first).
pub fn label_components<L: BinaryLabel>(mask: &[L], height: usize, width: usize) -> Components {
    assert_eq!(mask.len(), height * width, "mask length must equal height * width");
    let mut labels = vec![0u32; mask.len()];
    // parent[0] is a dummy so provisional ids start at 1.
    let mut parent: Vec<u32> = vec![0];
    for r in 0..height {
        for c in 0..width {
            let i = r * width + c;
            if !mask[i].is_anomalous() {
                continue;
            }
            let mut current = 0u32;
            let mut join = |neighbour: u32, parent: &mut Vec<u32>| {
                if neighbour != 0 {
                    current = if current == 0 { find(parent, neighbour) } else { union(parent, current, neighbour) };
                }
            };
            if c > 0 {
                join(labels[i - 1], &mut parent);
            }
            if r > 0 {
                let up = i - width;
                if c > 0 {
                    join(labels[up - 1], &mut parent);
                }
                join(labels[up], &mut parent);
                if c + 1 < width {
                    join(labels[up + 1], &mut parent);
                }
            }
            labels[i] = if current == 0 {
                let id = parent.len() as u32;
                parent.push(id);
                id
            } else {
                current
            };
        }
    }
    // Final ids in order of first appearance in raster order.
    let mut final_id = vec![0u32; parent.len()];
    let mut areas: Vec<u64> = Vec::new();
    for label in labels.iter_mut() {
        if *label == 0 {
            continue;
        }
        let root = find(&mut parent, *label) as usize;
        if final_id[root] == 0 {
            areas.push(0);
            final_id[root] = areas.len() as u32;
        }
        *label = final_id[root];
        areas[*label as usize - 1] += 1;
    }
    Components { labels, areas }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(rows: &[&str]) -> (Vec<bool>, usize, usize) {
        let w = rows[0].len();
        (rows.iter().flat_map(|r| r.chars().map(|c| c == '#')).collect(), rows.len(), w)
    }

    #[test]
    fn diagonal_pixels_connect_and_u_shapes_merge() {
        let (mask, h, w) = grid(&["#..#.#", ".#..#.", "......", "#.#..#", "#.#..#", "###..."]);
        let comps = label_components(&mask, h, w);
        let expected: Vec<u32> = vec![
            1, 0, 0, 2, 0, 2, //
            0, 1, 0, 0, 2, 0, //
            0, 0, 0, 0, 0, 0, //
            3, 0, 3, 0, 0, 4, //
            3, 0, 3, 0, 0, 4, //
            3, 3, 3, 0, 0, 0,
        ];
        assert_eq!(comps.labels, expected);
        assert_eq!(comps.areas, vec![2, 3, 7, 2]);
    }

    #[test]
    fn empty_and_full_masks() {
        assert_eq!(label_components(&[0u8; 6], 2, 3).count(), 0);
        let full = label_components(&[255u8; 6], 2, 3);
        assert_eq!((full.count(), full.areas[0]), (1, 6));
    }
}
