//! The long fuzz run: `cargo run --release -p vlad-fuzz -- [--target NAME] [--iters N] [--from I]
//! [--seed S] [--crashes DIR] [--dump I] [--abort-above BYTES]`. Prints, per loader, executions, speed, the largest allocation held
//! for one input and the slowest input; exits 1 if any input failed (the inputs are saved).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut target, mut iters, mut from, mut seed) = (None::<String>, 100_000u64, 0u64, 0x5eedu64);
    let mut crashes = PathBuf::from("fuzz-crashes");
    let mut dump = None::<u64>;
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| {
            eprintln!("vlad-fuzz: {arg} needs a value");
            std::process::exit(2)
        });
        let number = |v: String| v.replace('_', "").parse::<u64>().unwrap_or_else(|_| {
            eprintln!("vlad-fuzz: {v:?} is not a number");
            std::process::exit(2)
        });
        match arg.as_str() {
            "--target" => target = Some(value()),
            "--iters" => iters = number(value()),
            "--from" => from = number(value()),
            "--seed" => seed = number(value()),
            "--crashes" => crashes = PathBuf::from(value()),
            "--dump" => dump = Some(number(value())),
            // For a debugger: abort at the first allocation above BYTES (with --from I --iters 1).
            "--abort-above" => vlad_fuzz::abort_above(number(value()) as usize),
            _ => {
                let names: Vec<&str> = vlad_fuzz::TARGETS.iter().map(|t| t.name).collect();
                eprintln!("usage: vlad-fuzz [--target {}] [--iters N] [--from I] [--seed S] [--crashes DIR] [--dump I] [--abort-above BYTES]", names.join("|"));
                return ExitCode::from(2);
            }
        }
    }
    if let Some(iteration) = dump {
        // Writes the input of one iteration of one loader (to reproduce or inspect it).
        let Some(t) = vlad_fuzz::TARGETS.iter().find(|t| Some(t.name) == target.as_deref()) else {
            eprintln!("vlad-fuzz: --dump needs --target");
            return ExitCode::from(2);
        };
        let mut input = Vec::new();
        vlad_fuzz::mutate(&(t.seeds)(), seed, iteration, &mut input);
        let path = crashes.join(format!("{}-{iteration}.bin", t.name));
        if let Err(e) = std::fs::create_dir_all(&crashes).and_then(|()| std::fs::write(&path, &input)) {
            eprintln!("vlad-fuzz: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("{}", path.display());
        return ExitCode::SUCCESS;
    }
    let mut failed = 0;
    for (i, t) in vlad_fuzz::TARGETS.iter().enumerate() {
        if target.as_deref().is_some_and(|name| name != t.name) {
            continue;
        }
        let report = vlad_fuzz::fuzz(i, from, iters, seed, &crashes);
        println!(
            "{:<12} {:>9} inputs in {:>7.1} s ({:>7.0}/s), largest hold {:>6.1} MB (iteration {}), slowest {:.3} s, {} failing",
            t.name,
            report.executions,
            report.seconds,
            report.executions as f64 / report.seconds,
            report.peak_bytes as f64 / 1e6,
            report.peak_iteration,
            report.slowest,
            report.failures.len()
        );
        for f in report.failures.iter().take(20) {
            println!("  {f}");
        }
        failed += report.failures.len();
    }
    if failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
