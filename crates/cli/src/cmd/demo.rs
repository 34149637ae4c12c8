//! `vlad demo` (and `vlad` with no arguments, so `cargo run --release`): the end-to-end tour on the
//! synthetic benchmark.
//!
//! 1. writes the synthetic benchmark (six classes, MVTec layout, exact masks);
//! 2. takes a backbone: `--weights FILE` (a real CLIP), or else a tiny randomly initialised one,
//!    announced loudly, since its scores mean nothing about the methods;
//! 3. trains AA-CLIP and Bayes-PFL briefly on three *auxiliary* classes (the papers' protocol:
//!    train on one set of classes, test zero-shot on others);
//! 4. evaluates every detector (plain CLIP, WinCLIP, AA-CLIP, Bayes-PFL) zero-shot on the three
//!    held-out classes with the papers' metrics: per-detector tables, results JSON, ROC/PR/PRO plots;
//! 5. draws heat-map overlays of a few test images for every detector and a side-by-side montage;
//! 6. prints the comparison table and how to go on (real weights, real datasets, the page).
//!
//! Every step is the same code path as the corresponding `vlad` subcommand, whose command line is
//! printed before it runs, so the demo doubles as a guide to the CLI.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, FromArgMatches};
use vlad_clip::weights::{Entry, WriteOptions, write_burnpack};
use vlad_clip::ClipConfig;
use vlad_data::SeededRng;
use vlad_data::synth::{self, SynthClass, SynthConfig};
use vlad_imaging::RgbImage;

/// Marker file that says a folder was written by `vlad demo` (so a rerun may replace it).
const MARKER: &str = ".vlad-demo";
/// Classes the trainable detectors learn from (textures).
const AUXILIARY: &[&str] = &["weave", "wood", "marble"];
/// Classes every detector is evaluated on, zero-shot (objects).
const TARGET: &[&str] = &["washer", "pill", "bottle_cap"];

/// `vlad demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Output folder (replaced if an earlier demo wrote it; any other non-empty folder is refused).
    #[arg(long, default_value = "vlad-demo")]
    pub out: PathBuf,
    /// A real CLIP backbone (any file `vlad inspect` reads). Without it a tiny random backbone is used.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Architecture of `--weights` (taken from the file when omitted).
    #[arg(long)]
    pub arch: Option<String>,
    /// Compute backend: flex (CPU), wgpu, cuda.
    #[arg(long, default_value = "flex")]
    pub backend: String,
    /// Input side of every detector (default 128 for the random backbone; the architecture's own
    /// with `--weights`).
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Test images per synthetic class (a third normal); the train split gets as many normal ones.
    #[arg(long, default_value_t = 12)]
    pub per_class: usize,
    /// Training epochs of AA-CLIP's stage 2 and of Bayes-PFL (brief by design).
    #[arg(long, default_value_t = 2)]
    pub epochs: usize,
    /// Seed of the data, the random backbone and the training runs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl Default for DemoArgs {
    fn default() -> Self {
        Self::from_arg_matches(&Self::augment_args(clap::Command::new("demo").no_binary_name(true)).get_matches_from(Vec::<String>::new()))
            .expect("the defaults parse")
    }
}

/// The tiny random architecture: small enough for a 2-core CPU, with text width = embedding size
/// (Bayes-PFL adds flow samples to token embeddings) and four vision blocks (four tap levels).
fn random_config() -> ClipConfig {
    ClipConfig::from_json(
        r#"{"name": "demo-tiny-random", "source": "randomly initialised by vlad demo (no pretrained weights)",
            "embed_dim": 64, "activation": "quick_gelu",
            "vision": {"width": 64, "layers": 4, "heads": 2, "patch_size": 8, "image_size": 128},
            "text": {"width": 64, "layers": 2, "heads": 2, "context_length": 77, "vocab_size": 49408}}"#,
    )
    .expect("valid config")
}

/// OpenCLIP's initialisation, seeded, as canonical OpenAI-named tensors.
fn random_entries(config: &ClipConfig, seed: u64) -> BTreeMap<String, Entry> {
    let mut rng = SeededRng::derive(seed, "demo/random-backbone");
    vlad_clip::weights::random_entries(config, &mut || rng.normal())
}

fn loud_warning(lines: &[&str]) {
    let width = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0) + 4;
    let rule = "!".repeat(width + 2);
    eprintln!("\n{rule}");
    for line in lines {
        eprintln!("!! {line:<w$} !!", w = width - 4);
    }
    eprintln!("{rule}\n");
}

