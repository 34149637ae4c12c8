//! Plain zero-shot CLIP (`spec/baselines.md` §2) against the reference written on open_clip's
//! towers in `tools/fixtures/detect_baselines.py`: tiny random CLIP (QuickGELU, 6×6 grid at 48 px),
//! class "bottle", both prompt sets, with and without σ = 4 smoothing (scipy). Tolerance: the
//! issue's max |diff| ≤ 1e-4 · max |reference| for maps and scores.
mod common;

use common::{assert_parity, device, npy, npy_tensor, tiny_model, values};
use vlad_clip::Activation;
use vlad_detect::Detector;
use vlad_detect::zero_shot::{ZeroShotClip, ZeroShotConfig, ZeroShotPrompts};

fn check(prompts: ZeroShotPrompts, tag: &str, sigma: Option<f64>) {
    let mut config = ZeroShotConfig::new(48);
    config.prompts = prompts;
    config.smoothing_sigma = sigma;
    let mut detector = ZeroShotClip::new(tiny_model(Activation::QuickGelu), config).unwrap();
    assert_eq!(detector.grid(), 6);
    detector.set_class("bottle").unwrap();
    let x = npy_tensor::<4>("tiny_images.npy", &device());
    let out = detector.detect(x).unwrap();
    let prefix = format!("zs_{tag}_{}", if sigma.is_some() { "sigma4" } else { "raw" });
    assert_eq!(out.map.dims(), [3, 48, 48]);
    assert_eq!(out.patch_map.dims(), [3, 6, 6]);
    assert_parity(&format!("{prefix} image score"), &values(out.image_score), &npy(&format!("{prefix}_image_score.npy")).1);
    assert_parity(&format!("{prefix} patch map"), &values(out.patch_map), &npy(&format!("{prefix}_patch_map.npy")).1);
    assert_parity(&format!("{prefix} map"), &values(out.map), &npy(&format!("{prefix}_map.npy")).1);
}

#[test]
fn single_prompts_match_reference() {
    check(ZeroShotPrompts::Single, "single", None);
    check(ZeroShotPrompts::Single, "single", Some(4.0));
}

#[test]
fn winclip_ensemble_prompts_match_reference() {
    check(ZeroShotPrompts::WinClipEnsemble, "winclip", None);
    check(ZeroShotPrompts::WinClipEnsemble, "winclip", Some(4.0));
}

#[test]
fn bad_inputs_are_errors() {
    let mut detector = ZeroShotClip::new(tiny_model(Activation::QuickGelu), ZeroShotConfig::new(48)).unwrap();
    let x = npy_tensor::<4>("tiny_images.npy", &device());
    let err = detector.detect(x.clone()).err().expect("detect before set_class must fail").to_string();
    assert!(err.contains("set_class"), "{err}");
    detector.set_class("bottle").unwrap();
    let small = burn::tensor::Tensor::<4>::zeros([1, 3, 32, 32], &device());
    let err = detector.detect(small).err().expect("wrong size must fail").to_string();
    assert!(err.contains("[1, 3, 32, 32]") && err.contains("48"), "{err}");
    assert!(detector.set_class(" ").is_err());
    let mut bad = ZeroShotConfig::new(48);
    bad.logit_scale = 0.0;
    assert!(ZeroShotClip::new(tiny_model(Activation::QuickGelu), bad).is_err());
}
