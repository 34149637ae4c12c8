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
