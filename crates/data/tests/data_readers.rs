//! Readers on small dataset trees built in temporary folders, including the error cases.

mod common;

use std::path::Path;

use common::{write_image, write_mask, write_text};
use vlad_data::readers::{read_folder, read_jsonl, read_meta_json, read_mvtec, read_visa};
use vlad_data::{
    DataError, DatasetFormat, FormatChoice, Label, LoadOptions, MaskRule, OpenOptions, Split,
    detect_format, load_sample, open_dataset,
};

fn mvtec_tree(root: &Path) {
    write_image(&root.join("bottle/train/good/000.png"), 24, 20, 1);
    write_image(&root.join("bottle/train/good/001.png"), 24, 20, 2);
    write_image(&root.join("bottle/test/good/000.png"), 24, 20, 3);
    write_image(&root.join("bottle/test/broken/000.png"), 24, 20, 4);
    write_image(&root.join("bottle/test/broken/001.png"), 24, 20, 5);
    write_mask(
        &root.join("bottle/ground_truth/broken/000_mask.png"),
        24,
        20,
        (2, 3, 10, 9),
        255,
    );
    write_mask(
        &root.join("bottle/ground_truth/broken/001_mask.png"),
        24,
        20,
        (5, 5, 6, 6),
        255,
    );
    write_image(&root.join("capsule/test/good/000.png"), 16, 16, 6);
    write_image(&root.join("capsule/test/crack/000.png"), 16, 16, 7);
    write_mask(
        &root.join("capsule/ground_truth/crack/000_mask.png"),
        16,
        16,
        (0, 0, 4, 4),
        255,
    );
    std::fs::create_dir_all(root.join("license_files")).unwrap();
}

#[test]
fn mvtec_layout_is_indexed_with_masks_paired_by_stem() {
    let dir = tempfile::tempdir().unwrap();
    mvtec_tree(dir.path());
    let index = read_mvtec(dir.path()).unwrap();
    assert_eq!(index.format, DatasetFormat::Mvtec);
    assert_eq!(index.classes(), vec!["bottle", "capsule"]);
    assert!(index.problems.is_empty(), "{:?}", index.problems);
    assert_eq!(index.samples.len(), 7);
    let train: Vec<_> = index.select("bottle", Split::Train).collect();
    assert_eq!(train.len(), 2);
    assert!(
        train
            .iter()
            .all(|s| s.label == Label::Normal && s.mask_path.is_none() && s.defect_type == "good")
    );
    let broken: Vec<_> = index
        .select("bottle", Split::Test)
        .filter(|s| s.label == Label::Anomalous)
        .collect();
    assert_eq!(broken.len(), 2);
    for s in broken {
        let stem = s.image_path.file_stem().unwrap().to_str().unwrap();
        let mask = s.mask_path.as_ref().unwrap();
        assert_eq!(
            mask.file_name().unwrap().to_str().unwrap(),
            format!("{stem}_mask.png")
        );
        assert_eq!(s.defect_type, "broken");
    }
    // Loading binarises and keeps the size; normal images get an all-zero mask.
    let s = index
        .samples
        .iter()
        .find(|s| s.image_path.ends_with("bottle/test/broken/000.png"))
        .unwrap();
    let loaded = load_sample(s, &LoadOptions::default()).unwrap();
    assert_eq!(loaded.image.dimensions(), (24, 20));
    assert_eq!(loaded.mask.iter().filter(|&&v| v == 255).count(), 8 * 6);
    assert!(loaded.mask.iter().all(|&v| v == 0 || v == 255));
    let normal = index
        .samples
        .iter()
        .find(|s| s.label == Label::Normal)
        .unwrap();
    assert!(
        load_sample(normal, &LoadOptions::default())
            .unwrap()
            .mask
            .iter()
            .all(|&v| v == 0)
    );
}

