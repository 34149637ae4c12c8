//! `vlad`: the command-line front end. One module per subcommand under `cmd/`.
use clap::{Parser, Subcommand};

mod cmd;
mod npy;
mod overlay;
mod plot;

#[derive(Parser)]
#[command(name = "vlad", version, about = "Vision-language anomaly detection (AA-CLIP, Bayes-PFL and baselines) in Rust")]
struct Cli {
    /// Refuse images with more pixels than this (0: no limit). Pillow's rule: warn above
    /// 89,478,485 pixels, refuse above twice that, the default here.
    #[arg(long, global = true, value_name = "N")]
    max_image_pixels: Option<u64>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
// Parsed once at start-up: the size of the larger argument structs does not matter.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Tokenize texts with the CLIP BPE tokenizer (prints a JSON array of id arrays).
    Tokenize(cmd::clip::TokenizeArgs),
    /// Preprocess an image exactly like the Python pipelines and write it as .npy.
    Preprocess(cmd::clip::PreprocessArgs),
    /// Encode an image with a CLIP backbone (embedding and optional block taps as .npy).
    EncodeImage(cmd::clip::EncodeImageArgs),
    /// Encode texts with a CLIP backbone (.npy).
    EncodeText(cmd::clip::EncodeTextArgs),
    /// Convert weights (safetensors / PyTorch / HF names) to burnpack.
    Convert(cmd::clip::ConvertArgs),
    /// List the tensors, format, naming and architecture of a weight file.
    Inspect(cmd::clip::InspectArgs),
    /// Time the heavy paths (reported, never asserted).
    #[command(subcommand)]
    Bench(cmd::bench::BenchCommand),
    /// Compute the papers' metrics from score/label/map/mask .npy files.
    Metrics(cmd::metrics::MetricsArgs),
    /// Build (if needed) and serve the demo page on localhost.
    Serve(cmd::serve::ServeArgs),
    /// Dataset utilities (synthetic benchmark, listing, k-shot sampling).
    Data(cmd::data::DataArgs),
    /// Score images with a detector: heat-map overlays, raw maps (.npy) and scores.
    Infer(cmd::infer::InferArgs),
    /// Evaluate a detector on a dataset: per-class metrics table, curves, maps, results JSON.
    Eval(cmd::eval::EvalArgs),
    /// Train AA-CLIP or Bayes-PFL on an auxiliary dataset.
    #[command(subcommand)]
    Train(cmd::train::TrainCommand),
    /// The end-to-end demo on the synthetic benchmark (what `cargo run --release` runs).
    Demo(cmd::demo::DemoArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Some(n) = cli.max_image_pixels {
        // Pillow's `Image.MAX_IMAGE_PIXELS = N` (None for 0): warn above N, refuse above 2N.
        vlad_imaging::set_max_image_pixels((n > 0).then_some(n));
    }
    match run(cli.command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            if backtrace_requested() {
                eprintln!("{}", err.backtrace());
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error chain on one line, outermost first, each cause once: a context that already
/// quotes its cause (`format!("{path}: {err}")` wrapped again by `.context`) is not repeated.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        let text = text.trim();
        if text.is_empty() || line.contains(text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(text);
    }
    line.replace('\n', " ")
}

fn backtrace_requested() -> bool {
    std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0")
}

fn run(command: Option<Command>) -> anyhow::Result<()> {
    match command {
        Some(Command::Tokenize(args)) => cmd::clip::tokenize(args),
        Some(Command::Preprocess(args)) => cmd::clip::preprocess(args),
        Some(Command::EncodeImage(args)) => cmd::clip::encode_image(args),
        Some(Command::EncodeText(args)) => cmd::clip::encode_text(args),
        Some(Command::Convert(args)) => cmd::clip::convert(args),
        Some(Command::Inspect(args)) => cmd::clip::inspect(args),
        Some(Command::Bench(cmd)) => cmd::bench::run(cmd),
        Some(Command::Metrics(args)) => cmd::metrics::run(args),
        Some(Command::Data(args)) => cmd::data::run(args),
        Some(Command::Serve(args)) => cmd::serve::run(args),
        Some(Command::Infer(args)) => cmd::infer::run(args),
        Some(Command::Eval(args)) => cmd::eval::run(args),
        Some(Command::Train(command)) => cmd::train::run(command),
        Some(Command::Demo(args)) => cmd::demo::run(args),
        None => cmd::demo::run(cmd::demo::DemoArgs::default()),
    }
}
