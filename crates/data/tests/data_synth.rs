//! The synthetic benchmark: determinism, exact masks, visible defects, layout and metadata.

use std::collections::BTreeMap;
use std::path::Path;

use vlad_data::synth::{self, DefectKind, SynthClass, SynthConfig};
use vlad_data::{DatasetFormat, Label, OpenOptions, Split, open_dataset};

fn small(classes: Vec<SynthClass>, seed: u64) -> SynthConfig {
    SynthConfig {
        classes,
        per_class: 9,
        seed,
        size: 96,
    }
}

/// Every file under `root`, relative path → bytes.
fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn same_seed_gives_byte_identical_files_and_another_seed_does_not() {
    let config = small(SynthClass::ALL.to_vec(), 5);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    synth::generate_to_dir(&config, a.path(), false).unwrap();
    // A different thread count must not change anything.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    pool.install(|| synth::generate_to_dir(&config, b.path(), true))
        .unwrap();
    let (fa, fb) = (files(a.path()), files(b.path()));
    assert_eq!(
        fa.len(),
        6 * (9 + 9 + 6) + 2,
        "18 images and 6 masks per class, meta.json, README.md"
    );
    assert!(fa == fb, "outputs differ");
    let other = synth::generate(&small(SynthClass::ALL.to_vec(), 6)).unwrap();
    let first = synth::generate(&config).unwrap();
    let same = first
        .samples
        .iter()
        .zip(&other.samples)
        .filter(|(x, y)| x.image == y.image)
        .count();
    assert_eq!(same, 0, "every image changes with the seed");
}

#[test]
fn a_class_is_the_same_whichever_classes_are_generated_with_it() {
    let alone = synth::generate(&small(vec![SynthClass::Pill], 3)).unwrap();
    let together = synth::generate(&small(vec![SynthClass::Weave, SynthClass::Pill], 3)).unwrap();
    let pills: Vec<_> = together
        .samples
        .iter()
        .filter(|s| s.class == SynthClass::Pill)
        .collect();
    assert_eq!(alone.samples.len(), pills.len());
    for (x, y) in alone.samples.iter().zip(pills) {
        assert!(x.image == y.image && x.mask == y.mask);
    }
}

#[test]
fn masks_are_exactly_the_changed_pixels_and_defects_are_visible() {
    let config = SynthConfig {
        per_class: 12,
        size: 128,
        seed: 9,
        ..SynthConfig::default()
    };
    let dataset = synth::generate(&config).unwrap();
    let mut seen = std::collections::HashSet::new();
    for s in dataset.samples.iter().filter(|s| s.defect.is_some()) {
        seen.insert(s.defect.unwrap());
        let mask = s.mask.as_ref().expect("anomalous samples have masks");
        let twin = synth::defect_free_twin(&config, s).unwrap().expect("twin");
        let (mut inside, mut diff_sum) = (0usize, 0u64);
        for ((m, p), q) in mask.pixels().zip(s.image.pixels()).zip(twin.pixels()) {
            let changed = p != q;
            // 255 iff the defect changed the pixel
            assert_eq!(
                m.0[0] == 255,
                changed,
                "{} {:?} {}",
                s.class.name(),
                s.defect,
                s.index
            );
            assert!(m.0[0] == 0 || m.0[0] == 255);
            if changed {
                inside += 1;
                diff_sum +=
                    p.0.iter()
                        .zip(q.0)
                        .map(|(a, b)| u64::from(a.abs_diff(b)))
                        .max()
                        .unwrap();
            }
        }
        let area = inside as f64 / (128.0 * 128.0);
        assert!(
            inside >= 12 && area < 0.25,
            "{} {:?}: {inside} px",
            s.class.name(),
            s.defect
        );
        // Mean largest-channel change inside the mask: clearly visible, not a 1-level flicker.
        let mean = diff_sum as f64 / inside as f64;
        assert!(
            mean >= 8.0,
            "{} {:?} {}: mean change {mean:.1}",
            s.class.name(),
            s.defect,
            s.index
        );
    }
    assert_eq!(
        seen.len(),
        DefectKind::ALL.len(),
        "all six defect types occur"
    );
}