#[test]
fn btad_ok_folders_bmp_images_and_same_stem_masks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_image(&root.join("01/train/ok/0000.bmp"), 12, 12, 1);
    write_image(&root.join("01/test/ok/0000.bmp"), 12, 12, 2);
    write_image(&root.join("01/test/ko/0003.bmp"), 12, 12, 3);
    write_mask(
        &root.join("01/ground_truth/ko/0003.png"),
        12,
        12,
        (1, 1, 3, 3),
        255,
    );
    let index = read_mvtec(root).unwrap();
    assert!(index.problems.is_empty(), "{:?}", index.problems);
    let labels: Vec<_> = index
        .samples
        .iter()
        .map(|s| (s.defect_type.as_str(), s.label))
        .collect();
    assert_eq!(
        labels,
        vec![
            ("ok", Label::Normal),
            ("ko", Label::Anomalous),
            ("ok", Label::Normal)
        ]
    );
    let ko = index
        .samples
        .iter()
        .find(|s| s.label == Label::Anomalous)
        .unwrap();
    assert!(
        ko.mask_path
            .as_ref()
            .unwrap()
            .ends_with("01/ground_truth/ko/0003.png")
    );
    assert_eq!(
        load_sample(ko, &LoadOptions::default())
            .unwrap()
            .mask
            .iter()
            .filter(|&&v| v == 255)
            .count(),
        4
    );
}

#[test]
fn missing_mask_is_reported_and_its_load_error_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    mvtec_tree(dir.path());
    std::fs::remove_file(dir.path().join("bottle/ground_truth/broken/001_mask.png")).unwrap();
    write_mask(
        &dir.path().join("bottle/ground_truth/broken/007_mask.png"),
        24,
        20,
        (0, 0, 1, 1),
        255,
    );
    let index = read_mvtec(dir.path()).unwrap();
    let messages: Vec<String> = index.problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(
        messages[0].contains("bottle/test/broken/001.png: anomalous image has no mask (expected "),
        "{}",
        messages[0]
    );
    assert!(
        messages[0].contains("bottle/ground_truth/broken/001_mask.png"),
        "{}",
        messages[0]
    );
    assert!(
        messages[1].contains("007_mask.png: mask has no matching image"),
        "{}",
        messages[1]
    );
    assert_eq!(
        index
            .summary()
            .iter()
            .find(|(c, _)| c == "bottle")
            .unwrap()
            .1
            .problems,
        2
    );
    // One bad sample does not stop the others.
    let options = LoadOptions::default();
    let results: Vec<_> = index.load_iter(&options).collect();
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0].starts_with("mask file not found: "),
        "{}",
        failed[0]
    );
    assert!(
        failed[0].ends_with("bottle/ground_truth/broken/001_mask.png"),
        "{}",
        failed[0]
    );
    assert_eq!(results.len() - failed.len(), 6);
}

#[test]
fn corrupt_image_error_names_the_file_and_the_rest_still_load() {
    let dir = tempfile::tempdir().unwrap();
    mvtec_tree(dir.path());
    let bad = dir.path().join("capsule/test/good/001.png");
    std::fs::write(&bad, b"this is not a png").unwrap();
    let index = read_mvtec(dir.path()).unwrap();
    let results = vlad_data::load_all(&index.samples, &LoadOptions::default());
    assert_eq!(results.len(), 8);
    let errors: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("cannot decode image "),
        "{}",
        errors[0]
    );
    assert!(
        errors[0].contains("capsule/test/good/001.png"),
        "{}",
        errors[0]
    );
}

#[test]
fn mask_of_another_size_is_an_error_naming_both_files() {
    let dir = tempfile::tempdir().unwrap();
    mvtec_tree(dir.path());
    write_mask(
        &dir.path().join("capsule/ground_truth/crack/000_mask.png"),
        15,
        16,
        (0, 0, 4, 4),
        255,
    );
    let index = read_mvtec(dir.path()).unwrap();
    let s = index
        .samples
        .iter()
        .find(|s| s.image_path.ends_with("capsule/test/crack/000.png"))
        .unwrap();
    let err = load_sample(s, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("000_mask.png is 15x16 but its image")
            && err.contains("crack/000.png is 16x16"),
        "{err}"
    );
}