/// Prepares `out`: refuses a non-empty folder that an earlier demo did not write.
fn prepare_out(out: &Path) -> Result<()> {
    if out.exists() {
        let empty = std::fs::read_dir(out).with_context(|| format!("cannot read {}", out.display()))?.next().is_none();
        if !empty {
            if !out.join(MARKER).exists() {
                bail!("{} exists and was not written by `vlad demo`; choose another --out (nothing was changed)", out.display());
            }
            eprintln!("replacing the earlier demo output in {}", out.display());
            std::fs::remove_dir_all(out).with_context(|| format!("cannot remove {}", out.display()))?;
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    std::fs::write(out.join(MARKER), "written by `vlad demo`; a rerun replaces this folder\n")?;
    Ok(())
}

/// Parses `argv` into a subcommand's arguments (so the demo runs exactly what the CLI runs).
fn parse<A: Args + FromArgMatches>(name: &str, argv: &[String]) -> Result<A> {
    eprintln!("\n$ vlad {name} {}", argv.iter().map(|a| if a.contains(' ') { format!("'{a}'") } else { a.clone() }).collect::<Vec<_>>().join(" "));
    let matches = A::augment_args(clap::Command::new("vlad").no_binary_name(true)).try_get_matches_from(argv)?;
    Ok(A::from_arg_matches(&matches)?)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// A row of the comparison table, read back from a results JSON.
struct Row {
    detector: String,
    mean: serde_json::Value,
    deployable: Option<serde_json::Value>,
    seconds: f64,
}

fn read_row(detector: &str, json: &Path) -> Result<Row> {
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(json).with_context(|| format!("cannot read {}", json.display()))?)?;
    Ok(Row {
        detector: detector.to_string(),
        mean: doc["mean"].clone(),
        deployable: doc.get("deployable").filter(|d| !d.is_null()).map(|d| d["mean"].clone()),
        seconds: doc["timing"]["seconds"].as_f64().unwrap_or(f64::NAN),
    })
}

fn pct(v: &serde_json::Value, key: &str) -> String {
    v.get(key).and_then(serde_json::Value::as_f64).map_or("–".to_string(), |x| format!("{:.1}", 100.0 * x))
}

fn table(rows: &[Row]) -> String {
    let mut s = String::from("| detector | image AUROC | image AP | pixel AUROC | pixel AP | AUPRO | image AUROC (single-image score) | eval s |\n|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let deployable = r.deployable.as_ref().map_or("same".to_string(), |d| pct(d, "image_auroc"));
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} |\n",
            r.detector,
            pct(&r.mean, "image_auroc"),
            pct(&r.mean, "image_ap"),
            pct(&r.mean, "pixel_auroc"),
            pct(&r.mean, "pixel_ap"),
            pct(&r.mean, "aupro"),
            deployable,
            r.seconds
        );
    }
    s
}

