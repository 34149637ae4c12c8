//! Times the pixel metrics of one class on `.npy` inputs and prints one JSON object (the Rust side of
//! `tools/bench/metrics_vs_sklearn.py`).
//!
//! ```text
//! cargo run --release -p vlad-metrics --example bench_pixels -- MAPS.npy MASKS.npy [anomalib,anomalib-legacy,clip-ad]
//! ```
//! MAPS: float32 `[N, H, W]`; MASKS: uint8 or bool `[N, H, W]`.

use std::fs::File;
use std::io::BufReader;
use std::time::Instant;

use npyz::{DType, NpyFile, TypeChar};
use vlad_metrics::{MapShape, PixelEvaluator, ProConvention};

fn read(path: &str) -> NpyFile<BufReader<File>> {
    let file = File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    NpyFile::new(BufReader::new(file)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: bench_pixels MAPS.npy MASKS.npy [anomalib,anomalib-legacy,clip-ad]");
        std::process::exit(2);
    }
    let conventions: Vec<ProConvention> = args
        .get(2)
        .map(String::as_str)
        .unwrap_or("anomalib")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| match s {
            "anomalib" => ProConvention::Anomalib,
            "anomalib-legacy" => ProConvention::AnomalibLegacy,
            "clip-ad" => ProConvention::ClipAd,
            other => panic!("unknown convention {other}"),
        })
        .collect();

    let start = Instant::now();
    let maps_npy = read(&args[0]);
    let shape = maps_npy.shape().to_vec();
    assert_eq!(shape.len(), 3, "maps must be [N, H, W]");
    let maps: Vec<f32> = maps_npy.into_vec().expect("maps must be float32");
    let masks_npy = read(&args[1]);
    let masks: Vec<u8> = match masks_npy.dtype() {
        DType::Plain(t) if t.type_char() == TypeChar::Bool => {
            masks_npy.into_vec::<bool>().unwrap().into_iter().map(u8::from).collect()
        }
        _ => masks_npy.into_vec().expect("masks must be uint8 or bool"),
    };
    let load_s = start.elapsed().as_secs_f64();
    let shape = MapShape::new(shape[0] as usize, shape[1] as usize, shape[2] as usize);

    let t = Instant::now();
    let evaluator = PixelEvaluator::new(&maps, &masks, shape).unwrap();
    let sort_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let binary = evaluator.binary_metrics();
    let binary_s = t.elapsed().as_secs_f64();

    let mut aupro = serde_json::Map::new();
    for convention in conventions {
        let t = Instant::now();
        let (value, regions) = evaluator.aupro(convention);
        aupro.insert(
            convention.name().to_string(),
            serde_json::json!({ "value": value, "regions": regions, "seconds": t.elapsed().as_secs_f64() }),
        );
    }
    let report = serde_json::json!({
        "pixels": maps.len(),
        "threads": rayon::current_num_threads(),
        "load_seconds": load_s,
        "sort_seconds": sort_s,
        "binary_seconds": binary_s,
        "pixel_auroc": binary.auroc,
        "pixel_ap": binary.average_precision,
        "pixel_f1_max": binary.f1_max.map(|f| f.f1),
        "aupro": aupro,
    });
    println!("{report}");
}
