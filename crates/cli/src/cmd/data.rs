//! `vlad data …`: the synthetic benchmark, dataset listing and k-shot sampling (crate `vlad-data`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::bail;
use serde_json::json;
use vlad_data::synth::{self, SynthConfig};
use vlad_data::{DatasetIndex, Replacement, Split};

/// Arguments of `vlad data`.
#[derive(clap::Args, Debug)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(clap::Subcommand, Debug)]
enum DataCommand {
    /// Write the synthetic benchmark (MVTec layout, exact masks). Synthetic: not a substitute for MVTec-AD/VisA.
    Synth(SynthArgs),
    /// Index a dataset and print per-class counts, defect types and problems found.
    List(ListArgs),
    /// Draw a seeded k-shot set and print the chosen files as JSON (or AA-CLIP JSON Lines).
    Kshot(KshotArgs),
}

#[derive(clap::Args, Debug)]
struct SynthArgs {
    /// Output folder (created; must be empty unless --force).
    #[arg(long)]
    out: PathBuf,
    /// Comma-separated classes (weave, wood, marble, washer, pill, bottle_cap); default all.
    #[arg(long, value_delimiter = ',')]
    classes: Option<Vec<String>>,
    /// Test images per class (a third normal, the rest spread over the defect types); the train split gets as many
    /// normal images.
    #[arg(long, default_value_t = 30)]
    per_class: usize,
    /// Seed; the same seed and options give byte-identical files.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Image side in pixels.
    #[arg(long, default_value_t = 256)]
    size: u32,
    /// Write into a non-empty folder, replacing files with the same names.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args, Debug)]
struct ListArgs {
    #[command(flatten)]
    dataset: super::common::DatasetArgs,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// How many problems to print (all with --json).
    #[arg(long, default_value_t = 20)]
    max_problems: usize,
    /// Also decode every image and mask (in parallel) and report the files that fail.
    #[arg(long)]
    check: bool,
}

#[derive(clap::Args, Debug)]
struct KshotArgs {
    #[command(flatten)]
    dataset: super::common::DatasetArgs,
    /// Shots: AA-CLIP mode takes k/2 normal + k/2 anomalous per class (k even); reference mode k normal images.
    #[arg(long)]
    k: usize,
    /// Seed (ChaCha8; one stream per class, so a class's picks do not depend on the others).
    #[arg(long)]
    seed: u64,
    /// aa-clip (training subset of the auxiliary dataset) or reference (WinCLIP+/VAND few-shot normal images
    /// from the train split).
    #[arg(long, default_value = "aa-clip")]
    mode: String,
    /// Split to draw AA-CLIP subsets from (AA-CLIP trains on the auxiliary dataset's test split).
    #[arg(long, default_value = "test")]
    split: String,
    /// Reference mode: draw with replacement, as VAND's torch.randint does.
    #[arg(long)]
    with_replacement: bool,
    /// Only these classes (comma-separated).
    #[arg(long, value_delimiter = ',')]
    classes: Option<Vec<String>>,
    /// Print AA-CLIP JSON Lines (`<k>-shot.jsonl` format) instead of JSON.
    #[arg(long)]
    jsonl: bool,
}

/// Run `vlad data …`.
pub fn run(args: DataArgs) -> anyhow::Result<()> {
    match args.command {
        DataCommand::Synth(a) => run_synth(a),
        DataCommand::List(a) => run_list(a),
        DataCommand::Kshot(a) => run_kshot(a),
    }
}

fn run_synth(a: SynthArgs) -> anyhow::Result<()> {
    let classes = match &a.classes {
        Some(list) => synth::parse_classes(&list.join(","))?,
        None => synth::SynthClass::ALL.to_vec(),
    };
    let config = SynthConfig {
        classes,
        per_class: a.per_class,
        seed: a.seed,
        size: a.size,
    };
    let start = Instant::now();
    let dataset = synth::generate_to_dir(&config, &a.out, a.force)?;
    let anomalous = dataset
        .samples
        .iter()
        .filter(|s| s.defect.is_some())
        .count();
    println!(
        "wrote {} images ({} anomalous, with exact masks) for {} classes to {} in {:.1} s",
        dataset.samples.len(),
        anomalous,
        config.classes.len(),
        a.out.display(),
        start.elapsed().as_secs_f64()
    );
    println!(
        "synthetic data for demos and tests only: not a substitute for MVTec-AD or VisA (see README.md there)"
    );
    Ok(())
}

fn run_list(a: ListArgs) -> anyhow::Result<()> {
    let mut index = a.dataset.open()?;
    if a.check {
        let results = vlad_data::load_all(&index.samples, &vlad_data::LoadOptions::default());
        let failures: Vec<vlad_data::Problem> = index
            .samples
            .iter()
            .zip(results)
            .filter_map(|(s, r)| {
                r.err().map(|e| vlad_data::Problem {
                    class_name: s.class_name.clone(),
                    path: s.image_path.clone(),
                    message: format!("does not load: {e}"),
                })
            })
            .collect();
        index.problems.extend(failures);
    }
    let summary = index.summary();
    if a.json {
        let classes: Vec<_> = summary
            .iter()
            .map(|(c, s)| json!({"class": c, "summary": s}))
            .collect();
        let problems: Vec<_> = index
            .problems
            .iter()
            .map(|p| json!({"class": p.class_name, "path": p.path, "message": p.message}))
            .collect();
        let out = json!({
            "root": index.root,
            "format": index.format,
            "images": index.samples.len(),
            "classes": classes,
            "problems": problems,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{} ({} format): {} images, {} classes",
        index.root.display(),
        index.format,
        index.samples.len(),
        summary.len()
    );
    println!(
        "{:<24} {:>13} {:>13} {:>9}  defect types",
        "class", "train n/a", "test n/a", "problems"
    );
    let get = |m: &std::collections::BTreeMap<Split, usize>, s| m.get(&s).copied().unwrap_or(0);
    for (class, s) in &summary {
        let defects: Vec<String> = s
            .defect_types
            .iter()
            .map(|(d, n)| format!("{d} ({n})"))
            .collect();
        println!(
            "{:<24} {:>13} {:>13} {:>9}  {}",
            class,
            format!(
                "{}/{}",
                get(&s.normal, Split::Train),
                get(&s.anomalous, Split::Train)
            ),
            format!(
                "{}/{}",
                get(&s.normal, Split::Test),
                get(&s.anomalous, Split::Test)
            ),
            s.problems,
            defects.join(", ")
        );
        if s.anomalous_without_mask > 0 {
            println!(
                "{:<24} {} anomalous images have no mask (classification only)",
                "", s.anomalous_without_mask
            );
        }
    }
    if !index.problems.is_empty() {
        println!("\n{} problems:", index.problems.len());
        for p in index.problems.iter().take(a.max_problems) {
            println!("  {p}");
        }
        if index.problems.len() > a.max_problems {
            println!(
                "  … {} more (use --json to see all)",
                index.problems.len() - a.max_problems
            );
        }
    }
    Ok(())
}

fn rel(index: &DatasetIndex, p: &Path) -> String {
    index.relative(p).to_string_lossy().replace('\\', "/")
}

fn run_kshot(a: KshotArgs) -> anyhow::Result<()> {
    let mut index = a.dataset.open()?;
    if let Some(classes) = &a.classes {
        index = index.restrict_classes(classes)?;
    }
    let split: Split = a.split.parse()?;
    let shots = match a.mode.as_str() {
        "aa-clip" => vlad_data::aa_clip_kshot(&index, a.k, a.seed, split)?,
        "reference" => {
            let replacement = if a.with_replacement {
                Replacement::With
            } else {
                Replacement::Without
            };
            index
                .classes()
                .iter()
                .map(|c| {
                    vlad_data::reference_shots(&index, c, a.k, a.seed, replacement).map(|normal| {
                        vlad_data::ClassShots {
                            class_name: c.clone(),
                            normal,
                            anomalous: Vec::new(),
                        }
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        other => bail!("unknown --mode {other:?} (expected aa-clip or reference)"),
    };
    if a.jsonl {
        for class in &shots {
            for s in class.all() {
                let mut line = json!({
                    "image_path": rel(&index, &s.image_path),
                    "label": s.label.as_int(),
                    "class_name": s.class_name,
                });
                if let Some(m) = &s.mask_path {
                    line["mask_path"] = json!(rel(&index, m));
                }
                println!("{}", serde_json::to_string(&line)?);
            }
        }
        return Ok(());
    }
    let classes: Vec<_> = shots
        .iter()
        .map(|c| {
            let paths = |v: &[vlad_data::Sample]| v.iter().map(|s| rel(&index, &s.image_path)).collect::<Vec<_>>();
            json!({"class": c.class_name, "normal": paths(&c.normal), "anomalous": paths(&c.anomalous)})
        })
        .collect();
    let out = json!({
        "root": index.root,
        "mode": a.mode,
        "k": a.k,
        "seed": a.seed,
        "split": if a.mode == "reference" { "train" } else { split.as_str() },
        "rng": "ChaCha8 (rand_chacha), one stream per class and label",
        "classes": classes,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