#[test]
fn class_without_ground_truth_is_classification_only() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_image(&root.join("headct/test/good/000.png"), 8, 8, 1);
    write_image(&root.join("headct/test/defect/000.png"), 8, 8, 2);
    let index = read_mvtec(root).unwrap();
    assert!(index.problems.is_empty());
    let anomalous = index
        .samples
        .iter()
        .find(|s| s.label == Label::Anomalous)
        .unwrap();
    assert!(anomalous.mask_path.is_none());
    assert_eq!(index.summary()[0].1.anomalous_without_mask, 1);
    assert!(
        load_sample(anomalous, &LoadOptions::default())
            .unwrap()
            .mask
            .iter()
            .all(|&v| v == 0)
    );
}

#[test]
fn resized_loading_uses_the_chosen_mask_rule() {
    let dir = tempfile::tempdir().unwrap();
    mvtec_tree(dir.path());
    let index = read_mvtec(dir.path()).unwrap();
    let s = index
        .samples
        .iter()
        .find(|s| s.image_path.ends_with("bottle/test/broken/001.png"))
        .unwrap();
    // A single mask pixel at (5, 5) of 24×20: nearest keeps a 2×2 block at double size; bilinear + 0.5 keeps
    // a block too (centre samples), and both stay binary.
    for rule in [MaskRule::Nearest, MaskRule::BilinearThreshold] {
        let loaded = load_sample(
            s,
            &LoadOptions {
                size: Some((48, 40)),
                mask_rule: rule,
                ..LoadOptions::default()
            },
        )
        .unwrap();
        assert_eq!(loaded.image.dimensions(), (48, 40));
        assert_eq!(loaded.mask.dimensions(), (48, 40));
        assert!(loaded.mask.iter().all(|&v| v == 0 || v == 255));
        assert!(
            loaded.mask.get_pixel(10, 10).0[0] == 255 && loaded.mask.get_pixel(11, 11).0[0] == 255,
            "{rule:?}"
        );
    }
}

#[test]
fn plain_folder_layout_single_and_multi_class() {
    let dir = tempfile::tempdir().unwrap();
    let single = dir.path().join("screws");
    write_image(&single.join("good/a.png"), 8, 8, 1);
    write_image(&single.join("scratch/b.png"), 8, 8, 2);
    write_mask(
        &single.join("ground_truth/scratch/b_mask.png"),
        8,
        8,
        (0, 0, 2, 2),
        255,
    );
    let index = read_folder(&single).unwrap();
    assert_eq!(index.classes(), vec!["screws"]);
    assert_eq!(index.samples.len(), 2);
    assert!(index.samples.iter().all(|s| s.split == Split::Test));
    assert!(index.problems.is_empty(), "{:?}", index.problems);
    let multi = dir.path().join("multi");
    write_image(&multi.join("a/good/1.png"), 8, 8, 1);
    write_image(&multi.join("b/ok/1.png"), 8, 8, 1);
    write_image(&multi.join("b/dent/2.png"), 8, 8, 1);
    let index = read_folder(&multi).unwrap();
    assert_eq!(index.classes(), vec!["a", "b"]);
    assert_eq!(
        detect_format(&multi, None).unwrap().0,
        DatasetFormat::Folder
    );
}

fn visa_tree(root: &Path, csv: &str) {
    write_image(&root.join("candle/Data/Images/Normal/0000.JPG"), 20, 10, 1);
    write_image(&root.join("candle/Data/Images/Normal/0001.JPG"), 20, 10, 2);
    write_image(&root.join("candle/Data/Images/Anomaly/000.JPG"), 20, 10, 3);
    // VisA masks store component ids, not 0/255.
    write_mask(
        &root.join("candle/Data/Masks/Anomaly/000.png"),
        20,
        10,
        (0, 0, 5, 2),
        1,
    );
    write_mask(
        &root.join("candle/Data/Masks/Anomaly/000b.png"),
        20,
        10,
        (0, 0, 5, 2),
        2,
    );
    write_text(&root.join("split_csv/1cls.csv"), csv);
}

