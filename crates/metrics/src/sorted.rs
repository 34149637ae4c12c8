//! Scores split by label and sorted once; every threshold-sweeping metric walks these arrays.
//!
//! Scores are stored as order-preserving `u32` keys (see [`score_key`]) so that sorting is a plain
//! integer sort and equal `f32` values (including `-0.0` and `+0.0`) land on equal keys, exactly as
//! sklearn's `np.diff(y_score) != 0` groups ties.

use rayon::prelude::*;

use crate::error::{MetricsError, Result};

/// A ground-truth label: anything that says "anomalous" or "normal".
///
/// `u8` labels and masks count every non-zero value as anomalous (VisA masks store component ids,
/// MVTec masks store 255), `bool` is taken as is.
pub trait BinaryLabel: Copy + Send + Sync {
    /// Whether this label marks an anomalous sample or pixel.
    fn is_anomalous(self) -> bool;
}

impl BinaryLabel for bool {
    #[inline]
    fn is_anomalous(self) -> bool {
        self
    }
}

impl BinaryLabel for u8 {
    #[inline]
    fn is_anomalous(self) -> bool {
        self != 0
    }
}

/// Maps a finite `f32` to a `u32` whose unsigned order is the numeric order of the floats.
///
/// `-0.0` is folded onto `+0.0` first, because the two compare equal and must form one tie group.
#[inline]
pub fn score_key(score: f32) -> u32 {
    let score = if score == 0.0 { 0.0 } else { score };
    let bits = score.to_bits();
    if bits & 0x8000_0000 != 0 { !bits } else { bits | 0x8000_0000 }
}

/// Inverse of [`score_key`].
#[inline]
pub fn key_score(key: u32) -> f32 {
    let bits = if key & 0x8000_0000 != 0 { key & 0x7fff_ffff } else { !key };
    f32::from_bits(bits)
}

/// Fails on the first NaN or infinite value, naming the input and the index.
pub(crate) fn check_finite(what: &'static str, values: &[f32]) -> Result<()> {
    match values.par_iter().position_first(|v| !v.is_finite()) {
        Some(index) => Err(MetricsError::NonFiniteScore { what, index, value: values[index] }),
        None => Ok(()),
    }
}

/// Scores split into anomalous (`positives`) and normal (`negatives`) keys, each sorted ascending.
///
/// Memory: 4 bytes per score (one `u32` key) on top of the caller's inputs, 8 while sorting.
#[derive(Debug, Clone)]
pub struct SortedScores {
    positives: Vec<u32>,
    negatives: Vec<u32>,
}

impl SortedScores {
    /// Validates, splits and sorts `scores` by `labels` (both cores via rayon).
    ///
    /// Errors on a length mismatch, on no values, or on a non-finite score.
    pub fn new<L: BinaryLabel>(scores: &[f32], labels: &[L]) -> Result<Self> {
        Self::with_names(scores, labels, "scores", "labels")
    }

    /// As [`SortedScores::new`], with input names for error messages.
    pub(crate) fn with_names<L: BinaryLabel>(
        scores: &[f32],
        labels: &[L],
        scores_name: &'static str,
        labels_name: &'static str,
    ) -> Result<Self> {
        if labels.len() != scores.len() {
            return Err(MetricsError::LengthMismatch {
                what: labels_name,
                expected: scores.len(),
                found: labels.len(),
            });
        }
        if scores.is_empty() {
            return Err(MetricsError::Empty { what: scores_name });
        }
        check_finite(scores_name, scores)?;
        let (positives, negatives) = split_and_sort(scores, labels);
        Ok(Self { positives, negatives })
    }

    /// Number of anomalous samples.
    pub fn positives(&self) -> u64 {
        self.positives.len() as u64
    }

    /// Number of normal samples.
    pub fn negatives(&self) -> u64 {
        self.negatives.len() as u64
    }

    /// Sorted keys of the normal samples (ascending).
    pub(crate) fn negative_keys(&self) -> &[u32] {
        &self.negatives
    }

    /// Distinct score values from the highest down, with how many positives and negatives share each.
    pub(crate) fn levels(&self) -> Levels<'_> {
        Levels::new(&self.positives, &self.negatives)
    }
}

