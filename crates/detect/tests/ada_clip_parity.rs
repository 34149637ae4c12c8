//! AdaCLIP against the official code (fixtures of `tools/fixtures/ada_clip.py`, which runs the
//! official `AdaCLIP_Trainer` — `evaluation()` as test.py calls it, `train_one_batch` as train.py
//! does — on the tiny MVTec layout of `tests/fixtures/vand/data`): the released checkpoint format
//! (38 keys), per image the text features (dynamic text prompts through the deep-prompted text
//! tower), the projected CLS and patch tokens of the visually prompted pass, HSF's patch ranking
//! and k-means labels, the maps and image scores; scikit-learn's KMeans on four data sets; one
//! training step's loss and gradients.
//!
//! Tolerance (the detector rule): max |diff| ≤ 1e-4 · max |reference|; labels and indices exact.
#![cfg(feature = "train")]
mod common;
mod linear_common;

use burn::tensor::Tensor;
use common::{assert_close, device, values};
use linear_common::{hash_backbone, json, npy, test_samples};
use vlad_clip::weights::WeightFile;
use vlad_detect::Detector;
use vlad_detect::ada_clip::{AdaClip, AdaClipOptions, KMeans, KMeansSeeding, NumpyRandom, checkpoint, host_values};
use vlad_detect::vand::train::load_batch;

const TOL: f64 = 1e-4;
const DIR: &str = "ada_clip";
const S: usize = 48;

fn detector(seeding: KMeansSeeding) -> AdaClip {
    let model = hash_backbone(&json(DIR, "config.json"), &device());
    let weights = checkpoint::load_weight_file(&checkpoint::open(&linear_common::fixture(DIR, "ada_clip.pth")).unwrap(), &model.config, &device()).unwrap();
    assert_eq!((weights.config.prompting_depth, weights.config.prompting_length, weights.config.taps.clone()), (4, 5, vec![2, 4, 6, 8]));
    let options = AdaClipOptions { image_size: Some(S), seeding: Some(seeding), ..Default::default() };
    let mut clip = AdaClip::from_weights(model, weights, options).unwrap();
    clip.set_class("bottle").unwrap();
    clip
}

fn images() -> Tensor<4> {
    let samples = test_samples();
    let refs: Vec<&vlad_data::Sample> = samples.iter().collect();
    load_batch(&refs, S, &vec![None; 4], &device()).unwrap().0
}

fn as_usize(v: &[f32]) -> Vec<usize> {
    v.iter().map(|&x| x as usize).collect()
}

#[test]
fn kmeans_matches_scikit_learn() {
    let seeds = json(DIR, "config.json")["kmeans_seeds"].as_array().unwrap().clone();
    let mut rng = NumpyRandom::seed(0);
    for (i, seed) in seeds.iter().enumerate() {
        if let Some(seed) = seed.as_u64() {
            rng = NumpyRandom::seed(seed as u32);
        }
        let (shape, data) = npy(DIR, &format!("kmeans_data_{i}.npy"));
        let labels = KMeans::new(20).fit_predict(&data, shape[0], shape[1], &mut rng).unwrap();
        assert_eq!(labels, as_usize(&npy(DIR, &format!("kmeans_labels_{i}.npy")).1), "case {i}");
    }
}

