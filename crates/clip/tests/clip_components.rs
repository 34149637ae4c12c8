//! Tokenizer, preprocessing, positional-embedding rules and weight-import behaviour.
mod common;

use std::collections::BTreeMap;

use common::{assert_parity, device, fixture, npy, values};
use vlad_clip::model::LoadOptions;
use vlad_clip::posembed::{resize_grid_host, resize_positional_embedding};
use vlad_clip::preprocess::Preprocess;
use vlad_clip::weights::{Entry, Problem, WeightError, WeightFile, WriteOptions, burnpack_bytes, canonicalize};
use vlad_clip::{Activation, ClipConfig, ClipError, ClipModel, ClipTokenizer, PosEmbedResize};

#[test]
fn tokenizer_matches_open_clip_on_the_corpus() {
    let fixture: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture("tokenizer.json")).unwrap()).unwrap();
    let tok = ClipTokenizer::openai().unwrap();
    let corpus = fixture["corpus"].as_array().unwrap();
    let want = fixture["ids"].as_array().unwrap();
    for (text, ids) in corpus.iter().zip(want) {
        let text = text.as_str().unwrap();
        let want: Vec<u32> = ids.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(tok.tokenize(text, 77).unwrap(), want, "text: {text:?}");
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Pillow-exact resampling gives identical 8-bit images; after /255 and /std, one 8-bit step is
/// 1/(255·std) ≈ 0.0146, so the bound is "≤ 1/255 after normalisation scale".
#[test]
fn preprocessing_matches_pil() {
    let img = fixture("image.png");
    let bound = 1.0 / 255.0 / 0.261_302_6 + 1e-6;
    for (pre, name) in [(Preprocess::squash(32), "x32.npy"), (Preprocess::squash(64), "x64.npy"), (Preprocess::crop(224), "x224_crop.npy")] {
        let got = pre.load(&img).unwrap();
        let (_, want) = npy(name);
        let d = max_diff(&got, &want);
        eprintln!("{name}: max abs diff vs PIL {d:.3e} (bound {bound:.3e})");
        assert!(d <= bound, "{name}: {d}");
    }
}

#[test]
fn positional_rules_match_pytorch_interpolate() {
    let device = device();
    for (gin, gout) in [(24, 37), (24, 17), (4, 8)] {
        let (shape, table) = npy(&format!("pos_in_{gin}.npy"));
        let d = shape[1];
        for (rule, tag) in [(PosEmbedResize::AntialiasBicubic, "a"), (PosEmbedResize::Bicubic, "b"), (PosEmbedResize::Bilinear, "c")] {
            let (_, want) = npy(&format!("pos_{tag}_{gin}_{gout}.npy"));
            // Host reference (CLS row kept).
            let mut host = table[..d].to_vec();
            host.extend(resize_grid_host(&table[d..], gin, gout, d, rule));
            let h = max_diff(&host, &want);
            let t = burn::tensor::Tensor::<2>::from_data(burn::tensor::TensorData::new(table.clone(), [1 + gin * gin, d]), &device);
            let dev = values(resize_positional_embedding(t, gin, gout, rule));
            let g = max_diff(&dev, &want);
            // PyTorch computes the tap weights and both passes in f32; ours are f64 weights applied
            // in f64 (host) or f32 (device). Bound: 5e-6 of the table's largest magnitude (the
            // random tables here reach |4|; real positional tables stay below 1).
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            eprintln!("rule {tag} {gin}->{gout}: host max diff {h:.2e}, device {g:.2e} (max |ref| {scale:.2})");
            assert!(h <= 5e-6 * scale && g <= 5e-6 * scale, "rule {tag} {gin}->{gout}: host {h}, device {g}");
        }
    }
}

fn tiny() -> ClipConfig {
    ClipConfig::preset("tiny").unwrap()
}

fn canonical_tiny() -> BTreeMap<String, Entry> {
    let file = WeightFile::open(&fixture("tiny_openai.pt"), None).unwrap();
    canonicalize(&file).unwrap().1
}

fn load_entries(entries: BTreeMap<String, Entry>, allow_partial: bool) -> Result<ClipModel, ClipError> {
    let bytes = burnpack_bytes(&entries, &WriteOptions::default()).unwrap();
    let file = WeightFile::from_bytes(bytes, "test.bpk").unwrap();
    ClipModel::load(&tiny(), &file, &device(), LoadOptions { allow_partial, ..Default::default() }).map(|(m, _)| m)
}

fn mismatch(err: ClipError) -> vlad_clip::weights::LoadReport {
    match err {
        ClipError::Weights(WeightError::Mismatch { report }) => report,
        other => panic!("expected a mismatch report, got {other}"),
    }
}

#[test]
fn missing_misshaped_and_unused_tensors_are_named() {
    let mut entries = canonical_tiny();
    entries.remove("visual.ln_post.bias");
    entries.insert("visual.proj".into(), Entry::from_values(vec![3, 3], vec![0.0; 9]));
    entries.insert("head.extra.weight".into(), Entry::from_values(vec![2], vec![0.0; 2]));
    entries.insert("text_model.embeddings.position_ids".into(), Entry::from_values(vec![1], vec![0.0]));
    let report = mismatch(load_entries(entries.clone(), false).unwrap_err());
    assert!(report.problems.contains(&Problem::Missing { name: "visual.ln_post.bias".into(), expected: vec![64] }), "{report}");
    assert!(report.problems.contains(&Problem::Shape { name: "visual.proj".into(), expected: vec![64, 32], found: vec![3, 3] }), "{report}");
    assert_eq!(report.unused, vec![("head.extra.weight".to_string(), vec![2])]);
    assert_eq!(report.ignored, vec!["text_model.embeddings.position_ids".to_string()]);
    let text = report.to_string();
    assert!(text.contains("missing `visual.ln_post.bias`") && text.contains("--allow-partial"), "{text}");
    // With --allow-partial the model loads (the problems stay in the report).
    load_entries(entries, true).unwrap();
}

#[test]
fn wrong_architecture_is_reported_with_shapes() {
    let file = WeightFile::open(&fixture("tiny_openai.pt"), None).unwrap();
    let err = ClipModel::load(&ClipConfig::preset("ViT-B-32").unwrap(), &file, &device(), LoadOptions::default()).unwrap_err();
    let report = mismatch(err);
    assert!(report.problems.iter().any(|p| matches!(p, Problem::Shape { name, .. } if name == "visual.conv1.weight")), "{report}");
}

#[test]
fn not_a_checkpoint_is_a_clear_error() {
    let err = WeightFile::from_bytes(b"hello world, not weights".to_vec(), "notes.txt").err().unwrap().to_string();
    assert!(err.starts_with("notes.txt:"), "{err}");
    let file = WeightFile::from_bytes(burnpack_bytes(&BTreeMap::from([("a".to_string(), Entry::from_values(vec![1], vec![1.0]))]), &WriteOptions::default()).unwrap(), "x.bpk").unwrap();
    let err = canonicalize(&file).unwrap_err().to_string();
    assert!(err.contains("no CLIP image tower"), "{err}");
}

/// burnpack (f32 and f16) and bf16 sources load to the same model as the original file.
#[test]
fn burnpack_round_trip_and_half_precision_sources() {
    let device = device();
    let x = common::npy_tensor::<4>("x32.npy", &device);
    let reference = npy("quick_image_emb.npy").1;
    let entries = canonical_tiny();
    for f16 in [false, true] {
        let bytes = burnpack_bytes(&entries, &WriteOptions { f16, ..Default::default() }).unwrap();
        let file = WeightFile::from_bytes(bytes, "tiny.bpk").unwrap();
        let (model, _) = ClipModel::load(&tiny(), &file, &device, LoadOptions::default()).unwrap();
        let emb = values(model.encode_image(x.clone()).unwrap());
        // The tiny weights are f16 values, so an f16 burnpack is lossless.
        assert_parity(&format!("burnpack f16={f16}"), &emb, &reference);
    }
    // bf16 storage rounds values: compare against f32 storage of the same rounded values.
    let rounded: BTreeMap<String, Entry> = entries
        .iter()
        .map(|(k, e)| {
            let v: Vec<f32> = e.to_f32(k).unwrap().into_iter().map(|x| half::bf16::from_f32(x).to_f32()).collect();
            (k.clone(), Entry::from_values(e.shape.clone(), v))
        })
        .collect();
    let a = load_entries(rounded, false).unwrap();
    let bf16_file = safetensors_bf16(&entries);
    let (b, _) = ClipModel::load(&tiny(), &WeightFile::from_bytes(bf16_file, "bf16.safetensors").unwrap(), &device, LoadOptions::default()).unwrap();
    let (ea, eb) = (values(a.encode_image(x.clone()).unwrap()), values(b.encode_image(x).unwrap()));
    assert_eq!(ea, eb, "bf16 safetensors must load exactly like the rounded f32 values");
}

fn safetensors_bf16(entries: &BTreeMap<String, Entry>) -> Vec<u8> {
    let data: Vec<(String, Vec<u8>, Vec<usize>)> = entries
        .iter()
        .map(|(k, e)| (k.clone(), e.to_f32(k).unwrap().iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect(), e.shape.clone()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> =
        data.iter().map(|(k, b, s)| (k.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::BF16, s.clone(), b).unwrap())).collect();
    safetensors::serialize(views, None).unwrap()
}

#[test]
fn activation_override_changes_outputs() {
    let file = WeightFile::open(&fixture("tiny_openai.pt"), None).unwrap();
    let device = device();
    let x = common::npy_tensor::<4>("x32.npy", &device);
    let (quick, _) = ClipModel::load(&tiny(), &file, &device, LoadOptions::default()).unwrap();
    let exact = quick.clone().with_activation(Activation::Gelu);
    assert_parity("quick", &values(quick.encode_image(x.clone()).unwrap()), &npy("quick_image_emb.npy").1);
    assert_parity("exact", &values(exact.encode_image(x).unwrap()), &npy("exact_image_emb.npy").1);
}

/// `precise::tanh` and `precise::softplus` against f64 libm over 10 decades of both signs (where
/// GPU drivers' own `tanh` and `log(1 + eˣ)` lose up to 7 % and 8e-4). Tolerance: 1e-5 relative,
/// the accuracy of the backends' `exp`/`log` (measured ≤ 3.2e-6 on lavapipe).
#[test]
fn precise_tanh_and_softplus_match_libm() {
    let xs: Vec<f32> = (0..4000)
        .map(|i| {
            let m = 10f32.powf(-8.0 + 10.0 * ((i / 2) as f32 / 2000.0));
            if i % 2 == 0 { m } else { -m }
        })
        .chain([0.0, 0.25, -0.25, 20.0, 20.5, -30.0, 88.0])
        .collect();
    let n = xs.len();
    let input = || burn::tensor::Tensor::<1>::from_data(burn::tensor::TensorData::new(xs.clone(), [n]), &device());
    let tanh = values(vlad_clip::precise::tanh(input()));
    let softplus = values(vlad_clip::precise::softplus(input()));
    for (i, &x) in xs.iter().enumerate() {
        let x64 = x as f64;
        let want_tanh = x64.tanh();
        let want_softplus = if x64 > 20.0 { x64 } else { x64.max(0.0) + (-x64.abs()).exp().ln_1p() };
        for (what, got, want) in [("tanh", tanh[i], want_tanh), ("softplus", softplus[i], want_softplus)] {
            let err = (got as f64 - want).abs();
            assert!(err <= 1e-5 * want.abs() + 1e-38, "{what}({x:e}) = {got:e}, libm {want:e} (relative error {:.2e})", err / want.abs());
        }
    }
}
