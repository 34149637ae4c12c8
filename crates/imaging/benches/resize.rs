//! Wall-clock benchmark of the per-image preprocessing resize (1024×1024 → 518×518 RGB,
//! bicubic), to be read as a ratio against Pillow on the same machine:
//! `tools/fixtures/imaging.py` prints Pillow's median for the same resize.
//!
//! Run with `cargo bench -p vlad-imaging --bench resize`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use vlad_imaging::{Filter, GrayImage, RgbImage, resize_luma, resize_rgb};

fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x2545_F491u32;
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect()
}

/// Prints the median wall time of `runs` calls (after one warm-up call).
fn bench(name: &str, runs: usize, mut f: impl FnMut()) {
    f();
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    let median = times[runs / 2];
    println!("{name}: median {:.2} ms", median.as_secs_f64() * 1e3);
}

fn main() {
    let rgb = RgbImage::from_raw(1024, 1024, noise(1024 * 1024 * 3)).unwrap();
    let gray = GrayImage::from_raw(700, 512, noise(700 * 512)).unwrap();
    bench("RGB 1024x1024 -> 518x518 bicubic", 30, || {
        black_box(resize_rgb(&rgb, 518, 518, Filter::Bicubic));
    });
    bench("RGB 1024x1024 -> 240x240 bicubic", 30, || {
        black_box(resize_rgb(&rgb, 240, 240, Filter::Bicubic));
    });
    bench("L 700x512 -> 518x518 bilinear", 30, || {
        black_box(resize_luma(&gray, 518, 518, Filter::Bilinear));
    });
    bench("L 700x512 -> 518x518 nearest", 30, || {
        black_box(resize_luma(&gray, 518, 518, Filter::Nearest));
    });
}
