//! Fuzzing vlad's loaders of untrusted files (issue 15).
//!
//! No nightly toolchain can be installed on the machines vlad is built on, so cargo-fuzz/libFuzzer
//! is out; this is the stable-toolchain harness the issue allows: a deterministic mutation fuzzer
//! over seed corpora (the committed fixtures plus files generated here), run
//!
//! * briefly in CI by `cargo test -p vlad-fuzz` (`tests/harness.rs`, a fixed number of inputs per
//!   loader), and
//! * at length by `cargo run --release -p vlad-fuzz -- --iters 1000000` (`src/bin/vlad-fuzz.rs`),
//!   which prints executions, speed and the largest allocation per loader.
//!
//! Every input runs under `catch_unwind` (a panic is a failure, and its input is saved), with a
//! counting global allocator: the peak bytes an input makes the loader hold are measured, and a
//! single allocation above [`HARD_ALLOC_LIMIT`] is refused with a message naming the loader and the
//! iteration (which, the mutations being a pure function of seed and iteration, reproduces it).

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

pub mod seeds;

/// A single allocation larger than this means a loader trusted a size it read (1 GiB).
pub const HARD_ALLOC_LIMIT: usize = 1 << 30;
/// The peak a loader may hold for one fuzz input (inputs are at most a few hundred KB; images
/// are decoded under a 1 M pixel limit).
pub const PEAK_ALLOC_LIMIT: usize = 256 << 20;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static ITERATION: AtomicU64 = AtomicU64::new(0);
static TARGET: AtomicUsize = AtomicUsize::new(usize::MAX);
static ABORT_ABOVE: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Aborts the process at the first single allocation above `bytes`, so that a debugger shows
/// who asked for it (`vlad-fuzz --abort-above`).
pub fn abort_above(bytes: usize) {
    ABORT_ABOVE.store(bytes, Ordering::Relaxed);
}

/// The system allocator, counting live bytes and their peak.
pub struct CountingAlloc;

