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
    linear_common::mvfa_detector()
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

/// The normal shots of the seed list's `n-0:` line (`MedDataset.get_few_normal`, `--iterate 0`).
fn normal_shots(mvfa: &Mvfa) -> Tensor<4> {
    let root = linear_common::fixture(DIR, "data/Brain_AD/valid/good/img");
    let pre = mvfa.preprocess();
    let chw: Vec<Vec<f32>> = ["valid_000.png", "valid_001.png"].iter().map(|p| pre.load(&root.join(p)).unwrap()).collect();
    pre.batch(&chw, &device()).unwrap()
}

/// `0.5·mm(a) + 0.5·mm(b)`, each min–max over all its values (test_few.py's fusion).
fn half_and_half(a: &[f32], b: &[f32]) -> Vec<f32> {
    min_max(a).iter().zip(min_max(b)).map(|(x, y)| 0.5 * x + 0.5 * y).collect()
}

#[test]
fn augmentation_matches_utils_augment() {
    let mvfa = detector();
    let augmented = vlad_detect::mvfa::augment::augment(normal_shots(&mvfa));
    assert_eq!(augmented.dims(), [22, 3, S, S]);
    assert_close("augment(fewshot_norm_img): rotations, translations (reflection padding), flips", &values(augmented), &npy(DIR, "few_augmented.npy").1, TOL);
}

#[test]
fn few_shot_maps_and_scores_match_test_few() {
    let rows: serde_json::Value = json(DIR, "few_memory_rows.json");
    // Segmentation head (Brain: CLASS_INDEX 3).
    let mut mvfa = detector();
    assert_eq!(mvfa.head(), vlad_detect::mvfa::MvfaHead::Segmentation);
    mvfa.fit_reference(normal_shots(&mvfa)).unwrap();
    let memory = mvfa.memory().unwrap();
    for (tap, (seg, det)) in memory.seg.iter().zip(&memory.det).enumerate() {
        assert_eq!(seg.dims()[0] as u64, rows["seg"][tap][0].as_u64().unwrap(), "seg memory rows of tap {tap}");
        assert_eq!(det.dims()[0] as u64, rows["det"][tap][0].as_u64().unwrap(), "det memory rows of tap {tap}");
    }
    let out = mvfa.detect(images(&mvfa)).unwrap();
    let component = |name: &str| values(out.map_components.iter().find(|(n, _)| n == name).unwrap().1.clone());
    let fused = half_and_half(&component("zero"), &component("few"));
    assert_close("fused maps 0.5·mm(zero) + 0.5·mm(few)", &fused, &npy(DIR, "few_seg_map.npy").1, TOL);
    let maxima: Vec<f32> = fused.chunks(S * S).map(|m| m.iter().copied().fold(f32::NEG_INFINITY, f32::max)).collect();
    assert_close("segmentation-head image scores (fused maxima)", &maxima, &npy(DIR, "few_seg_score.npy").1, TOL);
    match mvfa.set_fusion() {
        vlad_detect::SetFusion::MapMix { maps, components } => {
            assert_eq!(maps, vec![("zero".to_string(), 0.5), ("few".to_string(), 0.5)]);
            assert!(components.is_empty());
        }
        other => panic!("segmentation head fusion {other:?}"),
    }
    // The deployable map is the raw sum; its maximum the single-image score.
    let raw: Vec<f32> = component("zero").iter().zip(component("few")).map(|(a, b)| a + b).collect();
    assert_close("single-image map zero + few", &values(out.map), &raw, 1e-6);

    // Classification head (test_few's CLASS_INDEX < 0 branch on the same images).
    let model = hash_backbone(&json(DIR, "config.json"), &device());
    let weights = checkpoint::load_weight_file(&checkpoint::open(&linear_common::fixture(DIR, "adapters.pth")).unwrap(), &model.config, &device()).unwrap();
    let options = MvfaOptions { image_size: Some(S), head: Some(vlad_detect::mvfa::MvfaHead::Classification), ..Default::default() };
    let mut mvfa = Mvfa::from_weights(model, weights, options).unwrap();
    mvfa.set_class("Brain").unwrap();
    mvfa.fit_reference(normal_shots(&mvfa)).unwrap();
    let out = mvfa.detect(images(&mvfa)).unwrap();
    let component = |name: &str| values(out.components.iter().find(|(n, _)| n == name).unwrap().1.clone());
    let fused = half_and_half(&component("det"), &component("few_det"));
    assert_close("classification-head scores 0.5·mm(det) + 0.5·mm(few_det)", &fused, &npy(DIR, "few_det_score.npy").1, TOL);
    // A new class drops the memory of the old one.
    mvfa.set_class("Liver").unwrap();
    assert!(mvfa.memory().is_none());
    let bad = mvfa.fit_reference(Tensor::zeros([1, 3, S + 1, S + 1], &device())).err().map(|e| e.to_string()).unwrap();
    assert!(bad.contains("[1, 3, 25, 25]") && bad.contains("24"), "{bad}");
}
