//! The BMAD/MVFA medical layout (`tests/fixtures/mvfa/data`, written by `tools/fixtures/mvfa.py`)
//! and MVFA's few-shot seed lists (`tests/fixtures/mvfa/fewshot_seed`, in the official format).
use std::path::{Path, PathBuf};

use vlad_data::readers::{fewshot_samples, parse_fewshot_seed, read_bmad};
use vlad_data::{DatasetFormat, Label, Split, open_dataset};

fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/mvfa").join(path)
}

#[test]
fn the_layout_is_detected_and_indexed_with_masks_and_splits() {
    let index = open_dataset(&fixture("data"), &Default::default()).unwrap();
    assert_eq!(index.format, DatasetFormat::Bmad);
    assert!(index.problems.is_empty(), "{:?}", index.problems);
    assert_eq!(index.samples.len(), 8);
    let test: Vec<_> = index.samples.iter().filter(|s| s.split == Split::Test).collect();
    // MedTestDataset's order: normal sorted, then anomalous sorted.
    let names: Vec<String> = test.iter().map(|s| format!("{}/{}", s.defect_type, s.image_path.file_name().unwrap().to_string_lossy())).collect();
    assert_eq!(names, ["good/test_000.png", "good/test_001.png", "Ungood/test_000.png", "Ungood/test_001.png"]);
    assert!(test.iter().all(|s| s.class_name == "Brain"));
    for s in &test {
        match s.label {
            Label::Normal => assert!(s.mask_path.is_none()),
            Label::Anomalous => assert!(s.mask_path.as_ref().unwrap().ends_with(Path::new("Ungood/anomaly_mask").join(s.image_path.file_name().unwrap()))),
        }
    }
    // One `<Obj>_AD` folder as the root works too.
    assert_eq!(read_bmad(&fixture("data/Brain_AD")).unwrap().samples.len(), 8);
}

#[test]
fn classification_only_sets_and_missing_masks() {
    let root = std::env::temp_dir().join(format!("vlad-bmad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for (obj, masks) in [("Chest_AD", false), ("Liver_AD", true)] {
        for kind in ["good", "Ungood"] {
            let dir = root.join(obj).join("test").join(kind).join("img");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::copy(fixture("data/Brain_AD/test/good/img/test_000.png"), dir.join("a.png")).unwrap();
        }
        if masks {
            // AA-CLIP's copy names the mask folder `label`; its mask of a.png is missing.
            std::fs::create_dir_all(root.join(obj).join("test/Ungood/label")).unwrap();
        }
    }
    let index = open_dataset(&root, &Default::default()).unwrap();
    let chest: Vec<_> = index.samples.iter().filter(|s| s.class_name == "Chest").collect();
    assert_eq!(chest.len(), 2);
    assert!(chest.iter().all(|s| s.mask_path.is_none()), "classification-only: no masks");
    assert_eq!(index.problems.len(), 1, "{:?}", index.problems);
    assert!(index.problems[0].path.ends_with("Liver_AD/test/Ungood/label/a.png"), "{:?}", index.problems);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn seed_lists_resolve_to_valid_images_and_bad_lines_are_named() {
    let path = fixture("fewshot_seed/Brain/2-shot.txt");
    let seeds = parse_fewshot_seed(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
    assert_eq!(seeds.len(), 4);
    let index = open_dataset(&fixture("data"), &Default::default()).unwrap();
    let (anomalous, normal) = fewshot_samples(&index, "Brain", &seeds, 0, &path).unwrap();
    let names = |v: &[vlad_data::Sample]| v.iter().map(|s| s.image_path.file_name().unwrap().to_string_lossy().into_owned()).collect::<Vec<_>>();
    assert_eq!(names(&anomalous), ["valid_001.png", "valid_000.png"]);
    assert_eq!(names(&normal), ["valid_000.png", "valid_001.png"]);
    assert!(anomalous.iter().all(|s| s.split == Split::Train && s.label == Label::Anomalous && s.mask_path.is_some()));
    let e = fewshot_samples(&index, "Brain", &seeds, 7, &path).unwrap_err().to_string();
    assert!(e.contains("2-shot.txt") && e.contains("a-7:"), "{e}");
    let e = parse_fewshot_seed("a-0: x.png\nb-1: y.png\n", Path::new("bad.txt")).unwrap_err().to_string();
    assert!(e.contains("bad.txt") && e.contains("line 2"), "{e}");
    let e = parse_fewshot_seed("n-x: y.png\n", Path::new("bad.txt")).unwrap_err().to_string();
    assert!(e.contains("line 1") && e.contains("not a number"), "{e}");
    let missing = parse_fewshot_seed("a-0: nope.png\nn-0: valid_000.png\n", Path::new("m.txt")).unwrap();
    let e = fewshot_samples(&index, "Brain", &missing, 0, Path::new("m.txt")).unwrap_err().to_string();
    assert!(e.contains("nope.png") && e.contains("Ungood"), "{e}");
}
