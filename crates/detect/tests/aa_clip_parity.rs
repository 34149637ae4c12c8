//! AA-CLIP inference against the official code (fixtures of `tools/fixtures/aa_clip.py`): the
//! positional resize, the tokenizer on the class prompts, checkpoint import of the official
//! `.pth` files (both projector variants), taps, features, anchors, per-level maps, the final
//! map and the raw image score; and the round trip through our own checkpoint format.
//!
//! Tolerance (the detector rule): max |diff| ≤ 1e-4 · max |reference| for every tensor.
mod aa_clip_common;

use aa_clip_common::{assert_close, config, device, fixture, image_size, npy, npy_tensor, tiny_backbone, values};
use burn::tensor::Tensor;
use vlad_clip::ClipTokenizer;
use vlad_detect::aa_clip::checkpoint::{self, SaveInfo};
use vlad_detect::aa_clip::{AaClip, AaClipConfig, AaClipOptions, Domain, class_tokens, prompts, scoring, vision_features};
use vlad_detect::postprocess::apply_square;
use vlad_detect::{Detector, SetFusion};

const TOL: f64 = 1e-4;

fn official_files(image: &str) -> Vec<std::path::PathBuf> {
    vec![fixture("text_adapter.pth"), fixture(image)]
}

fn detector(image: &str, options: AaClipOptions) -> AaClip {
    let model = tiny_backbone(&device());
    let options = AaClipOptions { image_size: Some(image_size()), ..options };
    AaClip::load(model, &official_files(image), options).unwrap().0
}

fn images() -> Tensor<4> {
    npy_tensor("images.npy", &device())
}

#[test]
fn positional_table_matches_resize_pos_embed() {
    let model = tiny_backbone(&device());
    let g = image_size() / model.visual.patch_size;
    let (_, want) = npy("pos_embed.npy");
    assert_close("pos_embed", &values(model.visual.positional_embedding_for(g)), &want, 1e-6);
}

#[test]
fn prompts_and_tokens_match_the_official_code() {
    let tokens: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture("tokens.json")).unwrap()).unwrap();
    let tokenizer = ClipTokenizer::openai().unwrap();
    for class in config()["prompt_classes"].as_array().unwrap() {
        let class = class.as_str().unwrap();
        let want = &tokens[class];
        let (real, _) = prompts::real_name(class);
        assert_eq!(real, want["real_name"].as_str().unwrap(), "{class}");
        let (normal, anomalous) = prompts::sentences(&real);
        let all: Vec<String> = normal.into_iter().chain(anomalous).collect();
        let want_sentences: Vec<&str> = want["sentences"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        assert_eq!(all, want_sentences, "{class}");
        let ids = class_tokens(&tokenizer, &real).unwrap();
        let got: Vec<Vec<u32>> = ids.normal.into_iter().chain(ids.anomalous).collect();
        let want_ids: Vec<Vec<u32>> = serde_json::from_value(want["ids"].clone()).unwrap();
        assert_eq!(got, want_ids, "{class}");
    }
}

#[test]
fn official_checkpoints_load_with_the_official_config() {
    let model = tiny_backbone(&device());
    let weights = checkpoint::load_files(&official_files("image_adapter.pth"), &model.config, &device()).unwrap();
    let c = &weights.config;
    assert_eq!((c.levels.as_slice(), c.image_adapt_until, c.text_adapt_until, c.surgery_from_block), (&[6, 12, 18, 24][..], 6, 3, 6));
    assert!(!c.relu && weights.text.is_some() && weights.calibration.is_none());
    let relu = checkpoint::load_files(&official_files("image_adapter_relu.pth"), &model.config, &device()).unwrap();
    assert!(relu.config.relu && relu.image.det_proj.relu);
}

#[test]
fn taps_features_and_det_match_adapted_clip_forward() {
    for (file, prefix) in [("image_adapter.pth", ""), ("image_adapter_relu.pth", "relu_")] {
        let aa = detector(file, AaClipOptions::default());
        let f = vision_features(aa.model(), &aa.weights().image, aa.config(), images()).unwrap();
        if prefix.is_empty() {
            let (_, want) = npy("taps.npy");
            let taps: Vec<f32> = f
                .taps
                .iter()
                .flat_map(|t| {
                    let [b, l, d] = t.dims();
                    values(t.clone().slice([0..b, 1..l, 0..d]))
                })
                .collect();
            assert_close("taps (levels 6/12/18/24, CLS dropped)", &taps, &want, TOL);
        }
        let seg: Vec<f32> = f.seg.iter().flat_map(|t| values(t.clone())).collect();
        assert_close(&format!("{prefix}seg"), &seg, &npy(&format!("{prefix}seg.npy")).1, TOL);
        assert_close(&format!("{prefix}det"), &values(f.det), &npy(&format!("{prefix}det.npy")).1, TOL);
    }
}

