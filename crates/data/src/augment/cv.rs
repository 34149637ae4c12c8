//! OpenCV operations as albumentations 1.3.1 calls them (Bayes-PFL's training augmentations), on 8-bit images
//! with any channel count (`RgbImage` for images, `GrayImage` for masks).
//!
//! The fixed-point details follow OpenCV 4.9 (`imgwarp.cpp`, `smooth.dispatch.cpp`, `box_filter`, `color_hsv`,
//! `color_rgb`): `warpAffine` quantises source coordinates to 1/32 pixel and blends with 15-bit integer weights;
//! `GaussianBlur` on 8-bit images with σ = 0 and k ≤ 7 uses OpenCV's fixed binomial kernels in exact fixed point;
//! `cvtColor(RGB2GRAY)` uses 14-bit coefficients. Borders are `BORDER_REFLECT_101` (OpenCV's default, and the
//! border albumentations' `Rotate` uses).

use image::{ImageBuffer, Pixel};

use crate::error::DataError;

/// An 8-bit image with any number of interleaved channels.
pub type U8Image<P> = ImageBuffer<P, Vec<u8>>;

/// OpenCV `borderInterpolate` for `BORDER_REFLECT_101` (`gfedcb|abcdefgh|gfedcba`).
pub fn reflect101(p: i64, len: i64) -> i64 {
    if len == 1 {
        return 0;
    }
    let mut p = p;
    loop {
        if p < 0 {
            p = -p;
        } else if p >= len {
            p = 2 * len - p - 2;
        } else {
            return p;
        }
    }
}

/// Interpolation for [`warp_affine`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interpolation {
    /// `INTER_NEAREST` (masks).
    Nearest,
    /// `INTER_LINEAR` (images).
    Linear,
}

/// `cv2.getRotationMatrix2D(center, angle_degrees, scale)` (forward map, counter-clockwise for positive angles).
pub fn rotation_matrix_2d(center: (f32, f32), angle_degrees: f64, scale: f64) -> [f64; 6] {
    let angle = angle_degrees * std::f64::consts::PI / 180.0;
    let (alpha, beta) = (angle.cos() * scale, angle.sin() * scale);
    let (cx, cy) = (f64::from(center.0), f64::from(center.1));
    [
        alpha,
        beta,
        (1.0 - alpha) * cx - beta * cy,
        -beta,
        alpha,
        beta * cx + (1.0 - alpha) * cy,
    ]
}

/// Invert a 2×3 affine matrix exactly as `warpAffine` does (double precision).
fn invert_affine(m: [f64; 6]) -> [f64; 6] {
    let d = m[0] * m[4] - m[1] * m[3];
    let d = if d != 0.0 { 1.0 / d } else { 0.0 };
    let (a11, a22) = (m[4] * d, m[0] * d);
    let (m1, m3) = (-m[1] * d, -m[3] * d);
    let b1 = -a11 * m[2] - m1 * m[5];
    let b2 = -m3 * m[2] - a22 * m[5];
    [a11, m1, b1, m3, a22, b2]
}

