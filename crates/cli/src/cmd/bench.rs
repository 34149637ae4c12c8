//! `vlad bench`: timings and memory of the heavy paths, for comparison with the Python references
//! (`tools/bench/`). Results are reported, never asserted.
use std::time::Instant;

use anyhow::Result;
use burn::tensor::{Distribution, Tensor};
use vlad_clip::{Activation, Backend, ClipConfig, ClipModel, VisionForward, device_for};

/// What to benchmark.
#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// The vision tower on one batch of random pixels.
    EncodeImage(EncodeImageBench),
    /// Bayes-PFL's time per image against R, the Monte-Carlo samples (random full-size model).
    #[command(name = "bayes-pfl")]
    BayesPfl(BayesPflBench),
}

/// `vlad bench bayes-pfl`.
#[derive(clap::Args, Debug)]
pub struct BayesPflBench {
    /// Backbone architecture (random weights; the released heads use ViT-L-14-336).
    #[arg(long, default_value = "ViT-L-14-336")]
    pub arch: String,
    /// Input side (official 518).
    #[arg(long, default_value_t = 518)]
    pub image_size: usize,
    /// Values of R to time.
    #[arg(long, default_value = "1,5,10,20")]
    pub samples: String,
    /// 1-based taps (default: the quarters of the vision depth, 6,12,18,24 for ViT-L).
    #[arg(long)]
    pub taps: Option<String>,
    /// Backend: flex, wgpu, cuda.
    #[arg(long, default_value = "flex")]
    pub backend: String,
    /// Timed images per R (after one warm-up image).
    #[arg(long, default_value_t = 2)]
    pub runs: usize,
    /// Print JSON lines instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `vlad bench encode-image`.
#[derive(clap::Args, Debug)]
pub struct EncodeImageBench {
    /// Architecture.
    #[arg(long)]
    pub arch: String,
    /// Input side (default: native). Off-native sizes resize the positional grid (rule A).
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Backend: flex, wgpu, cuda.
    #[arg(long, default_value = "flex")]
    pub backend: String,
    /// Batch size.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Timed runs (after one warm-up run).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Activation (`quick` or `exact`); the cost is the same, the setting is for completeness.
    #[arg(long)]
    pub gelu: Option<String>,
    /// Taps to read as well (e.g. `6,12,18,24`), as the detectors do.
    #[arg(long)]
    pub taps: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Peak resident memory of this process (Linux `VmHWM`), in bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Runs the benchmark.
pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::EncodeImage(args) => encode_image(args),
        BenchCommand::BayesPfl(args) => bayes_pfl(args),
    }
}

fn encode_image(args: EncodeImageBench) -> Result<()> {
    let backend = Backend::parse(&args.backend)?;
    let device = device_for(backend)?;
    let mut config = ClipConfig::preset(&args.arch)?;
    if let Some(g) = &args.gelu {
        config = config.with_activation(Activation::parse(g)?);
    }
    let size = args.image_size.unwrap_or(config.vision.image_size);
    let taps = args.taps.as_deref().map(|t| super::common::parse_list(t, "--taps")).transpose()?.unwrap_or_default();
    let model = ClipModel::new(&config, &device);
    let x = Tensor::<4>::random([args.batch, 3, size, size], Distribution::Normal(0.0, 1.0), &device);
    let run_once = || -> Result<f64> {
        let start = Instant::now();
        let out = model.visual.forward(x.clone(), VisionForward { taps: &taps, ..Default::default() })?;
        let emb = model.visual.pool(out.last);
        // Reading back forces the whole computation (asynchronous backends included).
        let _ = emb.into_data();
        for t in out.taps {
            let _ = t.into_data();
        }
        Ok(start.elapsed().as_secs_f64())
    };
    let warmup = run_once()?;
    let mut times = (0..args.runs.max(1)).map(|_| run_once()).collect::<Result<Vec<_>>>()?;
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let peak = peak_rss();
    // Device pools (GPU backends): bytes reserved after the runs, an upper bound of what the model needed.
    let device_reserved = device.memory_pool_usage().map(|u| u.bytes_reserved);
    let grid = size / config.vision.patch_size;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "arch": config.name, "image_size": size, "grid": grid, "backend": backend.name(), "batch": args.batch,
                "runs": times.len(), "warmup_s": warmup, "median_s": median, "min_s": times[0], "max_s": times[times.len() - 1],
                "peak_rss_bytes": peak, "device_reserved_bytes": device_reserved, "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            })
        );
    } else {
        println!(
            "{} at {size} px (grid {grid}, {} tokens), batch {}, {}: median {:.1} ms over {} runs (min {:.1}, max {:.1}; warm-up {:.1} ms); peak RSS {}{}",
            config.name,
            grid * grid + 1,
            args.batch,
            backend.name(),
            median * 1e3,
            times.len(),
            times[0] * 1e3,
            times[times.len() - 1] * 1e3,
            warmup * 1e3,
            peak.map_or("n/a".into(), |b| format!("{:.0} MB", b as f64 / 1e6)),
            device_reserved.map_or(String::new(), |b| format!(", device pool {:.0} MB", b as f64 / 1e6))
        );
    }
    Ok(())
}

