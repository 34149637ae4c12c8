//! Shared post-processing against the libraries the official code calls (fixtures from
//! `tools/fixtures/detect_baselines.py`): torch `F.interpolate` (bilinear, both `align_corners`),
//! `scipy.ndimage.gaussian_filter` (reflect), kornia 0.6.9 `gaussian_blur2d` (reflect), anomalib
//! 2.7.0 `harmonic_aggregation` and `make_masks`, `torch.topk`.
//!
//! Tolerance: max |diff| ≤ 1e-5 · max |reference| (each output is a short f32 weighted sum, so
//! the only differences are rounding).
mod common;

use burn::tensor::{Tensor, TensorData};
use common::{assert_close, device, json, values};
use serde_json::Value;
use vlad_detect::postprocess::{AxisMap, apply_separable, harmonic_aggregation, top_k_mean, top_k_mean_rows};
use vlad_detect::winclip::sliding_windows;

const TOLERANCE: f64 = 1e-5;

/// `{"shape", "values"}` (null = NaN).
fn array(v: &Value) -> (Vec<usize>, Vec<f32>) {
    let shape = v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let values = v["values"].as_array().unwrap().iter().map(|x| x.as_f64().map_or(f32::NAN, |f| f as f32)).collect();
    (shape, values)
}

fn tensor<const D: usize>(v: &Value) -> Tensor<D> {
    let (shape, values) = array(v);
    Tensor::from_data(TensorData::new(values, shape), &device())
}

fn cases(kind: &str) -> Vec<Value> {
    json("postprocess.json")[kind].as_array().unwrap().clone()
}

fn check_separable(what: &str, case: &Value, rows: impl Fn(usize, usize) -> AxisMap, cols: impl Fn(usize, usize) -> AxisMap) {
    let input = tensor::<3>(&case["input"]);
    let (out_shape, want) = array(&case["output"]);
    let [_, h, w] = input.dims();
    let (ho, wo) = (out_shape[1], out_shape[2]);
    let got = apply_separable(input, &rows(h, ho), &cols(w, wo));
    assert_eq!(got.dims().to_vec(), out_shape, "{what}");
    assert_close(what, &values(got), &want, TOLERANCE);
}

#[test]
fn bilinear_matches_torch_interpolate() {
    let all = cases("bilinear");
    assert_eq!(all.len(), 10);
    for case in &all {
        let align = case["align_corners"].as_bool().unwrap();
        let (shape, _) = array(&case["input"]);
        let what = format!("bilinear {:?} align_corners={align}", &shape[1..]);
        check_separable(&what, case, |n, m| AxisMap::bilinear(n, m, align), |n, m| AxisMap::bilinear(n, m, align));
    }
}

#[test]
fn gaussian_matches_scipy_gaussian_filter() {
    for case in &cases("scipy") {
        let sigma = case["sigma"].as_f64().unwrap();
        let truncate = case["truncate"].as_f64().unwrap();
        let what = format!("scipy gaussian σ={sigma} truncate={truncate} {:?}", array(&case["input"]).0);
        check_separable(
            &what,
            case,
            |n, _| AxisMap::gaussian_scipy(n, sigma, truncate),
            |n, _| AxisMap::gaussian_scipy(n, sigma, truncate),
        );
    }
}

#[test]
fn gaussian_matches_kornia_gaussian_blur2d() {
    for case in &cases("kornia") {
        let ks = case["kernel_size"].as_u64().unwrap() as usize;
        let sigma = case["sigma"].as_f64().unwrap();
        let what = format!("kornia gaussian ks={ks} σ={sigma} {:?}", array(&case["input"]).0);
        check_separable(&what, case, |n, _| AxisMap::gaussian_kornia(n, ks, sigma), |n, _| AxisMap::gaussian_kornia(n, ks, sigma));
    }
}

#[test]
fn windows_match_anomalib_make_masks() {
    for case in &cases("masks") {
        let grid: Vec<usize> = serde_json::from_value(case["grid"].clone()).unwrap();
        let k = case["kernel"].as_u64().unwrap() as usize;
        let want: Vec<Vec<usize>> = serde_json::from_value(case["masks"].clone()).unwrap();
        assert_eq!(sliding_windows(grid[0], grid[1], k).unwrap(), want, "make_masks({grid:?}, {k})");
    }
}

#[test]
fn harmonic_aggregation_matches_anomalib() {
    let all = cases("harmonic");
    assert_eq!(all.len(), 4);
    for case in &all {
        let grid: Vec<usize> = serde_json::from_value(case["grid"].clone()).unwrap();
        let k = case["kernel"].as_u64().unwrap() as usize;
        let windows = sliding_windows(grid[0], grid[1], k).unwrap();
        let scores = tensor::<2>(&case["scores"]);
        let (shape, want) = array(&case["output"]);
        let got = values(harmonic_aggregation(scores, &windows, grid[0] * grid[1]));
        let what = format!("harmonic aggregation {grid:?} k={k}");
        assert_eq!(shape, vec![2, grid[0], grid[1]]);
        assert_close(&what, &got, &want, TOLERANCE);
        // A zero or NaN window score zeroes exactly the cells its window covers.
        let zeros = |v: &[f32]| v.iter().map(|&x| x == 0.0).collect::<Vec<_>>();
        assert_eq!(zeros(&got), zeros(&want), "{what}: zeroed cells differ");
    }
    let zeroed = |case: &Value| array(&case["output"]).1.iter().filter(|&&x| x == 0.0).count();
    assert!(zeroed(&all[2]) > 0 && zeroed(&all[3]) > 0, "the zero-score and NaN cases should zero some cells");
}

#[test]
fn top_k_mean_matches_torch_topk() {
    for case in &cases("topk") {
        let k = case["k"].as_u64().unwrap() as usize;
        let (shape, input) = array(&case["input"]);
        let (_, want) = array(&case["output"]);
        assert_close(&format!("top-{k} mean"), &top_k_mean(&input, shape[1], k), &want, 1e-6);
        let rows = Tensor::<2>::from_data(TensorData::new(input.clone(), [shape[0], shape[1]]), &device());
        assert_close(&format!("top-{k} mean (device)"), &values(top_k_mean_rows(rows, k)), &want, 1e-6);
    }
}

/// The device top-k mean (bisection for the k-th value) against the host sort on rows with ties,
/// negative values, a constant row, ties at the maximum, and every k from 1 to N.
#[test]
fn device_top_k_mean_matches_the_sorted_mean() {
    let n = 37;
    let mut rows: Vec<f32> = (0..n).map(|i| ((i * 7919) % 23) as f32 * 0.125 - 1.0).collect(); // many ties
    rows.extend((0..n).map(|i| (i as f32 * 0.37).sin() * 1e-3)); // small magnitudes of both signs
    rows.extend(std::iter::repeat_n(0.25f32, n)); // constant
    rows.extend((0..n).map(|i| if i % 3 == 0 { 2.0 } else { i as f32 * 1e-2 })); // ties at the maximum
    let b = rows.len() / n;
    for k in 1..=n {
        let want = top_k_mean(&rows, n, k);
        let got = values(top_k_mean_rows(Tensor::<2>::from_data(TensorData::new(rows.clone(), [b, n]), &device()), k));
        for (row, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= 1e-6 * w.abs().max(1e-3), "row {row}, k = {k}: device {g}, sorted {w}");
        }
    }
}
