//! Backbone parity against open_clip / transformers on the tiny random model
//! (`tools/fixtures/clip.py` wrote the fixtures). Runs on the backend named by `VLAD_TEST_BACKEND`.
mod common;

use burn::tensor::Tensor;
use common::{assert_parity, device, fixture, npy, npy_tensor, values};
use vlad_clip::model::LoadOptions;
use vlad_clip::text::{DeepPrompts, TextForward, shifted_eot, splice_prompt_vectors};
use vlad_clip::weights::WeightFile;
use vlad_clip::{Activation, ClipConfig, ClipModel, ClipTokenizer, VisionForward, VvAttention};

fn prompts() -> Vec<String> {
    serde_json::from_str(&std::fs::read_to_string(fixture("prompts.json")).unwrap()).unwrap()
}

fn load(file: &str, activation: Activation) -> ClipModel {
    let config = ClipConfig::preset("tiny").unwrap().with_activation(activation);
    let weights = WeightFile::open(&fixture(file), None).unwrap();
    let (model, report) = ClipModel::load(&config, &weights, &device(), LoadOptions::default()).unwrap();
    assert!(report.is_complete(), "{report}");
    model
}

fn acts() -> [(Activation, &'static str); 2] {
    [(Activation::QuickGelu, "quick"), (Activation::Gelu, "exact")]
}

fn check_towers(file: &str) {
    let device = device();
    let tokenizer = ClipTokenizer::openai().unwrap();
    let ids = tokenizer.tokenize_batch(&prompts()).unwrap();
    for (act, tag) in acts() {
        let model = load(file, act);
        let x = npy_tensor::<4>("x32.npy", &device);
        let out = model.visual.forward(x, VisionForward { taps: &[1, 2, 3, 4], ..Default::default() }).unwrap();
        let emb = model.visual.pool(out.last);
        assert_parity(&format!("{file} {tag} image embedding"), &values(emb), &npy(&format!("{tag}_image_emb.npy")).1);
        let taps: Vec<Tensor<3>> = out.taps;
        let taps = Tensor::cat(taps, 0);
        assert_parity(&format!("{file} {tag} taps 1-4"), &values(taps), &npy(&format!("{tag}_taps.npy")).1);
        let text = model.text.encode_ids(&ids).unwrap();
        assert_parity(&format!("{file} {tag} text embedding"), &values(text.projected), &npy(&format!("{tag}_text_emb.npy")).1);
        assert_parity(&format!("{file} {tag} text before projection"), &values(text.pooled), &npy(&format!("{tag}_text_pooled.npy")).1);
    }
}

#[test]
fn openai_names_pytorch_zip_matches_open_clip() {
    check_towers("tiny_openai.pt");
}

#[test]
fn hf_names_safetensors_matches_open_clip() {
    check_towers("tiny_hf.safetensors");
}

#[test]
fn resized_grid_matches_open_clip() {
    let device = device();
    for (act, tag) in acts() {
        let model = load("tiny_openai.pt", act);
        let x = npy_tensor::<4>("x64.npy", &device);
        let out = model.visual.forward(x, VisionForward { taps: &[1, 2, 3, 4], ..Default::default() }).unwrap();
        assert_parity(&format!("{tag} taps at 2x grid"), &values(Tensor::cat(out.taps, 0)), &npy(&format!("{tag}_taps_64.npy")).1);
        assert_parity(&format!("{tag} image embedding at 2x grid"), &values(model.visual.pool(out.last)), &npy(&format!("{tag}_image_emb_64.npy")).1);
    }
}

#[test]
fn vv_attention_variants_match_reference() {
    let device = device();
    for (act, tag) in acts() {
        let model = load("tiny_openai.pt", act);
        let x = npy_tensor::<4>("x32.npy", &device);
        let out = model
            .visual
            .forward(x, VisionForward { taps: &[2, 3, 4], vv: Some(VvAttention::Dual { from_block: 2 }), hook: None, prompts: None })
            .unwrap();
        assert_parity(&format!("{tag} DPAM dual-stream taps"), &values(Tensor::cat(out.taps, 0)), &npy(&format!("{tag}_dpam_taps.npy")).1);
        for (quirk, file) in [(true, "vv_replace_quirk_taps"), (false, "vv_replace_taps")] {
            let pair = npy_tensor::<4>("x32_pair.npy", &device);
            let vv = VvAttention::Replace { from_block: 2, batch_axis_quirk: quirk };
            let out = model.visual.forward(pair, VisionForward { taps: &[2, 3, 4], vv: Some(vv), hook: None, prompts: None }).unwrap();
            let taps: Vec<Tensor<4>> = out.taps.into_iter().map(|t| t.unsqueeze::<4>()).collect();
            assert_parity(&format!("{tag} {file}"), &values(Tensor::cat(taps, 0)), &npy(&format!("{tag}_{file}.npy")).1);
        }
    }
}

#[test]
fn prompt_injection_and_deep_prompts_match_reference() {
    let device = device();
    let tokenizer = ClipTokenizer::openai().unwrap();
    for (act, tag) in acts() {
        let model = load("tiny_openai.pt", act);
        // Bayes-PFL: the placeholder X at position 1 becomes 10 vectors; EOT moves by 9.
        let ids = tokenizer.tokenize_batch(&["X bottle"]).unwrap();
        let eot = vlad_clip::text::eot_positions(&ids).unwrap()[0];
        let vectors = npy_tensor::<2>("splice_vectors.npy", &device).unsqueeze::<3>();
        let x = splice_prompt_vectors(model.text.embed_ids(&ids).unwrap(), 1, vectors);
        let out = model.text.forward_embeddings(x, &[shifted_eot(eot, 10)], TextForward::default()).unwrap();
        assert_parity(&format!("{tag} spliced prompt"), &values(out.projected), &npy(&format!("{tag}_splice_text.npy")).1);
        // AnomalyCLIP: deep prompts overwrite rows 1..5 before block 1 (0-based).
        let ids = tokenizer.tokenize_batch(&prompts()).unwrap();
        let eot = vlad_clip::text::eot_positions(&ids).unwrap();
        let deep = DeepPrompts { layers: vec![(1, npy_tensor::<2>("deep_prompt_layer1.npy", &device))] };
        let x = model.text.embed_ids(&ids).unwrap();
        let out = model.text.forward_embeddings(x, &eot, TextForward { deep_prompts: Some(&deep), hook: None }).unwrap();
        assert_parity(&format!("{tag} deep prompts"), &values(out.projected), &npy(&format!("{tag}_deep_text.npy")).1);
    }
}
