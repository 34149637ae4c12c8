//! Checkpoint import at full size: a file with the 131 keys and shapes of the released
//! `train_visa.pth` (recorded from the official `Context_Prompting` in `manifest.json`), filled
//! with random values and written in PyTorch's zip format (aliases sharing one storage, as
//! `torch.save` stores them), imports without a missing, unused or mis-shaped key, checks every
//! alias, keeps the dead decoder/`p_mu` tensors, and runs on a backbone of the released widths
//! (1024/768; 4 vision blocks and 1 text block to keep the test fast). Broken files are errors that
//! name the problem; both export formats round-trip.
mod bayes_pfl_common;

use std::collections::BTreeMap;
use std::sync::Arc;

use bayes_pfl_common::{device, json, values};
use burn::tensor::{Tensor, TensorData};
use vlad_clip::weights::{Entry, WeightFile, WeightFormat};
use vlad_clip::{ClipConfig, ClipModel};
use vlad_detect::Detector;
use vlad_detect::bayes_pfl::checkpoint::{as_weight_file, official_keys, official_state_dict, save_official, save_vlad};
use vlad_detect::bayes_pfl::pth::write_state_dict;
use vlad_detect::bayes_pfl::{BayesPfl, BayesPflOptions, HeadConfig, NoiseMode, Stage, StageChoice, load_checkpoint};

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vlad-bayes-pfl-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Small pseudo-random values (xorshift), scaled like trained weights.
fn random_values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
        })
        .collect()
}

/// The manifest's keys with random values; aliases share their canonical tensor.
fn random_state_dict() -> Vec<(String, Vec<usize>, Arc<Vec<f32>>)> {
    let manifest = json("manifest.json");
    let aliases: Vec<Vec<String>> = serde_json::from_value(manifest["aliases"].clone()).unwrap();
    let mut canonical_of = BTreeMap::new();
    for group in &aliases {
        for name in &group[1..] {
            canonical_of.insert(name.clone(), group[0].clone());
        }
    }
    let keys: Vec<(String, Vec<usize>)> = serde_json::from_value(manifest["keys"].clone()).unwrap();
    let mut made: BTreeMap<String, Arc<Vec<f32>>> = BTreeMap::new();
    keys.into_iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let source = canonical_of.get(&name).cloned().unwrap_or_else(|| name.clone());
            let n = shape.iter().product::<usize>().max(1);
            let scale = if name.starts_with("temperature") { 3.0 } else if name.contains("prompt") || name.ends_with("state") { 1.0 } else { 0.05 };
            let values = made.entry(source).or_insert_with(|| Arc::new(random_values(n, i as u64 + 1, scale))).clone();
            (name, shape, values)
        })
        .collect()
}

/// A backbone of the released widths (vision 1024 with 16 heads, patch 14, native 336; text 768,
/// embedding 768) with fewer blocks, random weights.
fn wide_backbone() -> ClipModel {
    let config = ClipConfig::from_json(
        r#"{"name": "wide-shallow", "embed_dim": 768, "activation": "gelu",
            "vision": {"width": 1024, "layers": 4, "heads": 16, "patch_size": 14, "image_size": 336},
            "text": {"width": 768, "layers": 1, "heads": 12, "context_length": 77, "vocab_size": 49408}}"#,
    )
    .unwrap();
    ClipModel::new(&config, &device())
}

#[test]
fn key_list_matches_the_official_state_dict() {
    let manifest = json("manifest.json");
    let keys: Vec<(String, Vec<usize>)> = serde_json::from_value(manifest["keys"].clone()).unwrap();
    let ours: Vec<(String, Vec<usize>)> = official_keys(&HeadConfig::official(1024, 768)).into_iter().map(|k| (k.name, k.shape)).collect();
    assert_eq!(ours, keys, "key names, shapes and order must equal Context_Prompting.state_dict()");
    assert_eq!(keys.len(), 131);
    assert_eq!(manifest["unique_parameters"], 27_370_017);
    let aliases: Vec<Vec<String>> = serde_json::from_value(manifest["aliases"].clone()).unwrap();
    let ours = official_keys(&HeadConfig::official(1024, 768));
    for group in aliases {
        for name in &group[1..] {
            let key = ours.iter().find(|k| &k.name == name).unwrap();
            assert_eq!(key.alias_of.as_deref(), Some(group[0].as_str()), "{name}");
        }
    }
}