#[test]
fn anchors_match_for_every_prompt_class() {
    let aa = detector("image_adapter.pth", AaClipOptions::default());
    let (shape, want) = npy("anchors.npy");
    let per = shape[1] * shape[2];
    for (i, class) in config()["prompt_classes"].as_array().unwrap().iter().enumerate() {
        let class = class.as_str().unwrap();
        let got = values(aa.anchors_for(&prompts::real_name(class).0).unwrap());
        assert_close(&format!("anchors {class}"), &got, &want[i * per..(i + 1) * per], TOL);
    }
    // Without a text adapter: CLIP's own encode_text with text_projection (official fallback).
    let model = tiny_backbone(&device());
    let plain = AaClip::load(model, &[fixture("image_adapter.pth")], AaClipOptions { image_size: Some(image_size()), ..Default::default() }).unwrap();
    assert!(plain.1.iter().any(|n| n.contains("no text adapter")), "{:?}", plain.1);
    assert_close("plain anchors bottle", &values(plain.0.anchors_for("dark bottle").unwrap()), &npy("anchors_plain.npy").1, TOL);
}

#[test]
fn maps_and_image_score_match_the_test_script() {
    let mut aa = detector("image_adapter.pth", AaClipOptions::default());
    aa.set_class("bottle").unwrap();
    let class = aa.class().unwrap();
    assert_eq!((class.real_name.as_str(), class.domain), ("dark bottle", Domain::Industrial));
    let out = aa.detect(images()).unwrap();
    let s = image_size();
    assert_eq!(out.map.dims(), [3, s, s]);
    assert_eq!(out.patch_map.dims(), [3, s / 4, s / 4]);
    assert_close("map (industrial)", &values(out.map.clone()), &npy("map_industrial.npy").1, TOL);
    let (name, det) = &out.components[0];
    assert_eq!(name, "det");
    assert_close("image raw (det)", &values(det.clone()), &npy("image_raw.npy").1, TOL);
    // No calibration in an official checkpoint: the single-image score is the raw det score.
    assert_eq!(values(out.image_score), values(det.clone()));
    assert!(matches!(aa.set_fusion(), SetFusion::MinMax { component: Some(ref c), map_weight: 0.5, .. } if c == "det"));

    // Per level, in the official order (blur, upsample), against calculate_similarity_map.
    let f = aa.features(images()).unwrap();
    let anchors = aa.class().unwrap().anchors.clone();
    let g = s / 4;
    let post = scoring::test_postprocess(g, s, Domain::Industrial);
    let levels: Vec<f32> = f
        .seg
        .iter()
        .flat_map(|seg| values(apply_square(scoring::level_map(scoring::similarity(seg.clone(), scoring::shared_anchors(anchors.clone(), 3))), &post)))
        .collect();
    assert_close("per-level maps", &levels, &npy("level_maps.npy").1, TOL);

    let mut medical = detector("image_adapter.pth", AaClipOptions { domain: Some(Domain::Medical), ..Default::default() });
    medical.set_class("bottle").unwrap();
    let out = medical.detect(images()).unwrap();
    assert_close("map (medical)", &values(out.map.clone()), &npy("map_medical.npy").1, TOL);
    assert!(matches!(medical.set_fusion(), SetFusion::MinMax { component: None, map_weight: 1.0, .. }));
    let max: Vec<f32> = values(out.map).chunks(s * s).map(|m| m.iter().copied().fold(f32::MIN, f32::max)).collect();
    assert_close("medical image score = map max", &values(out.image_score), &max, 1e-6);
}

#[test]
fn calibrated_score_fuses_normalised_components() {
    let mut aa = detector("image_adapter.pth", AaClipOptions::default());
    aa.set_class("bottle").unwrap();
    let out = aa.detect(images()).unwrap();
    let s = image_size();
    let det = values(out.components[0].1.clone());
    let max: Vec<f32> = values(out.map).chunks(s * s).map(|m| m.iter().copied().fold(f32::MIN, f32::max)).collect();
    let calibration = vlad_detect::aa_clip::AaClipCalibration {
        map_max: scoring::ScoreRange::of(&max).unwrap(),
        det: scoring::ScoreRange::of(&det).unwrap(),
        source: "the test batch".into(),
    };
    aa.set_calibration(Some(calibration.clone()));
    let fused = values(aa.detect(images()).unwrap().image_score);
    // With the batch's own ranges this is exactly the official per-class fusion.
    let norm = |v: &[f32]| {
        let (lo, hi) = (v.iter().copied().fold(f32::MAX, f32::min), v.iter().copied().fold(f32::MIN, f32::max));
        v.iter().map(|x| (x - lo) / (hi - lo)).collect::<Vec<_>>()
    };
    let want: Vec<f32> = norm(&max).iter().zip(norm(&det)).map(|(m, d)| 0.5 * m + 0.5 * d).collect();
    assert_close("calibrated fusion", &fused, &want, 1e-5);
}

