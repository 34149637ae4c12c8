//! WinCLIP and WinCLIP+ against anomalib 2.7.0's `WinClipModel` (run on open_clip 2.24.0, inside
//! anomalib's pin; see `tools/fixtures/detect_baselines.py`) on the tiny random CLIP (exact GELU,
//! 6×6 grid at 48 px: 25 windows of 2×2 and 16 of 3×3), class "bottle", 3 test images and 2
//! reference images. Tolerance: the max |diff| ≤ 1e-4 · max |reference| for every
//! intermediate, map and score.
mod common;

use burn::tensor::Tensor;
use common::{assert_parity, device, json, npy, npy_tensor, tiny_model, values};
use vlad_clip::Activation;
use vlad_detect::Detector;
use vlad_detect::winclip::{WinClip, WinClipConfig, sliding_windows};

fn detector() -> WinClip {
    let mut d = WinClip::new(tiny_model(Activation::Gelu), WinClipConfig::default()).unwrap();
    d.set_class("bottle").unwrap();
    d
}

#[test]
fn windows_are_anomalibs() {
    let masks: Vec<Vec<Vec<usize>>> = serde_json::from_value(json("wc_masks.json")).unwrap();
    assert_eq!(masks.len(), 2);
    assert_eq!(sliding_windows(6, 6, 2).unwrap(), masks[0]);
    assert_eq!(sliding_windows(6, 6, 3).unwrap(), masks[1]);
}

#[test]
fn embeddings_match_anomalib() {
    let d = detector();
    assert_parity("text prototypes (raw means)", &values(d.text_prototypes().unwrap()), &npy("wc_text.npy").1);
    let e = d.embeddings(npy_tensor::<4>("tiny_images.npy", &device())).unwrap();
    assert_parity("image embedding", &values(e.image), &npy("wc_image_embedding.npy").1);
    assert_eq!(e.windows[0].dims(), [3, 25, 16]);
    assert_eq!(e.windows[1].dims(), [3, 16, 16]);
    let mut windows = e.windows.into_iter();
    assert_parity("2×2 window embeddings", &values(windows.next().unwrap()), &npy("wc_windows_2.npy").1);
    assert_parity("3×3 window embeddings", &values(windows.next().unwrap()), &npy("wc_windows_3.npy").1);
    assert_parity("patch tokens (ln_post, unprojected)", &values(e.patches), &npy("wc_patch_tokens.npy").1);
}

#[test]
fn zero_shot_matches_anomalib() {
    let d = detector();
    assert_eq!(d.shots(), 0);
    let out = d.detect(npy_tensor::<4>("tiny_images.npy", &device())).unwrap();
    assert_eq!(out.map.dims(), [3, 48, 48]);
    assert_parity("zero-shot image score", &values(out.image_score), &npy("wc_zero_image_score.npy").1);
    assert_parity("zero-shot patch map", &values(out.patch_map), &npy("wc_zero_patch_map.npy").1);
    assert_parity("zero-shot map", &values(out.map), &npy("wc_zero_map.npy").1);
    assert_eq!(out.components.len(), 1);
}

#[test]
fn few_shot_matches_anomalib() {
    let device = device();
    let mut d = detector();
    d.fit_reference(npy_tensor::<4>("tiny_refs.npy", &device)).unwrap();
    assert_eq!(d.shots(), 2);
    let out = d.detect(npy_tensor::<4>("tiny_images.npy", &device)).unwrap();
    assert_parity("2-shot image score", &values(out.image_score), &npy("wc_few_image_score.npy").1);
    assert_parity("2-shot patch map", &values(out.patch_map), &npy("wc_few_patch_map.npy").1);
    assert_parity("2-shot map", &values(out.map), &npy("wc_few_map.npy").1);
    let names: Vec<&str> = out.components.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["zero_shot", "few_shot_max"]);
    // The memory part M_few alone, through its per-image maximum (the image-score component).
    let memory_max =
        npy("wc_few_memory_patch_map.npy").1.chunks(36).map(|c| c.iter().copied().fold(f32::MIN, f32::max)).collect::<Vec<_>>();
    let (_, few_max) = out.components.into_iter().nth(1).unwrap();
    assert_parity("max of M_few", &values(few_max), &memory_max);
    // Same class again keeps the memory; another class drops it.
    d.set_class("bottle").unwrap();
    assert_eq!(d.shots(), 2);
    d.set_class("cable").unwrap();
    assert_eq!(d.shots(), 0);
}

#[test]
fn window_embeddings_differ_across_windows() {
    // anomalib issue #2571: every window must get its own embedding.
    let e = detector().embeddings(npy_tensor::<4>("tiny_images.npy", &device())).unwrap();
    let w = values(e.windows[0].clone().slice([0..1, 0..25, 0..16]));
    let first = &w[..16];
    assert!(w.chunks(16).skip(1).all(|c| c.iter().zip(first).any(|(a, b)| (a - b).abs() > 1e-3)));
}

#[test]
fn bad_inputs_are_errors() {
    let device = device();
    let mut d = WinClip::new(tiny_model(Activation::Gelu), WinClipConfig::default()).unwrap();
    let x = npy_tensor::<4>("tiny_images.npy", &device);
    assert!(d.detect(x).err().unwrap().to_string().contains("set_class"));
    d.set_class("bottle").unwrap();
    let wrong = Tensor::<4>::zeros([1, 3, 40, 40], &device);
    let err = d.detect(wrong.clone()).err().unwrap().to_string();
    assert!(err.contains("[1, 3, 40, 40]") && err.contains("48"), "{err}");
    assert!(d.fit_reference(wrong).is_err());
    let too_big = WinClipConfig { scales: vec![2, 7], ..WinClipConfig::default() };
    let err = WinClip::new(tiny_model(Activation::Gelu), too_big).err().unwrap().to_string();
    assert!(err.contains("7×7") && err.contains("6×6"), "{err}");
    let cold = WinClipConfig { temperature: -1.0, ..WinClipConfig::default() };
    assert!(WinClip::new(tiny_model(Activation::Gelu), cold).is_err());
}