#[test]
fn full_size_released_format_imports_completely_and_runs() {
    let dir = temp_dir("full");
    let path = dir.join("train_visa.pth");
    let tensors = random_state_dict();
    write_state_dict(&path, Some("MyModel"), &tensors).unwrap();
    let options = BayesPflOptions { taps: vec![1, 2, 3, 4], image_size: 56, samples: 2, noise: NoiseMode::Sample { seed: 5 }, ..BayesPflOptions::default() };
    let mut detector = BayesPfl::new(wide_backbone(), &path, options).unwrap();
    let report = detector.import_report().clone();
    eprintln!("{report}");
    assert!(report.load.problems.is_empty() && report.load.unused.is_empty(), "{report}");
    assert_eq!(report.load.loaded, 131);
    assert_eq!(report.aliases.len(), 54);
    assert_eq!(report.dead.len(), 18);
    assert_eq!(detector.stage(), Stage::Two);
    assert_eq!(detector.head().config, HeadConfig::official(1024, 768));

    // Every tensor comes back unchanged (layouts: Linear transposes, Conv1d squeeze, flow reshapes).
    let file = WeightFile::open(&path, Some("MyModel")).unwrap();
    let loaded = load_checkpoint(&file, &device(), StageChoice::FromFile, false).unwrap();
    let back = official_state_dict(&loaded.head, &loaded.dead).unwrap();
    assert_eq!(back.len(), tensors.len());
    for ((name, shape, values), (n2, s2, v2)) in tensors.iter().zip(&back) {
        assert_eq!((name, shape), (n2, s2));
        assert!(values.as_ref() == v2.as_ref(), "{name} changed in the round trip");
    }

    detector.set_class("bottle").unwrap();
    let x = Tensor::<4>::from_data(TensorData::new(random_values(3 * 56 * 56, 99, 1.5), [1, 3, 56, 56]), &device());
    let out = detector.detect(x).unwrap();
    assert_eq!(out.map.dims(), [1, 56, 56]);
    assert_eq!(out.patch_map.dims(), [1, 4, 4]);
    let map = values(out.map);
    assert!(map.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)));
    let score = values(out.image_score)[0];
    assert!(score.is_finite() && (0.0..=1.0).contains(&score), "{score}");
    std::fs::remove_dir_all(&dir).ok();
}

fn in_memory(tensors: &[vlad_detect::bayes_pfl::checkpoint::StateTensor], origin: &str) -> WeightFile {
    let entries = tensors.iter().map(|(n, s, v)| (n.clone(), Entry::from_values(s.clone(), v.as_ref().clone()))).collect();
    WeightFile { origin: origin.into(), format: WeightFormat::PytorchZip, metadata: BTreeMap::new(), entries, skipped: vec![] }
}

