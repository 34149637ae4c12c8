//! The bounded fuzz run of CI: every loader gets its seeds and `VLAD_FUZZ_ITERS` (default 50,000)
//! mutated inputs; none may panic, hang, or hold more than the harness's allocation limits.
//! The long run is `cargo run --release -p vlad-fuzz -- --iters 1000000` (README, "Untrusted input").

use std::path::PathBuf;

#[test]
fn every_loader_survives_its_mutated_seeds() {
    let iterations: u64 = std::env::var("VLAD_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(50_000);
    let crashes = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-crashes");
    let mut failures = Vec::new();
    for (i, target) in vlad_fuzz::TARGETS.iter().enumerate() {
        let report = vlad_fuzz::fuzz(i, 0, iterations, 0x5eed, &crashes);
        eprintln!(
            "{:<12} {:>8} inputs in {:>6.1} s, largest hold {:>6.1} MB, slowest {:.3} s",
            target.name,
            report.executions,
            report.seconds,
            report.peak_bytes as f64 / 1e6,
            report.slowest
        );
        failures.extend(report.failures);
    }
    assert!(failures.is_empty(), "{} failing inputs:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn mutations_are_reproducible_from_their_number() {
    let corpus = vec![b"hello, fuzz".to_vec(), vec![0u8; 40]];
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for iteration in [0u64, 7, 123_456] {
        vlad_fuzz::mutate(&corpus, 1, iteration, &mut a);
        vlad_fuzz::mutate(&corpus, 1, iteration, &mut b);
        assert_eq!(a, b);
    }
    let distinct: std::collections::BTreeSet<Vec<u8>> = (0..200)
        .map(|i| {
            vlad_fuzz::mutate(&corpus, 1, i, &mut a);
            a.clone()
        })
        .collect();
    assert!(distinct.len() > 150, "the mutator repeats itself: {} distinct of 200", distinct.len());
}
