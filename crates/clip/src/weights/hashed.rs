//! Hash-generated weights of the test fixtures. The fixture scripts (`tools/fixtures/aa_clip.py`,
//! `tools/fixtures/detect_baselines.py`) fill every tensor from its name instead of shipping a file;
//! the tests (native and in the browser) rebuild the same values from the same rule.

fn fnv1a64(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3))
}

/// Element `i` of the tensor `name`: `splitmix64(fnv1a64(name) + 0x9E3779B97F4A7C15 + i)`.
pub fn fixture_hash(name: &str, i: u64) -> u64 {
    let x = fnv1a64(name).wrapping_add(0x9E37_79B9_7F4A_7C15).wrapping_add(i);
    let mut z = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `tools/fixtures/aa_clip.py`'s tensor rule: `q = (fixture_hash(name, i) >> 53) − 1024`;
/// LayerNorm scales (1-D `…weight`) `1 + (q >> 4)/1024`, everything else `q/32768` (all exact in
/// f16 and f32).
pub fn hashed_parameter(name: &str, shape: &[usize]) -> Vec<f32> {
    let n = shape.iter().product::<usize>().max(1);
    let is_scale = name.ends_with("weight") && shape.len() == 1;
    (0..n as u64)
        .map(|i| {
            let q = (fixture_hash(name, i) >> 53) as i64 - 1024;
            if is_scale { (1.0 + (q >> 4) as f64 / 1024.0) as f32 } else { (q as f64 / 32768.0) as f32 }
        })
        .collect()
}