/// Splits scores by label into key arrays and sorts both, on every rayon thread: each thread splits and
/// radix-sorts one contiguous chunk into its own part of the outputs, then the sorted runs are merged.
fn split_and_sort<L: BinaryLabel>(scores: &[f32], labels: &[L]) -> (Vec<u32>, Vec<u32>) {
    let chunk = scores.len().div_ceil(rayon::current_num_threads().max(1)).max(1 << 16);
    let chunk_positives: Vec<usize> =
        labels.par_chunks(chunk).map(|c| c.iter().filter(|l| l.is_anomalous()).count()).collect();
    let n_pos: usize = chunk_positives.iter().sum();
    let mut positives = vec![0u32; n_pos];
    let mut negatives = vec![0u32; scores.len() - n_pos];
    let mut pos_runs = Vec::with_capacity(chunk_positives.len());
    let mut neg_runs = Vec::with_capacity(chunk_positives.len());
    let mut jobs = Vec::with_capacity(chunk_positives.len());
    let (mut pos_rest, mut neg_rest) = (positives.as_mut_slice(), negatives.as_mut_slice());
    for ((s, l), &n) in scores.chunks(chunk).zip(labels.chunks(chunk)).zip(&chunk_positives) {
        let (pos, rest) = std::mem::take(&mut pos_rest).split_at_mut(n);
        pos_rest = rest;
        let (neg, rest) = std::mem::take(&mut neg_rest).split_at_mut(l.len() - n);
        neg_rest = rest;
        pos_runs.push(n);
        neg_runs.push(l.len() - n);
        jobs.push((s, l, pos, neg));
    }
    jobs.into_par_iter().for_each(|(s, l, pos, neg)| {
        let (mut p, mut q) = (0, 0);
        for (&score, &label) in s.iter().zip(l) {
            if label.is_anomalous() {
                pos[p] = score_key(score);
                p += 1;
            } else {
                neg[q] = score_key(score);
                q += 1;
            }
        }
        radix_sort(pos);
        radix_sort(neg);
    });
    rayon::join(|| merge_runs(positives, pos_runs), || merge_runs(negatives, neg_runs))
}

/// Merges consecutive sorted runs of the given lengths into one sorted vector (pairwise rounds, the
/// pairs of a round in parallel).
fn merge_runs(mut keys: Vec<u32>, mut runs: Vec<usize>) -> Vec<u32> {
    runs.retain(|&r| r > 0);
    while runs.len() > 1 {
        let mut out = vec![0u32; keys.len()];
        let mut jobs = Vec::new();
        let (mut input, mut output) = (keys.as_slice(), out.as_mut_slice());
        let mut merged_runs = Vec::new();
        for pair in runs.chunks(2) {
            let len: usize = pair.iter().sum();
            let (run_in, rest_in) = input.split_at(len);
            let (run_out, rest_out) = std::mem::take(&mut output).split_at_mut(len);
            (input, output) = (rest_in, rest_out);
            jobs.push((run_in.split_at(pair[0]), run_out));
            merged_runs.push(len);
        }
        jobs.into_par_iter().for_each(|((a, b), out)| merge_into(a, b, out));
        keys = out;
        runs = merged_runs;
    }
    keys
}

fn merge_into(a: &[u32], b: &[u32], out: &mut [u32]) {
    let (mut i, mut j) = (0, 0);
    for slot in out.iter_mut() {
        if j >= b.len() || (i < a.len() && a[i] <= b[j]) {
            *slot = a[i];
            i += 1;
        } else {
            *slot = b[j];
            j += 1;
        }
    }
}

/// Sorts `u32` keys ascending: least-significant-digit radix sort, three passes of 11/11/10 bits,
/// skipping a pass when every key shares that digit. Several times faster than a comparison sort on
/// tens of millions of score keys; uses a scratch buffer as large as the input while it runs.
pub(crate) fn radix_sort(keys: &mut [u32]) {
    const PASSES: [(u32, usize); 3] = [(0, 11), (11, 11), (22, 10)];
    if keys.len() < 256 {
        keys.sort_unstable();
        return;
    }
    let mut scratch = vec![0u32; keys.len()];
    let mut in_scratch = false;
    for (shift, bits) in PASSES {
        let (src, dst): (&mut [u32], &mut [u32]) =
            if in_scratch { (&mut scratch, &mut *keys) } else { (&mut *keys, &mut scratch) };
        let mask = (1u32 << bits) - 1;
        let mut counts = vec![0usize; 1 << bits];
        for &k in src.iter() {
            counts[((k >> shift) & mask) as usize] += 1;
        }
        if counts.contains(&src.len()) {
            continue; // every key has this digit: the pass would not move anything
        }
        let mut offset = 0;
        for c in counts.iter_mut() {
            (*c, offset) = (offset, offset + *c);
        }
        for &k in src.iter() {
            let digit = ((k >> shift) & mask) as usize;
            dst[counts[digit]] = k;
            counts[digit] += 1;
        }
        in_scratch = !in_scratch;
    }
    if in_scratch {
        keys.copy_from_slice(&scratch);
    }
}