fn bayes_pfl(args: BayesPflBench) -> Result<()> {
    use vlad_detect::Detector;
    use vlad_detect::bayes_pfl::checkpoint::as_weight_file;
    use vlad_detect::bayes_pfl::train::init::official_head;
    use vlad_detect::bayes_pfl::{BayesPfl, BayesPflOptions, HeadConfig, NoiseMode, Stage, StageChoice, load_checkpoint};

    let backend = Backend::parse(&args.backend)?;
    let device = device_for(backend)?;
    let config = ClipConfig::preset(&args.arch)?.with_activation(Activation::Gelu);
    let layers = config.vision.layers;
    let taps = match &args.taps {
        Some(t) => super::common::parse_list(t, "--taps")?,
        None => (1..=4).map(|k| (k * layers / 4).max(1)).collect(),
    };
    let samples = super::common::parse_list(&args.samples, "--samples")?;
    let head_config = HeadConfig { layers: taps.len(), ..HeadConfig::official(config.vision.width, config.text.width) };
    let (head, dead) = official_head(&head_config, 333, &device)?;
    let file = as_weight_file(&head, &dead, "random head")?;
    let model = ClipModel::new(&config, &device);
    let x = Tensor::<4>::random([1, 3, args.image_size, args.image_size], Distribution::Normal(0.0, 1.0), &device);
    let mut baseline = None;
    for &r in &samples {
        let checkpoint = load_checkpoint(&file, &device, StageChoice::Fixed(Stage::Two), false)?;
        let options = BayesPflOptions { taps: taps.clone(), image_size: args.image_size, samples: r, noise: NoiseMode::Sample { seed: 333 }, ..BayesPflOptions::default() };
        let mut detector = BayesPfl::from_checkpoint(model.clone(), checkpoint, options)?;
        detector.set_class("bottle")?;
        let run_once = || -> Result<f64> {
            let start = Instant::now();
            let out = detector.detect(x.clone())?;
            let _ = out.image_score.into_data();
            let _ = out.map.into_data();
            Ok(start.elapsed().as_secs_f64())
        };
        let warmup = run_once()?;
        let mut times = (0..args.runs.max(1)).map(|_| run_once()).collect::<Result<Vec<_>>>()?;
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let ratio = median / *baseline.get_or_insert(median);
        if args.json {
            println!(
                "{}",
                serde_json::json!({"arch": config.name, "image_size": args.image_size, "samples": r, "backend": backend.name(), "median_s": median, "warmup_s": warmup, "ratio_to_first": ratio, "peak_rss_bytes": peak_rss()})
            );
        } else {
            println!(
                "Bayes-PFL {} at {} px, R = {r:>2} ({} text sequences), {}: {:.2} s per image (median of {}; {:.2}× the first R), peak RSS {}",
                config.name,
                args.image_size,
                2 * head_config.prompt_num * r,
                backend.name(),
                median,
                times.len(),
                ratio,
                peak_rss().map_or("n/a".into(), |b| format!("{:.0} MB", b as f64 / 1e6))
            );
        }
    }
    Ok(())
}
