//! `vlad`: the command-line front end. One module per subcommand under `cmd/`.
use clap::{Parser, Subcommand};

mod cmd;
mod npy;
mod overlay;
mod plot;

#[derive(Parser)]
#[command(name = "vlad", version, about = "Vision-language anomaly detection (AA-CLIP, Bayes-PFL and baselines) in Rust")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
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