/// `cv2.warpAffine(img, m, (w, h), flags=interpolation, borderMode=BORDER_REFLECT_101)` with the output the size
/// of the input; `m` is the forward map (as `getRotationMatrix2D` returns it).
pub fn warp_affine<P: Pixel<Subpixel = u8>>(
    img: &U8Image<P>,
    m: [f64; 6],
    interpolation: Interpolation,
) -> U8Image<P> {
    const AB_BITS: i32 = 10;
    const AB_SCALE: f64 = 1024.0;
    const INTER_BITS: i32 = 5;
    const INTER_TAB: i64 = 1 << INTER_BITS;
    let cn = P::CHANNEL_COUNT as usize;
    let (w, h) = (img.width() as i64, img.height() as i64);
    let src = img.as_raw();
    let inv = invert_affine(m);
    // saturate_cast<int>(double) rounds half to even.
    let cv_round = |v: f64| v.round_ties_even() as i64;
    let round_delta: i64 = match interpolation {
        Interpolation::Nearest => (AB_SCALE as i64) / 2,
        Interpolation::Linear => (AB_SCALE as i64) / INTER_TAB / 2,
    };
    let adelta: Vec<i64> = (0..w)
        .map(|x| cv_round(inv[0] * x as f64 * AB_SCALE))
        .collect();
    let bdelta: Vec<i64> = (0..w)
        .map(|x| cv_round(inv[3] * x as f64 * AB_SCALE))
        .collect();
    let mut out = vec![0u8; src.len()];
    let at = |x: i64, y: i64, c: usize| -> i64 {
        let (x, y) = (reflect101(x, w), reflect101(y, h));
        i64::from(src[(y * w + x) as usize * cn + c])
    };
    for y in 0..h {
        let x0 = cv_round((inv[1] * y as f64 + inv[2]) * AB_SCALE) + round_delta;
        let y0 = cv_round((inv[4] * y as f64 + inv[5]) * AB_SCALE) + round_delta;
        for x in 0..w {
            let dst = (y * w + x) as usize * cn;
            match interpolation {
                Interpolation::Nearest => {
                    let sx = (x0 + adelta[x as usize]) >> AB_BITS;
                    let sy = (y0 + bdelta[x as usize]) >> AB_BITS;
                    for c in 0..cn {
                        out[dst + c] = at(sx, sy, c) as u8;
                    }
                }
                Interpolation::Linear => {
                    let fx = (x0 + adelta[x as usize]) >> (AB_BITS - INTER_BITS);
                    let fy = (y0 + bdelta[x as usize]) >> (AB_BITS - INTER_BITS);
                    let (sx, sy) = (fx >> INTER_BITS, fy >> INTER_BITS);
                    let (ax, ay) = (fx & (INTER_TAB - 1), fy & (INTER_TAB - 1));
                    // BilinearTab_i: products of (1 − t, t) at 1/32 steps, scaled to 2¹⁵ (exact integers).
                    let w00 = (INTER_TAB - ay) * (INTER_TAB - ax) * 32;
                    let w01 = (INTER_TAB - ay) * ax * 32;
                    let w10 = ay * (INTER_TAB - ax) * 32;
                    let w11 = ay * ax * 32;
                    for c in 0..cn {
                        let v = at(sx, sy, c) * w00
                            + at(sx + 1, sy, c) * w01
                            + at(sx, sy + 1, c) * w10
                            + at(sx + 1, sy + 1, c) * w11;
                        out[dst + c] = ((v + (1 << 14)) >> 15).clamp(0, 255) as u8;
                    }
                }
            }
        }
    }
    ImageBuffer::from_raw(img.width(), img.height(), out).expect("same size")
}

/// albumentations `F.rotate`: `warpAffine` with `getRotationMatrix2D((w/2 − 0.5, h/2 − 0.5), angle, 1)`.
pub fn rotate<P: Pixel<Subpixel = u8>>(
    img: &U8Image<P>,
    angle_degrees: f64,
    interpolation: Interpolation,
) -> U8Image<P> {
    let center = (
        img.width() as f32 / 2.0 - 0.5,
        img.height() as f32 / 2.0 - 0.5,
    );
    warp_affine(
        img,
        rotation_matrix_2d(center, angle_degrees, 1.0),
        interpolation,
    )
}

/// `np.rot90(img, k)`: rotate counter-clockwise by `k`·90° (`k` taken modulo 4).
pub fn rot90<P: Pixel<Subpixel = u8>>(img: &U8Image<P>, k: u32) -> U8Image<P> {
    let (w, h) = (img.width(), img.height());
    match k % 4 {
        0 => img.clone(),
        1 => ImageBuffer::from_fn(h, w, |x, y| *img.get_pixel(w - 1 - y, x)),
        2 => ImageBuffer::from_fn(w, h, |x, y| *img.get_pixel(w - 1 - x, h - 1 - y)),
        _ => ImageBuffer::from_fn(h, w, |x, y| *img.get_pixel(y, h - 1 - x)),
    }
}

/// Apply a 256-entry lookup table to every channel (`cv2.LUT`).
pub fn apply_lut<P: Pixel<Subpixel = u8>>(img: &U8Image<P>, lut: &[u8; 256]) -> U8Image<P> {
    let mut out = img.clone();
    for v in out.iter_mut() {
        *v = lut[*v as usize];
    }
    out
}