#[test]
fn visa_split_csv_is_read_and_component_id_masks_are_binarised() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "object,split,label,image,mask\n\
               candle,train,normal,candle/Data/Images/Normal/0000.JPG,\n\
               candle,test,normal,candle/Data/Images/Normal/0001.JPG,\n\
               candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,candle/Data/Masks/Anomaly/000.png\n";
    visa_tree(dir.path(), csv);
    assert_eq!(
        detect_format(dir.path(), None).unwrap().0,
        DatasetFormat::Visa
    );
    let index = read_visa(dir.path(), None).unwrap();
    assert!(index.problems.is_empty(), "{:?}", index.problems);
    assert_eq!(index.samples.len(), 3);
    assert_eq!(index.samples[0].split, Split::Train);
    let anomalous = &index.samples[2];
    assert_eq!(
        (anomalous.label, anomalous.defect_type.as_str()),
        (Label::Anomalous, "anomaly")
    );
    let mask = load_sample(anomalous, &LoadOptions::default())
        .unwrap()
        .mask;
    assert_eq!(mask.iter().filter(|&&v| v == 255).count(), 10);
    assert!(mask.iter().all(|&v| v == 0 || v == 255));
}

#[test]
fn visa_bad_rows_are_errors_with_file_and_line() {
    let header = "object,split,label,image,mask\n";
    let good = "candle,test,normal,candle/Data/Images/Normal/0001.JPG,\n";
    let cases = [
        (
            format!("{header}{good}candle,test,defect,candle/Data/Images/Anomaly/000.JPG,x.png\n"),
            "line 3: label is \"defect\", expected \"normal\" or \"anomaly\"",
        ),
        (
            format!("{header}candle,val,normal,a.JPG,\n"),
            "line 2: split is \"val\", expected \"train\" or \"test\"",
        ),
        (
            format!("{header}{good}candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,\n"),
            "line 3: anomalous row without a mask path",
        ),
        (format!("{header}{good}candle,test\n"), "line 3: "),
        (
            "object,split,label,image\ncandle,test,normal,a.JPG\n".to_string(),
            "line 1: missing column \"mask\"",
        ),
    ];
    for (csv, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        visa_tree(dir.path(), &csv);
        let err = read_visa(dir.path(), None).unwrap_err();
        assert!(matches!(err, DataError::Csv { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("split_csv/1cls.csv, ") && text.contains(expected),
            "{text} / {expected}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let err = read_visa(dir.path(), None).unwrap_err().to_string();
    assert!(
        err.starts_with("VisA split csv not found: ") && err.ends_with("split_csv/1cls.csv"),
        "{err}"
    );
}

#[test]
fn visa_missing_files_are_problems() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "object,split,label,image,mask\ncandle,test,anomaly,candle/Data/Images/Anomaly/404.JPG,candle/Data/Masks/Anomaly/404.png\n";
    visa_tree(dir.path(), csv);
    let index = read_visa(dir.path(), None).unwrap();
    assert_eq!(index.problems.len(), 2);
    assert!(
        index.problems[0]
            .to_string()
            .contains("404.JPG: image file listed in ")
    );
    let err = load_sample(&index.samples[0], &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("image file not found: ") && err.ends_with("404.JPG"),
        "{err}"
    );
}

const META: &str = r#"{"test": {"zipper": [
   {"img_path": "zipper/test/broken/000.png", "mask_path": "zipper/ground_truth/broken/000_mask.png",
    "cls_name": "zipper", "specie_name": "broken", "anomaly": 1},
   {"img_path": "zipper/test/good/000.png", "mask_path": "", "cls_name": "zipper", "specie_name": "good", "anomaly": 0}],
  "bottle": [
   {"img_path": "bottle/test/anomaly/x.bmp", "mask_path": "bottle/ground_truth/anomaly/x.png", "cls_name": "bottle",
    "specie_name": "anomaly", "dataset_name": "mvtec", "anomaly": 1}]},
 "train": {"zipper": [{"img_path": "zipper/train/good/000.png", "mask_path": "", "cls_name": "zipper",
    "specie_name": "good", "anomaly": 0}]}}"#;