/// Tiles images (all resized to `tile`×`tile`) into rows.
fn montage(rows: &[Vec<RgbImage>], tile: u32) -> RgbImage {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let gap = 4;
    let mut out = RgbImage::from_pixel(cols * (tile + gap) + gap, rows.len() as u32 * (tile + gap) + gap, image::Rgb([255, 255, 255]));
    for (r, row) in rows.iter().enumerate() {
        for (c, img) in row.iter().enumerate() {
            let img = vlad_imaging::resize_rgb(img, tile, tile, vlad_imaging::Filter::Bilinear);
            let (x0, y0) = (gap + c as u32 * (tile + gap), gap + r as u32 * (tile + gap));
            for (x, y, p) in img.enumerate_pixels() {
                out.put_pixel(x0 + x, y0 + y, *p);
            }
        }
    }
    out
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> Result<()> {
    let started = Instant::now();
    let out = args.out.clone();
    eprintln!("vlad demo: the end-to-end tour on the synthetic benchmark (output in {}/)", out.display());
    prepare_out(&out)?;

    // 1. Data.
    let data = out.join("data");
    let config = SynthConfig {
        classes: AUXILIARY.iter().chain(TARGET).map(|c| synth::parse_classes(c).map(|v| v[0])).collect::<Result<Vec<SynthClass>, _>>()?,
        per_class: args.per_class,
        seed: args.seed,
        size: 256,
    };
    eprintln!("\n[1/6] synthetic benchmark: {} classes × ({} test + {} train) images at 256 px → {}", config.classes.len(), args.per_class, args.per_class, data.display());
    eprintln!("      (synthetic data shows the pipeline; it is not a substitute for MVTec-AD or VisA)");
    synth::generate_to_dir(&config, &data, false)?;

    // 2. Backbone.
    let (weights, random) = match &args.weights {
        Some(w) => (w.clone(), false),
        None => {
            let config = random_config();
            let path = out.join("backbone-random-tiny.bpk");
            let mut metadata = BTreeMap::new();
            metadata.insert("vlad.clip_config".to_string(), config.to_json());
            metadata.insert("vlad.naming".to_string(), "openai".to_string());
            metadata.insert("vlad.source".to_string(), format!("vlad demo: random initialisation, seed {}", args.seed));
            write_burnpack(&random_entries(&config, args.seed), &path, &WriteOptions { f16: false, overwrite: true, metadata })?;
            (path, true)
        }
    };
    if random {
        loud_warning(&[
            "NO PRETRAINED WEIGHTS: this demo runs on a TINY, RANDOMLY INITIALISED CLIP",
            "(4 vision blocks of width 64, 2 text blocks; nothing was learned from images or text).",
            "Zero-shot detectors cannot work without pretrained vision-language alignment, so the",
            "numbers below show that the pipeline runs end to end, NOT how the methods perform.",
            "For real results: vlad demo --weights ViT-L-14-336.safetensors (see README.md).",
        ]);
    }
    eprintln!("[2/6] backbone: {}{}", weights.display(), if random { " (random, tiny)" } else { "" });
    let mut model = vec!["--weights".to_string(), path(&weights), "--backend".into(), args.backend.clone()];
    if let Some(arch) = &args.arch {
        model.extend(["--arch".to_string(), arch.clone()]);
    }
    let (native, vision_layers) = {
        let file = super::common::open_weights(&weights, None)?;
        let config = match (&args.arch, file.metadata.get("vlad.clip_config")) {
            (Some(a), _) => ClipConfig::preset(a)?,
            (None, Some(json)) => ClipConfig::from_json(json)?,
            (None, None) => {
                let (_, entries) = vlad_clip::weights::canonicalize(&file)?;
                vlad_clip::weights::infer_config(&entries).context("cannot tell the backbone's architecture; pass --arch")?
            }
        };
        (config.vision.image_size, config.vision.layers)
    };
    let size = args.image_size.unwrap_or(native);
    let taps: Vec<String> = (1..=4).map(|k| (k * vision_layers / 4).max(1).to_string()).collect();
    let taps = taps.join(",");

    // 3. Training.
    let aux = AUXILIARY.join(",");
    let target = TARGET.join(",");
    let runs = out.join("runs");
    eprintln!("\n[3/6] training AA-CLIP, Bayes-PFL, VAND, CLIP-AD SDP+, AnomalyCLIP and AdaCLIP on the auxiliary classes {aux} (their test split, as the official protocols)");
    let aa_dir = runs.join("aa-clip");
    let mut argv = model.clone();
    argv.extend(strings(&["--data", &path(&data), "--classes", &aux, "--out", &path(&aa_dir)]));
    argv.extend(strings(&["--text-epochs", "1", "--image-epochs", &args.epochs.to_string(), "--image-size", &size.to_string()]));
    argv.extend(strings(&["--text-batch-size", "8", "--image-batch-size", "4", "--seed", &args.seed.to_string(), "--calibration-images", "16"]));
    super::train::run(super::train::TrainCommand::AaClip(parse("train aa-clip", &argv)?))?;

    let pfl_dir = runs.join("bayes-pfl");
    let mut argv = model.clone();
    argv.extend(strings(&["--data", &path(&data), "--classes", &aux, "--out", &path(&pfl_dir)]));
    argv.extend(strings(&["--epochs", &(args.epochs + 1).to_string(), "--stage-one-epochs", &args.epochs.to_string(), "--batch-size", "8"]));
    argv.extend(strings(&["--image-size", &size.to_string(), "--taps", &taps, "--seed", &args.seed.to_string()]));
    super::train::run(super::train::TrainCommand::BayesPfl(parse("train bayes-pfl", &argv)?))?;
    let pfl_checkpoint = pfl_dir.join(format!("epoch_post_{}_2.bpk", args.epochs + 1));

    let vand_dir = runs.join("vand");
    let mut argv = model.clone();
    argv.extend(strings(&["--data", &path(&data), "--classes", &aux, "--out", &path(&vand_dir), "--epochs", &args.epochs.to_string()]));
    argv.extend(strings(&["--batch-size", "8", "--aug-rate", "0.2", "--image-size", &size.to_string(), "--taps", &taps, "--seed", &args.seed.to_string()]));
    super::train::run(super::train::TrainCommand::Vand(parse("train vand", &argv)?))?;
    let vand_checkpoint = vand_dir.join(format!("epoch_{}.safetensors", args.epochs));

    let clip_ad_dir = runs.join("clip-ad");
    let mut argv = model.clone();
    argv.extend(strings(&["--data", &path(&data), "--classes", &aux, "--out", &path(&clip_ad_dir), "--epochs", &args.epochs.to_string()]));
    argv.extend(strings(&["--batch-size", "8", "--lr", "1e-3", "--image-size", &size.to_string(), "--seed", &args.seed.to_string()]));
    super::train::run(super::train::TrainCommand::ClipAd(parse("train clip-ad", &argv)?))?;
    let clip_ad_checkpoint = clip_ad_dir.join(format!("epoch_{}.safetensors", args.epochs));

    let anomaly_clip_dir = runs.join("anomaly-clip");
    let mut argv = model.clone();
    argv.extend(strings(&["--data", &path(&data), "--classes", &aux, "--out", &path(&anomaly_clip_dir), "--epochs", &args.epochs.to_string()]));
    argv.extend(strings(&["--batch-size", "8", "--image-size", &size.to_string(), "--seed", &args.seed.to_string()]));
    super::train::run(super::train::TrainCommand::AnomalyClip(parse("train anomaly-clip", &argv)?))?;
    let anomaly_clip_checkpoint = anomaly_clip_dir.join(format!("epoch_{}.safetensors", args.epochs));

    let ada_clip_dir = runs.join("ada-clip");
    let mut argv = model.clone();
    argv.extend(strings(&["--data", &path(&data), "--classes", &aux, "--out", &path(&ada_clip_dir), "--epochs", &args.epochs.to_string()]));
    // AdaCLIP's mosaic takes four distinct images of a class (`random.sample`).
    let aug_rate = if args.per_class >= 4 { "0.2" } else { "0" };
    argv.extend(strings(&["--image-size", &size.to_string(), "--seed", &args.seed.to_string(), "--aug-rate", aug_rate]));
    super::train::run(super::train::TrainCommand::AdaClip(parse("train ada-clip", &argv)?))?;
    let ada_clip_checkpoint = ada_clip_dir.join(format!("epoch_{}.safetensors", args.epochs));

    // 4. Evaluation.
    eprintln!("\n[4/6] zero-shot evaluation of every detector on the held-out classes {target}");
    let results = out.join("results");
    let detectors: Vec<(&str, Vec<String>)> = vec![
        ("zero-shot", strings(&["--detector", "zero-shot", "--zs-image-size", &size.to_string()])),
        ("winclip", strings(&["--detector", "winclip"])),
        ("aa-clip", strings(&["--detector", "aa-clip", "--checkpoint", &path(&aa_dir), "--aa-image-size", &size.to_string()])),
        (
            "bayes-pfl",
            strings(&["--detector", "bayes-pfl", "--checkpoint", &path(&pfl_checkpoint), "--pfl-image-size", &size.to_string(), "--pfl-taps", &taps, "--pfl-samples", "4"]),
        ),
        ("vand", strings(&["--detector", "vand", "--checkpoint", &path(&vand_checkpoint)])),
        ("clip-ad", strings(&["--detector", "clip-ad", "--clip-ad-image-size", &size.to_string()])),
        ("clip-ad-plus", strings(&["--detector", "clip-ad-plus", "--checkpoint", &path(&clip_ad_checkpoint), "--clip-ad-image-size", &size.to_string()])),
        ("anomaly-clip", strings(&["--detector", "anomaly-clip", "--checkpoint", &path(&anomaly_clip_checkpoint)])),
        ("ada-clip", strings(&["--detector", "ada-clip", "--checkpoint", &path(&ada_clip_checkpoint)])),
    ];
    let mut rows = Vec::new();
    for (name, detector_args) in &detectors {
        let json = results.join(format!("{name}.json"));
        let mut argv = detector_args.clone();
        argv.extend(model.clone());
        argv.extend(strings(&["--data", &path(&data), "--classes", &target, "--out", &path(&json), "--plots", &path(&results.join(format!("{name}-plots")))]));
        super::eval::run(parse("eval", &argv)?)?;
        rows.push(read_row(name, &json)?);
    }

    // 5. Overlays.
    eprintln!("\n[5/6] heat-map overlays of anomalous test images");
    let overlays = out.join("overlays");
    let mut montage_rows = Vec::new();
    for class in TARGET {
        let test = data.join(class).join("test");
        let mut defects: Vec<PathBuf> = std::fs::read_dir(&test)?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir() && !p.ends_with("good")).collect();
        defects.sort();
        let Some(defect) = defects.first() else { continue };
        let mut images: Vec<PathBuf> = std::fs::read_dir(defect)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
        images.sort();
        let Some(image) = images.first() else { continue };
        let mut row = vec![vlad_imaging::open_rgb(image)?];
        let mask = data.join(class).join("ground_truth").join(defect.file_name().expect("a folder name")).join(format!(
            "{}_mask.png",
            image.file_stem().expect("a file name").to_string_lossy()
        ));
        if let Ok(m) = vlad_imaging::open_luma(&mask) {
            row.push(image::DynamicImage::ImageLuma8(m).to_rgb8());
        }
        for (name, detector_args) in &detectors {
            let dir = overlays.join(name);
            let mut argv = detector_args.clone();
            argv.extend(model.clone());
            argv.extend(strings(&["--class", class, "--image", &path(image), "--out-dir", &path(&dir), "--force"]));
            super::infer::run(parse("infer", &argv)?)?;
            let stem = image.file_stem().expect("a file name").to_string_lossy().to_string();
            if let Ok(img) = vlad_imaging::open_rgb(&dir.join(format!("{stem}.overlay.png"))) {
                row.push(img);
            }
        }
        montage_rows.push(row);
    }
    let montage_path = out.join("overlays.png");
    if !montage_rows.is_empty() {
        montage(&montage_rows, 192).save(&montage_path).with_context(|| format!("cannot write {}", montage_path.display()))?;
    }

    // 6. Summary.
    let summary = table(&rows);
    std::fs::write(out.join("results.md"), &summary)?;
    println!("\n## vlad demo: zero-shot on the synthetic classes {target} (trained on {aux})\n");
    if random {
        println!("**Random tiny backbone: these numbers only show that the pipeline runs.**\n");
    }
    println!("{summary}");
    println!("Per-class tables, results JSON and ROC/PR/PRO plots: {}/", results.display());
    println!("Overlays (rows: image, ground truth, {}): {}", detectors.iter().map(|d| d.0).collect::<Vec<_>>().join(", "), montage_path.display());
    println!(
        "Checkpoints: {}/ (AA-CLIP), {} (Bayes-PFL), {} (VAND), {} (CLIP-AD SDP+), {} (AnomalyCLIP) and {} (AdaCLIP)",
        aa_dir.display(),
        pfl_checkpoint.display(),
        vand_checkpoint.display(),
        clip_ad_checkpoint.display(),
        anomaly_clip_checkpoint.display(),
        ada_clip_checkpoint.display()
    );
    println!(
        "\nHow to go on (README.md has the details):\n\
         * real weights: download OpenAI ViT-L/14@336 (Hugging Face `openai/clip-vit-large-patch14-336`, model.safetensors), then\n    \
           vlad convert --weights model.safetensors --out vit-l-14-336.bpk --f16   and   vlad demo --weights vit-l-14-336.bpk\n\
         * real datasets: vlad eval --detector winclip --weights vit-b-16-plus-240.bpk --data /data/mvtec_anomaly_detection --out mvtec.json\n\
         * official checkpoints: vlad eval --detector bayes-pfl --weights vit-l-14-336.bpk --checkpoint train_visa.pth --data /data/mvtec …\n\
         * training: vlad train aa-clip --weights … --data /data/VisA --out runs/aa-clip   (and vlad train bayes-pfl|vand|clip-ad|anomaly-clip|ada-clip …)\n\
         * the released VAND layers: vlad eval --detector vand --weights vit-l-14-336.bpk --checkpoint exps/pretrained/visa_pretrained.pth --data /data/mvtec …\n\
         * the page (everything runs in the browser): vlad serve   then open http://127.0.0.1:8080\n\
         \ndemo finished in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