// SAFETY: forwards to the system allocator; the counters are only statistics.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ABORT_ABOVE.load(Ordering::Relaxed) {
            std::process::abort();
        }
        if layout.size() > HARD_ALLOC_LIMIT {
            refuse(layout.size());
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > ABORT_ABOVE.load(Ordering::Relaxed) {
            std::process::abort();
        }
        if layout.size() > HARD_ALLOC_LIMIT {
            refuse(layout.size());
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > ABORT_ABOVE.load(Ordering::Relaxed) {
            std::process::abort();
        }
        if new_size > HARD_ALLOC_LIMIT {
            refuse(new_size);
            return std::ptr::null_mut();
        }
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
            let now = CURRENT.fetch_add(new_size, Ordering::Relaxed) + new_size;
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Says which loader and iteration asked for an oversized block, without allocating (we are
/// inside the allocator); the process then aborts in `handle_alloc_error`.
fn refuse(size: usize) {
    let mut buf = [0u8; 160];
    let mut n = 0;
    let mut put = |s: &[u8]| {
        for &b in s {
            if n < buf.len() {
                buf[n] = b;
                n += 1;
            }
        }
    };
    let digits = |mut v: u64| {
        let mut d = [0u8; 20];
        let mut i = d.len();
        loop {
            i -= 1;
            d[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        (d, i)
    };
    put(b"vlad-fuzz: an allocation of ");
    let (d, i) = digits(size as u64);
    put(&d[i..]);
    put(b" bytes by loader ");
    let target = TARGET.load(Ordering::Relaxed);
    put(TARGETS.get(target).map_or(b"?".as_slice(), |t| t.name.as_bytes()));
    put(b" at iteration ");
    let (d, i) = digits(ITERATION.load(Ordering::Relaxed));
    put(&d[i..]);
    put(b" (rerun with --target and --from to reproduce)\n");
    // SAFETY: writes an initialised stack buffer to standard error.
    unsafe { libc::write(2, buf.as_ptr().cast(), n) };
}

/// One loader under test.
pub struct Target {
    pub name: &'static str,
    /// Runs the loader on one input; errors are expected, panics and aborts are not.
    pub run: fn(&[u8]),
    /// The seed corpus.
    pub seeds: fn() -> Vec<Vec<u8>>,
}

/// Images are fuzzed under a small pixel limit so one input stays milliseconds; the limit logic
/// is the same at any size.
const FUZZ_IMAGE_LIMIT: vlad_imaging::ImageLimits = vlad_imaging::ImageLimits { max_image_pixels: Some(1 << 19) };

fn weights(data: &[u8]) {
    if let Ok(file) = vlad_clip::weights::WeightFile::from_bytes(data.to_vec(), "fuzz") {
        for (name, entry) in &file.entries {
            let _ = entry.to_f32(name);
        }
    }
}

fn image(data: &[u8]) {
    let _ = vlad_imaging::image_dimensions(data);
    let _ = vlad_imaging::decode_rgb_with_limits(data, &FUZZ_IMAGE_LIMIT);
    let _ = vlad_imaging::decode_luma_with_limits(data, &FUZZ_IMAGE_LIMIT);
}

/// The pickle inside a well-formed zip, so that mutations reach the pickle machine rather than
/// only the zip reader.
fn pickle(data: &[u8]) {
    weights(&seeds::torch_zip(data, &[("0", &[0u8; 64]), ("1", &[1u8; 16])]));
}

fn npy(data: &[u8]) {
    let _ = vlad_data::npy::read_f32(data);
    let _ = vlad_data::npy::read_u8_or_bool(data);
}

fn scratch_root() -> &'static Path {
    // Paths in the metadata resolve here: a folder that does not exist, so every listed file is a
    // "missing file" problem and nothing outside is touched.
    Path::new("/nonexistent/vlad-fuzz")
}

fn meta_json(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = vlad_data::readers::parse_meta_json(&text, &scratch_root().join("meta.json"));
}

fn jsonl(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = vlad_data::readers::parse_jsonl(&text, &scratch_root().join("train.jsonl"), scratch_root());
}

fn visa_csv(data: &[u8]) {
    let _ = vlad_data::readers::parse_visa_csv(data, &scratch_root().join("split.csv"), scratch_root());
}

/// Every loader, by name.
pub const TARGETS: &[Target] = &[
    Target { name: "image", run: image, seeds: seeds::images },
    Target { name: "safetensors", run: weights, seeds: seeds::safetensors },
    Target { name: "pytorch-zip", run: weights, seeds: seeds::pytorch_zips },
    Target { name: "pickle", run: pickle, seeds: seeds::pickles },
    Target { name: "burnpack", run: weights, seeds: seeds::burnpacks },
    Target { name: "npy", run: npy, seeds: seeds::npys },
    Target { name: "meta-json", run: meta_json, seeds: seeds::meta_jsons },
    Target { name: "jsonl", run: jsonl, seeds: seeds::jsonls },
    Target { name: "visa-csv", run: visa_csv, seeds: seeds::visa_csvs },
];

/// What a run found.
#[derive(Debug, Default)]
pub struct Report {
    pub executions: u64,
    pub seconds: f64,
    /// The largest number of bytes one input made the loader hold at once.
    pub peak_bytes: usize,
    /// The iteration of that input (`u64::MAX - i` for seed `i`).
    pub peak_iteration: u64,
    /// The slowest input, in seconds.
    pub slowest: f64,
    /// Inputs that panicked or went over [`PEAK_ALLOC_LIMIT`], saved under the crash folder.
    pub failures: Vec<String>,
}

/// Inputs slower than this are failures (a loader that loops on crafted input).
pub const SLOW_INPUT_SECONDS: f64 = 2.0;

/// Runs `target` on its seeds and on `iterations` mutated inputs starting at iteration `from`;
/// failing inputs are written to `crash_dir`.
pub fn fuzz(target_index: usize, from: u64, iterations: u64, seed: u64, crash_dir: &Path) -> Report {
    let target = &TARGETS[target_index];
    let corpus = (target.seeds)();
    assert!(!corpus.is_empty(), "{}: no seeds", target.name);
    TARGET.store(target_index, Ordering::Relaxed);
    let mut report = Report::default();
    let start = std::time::Instant::now();
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut input = Vec::new();
    let seeds_first = if from == 0 { corpus.len() as u64 } else { 0 };
    for step in 0..seeds_first + iterations {
        let iteration = if step < seeds_first { u64::MAX - step } else { from + step - seeds_first };
        if step < seeds_first {
            input.clone_from(&corpus[step as usize]);
        } else {
            mutate(&corpus, seed, iteration, &mut input);
        }
        ITERATION.store(iteration, Ordering::Relaxed);
        let base = CURRENT.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let t = std::time::Instant::now();
        let outcome = std::panic::catch_unwind(|| (target.run)(&input));
        let seconds = t.elapsed().as_secs_f64();
        let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);
        report.executions += 1;
        if peak > report.peak_bytes {
            report.peak_bytes = peak;
            report.peak_iteration = iteration;
        }
        report.slowest = report.slowest.max(seconds);
        let problem = match outcome {
            Err(panic) => Some(format!(
                "panicked: {}",
                panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned()).unwrap_or_default()
            )),
            Ok(()) if peak > PEAK_ALLOC_LIMIT => Some(format!("held {peak} bytes at once")),
            Ok(()) if seconds > SLOW_INPUT_SECONDS => Some(format!("took {seconds:.1} s")),
            Ok(()) => None,
        };
        if let Some(problem) = problem {
            let file = save(crash_dir, target.name, iteration, &input);
            report.failures.push(format!("{} iteration {iteration}: {problem} (input saved as {})", target.name, file.display()));
        }
    }
    std::panic::set_hook(quiet);
    report.seconds = start.elapsed().as_secs_f64();
    report
}

fn save(dir: &Path, target: &str, iteration: u64, input: &[u8]) -> PathBuf {
    let _ = std::fs::create_dir_all(dir);
    let path = dir.join(format!("{target}-{iteration}.bin"));
    let _ = std::fs::write(&path, input);
    path
}

/// The mutated input of `iteration`: a pure function of (corpus, seed, iteration), so any input
/// can be rebuilt from its number. One seed (sometimes spliced with another) gets 1–8 edits:
/// bit flips, boundary bytes and integers (the sizes and offsets loaders trust), inserted,
/// deleted and duplicated ranges, truncation.
pub fn mutate(corpus: &[Vec<u8>], seed: u64, iteration: u64, out: &mut Vec<u8>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ iteration.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut below = |n: usize| if n == 0 { 0 } else { (rng.next_u64() % n as u64) as usize };
    out.clear();
    out.extend_from_slice(&corpus[below(corpus.len())]);
    let edits = 1 + below(8);
    for _ in 0..edits {
        let len = out.len();
        match below(11) {
            0 if len > 0 => {
                let i = below(len);
                out[i] ^= 1 << below(8);
            }
            1 if len > 0 => {
                let i = below(len);
                out[i] = [0u8, 1, 0x7f, 0x80, 0xff, b'0', b'9', b'"', b',', b'{'][below(10)];
            }
            2 | 3 if len >= 8 => {
                // An integer field: 2, 4 or 8 bytes, little- or big-endian, set to a boundary value.
                let width = [2usize, 4, 8][below(3)];
                let i = below(len - width + 1);
                let values: [u64; 10] = [0, 1, 0x7f, 0xff, 0xffff, 0x7fff_ffff, 0xffff_ffff, 1 << 40, 1 << 62, u64::MAX];
                let v = if below(4) == 0 { len as u64 + below(16) as u64 } else { values[below(values.len())] };
                let bytes = if below(2) == 0 { v.to_le_bytes() } else { v.to_be_bytes() };
                let range = if below(2) == 0 { 0..width } else { 8 - width..8 };
                out[i..i + width].copy_from_slice(&bytes[range]);
            }
            4 if len > 0 => {
                let i = below(len);
                let n = 1 + below((len - i).min(64));
                out.drain(i..i + n);
            }
            5 if len > 0 => {
                // Duplicate a range (repeated chunks, tags, rows).
                let i = below(len);
                let n = 1 + below((len - i).min(256));
                let chunk = out[i..i + n].to_vec();
                let at = below(len + 1);
                out.splice(at..at, chunk);
            }
            6 => {
                let at = below(len + 1);
                let n = 1 + below(16);
                let bytes: Vec<u8> = (0..n).map(|_| below(256) as u8).collect();
                out.splice(at..at, bytes);
            }
            7 if len > 1 => {
                out.truncate(below(len));
            }
            8 => {
                // Splice: the head of this input with the tail of another seed.
                let other = &corpus[below(corpus.len())];
                let cut = below(len + 1);
                let from = below(other.len() + 1);
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            9 if len > 0 => {
                // Overwrite a range with a copy of another part (moves tags and lengths around).
                let a = below(len);
                let b = below(len);
                let n = 1 + below((len - a.max(b)).min(32));
                out.copy_within(b..b + n, a);
            }
            10 if len > 0 => {
                let i = below(len);
                let delta = [1u8, 2, 4, 8, 16, 255, 254][below(7)];
                out[i] = out[i].wrapping_add(delta);
            }
            _ => {}
        }
    }
    // Inputs stay small so that a run covers many of them.
    out.truncate(1 << 20);
}