#[test]
fn meta_json_keeps_file_order_and_fields() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_text(&root.join("meta.json"), META);
    write_image(&root.join("zipper/test/broken/000.png"), 8, 8, 1);
    write_mask(
        &root.join("zipper/ground_truth/broken/000_mask.png"),
        8,
        8,
        (0, 0, 1, 1),
        255,
    );
    write_image(&root.join("zipper/test/good/000.png"), 8, 8, 1);
    write_image(&root.join("zipper/train/good/000.png"), 8, 8, 1);
    let index = open_dataset(root, &OpenOptions::default()).unwrap();
    assert_eq!(index.format, DatasetFormat::MetaJson);
    // zipper before bottle, as in the file (not sorted)
    assert_eq!(index.classes(), vec!["zipper", "bottle"]);
    assert_eq!(index.samples.len(), 4);
    assert_eq!(index.samples[1].mask_path, None);
    assert_eq!(index.samples[2].defect_type, "anomaly");
    assert_eq!(index.samples[3].split, Split::Train);
    // the Bayes-PFL entry's files do not exist: reported, not fatal
    assert_eq!(index.problems.len(), 2, "{:?}", index.problems);
}

#[test]
fn meta_json_errors_name_the_file_and_entry() {
    let cases = [
        (r#"{"test": {"a": [ {"img_path": "x.png", }]}}"#, "line 1"),
        (
            r#"{"test": {"a": [{"img_path": "x.png", "anomaly": 0}, {"mask_path": "", "anomaly": 0}]}}"#,
            "\"test\".\"a\"[1]: missing field \"img_path\"",
        ),
        (
            r#"{"test": {"a": [{"img_path": "x.png", "anomaly": 2}]}}"#,
            "\"test\".\"a\"[0]: \"anomaly\" must be 0 or 1, found 2",
        ),
        (
            r#"{"test": {"a": {"img_path": "x.png"}}}"#,
            "\"test\".\"a\" must be a list of entries, found an object",
        ),
        (
            r#"{"test": 3}"#,
            "\"test\" must be an object of classes, found a number",
        ),
        (r#"{"train": {}}"#, "no \"test\" key at the top level"),
    ];
    for (text, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.json");
        write_text(&path, text);
        let err = read_meta_json(&path).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DataError::Json { .. }), "{err:?}");
        assert!(
            msg.contains("meta.json") && msg.contains(expected),
            "{msg} / {expected}"
        );
    }
}

#[test]
fn malformed_meta_train_split_is_a_problem_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta_mvtec.json");
    write_text(
        &path,
        r#"{"train": {"a": [{"placeholder": 1}]}, "test": {"a": [{"img_path": "x.png", "mask_path": "", "cls_name": "a", "anomaly": 0}]}}"#,
    );
    assert_eq!(
        detect_format(dir.path(), None).unwrap(),
        (DatasetFormat::MetaJson, Some(path.clone()))
    );
    let index = read_meta_json(&path).unwrap();
    assert_eq!(index.samples.len(), 1);
    assert!(
        index
            .problems
            .iter()
            .any(|p| p.message.starts_with("train split ignored: ")
                && p.message.contains("missing field \"img_path\""))
    );
}

#[test]
fn jsonl_accepts_int_float_labels_and_absent_empty_null_masks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("BTech");
    let jsonl = dir.path().join("meta/full-shot.jsonl");
    write_text(
        &jsonl,
        "{\"image_path\": \"02/test/ko/0162.png\", \"label\": 1.0, \"class_name\": \"02\", \"mask_path\": \"02/ground_truth/ko/0162.png\"}\n\
         {\"image_path\": \"02/test/ok/0001.png\", \"label\": 0.0, \"class_name\": \"02\"}\n\
         \n\
         {\"image_path\": \"02/test/ok/0002.png\", \"label\": 0, \"class_name\": \"02\", \"mask_path\": \"\"}\n\
         {\"image_path\": \"02/test/ok/0003.png\", \"label\": 0, \"class_name\": \"02\", \"mask_path\": null}\n",
    );
    let index = read_jsonl(&jsonl, &root).unwrap();
    assert_eq!(index.samples.len(), 4);
    assert_eq!(index.samples[0].label, Label::Anomalous);
    assert!(
        index.samples[0]
            .mask_path
            .as_ref()
            .unwrap()
            .ends_with("02/ground_truth/ko/0162.png")
    );
    assert!(
        index.samples[1..]
            .iter()
            .all(|s| s.label == Label::Normal && s.mask_path.is_none())
    );
    assert!(index.samples.iter().all(|s| s.split == Split::Test));
    let options = OpenOptions {
        metadata: Some(jsonl.clone()),
        ..OpenOptions::default()
    };
    std::fs::create_dir_all(&root).unwrap();
    assert_eq!(
        open_dataset(&root, &options).unwrap().format,
        DatasetFormat::Jsonl
    );
}

