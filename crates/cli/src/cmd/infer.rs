//! `vlad infer`: scores images with a training-free detector and writes, per image, a heat-map
//! overlay PNG, the raw anomaly map (`.npy`, f32 `[S, S]` at the detector's output resolution,
//! before any normalisation) and the scores. Folders are walked; an image that cannot be decoded is
//! reported and skipped. Normal reference images (`--shots`) become the few-shot memory of
//! detectors that have one (WinCLIP → WinCLIP+) and calibrate the scores to [0, 1]; a calibration
//! can be saved and loaded as JSON. Raw scores are always reported beside calibrated ones.
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use vlad_detect::calibration::ScoreCalibration;

use super::detector::{CalibrationFile, DetectorArgs, build_detector, detect_host, use_references};
use crate::npy;
use crate::overlay::{self, ColorScale};

/// File extensions read when walking folders.
const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "bmp", "tif", "tiff"];

/// `vlad infer`.
#[derive(clap::Args, Debug)]
pub struct InferArgs {
    #[command(flatten)]
    pub detector: DetectorArgs,
    /// Class or object name used in the prompts (e.g. `bottle`, `metal_nut`).
    #[arg(long, default_value = "object")]
    pub class: String,
    /// Images or folders (walked recursively for png, jpg, jpeg, bmp, tif and tiff files).
    #[arg(long, required = true, num_args = 1..)]
    pub image: Vec<PathBuf>,
    /// Normal reference images (a folder or one file): few-shot memory for detectors that have one
    /// (winclip becomes WinCLIP+) and the calibration of the scores.
    #[arg(long)]
    pub shots: Option<PathBuf>,
    /// Use only the first K reference images (sorted by path).
    #[arg(long, requires = "shots")]
    pub k_shot: Option<usize>,
    /// Calibration JSON to use (written by `--save-calibration`) instead of measuring one.
    #[arg(long)]
    pub calibration: Option<PathBuf>,
    /// Save the calibration measured on `--shots` as JSON.
    #[arg(long, requires = "shots")]
    pub save_calibration: Option<PathBuf>,
    /// Folder for the overlays and maps.
    #[arg(long, default_value = ".")]
    pub out_dir: PathBuf,
    /// Write the map of the (single) input image to this file instead of `<out-dir>/<name>.map.npy`.
    #[arg(long)]
    pub out_map: Option<PathBuf>,
    /// Do not write overlay PNGs.
    #[arg(long)]
    pub no_overlay: bool,
    /// Print the results as one JSON array on stdout.
    #[arg(long)]
    pub json: bool,
    /// Opacity of the heat map over the image.
    #[arg(long, default_value_t = 0.5)]
    pub alpha: f32,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Replace existing output files.
    #[arg(long)]
    pub force: bool,
}

/// One input image and the name its outputs are derived from.
#[derive(Debug, Clone, PartialEq)]
struct Input {
    path: PathBuf,
    name: String,
}

