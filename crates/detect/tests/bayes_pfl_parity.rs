//! Bayes-PFL inference against the official code (`tools/fixtures/bayes_pfl.py` runs the official
//! `Context_Prompting`, `TextEncoder`, CLIP copy and `test.py` loop on a tiny configuration with
//! recorded noise): the head is imported from the official `torch.save({'MyModel': …})` file, the
//! recorded ε are replayed, and every stage is compared — flow samples, spliced prompt
//! embeddings, text features, RCA outputs, per-layer maps, the final map (raw and σ = 8) and both
//! image-score components. Two images of one run (classes pcb1, then screw): the state samples
//! are drawn once. Tolerance: max |diff| ≤ 1e-4 · max |reference|.
mod bayes_pfl_common;

use std::collections::VecDeque;

use bayes_pfl_common::{Tensors, assert_parity, device, fixture, json, tiny_clip, values};
use vlad_detect::Detector;
use vlad_detect::bayes_pfl::text::spliced_prompts;
use vlad_detect::bayes_pfl::{BayesPfl, BayesPflOptions, FixedNoise, NoiseMode, Stage, StageChoice};

const R: usize = 2;

fn options() -> BayesPflOptions {
    BayesPflOptions { taps: vec![1, 2, 3, 4], image_size: 48, samples: R, noise: NoiseMode::Zero, ..BayesPflOptions::default() }
}

fn detector() -> (BayesPfl, Tensors) {
    let refs = Tensors::open("infer.safetensors");
    let mut detector = BayesPfl::new(tiny_clip(), &fixture("head.pth"), options()).unwrap();
    let eps = |key: &str| refs.values(key).to_vec();
    detector.set_noise(Box::new(FixedNoise {
        context: VecDeque::from([eps("img0_eps_context"), eps("img1_eps_context")]),
        normal: VecDeque::from([eps("eps_normal")]),
        abnormal: VecDeque::from([eps("eps_abnormal")]),
    }));
    (detector, refs)
}

#[test]
fn released_format_import_reports_aliases_and_dead_keys() {
    let (detector, _) = detector();
    let report = detector.import_report();
    eprintln!("{report}");
    assert!(report.load.problems.is_empty() && report.load.unused.is_empty(), "{report}");
    // 2 × 12 encoder aliases of state_encoder, 12 of context_encoder, 3 × 6 decoder aliases.
    assert_eq!(report.aliases.len(), 54);
    // Two decoders (6 tensors each) and three p_mu layers (2 each).
    assert_eq!(report.dead.len(), 18);
    assert_eq!(report.stage.0, Stage::Two, "a released file name means stage 2");
    assert_eq!(detector.stage(), Stage::Two);
    assert_eq!(detector.head().config.layers, 4);
}

#[test]
fn inference_matches_the_official_code() {
    let (mut detector, refs) = detector();
    let meta = json("infer_meta.json");
    let device = device();
    for (i, class) in ["pcb1", "screw"].into_iter().enumerate() {
        assert_eq!(meta["classes"][i], class);
        detector.set_class(class).unwrap();
        assert_eq!(detector.top_k(), meta["top_k"][i].as_u64().unwrap() as usize);
        let image = refs.tensor::<4>("images", &device).slice([i..i + 1, 0..3, 0..48, 0..48]);
        let out = detector.forward(image, true).unwrap();
        let p = format!("img{i}");
        assert_parity(&format!("{p} g"), &values(out.global.clone()), refs.values(&format!("{p}_image_features")));
        assert_parity(&format!("{p} zK normal"), &values(out.normal.zk.clone()), refs.values("zk_normal"));
        assert_parity(&format!("{p} zK abnormal"), &values(out.abnormal.zk.clone()), refs.values("zk_abnormal"));
        assert_parity(&format!("{p} zK context"), &values(out.context.zk.clone()), refs.values(&format!("{p}_zk_context")));

        // Spliced prompt embeddings [2 (state), R, B, 77, W] of the official text-encoder loop.
        let prompt = detector.class_prompt().unwrap().clone();
        let (spliced, eot) =
            spliced_prompts(&detector.model().text, detector.head(), &[&prompt], out.context.zk.clone(), out.normal.zk.clone(), out.abnormal.zk.clone())
                .unwrap();
        assert_eq!(spliced.dims(), [2 * R * 3, 77, 32]);
        assert!(eot.iter().all(|&e| e == prompt.eot + 9));
        assert_parity(&format!("{p} prompt embeddings"), &values(spliced), refs.values(&format!("{p}_prompt_embeddings")));

        assert_parity(&format!("{p} text features"), &values(out.text.clone()), refs.values(&format!("{p}_text_embeddings")));
        assert_parity(&format!("{p} image logits"), &values(out.image_logits.clone()), refs.values(&format!("{p}_logits_image")));
        for (layer, l) in out.layers.iter().enumerate() {
            assert_parity(&format!("{p} RCA {layer} text"), &values(l.text.clone()), refs.values(&format!("{p}_rca{layer}_text")));
            assert_parity(&format!("{p} RCA {layer} patches"), &values(l.patches.clone()), refs.values(&format!("{p}_rca{layer}_patches")));
        }
        let layer_maps: Vec<f32> = out.layers.iter().flat_map(|l| values(l.map.clone())).collect();
        assert_parity(&format!("{p} per-layer maps"), &layer_maps, refs.values(&format!("{p}_layer_maps")));
        assert_parity(&format!("{p} map"), &values(out.map.clone()), refs.values(&format!("{p}_map")));
        assert_parity(&format!("{p} map σ=8"), &values(out.smoothed.clone()), refs.values(&format!("{p}_map_sigma8")));
        assert_parity(&format!("{p} s_text"), &values(out.s_text.clone()), refs.values(&format!("{p}_s_text")));
        assert_parity(&format!("{p} s_map"), &values(out.s_map.clone()), refs.values(&format!("{p}_s_map")));
        assert_eq!(out.patch_map.dims(), [1, 6, 6]);
    }
}