#[test]
fn normal_images_vary_but_stay_alike() {
    let dataset = synth::generate(&small(SynthClass::ALL.to_vec(), 1)).unwrap();
    for class in SynthClass::ALL {
        let normals: Vec<_> = dataset
            .samples
            .iter()
            .filter(|s| s.class == class && s.defect.is_none())
            .collect();
        let mean = |img: &image::RgbImage| {
            img.as_raw().iter().map(|&v| f64::from(v)).sum::<f64>() / img.as_raw().len() as f64
        };
        let means: Vec<f64> = normals.iter().map(|s| mean(&s.image)).collect();
        assert!(
            normals.windows(2).all(|w| w[0].image != w[1].image),
            "{} normals differ",
            class.name()
        );
        let spread = means.iter().cloned().fold(f64::MIN, f64::max)
            - means.iter().cloned().fold(f64::MAX, f64::min);
        // Pose, colour and lighting vary, but a class keeps its look (mean brightness within 40 levels).
        assert!(
            spread > 0.5 && spread < 40.0,
            "{}: spread {spread}",
            class.name()
        );
    }
}

#[test]
fn written_layout_reads_back_as_mvtec_and_as_meta_json() {
    let dir = tempfile::tempdir().unwrap();
    let config = small(vec![SynthClass::Wood, SynthClass::Washer], 2);
    let dataset = synth::generate_to_dir(&config, dir.path(), false).unwrap();
    let readme = std::fs::read_to_string(dir.path().join("README.md")).unwrap();
    assert!(readme.contains("It is not a substitute for MVTec-AD, VisA"));
    let via_meta = open_dataset(dir.path(), &OpenOptions::default()).unwrap();
    assert_eq!(via_meta.format, DatasetFormat::MetaJson);
    assert_eq!(via_meta.classes(), vec!["wood", "washer"]);
    let via_layout = open_dataset(
        dir.path(),
        &OpenOptions {
            format: "mvtec".parse().unwrap(),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(via_meta.problems.is_empty() && via_layout.problems.is_empty());
    let key = |s: &vlad_data::Sample| {
        (
            s.image_path.clone(),
            s.mask_path.clone(),
            s.label,
            s.split,
            s.defect_type.clone(),
        )
    };
    let mut a: Vec<_> = via_meta.samples.iter().map(key).collect();
    let mut b: Vec<_> = via_layout.samples.iter().map(key).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    assert_eq!(a.len(), dataset.samples.len());
    // per class: 9 train normals, 3 test normals, 6 anomalous spread over 4 defect types (2, 2, 1, 1)
    let summary = via_layout.summary();
    let wood = &summary.iter().find(|(c, _)| c == "wood").unwrap().1;
    assert_eq!(wood.normal[&Split::Train], 9);
    assert_eq!(wood.normal[&Split::Test], 3);
    assert_eq!(wood.anomalous[&Split::Test], 6);
    assert_eq!(wood.defect_types["scratch"], 2);
    assert_eq!(wood.defect_types["hole"], 1);
    // Files on disk decode to the in-memory images.
    for s in dataset.samples.iter().take(5) {
        let on_disk = image::open(dir.path().join(s.image_path()))
            .unwrap()
            .to_rgb8();
        assert!(on_disk == s.image);
        assert_eq!(s.label() == Label::Anomalous, s.mask_path().is_some());
    }
}

#[test]
fn refuses_to_overwrite_a_non_empty_folder_without_force() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
    let config = small(vec![SynthClass::Marble], 0);
    let err = synth::generate_to_dir(&config, dir.path(), false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("output folder is not empty; refusing to write into it (use --force"),
        "{err}"
    );
    synth::generate_to_dir(&config, dir.path(), true).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn invalid_options_are_explained() {
    let check = |config: SynthConfig, expected: &str| {
        let err = synth::generate(&config).unwrap_err().to_string();
        assert!(err.contains(expected), "{err} / {expected}");
    };
    check(
        SynthConfig {
            per_class: 1,
            ..SynthConfig::default()
        },
        "per_class must be at least 2",
    );
    check(
        SynthConfig {
            size: 32,
            ..SynthConfig::default()
        },
        "size must be between 64 and 2048",
    );
    check(
        SynthConfig {
            classes: vec![],
            ..SynthConfig::default()
        },
        "at least one class",
    );
    check(
        SynthConfig {
            classes: vec![SynthClass::Pill, SynthClass::Pill],
            ..SynthConfig::default()
        },
        "class pill listed twice",
    );
    let err = synth::parse_classes("wood,carpet").unwrap_err().to_string();
    assert!(err.contains("unknown synthetic class \"carpet\" (classes: weave, wood, marble, washer, pill, bottle_cap)"), "{err}");
    assert_eq!(
        synth::parse_classes("pill, wood").unwrap(),
        vec![SynthClass::Pill, SynthClass::Wood]
    );
}