/// albumentations `RandomBrightnessContrast` on uint8 (`_brightness_contrast_adjust_uint`): a float32 LUT
/// `i·alpha + beta·255` (or `+ alpha·beta·mean(img)` without `beta_by_max`), clipped and truncated.
pub fn brightness_contrast<P: Pixel<Subpixel = u8>>(
    img: &U8Image<P>,
    alpha: f64,
    beta: f64,
    beta_by_max: bool,
) -> U8Image<P> {
    let mut lut = [0u8; 256];
    let add = if beta == 0.0 {
        0.0f32
    } else if beta_by_max {
        (beta * 255.0) as f32
    } else {
        let n = img.as_raw().len().max(1) as f64;
        let mean = img.as_raw().iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        (alpha * beta * mean) as f32
    };
    for (i, slot) in lut.iter_mut().enumerate() {
        let mut v = i as f32;
        if alpha != 1.0 {
            v *= alpha as f32;
        }
        if beta != 0.0 {
            v += add;
        }
        *slot = v.clamp(0.0, 255.0) as u8;
    }
    apply_lut(img, &lut)
}

/// albumentations `gauss_noise`: `clip(img as f32 + noise, 0, 255)` truncated to uint8; `noise` holds one value
/// per channel value (row-major, interleaved), like the NumPy array albumentations draws.
pub fn add_noise<P: Pixel<Subpixel = u8>>(
    img: &U8Image<P>,
    noise: &[f64],
) -> Result<U8Image<P>, DataError> {
    if noise.len() != img.as_raw().len() {
        return Err(DataError::Argument(format!(
            "noise has {} values for an image with {}",
            noise.len(),
            img.as_raw().len()
        )));
    }
    let mut out = img.clone();
    for (v, n) in out.iter_mut().zip(noise) {
        *v = (f64::from(f32::from(*v)) + n).clamp(0.0, 255.0) as u8;
    }
    Ok(out)
}

/// Separable integer filtering with `BORDER_REFLECT_101`: `out = (Σ k_y·k_x·src + bias) / divisor`, where the
/// rounding is supplied by the caller (`finish(sum)`).
fn separable<P: Pixel<Subpixel = u8>>(
    img: &U8Image<P>,
    kernel: &[i64],
    finish: impl Fn(i64) -> u8,
) -> U8Image<P> {
    let cn = P::CHANNEL_COUNT as usize;
    let (w, h) = (img.width() as i64, img.height() as i64);
    let r = (kernel.len() / 2) as i64;
    let src = img.as_raw();
    let mut rows = vec![0i64; src.len()];
    for y in 0..h {
        for x in 0..w {
            for c in 0..cn {
                let mut s = 0;
                for (i, k) in kernel.iter().enumerate() {
                    let sx = reflect101(x + i as i64 - r, w);
                    s += k * i64::from(src[((y * w + sx) as usize) * cn + c]);
                }
                rows[((y * w + x) as usize) * cn + c] = s;
            }
        }
    }
    let mut out = vec![0u8; src.len()];
    for y in 0..h {
        for x in 0..w {
            for c in 0..cn {
                let mut s = 0;
                for (i, k) in kernel.iter().enumerate() {
                    let sy = reflect101(y + i as i64 - r, h);
                    s += k * rows[((sy * w + x) as usize) * cn + c];
                }
                out[((y * w + x) as usize) * cn + c] = finish(s);
            }
        }
    }
    ImageBuffer::from_raw(img.width(), img.height(), out).expect("same size")
}

/// `cv2.blur(img, (k, k))`: the normalised box filter, rounded to nearest.
pub fn box_blur<P: Pixel<Subpixel = u8>>(
    img: &U8Image<P>,
    ksize: usize,
) -> Result<U8Image<P>, DataError> {
    if ksize == 0 {
        return Err(DataError::Argument(
            "box blur kernel size must be >= 1".into(),
        ));
    }
    let area = (ksize * ksize) as f64;
    Ok(separable(img, &vec![1; ksize], |s| {
        (s as f64 / area).round_ties_even().clamp(0.0, 255.0) as u8
    }))
}