#[test]
fn detection_reports_the_deployable_score_and_both_components() {
    let (mut detector, refs) = detector();
    detector.set_class("pcb1").unwrap();
    let image = refs.tensor::<4>("images", &device()).slice([0..1, 0..3, 0..48, 0..48]);
    let out = detector.detect(image).unwrap();
    assert_eq!(out.map.dims(), [1, 48, 48]);
    assert_eq!(out.patch_map.dims(), [1, 6, 6]);
    let names: Vec<&str> = out.components.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["text", "map_topk"]);
    let s_text = refs.values("img0_s_text")[0];
    let s_map = refs.values("img0_s_map")[0];
    assert_parity("image score", &values(out.image_score), &[0.5 * s_text + 0.5 * s_map]);
    assert_parity("map σ=8", &values(out.map), refs.values("img0_map_sigma8"));
    // Patch map values are probabilities.
    assert!(values(out.patch_map).iter().all(|v| (0.0..=1.0).contains(v)));
}

#[test]
fn zero_noise_is_deterministic_and_r_is_adjustable() {
    let refs = Tensors::open("infer.safetensors");
    let image = refs.tensor::<4>("images", &device()).slice([0..1, 0..3, 0..48, 0..48]);
    let mut detector = BayesPfl::new(tiny_clip(), &fixture("head.pth"), options()).unwrap();
    detector.set_class("bottle").unwrap();
    let a = values(detector.detect(image.clone()).unwrap().map);
    let b = values(detector.detect(image.clone()).unwrap().map);
    assert_eq!(a, b, "ε = 0 must give identical maps");
    // With ε = 0 every sample is the same, so R does not change the result.
    detector.set_samples(1).unwrap();
    let c = values(detector.detect(image.clone()).unwrap().map);
    bayes_pfl_common::assert_close("R = 1 vs R = 2 at ε = 0", &c, &a, 1e-5);
    // Seeded sampling: the same seed reproduces, another seed differs.
    let run = |seed| {
        let mut d = BayesPfl::new(tiny_clip(), &fixture("head.pth"), BayesPflOptions { noise: NoiseMode::Sample { seed }, ..options() }).unwrap();
        d.set_class("bottle").unwrap();
        values(d.detect(image.clone()).unwrap().map)
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
    // Batches of several images give each image its own result.
    let both = refs.tensor::<4>("images", &device());
    let mut d = BayesPfl::new(tiny_clip(), &fixture("head.pth"), options()).unwrap();
    d.set_class("bottle").unwrap();
    let batch = values(d.detect(both.clone()).unwrap().map);
    let second = values(d.detect(both.slice([1..2, 0..3, 0..48, 0..48])).unwrap().map);
    bayes_pfl_common::assert_close("batched image 1", &batch[48 * 48..], &second, 1e-5);
}

#[test]
fn bad_inputs_and_options_are_errors() {
    let refs = Tensors::open("infer.safetensors");
    let mut detector = BayesPfl::new(tiny_clip(), &fixture("head.pth"), options()).unwrap();
    let image = refs.tensor::<4>("images", &device());
    let err = detector.detect(image.clone()).err().expect("detect before set_class").to_string();
    assert!(err.contains("set_class"), "{err}");
    detector.set_class("bottle").unwrap();
    let small = burn::tensor::Tensor::<4>::zeros([1, 3, 32, 32], &device());
    let err = detector.detect(small).err().expect("wrong size").to_string();
    assert!(err.contains("[1, 3, 32, 32]") && err.contains("48"), "{err}");
    assert!(detector.set_samples(0).is_err());
    let err = BayesPfl::new(tiny_clip(), &fixture("head.pth"), BayesPflOptions { taps: vec![1, 2, 3], ..options() }).err().unwrap().to_string();
    assert!(err.contains("3 taps") && err.contains("4 RCA layers"), "{err}");
    let err = BayesPfl::new(tiny_clip(), &fixture("head.pth"), BayesPflOptions { taps: vec![1, 2, 3, 9], ..options() }).err().unwrap().to_string();
    assert!(err.contains("tap 9"), "{err}");
    let err = BayesPfl::new(tiny_clip(), &fixture("missing.pth"), options()).err().unwrap().to_string();
    assert!(err.contains("missing.pth") && err.contains("no such"), "{err}");
    let err = BayesPfl::new(tiny_clip(), &fixture("clip.safetensors"), options()).err().unwrap().to_string();
    assert!(err.contains("not a Bayes-PFL checkpoint") && err.contains("prompt_context"), "{err}");
    let stage1 = BayesPfl::new(tiny_clip(), &fixture("head.pth"), BayesPflOptions { stage: StageChoice::Fixed(Stage::One), ..options() }).unwrap();
    assert_eq!(stage1.stage(), Stage::One);
}
