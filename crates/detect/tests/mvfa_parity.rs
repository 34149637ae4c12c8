//! MVFA-AD zero-shot inference against the official code (fixtures of `tools/fixtures/mvfa.py`,
//! which runs the official `test_zero.test` with `CLIP_Inplanted` on a tiny BMAD layout): the
//! released checkpoint format, the text ensemble with MVFA's real name, the adapted `seg`/`det`
//! tokens of every tap (the modified stream feeds the later blocks), the pooled feature, and the
//! set-normalised maps and image scores the official test scores.
//!
//! Tolerance (the detector rule): max |diff| ≤ 1e-4 · max |reference|.
mod common;
mod linear_common;

use burn::tensor::Tensor;
use common::{assert_close, device, values};
use linear_common::{hash_backbone, json, npy};
use vlad_clip::weights::WeightFile;
use vlad_detect::Detector;
use vlad_detect::mvfa::{Mvfa, MvfaOptions, checkpoint, image_features};

const TOL: f64 = 1e-4;
const DIR: &str = "mvfa";
const S: usize = 24;

fn detector() -> Mvfa {
    let model = hash_backbone(&json(DIR, "config.json"), &device());
    let weights = checkpoint::load_weight_file(&checkpoint::open(&linear_common::fixture(DIR, "adapters.pth")).unwrap(), &model.config, &device()).unwrap();
    assert_eq!((weights.config.taps.clone(), weights.config.bottleneck), (vec![6, 12, 18, 24], 32));
    let mut mvfa = Mvfa::from_weights(model, weights, MvfaOptions { image_size: Some(S), ..Default::default() }).unwrap();
    mvfa.set_class("Brain").unwrap();
    mvfa
}

/// `MedTestDataset`'s order: the normal images sorted, then the anomalous ones sorted.
fn images(mvfa: &Mvfa) -> Tensor<4> {
    let root = linear_common::fixture(DIR, "data/Brain_AD/test");
    let pre = mvfa.preprocess();
    let paths = ["good/img/test_000.png", "good/img/test_001.png", "Ungood/img/test_000.png", "Ungood/img/test_001.png"];
    let chw: Vec<Vec<f32>> = paths.iter().map(|p| pre.load(&root.join(p)).unwrap()).collect();
    pre.batch(&chw, &device()).unwrap()
}

fn min_max(v: &[f32]) -> Vec<f32> {
    let (lo, hi) = v.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
    v.iter().map(|x| (x - lo) / (hi - lo)).collect()
}

#[test]
fn adapted_tokens_maps_and_scores_match_test_zero() {
    let mvfa = detector();
    assert_close("text (Brain ensemble)", &values(mvfa.text().unwrap().clone()), &npy(DIR, "text.npy").1, TOL);
    let pixels = images(&mvfa);
    let features = image_features(mvfa.model(), mvfa.adapters(), mvfa.config(), pixels.clone()).unwrap();
    let stack = |taps: &[Tensor<3>]| -> Vec<f32> {
        // [tap][B, T, E] → [B, tap, T, E], the fixture's layout.
        let [b, t, e] = taps[0].dims();
        let all: Vec<Vec<f32>> = taps.iter().map(|x| values(x.clone())).collect();
        (0..b).flat_map(|i| all.iter().flat_map(move |v| v[i * t * e..(i + 1) * t * e].to_vec())).collect()
    };
    assert_close("seg tokens, 4 taps (adapted stream)", &stack(&features.seg), &npy(DIR, "seg_tokens.npy").1, TOL);
    assert_close("det tokens, 4 taps", &stack(&features.det), &npy(DIR, "det_tokens.npy").1, TOL);
    assert_close("pooled feature of the adapted stream", &values(features.pooled), &npy(DIR, "pooled.npy").1, TOL);
    let out = mvfa.detect(pixels).unwrap();
    assert_close("maps, min–max over the test set", &min_max(&values(out.map)), &npy(DIR, "map_norm.npy").1, TOL);
    assert_close("image scores, min–max over the test set", &min_max(&values(out.image_score)), &npy(DIR, "score_norm.npy").1, TOL);
}

#[test]
fn checkpoints_round_trip_and_bad_files_are_named() {
    let mvfa = detector();
    let bytes = checkpoint::to_bytes(mvfa.adapters(), mvfa.config()).unwrap();
    let back = checkpoint::load_weight_file(&WeightFile::from_bytes(bytes, "ours.safetensors").unwrap(), &mvfa.model().config, &device()).unwrap();
    assert_eq!(values(back.adapters.det[3].fc2.weight.val()), values(mvfa.adapters().det[3].fc2.weight.val()));
    let mut tensors = checkpoint::tensors(mvfa.adapters()).unwrap();
    let t = tensors.iter_mut().find(|t| t.0 == "det_adapters.2.fc2.0.weight").unwrap();
    t.1 = vec![63, 32];
    t.2.truncate(63 * 32);
    let file = WeightFile::from_bytes(vlad_detect::checkpoint_io::safetensors_bytes(&tensors, &Default::default()).unwrap(), "bad.pth").unwrap();
    let e = checkpoint::load_weight_file(&file, &mvfa.model().config, &device()).err().map(|e| e.to_string()).unwrap();
    assert!(e.contains("bad.pth") && e.contains("det_adapters.2.fc2.0.weight") && e.contains("[63, 32]") && e.contains("[64, 32]"), "{e}");
    let half: Vec<_> = checkpoint::tensors(mvfa.adapters()).unwrap().into_iter().filter(|t| t.0.starts_with("seg")).collect();
    let file = WeightFile::from_bytes(vlad_detect::checkpoint_io::safetensors_bytes(&half, &Default::default()).unwrap(), "seg-only.pth").unwrap();
    let e = checkpoint::load_weight_file(&file, &mvfa.model().config, &device()).err().map(|e| e.to_string()).unwrap();
    assert!(e.contains("seg-only.pth") && e.contains("not an MVFA checkpoint"), "{e}");
}