#[test]
fn jsonl_errors_name_file_and_line() {
    let cases = [
        (
            "{\"image_path\": \"a.png\", \"label\": 0, \"class_name\": \"c\"}\n{\"image_path\": \"b.png\", \"label\": 0.5, \"class_name\": \"c\"}\n",
            "line 2: \"label\" must be 0 or 1, found 0.5",
        ),
        (
            "{\"image_path\": \"a.png\", \"label\": 0}\n",
            "line 1: missing \"class_name\"",
        ),
        ("\n\n{not json}\n", "line 3: "),
        ("[1, 2]\n", "line 1: expected a JSON object, found a list"),
    ];
    for (text, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full-shot.jsonl");
        write_text(&path, text);
        let msg = read_jsonl(&path, dir.path()).unwrap_err().to_string();
        assert!(
            msg.contains("full-shot.jsonl, ") && msg.contains(expected),
            "{msg} / {expected}"
        );
    }
}

#[test]
fn jsonl_bmad_masks_accept_label_or_anomaly_mask_folders() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_image(&root.join("test/Ungood/img/01.png"), 8, 8, 1);
    write_mask(
        &root.join("test/Ungood/anomaly_mask/01.png"),
        8,
        8,
        (0, 0, 2, 2),
        255,
    );
    let path = root.join("full-shot.jsonl");
    write_text(
        &path,
        "{\"image_path\": \"test/Ungood/img/01.png\", \"label\": 1.0, \"class_name\": \"brain\", \"mask_path\": \"test/Ungood/label/01.png\"}\n",
    );
    let index = read_jsonl(&path, root).unwrap();
    assert!(index.problems.is_empty(), "{:?}", index.problems);
    assert!(
        index.samples[0]
            .mask_path
            .as_ref()
            .unwrap()
            .ends_with("test/Ungood/anomaly_mask/01.png")
    );
}

#[test]
fn auto_detection_rules() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    mvtec_tree(root);
    assert_eq!(
        detect_format(root, None).unwrap(),
        (DatasetFormat::Mvtec, None)
    );
    // a metadata file wins over the folder layout
    write_text(&root.join("meta_a.json"), META);
    assert_eq!(
        detect_format(root, None).unwrap().0,
        DatasetFormat::MetaJson
    );
    write_text(&root.join("meta_b.json"), META);
    let err = detect_format(root, None).unwrap_err().to_string();
    assert!(
        err.contains("several metadata files (meta_a.json, meta_b.json); choose one with --meta"),
        "{err}"
    );
    // an explicit metadata file decides by extension
    let explicit = detect_format(root, Some(Path::new("x/full-shot.jsonl"))).unwrap();
    assert_eq!(explicit.0, DatasetFormat::Jsonl);
    let empty = tempfile::tempdir().unwrap();
    let err = detect_format(empty.path(), None).unwrap_err().to_string();
    assert!(err.contains("cannot detect the dataset format"), "{err}");
    let err = detect_format(&root.join("nope"), None)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("dataset root not found: "), "{err}");
    // a fixed format is used as asked
    let options = OpenOptions {
        format: "mvtec".parse().unwrap(),
        ..OpenOptions::default()
    };
    assert_eq!(
        open_dataset(root, &options).unwrap().format,
        DatasetFormat::Mvtec
    );
    let err = "nonsense".parse::<FormatChoice>().unwrap_err().to_string();
    assert!(err.contains("unknown dataset format \"nonsense\""), "{err}");
}

#[test]
fn unknown_class_restriction_lists_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    mvtec_tree(dir.path());
    let index = read_mvtec(dir.path()).unwrap();
    let err = index
        .restrict_classes(&["screw".into()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("class \"screw\" is not in the dataset")
            && err.contains("(classes: bottle, capsule)"),
        "{err}"
    );
    assert_eq!(
        index
            .restrict_classes(&["capsule".into()])
            .unwrap()
            .samples
            .len(),
        2
    );
}