#[test]
fn broken_checkpoints_are_reported_by_name() {
    let tensors = random_state_dict();
    let device = device();
    let load = |file: &WeightFile| load_checkpoint(file, &device, StageChoice::FromFile, false).err().map(|e| e.to_string());

    let mut missing = in_memory(&tensors, "missing.pth");
    missing.entries.remove("class_mapping.bias");
    let err = load(&missing).expect("a missing key must fail");
    assert!(err.contains("missing `class_mapping.bias`") && err.contains("[768]"), "{err}");

    let mut shaped = in_memory(&tensors, "shaped.pth");
    shaped.entries.insert("RCA.q_proj_pre.weight".into(), Entry::from_values(vec![768, 768], vec![0.0; 768 * 768]));
    let err = load(&shaped).expect("a mis-shaped key must fail");
    assert!(err.contains("RCA.q_proj_pre.weight") && err.contains("[768, 768]") && err.contains("[768, 768, 1]"), "{err}");

    let mut extra = in_memory(&tensors, "extra.pth");
    extra.entries.insert("visual.proj".into(), Entry::from_values(vec![2], vec![0.0; 2]));
    let err = load(&extra).expect("an unknown key must fail");
    assert!(err.contains("unused `visual.proj`"), "{err}");
    // … unless a partial load is asked for (the report still lists it).
    let partial = load_checkpoint(&extra, &device, StageChoice::FromFile, true).unwrap();
    assert_eq!(partial.report.load.unused.len(), 1);

    let mut alias = in_memory(&tensors, "alias.pth");
    alias.entries.insert("PFL_normal.encoder.weight_mean.module.0.bias".into(), Entry::from_values(vec![512], vec![9.0; 512]));
    let err = load(&alias).expect("a diverging alias must fail");
    assert!(err.contains("PFL_normal.encoder.weight_mean.module.0.bias") && err.contains("state_encoder.weight_mean.module.0.bias"), "{err}");

    let mut nested = in_memory(&tensors, "nested.pth");
    nested.entries = nested.entries.into_iter().map(|(k, v)| (format!("module.{k}"), v)).collect();
    let err = load(&nested).expect("a foreign layout must fail");
    assert!(err.contains("not a Bayes-PFL checkpoint") && err.contains("MyModel"), "{err}");

    let err = load(&in_memory(&tensors, "runs/epoch_post_4_x.pth")).expect("a bad stage suffix must fail");
    assert!(err.contains("_1") && err.contains("`x`"), "{err}");
    let stage1 = load_checkpoint(&in_memory(&tensors, "runs/epoch_post_4_1.pth"), &device, StageChoice::FromFile, false).unwrap();
    assert_eq!(stage1.stage, Stage::One);
}

/// Set `BAYES_PFL_EXPORT_DIR` to keep the exported files (to check them with PyTorch:
/// `torch.load` and `Context_Prompting.load_state_dict(..., strict=True)`).
#[test]
fn both_export_formats_round_trip() {
    let keep = std::env::var_os("BAYES_PFL_EXPORT_DIR").map(std::path::PathBuf::from);
    let dir = keep.clone().unwrap_or_else(|| temp_dir("export"));
    std::fs::create_dir_all(&dir).unwrap();
    let tensors = random_state_dict();
    let loaded = load_checkpoint(&in_memory(&tensors, "train_visa.pth"), &device(), StageChoice::FromFile, false).unwrap();

    // Official format: all 131 keys, aliases stored once.
    let official = dir.join("epoch_post_3_1.pth");
    save_official(&official, &loaded.head, &loaded.dead).unwrap();
    let file = WeightFile::open(&official, Some("MyModel")).unwrap();
    assert_eq!(file.entries.len(), 131);
    let again = load_checkpoint(&file, &device(), StageChoice::FromFile, false).unwrap();
    assert_eq!(again.stage, Stage::One, "the per-epoch name carries the stage");
    assert_eq!(official_state_dict(&again.head, &again.dead).unwrap(), official_state_dict(&loaded.head, &loaded.dead).unwrap());

    // vlad's burnpack: canonical keys once, stage and dimensions in the metadata.
    let ours = dir.join("bayes_pfl.bpk");
    std::fs::remove_file(&ours).ok();
    save_vlad(&ours, &loaded.head, &loaded.dead, Stage::One, false).unwrap();
    let file = WeightFile::open(&ours, None).unwrap();
    assert_eq!(file.entries.len(), 131 - 54);
    let again = load_checkpoint(&file, &device(), StageChoice::FromFile, false).unwrap();
    assert_eq!(again.stage, Stage::One);
    assert_eq!(again.report.stage.1, "vlad metadata");
    assert!(again.report.load.is_complete(), "{}", again.report);
    assert_eq!(official_state_dict(&again.head, &again.dead).unwrap(), official_state_dict(&loaded.head, &loaded.dead).unwrap());
    assert!(save_vlad(&ours, &loaded.head, &loaded.dead, Stage::One, false).is_err(), "no silent overwrite");

    // The in-memory form used by tests and conversions carries every key.
    assert_eq!(as_weight_file(&loaded.head, &loaded.dead, "memory").unwrap().entries.len(), 131);
    if keep.is_none() {
        std::fs::remove_dir_all(&dir).ok();
    }
}