#[test]
fn features_hsf_maps_and_scores_match_the_official_evaluation() {
    let clip = detector(KMeansSeeding::Stream(111));
    let pixels = images();
    let features = vlad_detect::ada_clip::image_features(clip.model(), clip.learned(), clip.config(), pixels.clone()).unwrap();
    assert_close("dynamic visual prompts per image", &values(features.dynamic_visual), &npy(DIR, "dynamic_visual.npy").1, TOL);
    assert_close("dynamic text prompts per image", &values(features.dynamic_text), &npy(DIR, "dynamic_text.npy").1, TOL);
    let pending = clip.forward(pixels.clone()).unwrap();
    let text: Vec<f32> = pending.text.iter().flat_map(|t| values(t.clone())).collect();
    assert_close("text features per image (dynamic + static deep prompts)", &text, &npy(DIR, "text.npy").1, TOL);
    assert_close("projected CLS of the prompted pass", &values(pending.cls.clone()), &npy(DIR, "cls.npy").1, TOL);
    let tokens: Vec<f32> = pending.patches[0].iter().flat_map(|p| values(p.clone())).collect();
    assert_close("projected patch tokens, image 0, taps 2/4/6/8", &tokens, &npy(DIR, "patch_tokens.npy").1, TOL);
    let (orders, labels) = (as_usize(&npy(DIR, "hsf_order.npy").1), as_usize(&npy(DIR, "hsf_labels.npy").1));
    for i in 0..4 {
        let order = clip.hsf_order(&host_values(pending.anomaly[i].clone(), "ranking").unwrap());
        assert_eq!(order, orders[i * 100..(i + 1) * 100], "image {i}: HSF top-100 patches");
        let data = host_values(clip.hsf_rows(&pending, i, &order), "rows").unwrap();
        assert_eq!(clip.cluster(&data, 100).unwrap(), labels[i * 100..(i + 1) * 100], "image {i}: k-means labels (one stream)");
    }
    // The whole detector, the stream restarted: the four images in one batch, in order.
    clip.restart_stream();
    let out = clip.detect(pixels).unwrap();
    assert_close("maps (aggregated logits, σ 4)", &values(out.map), &npy(DIR, "map.npy").1, TOL);
    assert_close("HSF image scores", &values(out.image_score), &npy(DIR, "image_score.npy").1, TOL);
}

#[test]
fn per_image_seeding_scores_each_image_as_the_first_of_a_run() {
    let per_image = detector(KMeansSeeding::PerImage(111));
    let batch = per_image.detect(images()).unwrap();
    let want = values(batch.image_score);
    // Image 0 of the official stream is the first draw after seeding: the same score.
    assert_close("image 0", &want[..1], &npy(DIR, "image_score.npy").1[..1], TOL);
    let pixels = images();
    for (i, w) in want.iter().enumerate() {
        let one = per_image.detect(pixels.clone().narrow(0, i, 1)).unwrap();
        assert_eq!(values(one.image_score)[0], *w, "image {i} alone");
    }
}

#[test]
fn our_checkpoints_round_trip_and_bad_files_are_named() {
    let clip = detector(KMeansSeeding::PerImage(111));
    let bytes = checkpoint::to_bytes(clip.learned(), clip.config()).unwrap();
    let file = WeightFile::from_bytes(bytes, "ours.safetensors").unwrap();
    assert_eq!(file.entries.len(), 38);
    let back = checkpoint::load_weight_file(&file, &clip.model().config, &device()).unwrap();
    assert_eq!(values(back.learned.dynamic_text[4].weight.val()), values(clip.learned().dynamic_text[4].weight.val()));
    assert_eq!(back.config, *clip.config());
    let mut tensors = checkpoint::tensors(clip.learned()).unwrap();
    // A truncated file (the official non-strict load would take it silently).
    let missing: Vec<_> = tensors.iter().filter(|t| t.0 != "clip_model.cls_token_layer.head.0.bias").cloned().collect();
    let file = WeightFile::from_bytes(vlad_detect::checkpoint_io::safetensors_bytes(&missing, &Default::default()).unwrap(), "truncated.pth").unwrap();
    let e = checkpoint::load_weight_file(&file, &clip.model().config, &device()).err().map(|e| e.to_string()).unwrap();
    assert!(e.contains("truncated.pth") && e.contains("cls_token_layer.head.0.bias"), "{e}");
    // A visual prompt of the wrong width and an unknown key.
    let t = tensors.iter_mut().find(|t| t.0 == "clip_model.visual_prompter.static_prompts.2").unwrap();
    t.1 = vec![5, 63];
    t.2.truncate(5 * 63);
    tensors.push(("clip_model.freeze_clip.visual.proj".into(), vec![3], vec![0.0; 3]));
    let file = WeightFile::from_bytes(vlad_detect::checkpoint_io::safetensors_bytes(&tensors, &Default::default()).unwrap(), "bad.safetensors").unwrap();
    let e = checkpoint::load_weight_file(&file, &clip.model().config, &device()).err().map(|e| e.to_string()).unwrap();
    assert!(e.contains("bad.safetensors") && e.contains("visual_prompter.static_prompts.2") && e.contains("[5, 63]") && e.contains("[5, 64]"), "{e}");
    assert!(e.contains("freeze_clip.visual.proj"), "{e}");
    let vand = WeightFile::from_bytes(vlad_detect::checkpoint_io::safetensors_bytes(&[("fc.0.bias".into(), vec![2], vec![0.0; 2])], &Default::default()).unwrap(), "vand.safetensors").unwrap();
    let e = checkpoint::load_weight_file(&vand, &clip.model().config, &device()).err().map(|e| e.to_string()).unwrap();
    assert!(e.contains("vand.safetensors") && e.contains("not an AdaCLIP checkpoint"), "{e}");
}

