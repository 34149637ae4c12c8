//! Seed corpora: the committed fixtures (valid files of every format variant the parity tests
//! cover, and the hostile ones of tests/fixtures/hostile) plus small files generated here.

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};
use std::path::PathBuf;

use vlad_clip::weights::{Entry, WriteOptions, burnpack_bytes};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// Files of `dir` (under tests/fixtures) whose names end with one of `exts`, at most 64 KB each.
fn files(dir: &str, exts: &[&str]) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixtures().join(dir))
        .unwrap_or_else(|e| panic!("tests/fixtures/{dir}: {e}"))
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.is_file() && exts.iter().any(|x| p.to_string_lossy().ends_with(x)))
        .collect();
    paths.sort();
    paths.into_iter().filter_map(|p| std::fs::read(p).ok()).filter(|b| b.len() <= 64 << 10).collect()
}

pub fn images() -> Vec<Vec<u8>> {
    let mut seeds = files("imaging/decode", &[".png", ".jpg", ".tif", ".bmp"]);
    seeds.extend(files("hostile", &[".png", ".jpg", ".tiff", ".bmp"]));
    seeds
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub fn safetensors() -> Vec<Vec<u8>> {
    use safetensors::Dtype;
    use safetensors::tensor::TensorView;
    let a = f32_bytes(&[1.0, -2.0, 3.5, 0.25, 5.0, 6.0]);
    let h: Vec<u8> = [0x3c00u16, 0xc000, 0x3800, 0x0001].iter().flat_map(|v| v.to_le_bytes()).collect();
    let d: Vec<u8> = [1.5f64, -0.5].iter().flat_map(|v| v.to_le_bytes()).collect();
    let i: Vec<u8> = [7i64, -1].iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut seeds = vec![
        safetensors::serialize([("w", TensorView::new(Dtype::F32, vec![2, 3], &a).unwrap())], None).unwrap(),
        safetensors::serialize(
            [
                ("visual.proj", TensorView::new(Dtype::F32, vec![3, 2], &a).unwrap()),
                ("half", TensorView::new(Dtype::F16, vec![4], &h).unwrap()),
                ("bf", TensorView::new(Dtype::BF16, vec![2, 2], &h).unwrap()),
                ("double", TensorView::new(Dtype::F64, vec![2], &d).unwrap()),
                ("ids", TensorView::new(Dtype::I64, vec![2], &i).unwrap()),
                ("scalar", TensorView::new(Dtype::F32, vec![], &a[..4]).unwrap()),
            ],
            None,
        )
        .unwrap(),
    ];
    seeds.extend(files("hostile", &[".safetensors"]));
    seeds
}

/// A PyTorch zip archive (`archive/` prefix, stored entries, as torch.save writes) around a pickle.
pub fn torch_zip(pickle: &[u8], storages: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut add = |name: &str, data: &[u8]| {
        zip.start_file(name, stored).unwrap();
        zip.write_all(data).unwrap();
    };
    add("archive/data.pkl", pickle);
    add("archive/byteorder", b"little");
    for (key, data) in storages {
        add(&format!("archive/data/{key}"), data);
    }
    add("archive/version", b"3\n");
    zip.finish().unwrap().into_inner()
}

pub fn pytorch_zips() -> Vec<Vec<u8>> {
    let mut seeds = files("torch_zip", &[".pth"]);
    seeds.extend(files("aa_clip", &["text_adapter.pth", "image_adapter.pth"]));
    seeds.extend(files("hostile", &[".pth"]));
    seeds
}

/// The `data.pkl` of every PyTorch seed (the pickle target wraps its input in a fresh archive).
pub fn pickles() -> Vec<Vec<u8>> {
    pytorch_zips()
        .iter()
        .filter_map(|z| {
            let mut archive = zip::ZipArchive::new(Cursor::new(z)).ok()?;
            let name = archive.file_names().filter_map(Result::ok).find(|n| n.ends_with("data.pkl"))?.to_string();
            let mut out = Vec::new();
            archive.by_name(&name).ok()?.read_to_end(&mut out).ok()?;
            Some(out)
        })
        .collect()
}

pub fn burnpacks() -> Vec<Vec<u8>> {
    let mut entries = BTreeMap::new();
    entries.insert("visual.proj".to_string(), Entry::from_values(vec![2, 3], vec![1.0, -2.0, 3.5, 0.25, 5.0, 6.0]));
    entries.insert("logit_scale".to_string(), Entry::from_values(vec![], vec![4.6]));
    let mut metadata = BTreeMap::new();
    metadata.insert("architecture".to_string(), "ViT-B-16".to_string());
    [false, true]
        .into_iter()
        .map(|f16| burnpack_bytes(&entries, &WriteOptions { f16, overwrite: false, metadata: metadata.clone() }).unwrap())
        .collect()
}

fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    header.push_str(&" ".repeat((64 - (10 + header.len() + 1) % 64) % 64));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

pub fn npys() -> Vec<Vec<u8>> {
    let mut seeds = files("imaging/src", &[".npy"]);
    seeds.push(npy("<f4", "(2, 2)", &f32_bytes(&[0.1, 0.9, 0.5, 0.0])));
    seeds.push(npy("|b1", "(4,)", &[0, 1, 1, 0]));
    seeds.push(npy("|u1", "(1, 2, 2)", &[0, 255, 1, 0]));
    seeds.extend(files("hostile", &[".npy"]));
    seeds
}

pub fn meta_jsons() -> Vec<Vec<u8>> {
    let mut seeds = files("eval/synth", &["meta.json"]);
    seeds.push(
        br#"{"train": {"bottle": [{"img_path": "bottle/train/good/000.png", "mask_path": "", "cls_name": "bottle", "specie_name": "good", "anomaly": 0}]},
 "test": {"bottle": [{"img_path": "bottle/test/broken/000.png", "mask_path": "bottle/ground_truth/broken/000_mask.png", "cls_name": "bottle", "specie_name": "broken", "anomaly": 1}, {"img_path": "b.png", "anomaly": false}]}}"#
            .to_vec(),
    );
    seeds
}

pub fn jsonls() -> Vec<Vec<u8>> {
    vec![
        br#"{"image_path": "bottle/test/broken/000.png", "mask_path": "bottle/ground_truth/broken/000_mask.png", "class_name": "bottle", "label": 1}
{"image_path": "bottle/test/good/000.png", "mask_path": "", "class_name": "bottle", "label": 0}

{"image_path": "x.png", "class_name": "c", "label": true, "extra": [1, 2, {"a": null}]}
"#
        .to_vec(),
    ]
}

pub fn visa_csvs() -> Vec<Vec<u8>> {
    vec![
        b"object,split,label,image,mask\n\
          candle,train,normal,candle/Data/Images/Normal/0000.JPG,\n\
          candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,candle/Data/Masks/Anomaly/000.png\n\
          pcb1,test,normal,pcb1/Data/Images/Normal/0001.JPG,\n"
            .to_vec(),
        b"split,object,image,mask,label\r\ntest,\"fryum\",\"fryum/a,b.JPG\",fryum/m.png,anomaly\r\n".to_vec(),
    ]
}