/// One distinct score value and how many positives / negatives have exactly that value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Level {
    pub key: u32,
    pub positives: u64,
    pub negatives: u64,
}

/// Walks two ascending key arrays from the top, one distinct value at a time.
pub(crate) struct Levels<'a> {
    positives: &'a [u32],
    negatives: &'a [u32],
}

impl<'a> Levels<'a> {
    pub(crate) fn new(positives: &'a [u32], negatives: &'a [u32]) -> Self {
        Self { positives, negatives }
    }
}

/// Splits off the run of `key` at the end of an ascending slice and returns its length.
#[inline]
fn pop_run(keys: &mut &[u32], key: u32) -> u64 {
    let mut count = 0;
    while let Some((&last, rest)) = keys.split_last() {
        if last != key {
            break;
        }
        *keys = rest;
        count += 1;
    }
    count
}

impl Iterator for Levels<'_> {
    type Item = Level;

    #[inline]
    fn next(&mut self) -> Option<Level> {
        let key = match (self.positives.last(), self.negatives.last()) {
            (None, None) => return None,
            (Some(&p), None) => p,
            (None, Some(&n)) => n,
            (Some(&p), Some(&n)) => p.max(n),
        };
        let positives = pop_run(&mut self.positives, key);
        let negatives = pop_run(&mut self.negatives, key);
        Some(Level { key, positives, negatives })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_preserve_order_and_fold_signed_zero() {
        let values = [-f32::MAX, -3.5, -1e-30, -0.0, 0.0, 1e-30, 0.25, 7.0, f32::MAX];
        for pair in values.windows(2) {
            let (a, b) = (score_key(pair[0]), score_key(pair[1]));
            if pair[0] == pair[1] {
                assert_eq!(a, b);
            } else {
                assert!(a < b, "{} !< {}", pair[0], pair[1]);
            }
        }
        for v in values {
            assert_eq!(key_score(score_key(v)), if v == 0.0 { 0.0 } else { v });
        }
    }

    #[test]
    fn radix_sort_matches_std_sort() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in [0, 1, 255, 256, 1000, 100_000] {
            let mut keys: Vec<u32> = (0..len)
                .map(|i| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    // Mix full-range keys with float-like keys that share their top bits, and ties.
                    match i % 3 {
                        0 => state as u32,
                        1 => score_key((state % 1000) as f32 / 1000.0),
                        _ => score_key(0.5),
                    }
                })
                .collect();
            let mut expected = keys.clone();
            expected.sort_unstable();
            let mut split = keys.clone();
            radix_sort(&mut keys);
            assert_eq!(keys, expected, "len {len}");
            // Sorted runs merged back into one.
            let third = split.len() / 3;
            radix_sort(&mut split[..third]);
            radix_sort(&mut split[third..2 * third]);
            radix_sort(&mut split[2 * third..]);
            let runs = vec![third, third, split.len() - 2 * third];
            assert_eq!(merge_runs(split, runs), expected, "merged, len {len}");
        }
    }

    #[test]
    fn levels_group_ties_across_labels() {
        let scores = [0.5, 0.1, 0.5, 0.9, -0.0, 0.0];
        let labels = [true, false, false, true, true, false];
        let sorted = SortedScores::new(&scores, &labels).unwrap();
        let levels: Vec<_> = sorted.levels().map(|l| (key_score(l.key), l.positives, l.negatives)).collect();
        assert_eq!(levels, vec![(0.9, 1, 0), (0.5, 1, 1), (0.1, 0, 1), (0.0, 1, 1)]);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            SortedScores::new(&[0.1, f32::NAN], &[true, false]),
            Err(MetricsError::NonFiniteScore { index: 1, .. })
        ));
        assert!(matches!(
            SortedScores::new(&[0.1, 0.2], &[true]),
            Err(MetricsError::LengthMismatch { expected: 2, found: 1, .. })
        ));
        assert!(matches!(SortedScores::new::<bool>(&[], &[]), Err(MetricsError::Empty { .. })));
    }
}