#[test]
fn one_training_step_matches_train_one_batch() {
    use vlad_detect::ada_clip::ClassText;
    use vlad_detect::ada_clip::train::{image_loss, trainable};
    let clip = detector(KMeansSeeding::PerImage(111));
    let cfg = json(DIR, "config.json");
    let samples = test_samples();
    // The fixture's step: the first test image (anomalous), no mosaic, after np.random.seed(111).
    let (pixels, masks, _) = load_batch(&[&samples[0]], S, &[None], &device()).unwrap();
    assert_eq!(samples[0].label.as_int(), 1);
    let class = ClassText::new(clip.model(), &vlad_clip::ClipTokenizer::openai().unwrap(), "bottle").unwrap();
    let learned = trainable(clip.learned().clone(), &device());
    let (total, _, _) = image_loss(clip.model(), &learned, clip.config(), &class, pixels, masks, 1, &mut NumpyRandom::seed(111)).unwrap();
    let want = cfg["train_loss"].as_f64().unwrap() as f32;
    assert_close("training loss", &values(total.clone()), &[want], TOL);
    let grads = total.backward();
    // All gradients against the official step with `.half()` as an fp32 straight-through (the same
    // function); the projections also against the unpatched step (no cast upstream of them).
    let fp32 = WeightFile::open(&linear_common::fixture(DIR, "train_grads_fp32.safetensors"), None).unwrap();
    let official = WeightFile::open(&linear_common::fixture(DIR, "train_grads.safetensors"), None).unwrap();
    let want = |file: &WeightFile, name: &str| file.entries[name].to_f32(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut checked = 0;
    let mut linear = |name: String, l: &burn::nn::Linear| {
        let w = format!("{name}.weight");
        let b = format!("{name}.bias");
        let gw = values(l.weight.grad(&grads).unwrap().transpose());
        let gb = values(l.bias.as_ref().unwrap().grad(&grads).unwrap());
        assert_close(&format!("grad {w}"), &gw, &want(&fp32, &w), TOL);
        assert_close(&format!("grad {b}"), &gb, &want(&fp32, &b), TOL);
        if official.entries.contains_key(&w) {
            assert_close(&format!("grad {w} (official)"), &gw, &want(&official, &w), TOL);
            assert_close(&format!("grad {b} (official)"), &gb, &want(&official, &b), TOL);
        }
        checked += 2;
    };
    let p = "clip_model.";
    for (i, l) in learned.patch_token_layer.iter().enumerate() {
        linear(format!("{p}patch_token_layer.head.{i}"), l);
    }
    linear(format!("{p}cls_token_layer.head.0"), &learned.cls_token_layer);
    for (i, l) in learned.dynamic_visual.iter().enumerate() {
        linear(format!("{p}dynamic_visual_prompt_generator.head.{i}"), l);
    }
    for (i, l) in learned.dynamic_text.iter().enumerate() {
        linear(format!("{p}dynamic_text_prompt_generator.head.{i}"), l);
    }
    for (tower, params) in [("text_prompter", &learned.text_static), ("visual_prompter", &learned.visual_static)] {
        for (i, param) in params.iter().enumerate() {
            let name = format!("{p}{tower}.static_prompts.{i}");
            match param.grad(&grads) {
                Some(g) => {
                    assert_close(&format!("grad {name}"), &values(g), &want(&fp32, &name), TOL);
                    checked += 1;
                }
                // `static_t[0]` is never used: no gradient, as in the official step.
                None => assert!(tower == "text_prompter" && i == 0 && !fp32.entries.contains_key(&name), "{name} has no gradient"),
            }
        }
    }
    assert_eq!(checked, fp32.entries.len());
}