/// The result for one image.
#[derive(Debug, Serialize)]
struct ImageResult {
    image: String,
    /// Raw image score (higher = more anomalous).
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<f32>,
    /// Score mapped to [0, 1] by the calibration (0.5 = the most anomalous normal reference).
    #[serde(skip_serializing_if = "Option::is_none")]
    calibrated_score: Option<f32>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    components: BTreeMap<String, f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    map_min: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    map_max: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    map: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    overlay: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl ImageResult {
    fn failed(path: &Path, error: String) -> Self {
        Self {
            image: path.display().to_string(),
            score: None,
            calibrated_score: None,
            components: BTreeMap::new(),
            map_min: None,
            map_max: None,
            map: None,
            overlay: None,
            error: Some(error),
        }
    }
}

fn is_image(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Image files under `dir`, sorted.
fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))? {
            let path = entry.with_context(|| format!("cannot list {}", d.display()))?.path();
            if path.is_dir() {
                pending.push(path);
            } else if is_image(&path) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// `a/b/c.png` relative to its walked root → `a_b_c`; a file given directly → its stem.
fn output_name(path: &Path, root: Option<&Path>) -> String {
    let relative = root.and_then(|r| path.strip_prefix(r).ok()).unwrap_or_else(|| Path::new(path.file_name().unwrap_or_default()));
    let stem = relative.with_extension("");
    let name: String = stem.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("_");
    if name.is_empty() { "image".into() } else { name }
}

/// The inputs in order, with unique output names.
fn collect_inputs(paths: &[PathBuf]) -> Result<Vec<Input>> {
    let mut inputs = Vec::new();
    let mut used = HashSet::new();
    for p in paths {
        let files: Vec<(PathBuf, Option<&Path>)> = if p.is_dir() {
            walk(p)?.into_iter().map(|f| (f, Some(p.as_path()))).collect()
        } else if p.exists() {
            vec![(p.clone(), None)]
        } else {
            bail!("{}: no such file or folder", p.display());
        };
        for (path, root) in files {
            let base = output_name(&path, root);
            let mut name = base.clone();
            let mut n = 2;
            while !used.insert(name.clone()) {
                name = format!("{base}_{n}");
                n += 1;
            }
            inputs.push(Input { path, name });
        }
    }
    Ok(inputs)
}

/// Reference image files: a folder (walked) or one file, sorted, at most `k`.
fn reference_files(path: &Path, k: Option<usize>) -> Result<Vec<PathBuf>> {
    let mut files = if path.is_dir() {
        walk(path)?
    } else if path.exists() {
        vec![path.to_path_buf()]
    } else {
        bail!("--shots {}: no such file or folder", path.display());
    };
    if let Some(k) = k {
        if k == 0 {
            bail!("--k-shot must be at least 1");
        }
        if files.len() < k {
            bail!("--k-shot {k}: {} holds only {} image(s)", path.display(), files.len());
        }
        files.truncate(k);
    }
    if files.is_empty() {
        bail!("--shots {}: no images found", path.display());
    }
    Ok(files)
}

/// The colour scale of an overlay: the calibration's [0, 1] range in raw units, else the map's
/// own range.
fn color_scale(pixel: Option<&ScoreCalibration>, map: &[f32]) -> ColorScale {
    match pixel {
        Some(c) => {
            // The raw values that `ScoreCalibration::apply` sends to 0 and 1.
            let range = (c.high - c.low).max(f32::EPSILON * c.high.abs().max(1.0));
            ColorScale { lo: c.threshold - 0.5 * range, hi: c.threshold + 0.5 * range }
        }
        None => {
            let (lo, hi) = min_max(map);
            ColorScale { lo, hi }
        }
    }
}

fn min_max(values: &[f32]) -> (f32, f32) {
    values.iter().filter(|v| v.is_finite()).fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

/// Runs `vlad infer`.
pub fn run(args: InferArgs) -> Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let inputs = collect_inputs(&args.image)?;
    if inputs.is_empty() {
        bail!("no images found in {}", args.image.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "));
    }
    if args.out_map.is_some() && inputs.len() != 1 {
        bail!("--out-map takes one input image, got {}", inputs.len());
    }
    // Output paths, checked before any work is done.
    let map_path = |input: &Input| args.out_map.clone().unwrap_or_else(|| args.out_dir.join(format!("{}.map.npy", input.name)));
    let overlay_path = |input: &Input| args.out_dir.join(format!("{}.overlay.png", input.name));
    if !args.force {
        let mut existing: Vec<PathBuf> = inputs.iter().map(map_path).filter(|p| p.exists()).collect();
        if !args.no_overlay {
            existing.extend(inputs.iter().map(overlay_path).filter(|p| p.exists()));
        }
        if let Some(first) = existing.first() {
            bail!("{} output file(s) already exist, e.g. {} (pass --force to replace them)", existing.len(), first.display());
        }
    }
    std::fs::create_dir_all(&args.out_dir).with_context(|| format!("cannot create {}", args.out_dir.display()))?;

    let device = args.detector.model.device()?;
    let mut detector = build_detector(&args.detector, &device)?;
    detector.set_class(&args.class)?;
    let pre = detector.preprocess();

    let mut calibration = None;
    if let Some(shots) = &args.shots {
        let files = reference_files(shots, args.k_shot)?;
        let references =
            files.iter().map(|f| pre.load(f).with_context(|| format!("reference image {}", f.display()))).collect::<Result<Vec<_>>>()?;
        let outcome = use_references(detector.as_mut(), &args.class, &references, args.batch_size)?;
        if outcome.memory {
            eprintln!("{}: few-shot memory of {} reference image(s)", detector.name(), references.len());
        }
        if let Some(path) = &args.save_calibration {
            let Some(measured) = &outcome.calibration else {
                bail!("--save-calibration: no calibration could be measured on {}", shots.display())
            };
            measured.save(path, args.force)?;
            eprintln!("calibration saved to {}", path.display());
        }
        calibration = outcome.calibration;
    }
    if let Some(path) = &args.calibration {
        if calibration.is_some() {
            eprintln!("note: using the calibration in {}, not the one measured on --shots", path.display());
        }
        calibration = Some(CalibrationFile::load(path, detector.name(), &args.class)?);
    }
    let calibration = calibration.map(|c| c.calibration);

    let progress = ProgressBar::new(inputs.len() as u64);
    progress.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}").expect("valid template"));
    // Results in input order: (position, result).
    let mut results: Vec<(usize, ImageResult)> = Vec::with_capacity(inputs.len());
    for (chunk_index, chunk) in inputs.chunks(args.batch_size).enumerate() {
        // Decode; a file that is not a readable image is reported and skipped.
        let mut batch = Vec::new();
        for (offset, input) in chunk.iter().enumerate() {
            let position = chunk_index * args.batch_size + offset;
            match vlad_imaging::open_rgb(&input.path) {
                Ok(rgb) => {
                    let x = pre.to_chw(&rgb);
                    batch.push((position, input, rgb, x));
                }
                Err(e) => {
                    // The imaging error names the file.
                    progress.suspend(|| eprintln!("skipped: {e}"));
                    results.push((position, ImageResult::failed(&input.path, e.to_string())));
                    progress.inc(1);
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        let pixels: Vec<Vec<f32>> = batch.iter().map(|(_, _, _, x)| x.clone()).collect();
        let out = detect_host(detector.as_ref(), pre.batch(&pixels, &device)?)?;
        let area = out.side * out.side;
        for (i, &(position, input, ref rgb, _)) in batch.iter().enumerate() {
            let map = &out.maps[i * area..(i + 1) * area];
            let path = map_path(input);
            npy::write_f32(&path, &[out.side, out.side], map, args.force)?;
            let overlay = if args.no_overlay {
                None
            } else {
                let scale = color_scale(calibration.as_ref().map(|c| &c.pixel), map);
                let png = overlay_path(input);
                overlay::render(rgb, map, out.side, scale, args.alpha)
                    .save(&png)
                    .with_context(|| format!("cannot write {}", png.display()))?;
                Some(png.display().to_string())
            };
            let (map_min, map_max) = min_max(map);
            let score = out.scores[i];
            results.push((
                position,
                ImageResult {
                    image: input.path.display().to_string(),
                    score: Some(score),
                    calibrated_score: calibration.as_ref().map(|c| c.image.apply(score)),
                    components: out.components.iter().map(|(name, v)| (name.clone(), v[i])).collect(),
                    map_min: Some(map_min),
                    map_max: Some(map_max),
                    map: Some(path.display().to_string()),
                    overlay,
                    error: None,
                },
            ));
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    results.sort_by_key(|(position, _)| *position);
    let results: Vec<ImageResult> = results.into_iter().map(|(_, r)| r).collect();

    let skipped = results.iter().filter(|r| r.error.is_some()).count();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        for r in results.iter().filter(|r| r.error.is_none()) {
            let score = r.score.unwrap_or(f32::NAN);
            match r.calibrated_score {
                Some(c) => println!("{score:.6}  calibrated {c:.4}  {}", r.image),
                None => println!("{score:.6}  {}", r.image),
            }
        }
    }
    eprintln!(
        "scored {} image(s) with {}{}",
        results.len() - skipped,
        detector.name(),
        if skipped > 0 { format!(", skipped {skipped} unreadable") } else { String::new() }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_names_follow_the_input_paths_and_stay_unique() {
        let root = std::env::temp_dir().join(format!("vlad-infer-names-{}", std::process::id()));
        for sub in ["crack", "good"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
            std::fs::write(root.join(sub).join("000.png"), b"x").unwrap();
        }
        std::fs::write(root.join("notes.txt"), b"x").unwrap();
        let inputs = collect_inputs(&[root.clone(), root.join("good/000.png")]).unwrap();
        let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["crack_000", "good_000", "000"]);
        let again = collect_inputs(&[root.join("good/000.png"), root.join("crack/000.png")]).unwrap();
        assert_eq!(again.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["000", "000_2"]);
        assert!(collect_inputs(&[root.join("missing.png")]).unwrap_err().to_string().contains("missing.png"));
        assert_eq!(reference_files(&root, Some(1)).unwrap().len(), 1);
        assert!(reference_files(&root, Some(5)).unwrap_err().to_string().contains("only 2"));
        std::fs::remove_dir_all(root).ok();
    }

    /// End to end on the tiny random CLIP of the backbone fixtures (4×4 grid at 32 px): a folder
    /// with two images and a corrupt file, WinCLIP+ with two references, calibration saved and
    /// reloaded, no file overwritten without `--force`.
    #[test]
    fn infer_writes_maps_overlays_scores_and_skips_corrupt_images() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: InferArgs,
        }
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/clip");
        let root = std::env::temp_dir().join(format!("vlad-infer-e2e-{}", std::process::id()));
        let (images, shots, out) = (root.join("images"), root.join("shots"), root.join("out"));
        for d in [&images, &shots] {
            std::fs::create_dir_all(d).unwrap();
        }
        let png = fixtures.join("image.png");
        std::fs::copy(&png, images.join("a.png")).unwrap();
        std::fs::copy(&png, images.join("b.png")).unwrap();
        std::fs::write(images.join("broken.png"), b"not a png").unwrap();
        std::fs::copy(&png, shots.join("s1.png")).unwrap();
        std::fs::copy(&png, shots.join("s2.png")).unwrap();
        let weights = fixtures.join("tiny_openai.pt");
        let calibration = root.join("calibration.json");
        let base = |extra: &[&str]| {
            let mut argv =
                vec!["vlad", "--detector", "winclip", "--arch", "tiny", "--weights", weights.to_str().unwrap(), "--class", "bottle"];
            argv.extend_from_slice(&["--image", images.to_str().unwrap(), "--out-dir", out.to_str().unwrap()]);
            argv.extend_from_slice(extra);
            Cli::try_parse_from(argv).unwrap().args
        };
        run(base(&["--shots", shots.to_str().unwrap(), "--save-calibration", calibration.to_str().unwrap()])).unwrap();
        for name in ["a", "b"] {
            let (map, shape) = crate::cmd::metrics::read_f32(&out.join(format!("{name}.map.npy"))).unwrap();
            assert_eq!(shape, vec![32, 32]);
            assert!(map.iter().all(|v| v.is_finite()));
            let overlay = vlad_imaging::open_rgb(&out.join(format!("{name}.overlay.png"))).unwrap();
            assert!(overlay.width() > 53 && overlay.height() >= 37, "overlay keeps the 53×37 input and adds a legend");
        }
        assert!(!out.join("broken.map.npy").exists());
        let stored: CalibrationFile = serde_json::from_str(&std::fs::read_to_string(&calibration).unwrap()).unwrap();
        assert_eq!(
            (stored.detector.as_str(), stored.class.as_str(), stored.references, stored.leave_one_out),
            ("winclip", "bottle", 2, true)
        );
        // Existing outputs are kept unless --force; a stored calibration is checked against the run.
        let err = run(base(&[])).unwrap_err().to_string();
        assert!(err.contains("already exist"), "{err}");
        run(base(&["--force", "--calibration", calibration.to_str().unwrap()])).unwrap();
        let mut other = base(&["--force", "--calibration", calibration.to_str().unwrap()]);
        other.class = "cable".into();
        let err = run(other).unwrap_err().to_string();
        assert!(err.contains("`bottle`") && err.contains("`cable`"), "{err}");
        std::fs::remove_dir_all(root).ok();
    }

    #[test]
    fn calibrated_colour_scale_spans_the_calibrated_unit_range() {
        let c = ScoreCalibration { threshold: 0.4, low: 0.1, high: 0.4 };
        let s = color_scale(Some(&c), &[]);
        assert!((c.apply(s.lo) - 0.0).abs() < 1e-6 && (c.apply(s.hi) - 1.0).abs() < 1e-6);
        let s = color_scale(None, &[0.2, f32::NAN, -1.0, 3.0]);
        assert_eq!((s.lo, s.hi), (-1.0, 3.0));
    }
}