/// `cv2.GaussianBlur(img, (k, k), sigmaX=0)` for k ∈ {3, 5, 7}: OpenCV's fixed binomial-like kernels (in 1/256
/// units) applied in exact fixed point and rounded half up (`(acc + 2¹⁵) >> 16`).
pub fn gaussian_blur<P: Pixel<Subpixel = u8>>(
    img: &U8Image<P>,
    ksize: usize,
) -> Result<U8Image<P>, DataError> {
    let kernel: &[i64] = match ksize {
        3 => &[64, 128, 64],
        5 => &[16, 64, 96, 64, 16],
        7 => &[8, 28, 56, 72, 56, 28, 8],
        other => {
            return Err(DataError::Argument(format!(
                "Gaussian blur with sigma 0 is implemented for kernel sizes 3, 5 and 7 (got {other})"
            )));
        }
    };
    Ok(separable(img, kernel, |s| {
        ((s + (1 << 15)) >> 16).clamp(0, 255) as u8
    }))
}

/// `cv2.cvtColor(RGB2GRAY)` for one pixel: `(4899·R + 9617·G + 1868·B + 2¹³) >> 14`.
pub fn gray(p: [u8; 3]) -> u8 {
    ((u32::from(p[0]) * 4899 + u32::from(p[1]) * 9617 + u32::from(p[2]) * 1868 + (1 << 13)) >> 14)
        as u8
}

/// albumentations `adjust_brightness_torchvision` (uint8): LUT `clip(i·factor)` truncated.
pub fn cj_brightness(img: &image::RgbImage, factor: f64) -> image::RgbImage {
    if factor == 1.0 {
        return img.clone();
    }
    let mut lut = [0u8; 256];
    for (i, slot) in lut.iter_mut().enumerate() {
        *slot = (i as f64 * factor).clamp(0.0, 255.0) as u8;
    }
    apply_lut(img, &lut)
}

/// albumentations `adjust_contrast_torchvision` (uint8): LUT `i·f + mean(gray)·(1 − f)`, clipped, truncated.
pub fn cj_contrast(img: &image::RgbImage, factor: f64) -> image::RgbImage {
    if factor == 1.0 {
        return img.clone();
    }
    let n = (u64::from(img.width()) * u64::from(img.height())).max(1) as f64;
    let mean = img.pixels().map(|p| f64::from(gray(p.0))).sum::<f64>() / n;
    let mut lut = [0u8; 256];
    for (i, slot) in lut.iter_mut().enumerate() {
        *slot = (i as f64 * factor + mean * (1.0 - factor)).clamp(0.0, 255.0) as u8;
    }
    apply_lut(img, &lut)
}