#[test]
fn our_checkpoint_format_round_trips() {
    let aa = detector("image_adapter_relu.pth", AaClipOptions::default());
    let dir = std::env::temp_dir().join(format!("vlad-aa-clip-roundtrip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let calibration = vlad_detect::aa_clip::AaClipCalibration {
        map_max: scoring::ScoreRange { low: 1.0, high: 3.0 },
        det: scoring::ScoreRange { low: 0.4, high: 0.6 },
        source: "test".into(),
    };
    let w = aa.weights();
    let info = SaveInfo { config: aa.config(), epoch: Some(15), calibration: Some(&calibration) };
    checkpoint::save(&dir.join("text_adapter.safetensors"), w.text.as_ref(), None, &SaveInfo { epoch: Some(5), calibration: None, ..info.clone() }).unwrap();
    checkpoint::save(&dir.join("image_adapter_15.safetensors"), None, Some(&w.image), &info).unwrap();
    checkpoint::save(&dir.join("image_adapter.safetensors"), None, Some(&w.image), &SaveInfo { epoch: Some(20), ..info.clone() }).unwrap();

    let (paths, notes) = checkpoint::resolve_paths(std::slice::from_ref(&dir), None).unwrap();
    assert_eq!(paths, [dir.join("text_adapter.safetensors"), dir.join("image_adapter_15.safetensors")]);
    assert!(notes.iter().any(|n| n.contains("epoch-15")), "{notes:?}");
    let model = tiny_backbone(&device());
    let (reloaded, _) = AaClip::load(model, std::slice::from_ref(&dir), AaClipOptions::default()).unwrap();
    assert_eq!(reloaded.config(), aa.config());
    assert_eq!(reloaded.weights().epoch, Some(15));
    assert_eq!(reloaded.calibration(), Some(&calibration));
    let before: Vec<f32> = checkpoint::image_tensors(&w.image).unwrap().into_iter().flat_map(|t| t.2).collect();
    let after: Vec<f32> = checkpoint::image_tensors(&reloaded.weights().image).unwrap().into_iter().flat_map(|t| t.2).collect();
    assert_eq!(before, after);
    let text_before = checkpoint::text_tensors(w.text.as_ref().unwrap()).unwrap();
    let text_after = checkpoint::text_tensors(reloaded.weights().text.as_ref().unwrap()).unwrap();
    assert_eq!(text_before, text_after);
    // Official key names with the part prefix, PyTorch [out, in] layout.
    assert_eq!(text_after[3].0, "text_adapter.3.fc.0.weight");
    assert_eq!(text_after[3].1, vec![16, 24]);
    assert!(checkpoint::image_tensors(&w.image).unwrap().iter().any(|t| t.0 == "image_adapter.seg_proj.2.fc.0.weight" && t.1 == vec![16, 32]));

    // An explicit epoch that does not exist is an error naming what is there.
    let err = checkpoint::resolve_paths(std::slice::from_ref(&dir), Some(7)).unwrap_err().to_string();
    assert!(err.contains("image_adapter_7") && err.contains("image_adapter_15.safetensors"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_checkpoints_are_reported_by_name() {
    let model = tiny_backbone(&device());
    let dir = std::env::temp_dir().join(format!("vlad-aa-clip-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let aa = detector("image_adapter.pth", AaClipOptions::default());
    let mut tensors = checkpoint::image_tensors(&aa.weights().image).unwrap();
    // Drop one tensor, give another a wrong shape, add a stranger.
    tensors.retain(|t| t.0 != "image_adapter.seg_proj.1.fc.weight");
    tensors[0].1 = vec![4, 256];
    tensors.push(("something.else".into(), vec![2], vec![0.0, 1.0]));
    let bytes = checkpoint::safetensors_bytes(&tensors, &Default::default()).unwrap();
    let path = dir.join("broken.safetensors");
    std::fs::write(&path, bytes).unwrap();
    let err = checkpoint::load_files(std::slice::from_ref(&path), &model.config, &device()).unwrap_err().to_string();
    assert!(err.contains("something.else"), "{err}");
    tensors.pop();
    std::fs::write(&path, checkpoint::safetensors_bytes(&tensors, &Default::default()).unwrap()).unwrap();
    let err = checkpoint::load_files(std::slice::from_ref(&path), &model.config, &device()).unwrap_err().to_string();
    assert!(err.contains("seg_proj"), "{err}");
    let err = checkpoint::load_files(&[fixture("images.npy")], &model.config, &device()).unwrap_err().to_string();
    assert!(err.contains("images.npy"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn config_defaults_scale_with_the_backbone() {
    let official = AaClipConfig::for_backbone(&vlad_clip::ClipConfig::preset("ViT-L-14-336").unwrap());
    assert_eq!(official, AaClipConfig::official());
    let b16 = AaClipConfig::for_backbone(&vlad_clip::ClipConfig::preset("ViT-B-16").unwrap());
    assert_eq!((b16.levels.as_slice(), b16.image_adapt_until, b16.text_adapt_until), (&[3, 6, 9, 12][..], 3, 3));
    assert_eq!(b16.image_size, 37 * 16);
    let mut bad = official.clone();
    bad.levels = vec![6, 30];
    let err = bad.validate(&vlad_clip::ClipConfig::preset("ViT-L-14-336").unwrap()).unwrap_err().to_string();
    assert!(err.contains("level 30"), "{err}");
}