/// albumentations `adjust_saturation_torchvision` (uint8): `cv2.addWeighted(img, f, gray, 1 − f, 0)` in f32,
/// rounded half to even. OpenCV's SIMD body computes `fma(img, f, gray·(1 − f))`, as here; its scalar tail (whose
/// length depends on the CPU's vector width) rounds the product first, so a value at a rounding tie can differ
/// by one.
pub fn cj_saturation(img: &image::RgbImage, factor: f64) -> image::RgbImage {
    if factor == 1.0 {
        return img.clone();
    }
    let (a, b) = (factor as f32, (1.0 - factor) as f32);
    let mut out = img.clone();
    for p in out.pixels_mut() {
        let g = f32::from(gray(p.0));
        for v in &mut p.0 {
            *v = f32::from(*v)
                .mul_add(a, g * b)
                .round_ties_even()
                .clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// `cv2.cvtColor(RGB2HSV)` for 8-bit pixels (H in [0, 180)), with OpenCV's 12-bit division tables.
pub fn rgb_to_hsv(p: [u8; 3]) -> [u8; 3] {
    const SHIFT: i32 = 12;
    let (r, g, b) = (i32::from(p[0]), i32::from(p[1]), i32::from(p[2]));
    let v = r.max(g).max(b);
    let vmin = r.min(g).min(b);
    let diff = v - vmin;
    let vr = if v == r { -1 } else { 0 };
    let vg = if v == g { -1 } else { 0 };
    // sdiv_table[i] = saturate_cast<int>((255 << 12) / (1.0·i)); hdiv_table180[i] = saturate_cast<int>((180 << 12) / (6.0·i))
    let sdiv = if v == 0 {
        0
    } else {
        (f64::from(255 << SHIFT) / f64::from(v)).round_ties_even() as i32
    };
    let hdiv = if diff == 0 {
        0
    } else {
        (f64::from(180 << SHIFT) / (6.0 * f64::from(diff))).round_ties_even() as i32
    };
    let s = (diff * sdiv + (1 << (SHIFT - 1))) >> SHIFT;
    let mut h = (vr & (g - b)) + (!vr & ((vg & (b - r + 2 * diff)) + (!vg & (r - g + 4 * diff))));
    h = (h * hdiv + (1 << (SHIFT - 1))) >> SHIFT;
    if h < 0 {
        h += 180;
    }
    [h as u8, s as u8, v as u8]
}

/// `cv2.cvtColor(HSV2RGB)` for one 8-bit pixel (H in [0, 180)) as OpenCV's **scalar** code computes it: to
/// float, `HSV2RGB_native`, ×255 and round half to even.
pub fn hsv_to_rgb(p: [u8; 3]) -> [u8; 3] {
    hsv_to_rgb_impl(p, false)
}

/// The same conversion as OpenCV's **SIMD** body computes it (OpenCV 4.9, x86-64): `1 − s·x` is a fused
/// multiply-add and the result is truncated rather than rounded. Found by comparing with `cv2.cvtColor` on all
/// 180·256·256 inputs (exact on every one).
pub fn hsv_to_rgb_simd(p: [u8; 3]) -> [u8; 3] {
    hsv_to_rgb_impl(p, true)
}

fn hsv_to_rgb_impl(p: [u8; 3], simd: bool) -> [u8; 3] {
    const SECTORS: [[usize; 3]; 6] = [
        [1, 3, 0],
        [1, 0, 2],
        [3, 0, 1],
        [0, 2, 1],
        [0, 1, 3],
        [2, 1, 0],
    ];
    let mut h = f32::from(p[0]) * (6.0f32 / 180.0);
    let s = f32::from(p[1]) * (1.0f32 / 255.0);
    let v = f32::from(p[2]) * (1.0f32 / 255.0);
    let (r, g, b) = if s == 0.0 && !simd {
        (v, v, v)
    } else {
        // h < 6 for 8-bit input, so the wrap-around loops of the scalar code never run.
        let sector = h as i32;
        h -= sector as f32;
        let one_minus_s_times = |x: f32| {
            if simd {
                (-s).mul_add(x, 1.0)
            } else {
                1.0 - s * x
            }
        };
        let tab = [
            v,
            v * (1.0 - s),
            v * one_minus_s_times(h),
            v * one_minus_s_times(1.0 - h),
        ];
        let idx = SECTORS[sector.clamp(0, 5) as usize];
        // sector_data gives (b, g, r) indices.
        (tab[idx[2]], tab[idx[1]], tab[idx[0]])
    };
    let q = |x: f32| {
        let y = x * 255.0;
        if simd {
            y.clamp(0.0, 255.0) as u8
        } else {
            y.round_ties_even().clamp(0.0, 255.0) as u8
        }
    };
    [q(r), q(g), q(b)]
}

/// Pixels per SIMD iteration of OpenCV's `HSV2RGB_b` with AVX2 (4 vectors of 8 floats); the remainder of each
/// row goes through the scalar code.
pub const HSV_SIMD_BLOCK: u32 = 32;

/// albumentations `adjust_hue_torchvision` (uint8): HSV, shift H by `180·factor` modulo 180 through a LUT
/// (truncated), back to RGB with OpenCV's mix of SIMD and scalar conversions.
pub fn cj_hue(img: &image::RgbImage, factor: f64) -> image::RgbImage {
    if factor == 0.0 {
        return img.clone();
    }
    let mut lut = [0u8; 256];
    for (i, slot) in lut.iter_mut().enumerate() {
        *slot = (i as f64 + 180.0 * factor).rem_euclid(180.0) as u8;
    }
    // OpenCV converts row by row; within a row, whole blocks take the SIMD path and the rest the scalar one (this
    // mirrors an AVX2 machine; a CPU with other vector widths splits rows differently).
    let simd_end = img.width() / HSV_SIMD_BLOCK * HSV_SIMD_BLOCK;
    let mut out = img.clone();
    for (x, _, p) in out.enumerate_pixels_mut() {
        let mut hsv = rgb_to_hsv(p.0);
        hsv[0] = lut[hsv[0] as usize];
        p.0 = if x < simd_end {
            hsv_to_rgb_simd(hsv)
        } else {
            hsv_to_rgb(hsv)
        };
    }
    out
}
