//! Pillow's `Image.resize` for 8-bit and 32-bit float images, re-derived from Pillow 13's
//! `Resample.c` (convolution filters) and `Geometry.c` (`ImagingScaleAffine`, used for NEAREST).
//!
//! Only the default call is modelled: `box = (0, 0, width, height)` and `reducing_gap = None`.
//!
//! Convolution (BILINEAR, BICUBIC):
//! * per axis, `scale = in / out`, `filterscale = max(scale, 1)`, support = filter support ×
//!   filterscale; output `i` has centre `(i + 0.5)·scale` and reads the inputs
//!   `trunc(centre − support + 0.5) .. trunc(centre + support + 0.5)` clipped to the image, with
//!   weights `K((j − centre + 0.5) / filterscale)` divided by their sum;
//! * 8-bit images: weights become fixed point with 22 fractional bits (rounded half away from
//!   zero), sums start at 2^21 and are shifted right by 22 and clipped to 0..=255; the
//!   intermediate image between the passes is 8-bit;
//! * float images (mode "F"): sums in `f64`, stored as `f32` after each pass;
//! * a pass is skipped when its axis keeps its size; the horizontal pass runs first, except
//!   that Pillow 13 runs the vertical pass first when the height shrinks by more than twice as
//!   many pixels as the width does (Pillow 12.3 and older always go horizontal first; see
//!   [`PassOrder`]).
//!
//! NEAREST: source index `floor(p)` where `p` starts at `scale / 2` and is advanced by `scale`
//! per output pixel (an accumulated `f64`, exactly as Pillow does), clipped to the image.

use crate::{Filter, PassOrder};

/// Fractional bits of the 8-bit fixed-point weights: 32 bits minus 8 for the pixel value minus 2
/// of headroom for sums above 1 or below 0 (negative lobes of the cubic kernel).
const PRECISION_BITS: u32 = 32 - 8 - 2;
/// `0.5` in the fixed-point format: the rounding bias every 8-bit sum starts from.
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// The convolution kernels Pillow uses for BILINEAR and BICUBIC.
#[derive(Clone, Copy, Debug)]
enum Kernel {
    /// Triangle filter, support 1.
    Triangle,
    /// Keys cubic convolution with `a = −0.5`, support 2.
    KeysCubic,
}

impl Kernel {
    fn support(self) -> f64 {
        match self {
            Kernel::Triangle => 1.0,
            Kernel::KeysCubic => 2.0,
        }
    }

    /// The kernel value. The operation order follows Pillow's so the `f64` results are identical.
    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Kernel::Triangle => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Kernel::KeysCubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// Pillow computes the per-axis scale from the `float` resize box, so the input size passes
/// through `f32` before the division in `f64`.
fn axis_scale(in_size: usize, out_size: usize) -> f64 {
    f64::from(in_size as f32) / out_size as f64
}

/// Filter taps of every output sample along one axis, with weights of type `W`.
#[derive(Debug)]
struct Taps<W> {
    /// Per output sample: first input index and number of taps.
    spans: Vec<(usize, usize)>,
    /// Row-major `[out_size, stride]` weights; row `i` uses its first `spans[i].1` entries.
    weights: Vec<W>,
    /// Pillow's `ksize`: the largest possible number of taps.
    stride: usize,
}

/// Normalised `f64` weights, as Pillow's `precompute_coeffs` leaves them.
type AxisTaps = Taps<f64>;
/// The weights in 8-bit fixed point (`normalize_coeffs_8bpc`).
type FixedTaps = Taps<i32>;

impl<W> Taps<W> {
    /// The input index range read by all outputs together.
    fn input_range(&self) -> std::ops::Range<usize> {
        match (self.spans.first(), self.spans.last()) {
            (Some(&(first, _)), Some(&(last_first, last_count))) => first..last_first + last_count,
            _ => 0..0,
        }
    }

    fn weights_of(&self, out_index: usize) -> &[W] {
        let (_, count) = self.spans[out_index];
        &self.weights[out_index * self.stride..][..count]
    }

    /// Moves every span `offset` samples towards zero (the input was cropped by `offset`).
    fn shifted(mut self, offset: usize) -> Self {
        for span in &mut self.spans {
            span.0 -= offset;
        }
        self
    }
}

impl AxisTaps {
    fn new(in_size: usize, out_size: usize, kernel: Kernel) -> Self {
        let scale = axis_scale(in_size, out_size);
        let filterscale = if scale < 1.0 { 1.0 } else { scale };
        let support = kernel.support() * filterscale;
        let stride = support.ceil() as usize * 2 + 1;
        let inv_filterscale = 1.0 / filterscale;

        let mut spans = Vec::with_capacity(out_size);
        let mut weights = vec![0.0; out_size * stride];
        for (i, row) in weights.chunks_exact_mut(stride).enumerate() {
            let center = (i as f64 + 0.5) * scale;
            // `as i64` truncates toward zero, as C's `(int)` does.
            let first = ((center - support + 0.5) as i64).max(0);
            let end = ((center + support + 0.5) as i64).min(in_size as i64);
            let count = (end - first).max(0) as usize;
            let mut total = 0.0;
            for (j, w) in row[..count].iter_mut().enumerate() {
                *w = kernel.weight(((first as usize + j) as f64 - center + 0.5) * inv_filterscale);
                total += *w;
            }
            if total != 0.0 {
                row[..count].iter_mut().for_each(|w| *w /= total);
            }
            spans.push((first as usize, count));
        }
        AxisTaps {
            spans,
            weights,
            stride,
        }
    }

    /// Weights in 8-bit fixed point, rounded half away from zero.
    fn to_fixed(&self) -> FixedTaps {
        let one = f64::from(1u32 << PRECISION_BITS);
        let weights = self
            .weights
            .iter()
            .map(|&w| {
                if w < 0.0 {
                    (-0.5 + w * one) as i32
                } else {
                    (0.5 + w * one) as i32
                }
            })
            .collect();
        FixedTaps {
            spans: self.spans.clone(),
            weights,
            stride: self.stride,
        }
    }
}

/// Pillow's `clip8`: the fixed-point sum shifted down (arithmetic shift) and clipped to a byte.
fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Horizontal 8-bit pass over the input rows `rows`, `C` interleaved channels.
fn horizontal_u8<const C: usize>(
    src: &[u8],
    src_width: usize,
    rows: std::ops::Range<usize>,
    taps: &FixedTaps,
) -> Vec<u8> {
    let out_width = taps.spans.len();
    let mut out = vec![0u8; out_width * rows.len() * C];
    if out_width == 0 {
        return out;
    }
    for (out_row, y) in out.chunks_exact_mut(out_width * C).zip(rows) {
        let in_row = &src[y * src_width * C..][..src_width * C];
        for (x, pixel) in out_row.chunks_exact_mut(C).enumerate() {
            let (first, count) = taps.spans[x];
            let mut sums = [HALF; C];
            let inputs = in_row[first * C..(first + count) * C].chunks_exact(C);
            for (input, &w) in inputs.zip(taps.weights_of(x)) {
                for (sum, &value) in sums.iter_mut().zip(input) {
                    *sum += i32::from(value) * w;
                }
            }
            for (out_value, &sum) in pixel.iter_mut().zip(&sums) {
                *out_value = clip8(sum);
            }
        }
    }
    out
}

/// Vertical 8-bit pass. Channels are interleaved within a row and independent, so a row is
/// processed as `row_len` plain samples; integer sums make the accumulation order irrelevant.
fn vertical_u8(src: &[u8], row_len: usize, taps: &FixedTaps) -> Vec<u8> {
    let out_height = taps.spans.len();
    let mut out = vec![0u8; row_len * out_height];
    if row_len == 0 {
        return out;
    }
    let mut sums = vec![0i32; row_len];
    for (y, out_row) in out.chunks_exact_mut(row_len).enumerate() {
        sums.fill(HALF);
        let (first, _) = taps.spans[y];
        for (j, &w) in taps.weights_of(y).iter().enumerate() {
            let in_row = &src[(first + j) * row_len..][..row_len];
            for (sum, &value) in sums.iter_mut().zip(in_row) {
                *sum += i32::from(value) * w;
            }
        }
        for (out_value, &sum) in out_row.iter_mut().zip(&sums) {
            *out_value = clip8(sum);
        }
    }
    out
}

/// Horizontal float pass (mode "F"): `f64` sums stored as `f32`.
fn horizontal_f32(
    src: &[f32],
    src_width: usize,
    rows: std::ops::Range<usize>,
    taps: &AxisTaps,
) -> Vec<f32> {
    let out_width = taps.spans.len();
    let mut out = vec![0f32; out_width * rows.len()];
    if out_width == 0 {
        return out;
    }
    for (out_row, y) in out.chunks_exact_mut(out_width).zip(rows) {
        let in_row = &src[y * src_width..][..src_width];
        for (x, out_value) in out_row.iter_mut().enumerate() {
            let (first, count) = taps.spans[x];
            let inputs = &in_row[first..first + count];
            let sum: f64 = inputs
                .iter()
                .zip(taps.weights_of(x))
                .fold(0.0, |acc, (&v, &w)| acc + f64::from(v) * w);
            *out_value = sum as f32;
        }
    }
    out
}

/// Vertical float pass (mode "F"), summed in Pillow's order (tap by tap for each sample).
fn vertical_f32(src: &[f32], width: usize, taps: &AxisTaps) -> Vec<f32> {
    let out_height = taps.spans.len();
    let mut out = vec![0f32; width * out_height];
    if width == 0 {
        return out;
    }
    let mut sums = vec![0f64; width];
    for (y, out_row) in out.chunks_exact_mut(width).enumerate() {
        sums.fill(0.0);
        let (first, _) = taps.spans[y];
        for (j, &w) in taps.weights_of(y).iter().enumerate() {
            let in_row = &src[(first + j) * width..][..width];
            for (sum, &value) in sums.iter_mut().zip(in_row) {
                *sum += f64::from(value) * w;
            }
        }
        for (out_value, &sum) in out_row.iter_mut().zip(&sums) {
            *out_value = sum as f32;
        }
    }
    out
}

/// Source index of every output sample along one axis for NEAREST (`None`: outside the image,
/// which Pillow fills with zeros).
fn nearest_sources(in_size: usize, out_size: usize) -> Vec<Option<usize>> {
    let step = axis_scale(in_size, out_size);
    // Pillow starts from `box0 + step * 0.5` and accumulates `step`; the accumulation error is
    // part of the result, so the position is not recomputed from the index.
    let mut position = step * 0.5;
    (0..out_size)
        .map(|_| {
            let index = if position < 0.0 {
                None
            } else {
                Some(position as usize)
            };
            position += step;
            index.filter(|&i| i < in_size)
        })
        .collect()
}

/// NEAREST resize of an interleaved image with `C` samples per pixel.
fn nearest<T: Copy + Default, const C: usize>(
    src: &[T],
    (in_width, in_height): (usize, usize),
    (out_width, out_height): (usize, usize),
) -> Vec<T> {
    // Positions only grow, so the columns outside the image (left black) form a suffix.
    let columns: Vec<usize> = nearest_sources(in_width, out_width)
        .into_iter()
        .map_while(|column| column)
        .collect();
    let rows = nearest_sources(in_height, out_height);
    let mut out = vec![[T::default(); C]; out_width * out_height];
    if out_width == 0 {
        return out.into_flattened();
    }
    let (pixels, _) = src.as_chunks::<C>();
    for (out_row, source_row) in out.chunks_exact_mut(out_width).zip(rows) {
        let Some(y) = source_row else { continue };
        let in_row = &pixels[y * in_width..][..in_width];
        for (pixel, &x) in out_row.iter_mut().zip(&columns) {
            *pixel = in_row[x];
        }
    }
    out.into_flattened()
}

/// Which convolution passes Pillow runs and in which order.
struct PassPlan {
    horizontal: bool,
    vertical: bool,
    horizontal_first: bool,
}

impl PassPlan {
    fn new(
        (in_width, in_height): (usize, usize),
        (out_width, out_height): (usize, usize),
        order: PassOrder,
    ) -> Self {
        let shrink_x = in_width as i64 - out_width as i64;
        let shrink_y = in_height as i64 - out_height as i64;
        PassPlan {
            horizontal: out_width != in_width,
            vertical: out_height != in_height,
            horizontal_first: match order {
                // "If height is being scaled down more than twice the amount the width is, run
                // the vertical pass first" (Pillow 13's comment).
                PassOrder::Pillow13 => !(shrink_y > 0 && shrink_y > shrink_x * 2),
                PassOrder::HorizontalFirst => true,
            },
        }
    }
}

fn kernel_of(filter: Filter) -> Option<Kernel> {
    match filter {
        Filter::Nearest => None,
        Filter::Bilinear => Some(Kernel::Triangle),
        Filter::Bicubic => Some(Kernel::KeysCubic),
    }
}

/// `Image.resize((out_width, out_height), filter)` on an 8-bit image with `C` interleaved
/// channels (1 for "L", 3 for "RGB").
pub(crate) fn resize_u8<const C: usize>(
    src: &[u8],
    in_size: (usize, usize),
    out_size: (usize, usize),
    filter: Filter,
    order: PassOrder,
) -> Vec<u8> {
    debug_assert_eq!(src.len(), in_size.0 * in_size.1 * C);
    if in_size == out_size {
        return src.to_vec();
    }
    if out_size.0 == 0 || out_size.1 == 0 {
        return Vec::new();
    }
    let Some(kernel) = kernel_of(filter) else {
        return nearest::<u8, C>(src, in_size, out_size);
    };
    convolve_u8::<C>(
        src,
        in_size,
        out_size,
        kernel,
        PassPlan::new(in_size, out_size, order),
    )
}

/// The two convolution passes of an 8-bit resize, in the order `plan` says.
fn convolve_u8<const C: usize>(
    src: &[u8],
    (in_width, in_height): (usize, usize),
    (out_width, out_height): (usize, usize),
    kernel: Kernel,
    plan: PassPlan,
) -> Vec<u8> {
    let vertical_taps = AxisTaps::new(in_height, out_height, kernel).to_fixed();
    let horizontal_taps = || AxisTaps::new(in_width, out_width, kernel).to_fixed();

    if plan.horizontal_first {
        if !plan.horizontal {
            return vertical_u8(src, in_width * C, &vertical_taps);
        }
        // Only the rows the vertical pass will read are resampled horizontally.
        let rows = vertical_taps.input_range();
        let first_row = rows.start;
        let narrowed = horizontal_u8::<C>(src, in_width, rows, &horizontal_taps());
        if plan.vertical {
            vertical_u8(&narrowed, out_width * C, &vertical_taps.shifted(first_row))
        } else {
            narrowed
        }
    } else {
        // Reached only when the height shrinks, so the vertical pass always runs.
        let shortened = vertical_u8(src, in_width * C, &vertical_taps);
        if plan.horizontal {
            horizontal_u8::<C>(&shortened, in_width, 0..out_height, &horizontal_taps())
        } else {
            shortened
        }
    }
}

/// `Image.resize` on a mode-"F" (32-bit float, one channel) image.
pub(crate) fn resize_f32(
    src: &[f32],
    in_size: (usize, usize),
    out_size: (usize, usize),
    filter: Filter,
) -> Vec<f32> {
    debug_assert_eq!(src.len(), in_size.0 * in_size.1);
    if in_size == out_size {
        return src.to_vec();
    }
    if out_size.0 == 0 || out_size.1 == 0 {
        return Vec::new();
    }
    let Some(kernel) = kernel_of(filter) else {
        return nearest::<f32, 1>(src, in_size, out_size);
    };
    let (in_width, in_height) = in_size;
    let (out_width, out_height) = out_size;
    let plan = PassPlan::new(in_size, out_size, PassOrder::Pillow13);
    let vertical_taps = AxisTaps::new(in_height, out_height, kernel);
    let horizontal_taps = || AxisTaps::new(in_width, out_width, kernel);

    if plan.horizontal_first {
        if !plan.horizontal {
            return vertical_f32(src, in_width, &vertical_taps);
        }
        let rows = vertical_taps.input_range();
        let first_row = rows.start;
        let narrowed = horizontal_f32(src, in_width, rows, &horizontal_taps());
        if plan.vertical {
            vertical_f32(&narrowed, out_width, &vertical_taps.shifted(first_row))
        } else {
            narrowed
        }
    } else {
        let shortened = vertical_f32(src, in_width, &vertical_taps);
        if plan.horizontal {
            horizontal_f32(&shortened, in_width, 0..out_height, &horizontal_taps())
        } else {
            shortened
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Worked values of `spec/clip.md` §5.1 (24 → 37, a = −0.5), derived there from the rule.
    #[test]
    fn bicubic_taps_match_the_spec_worked_example() {
        let taps = AxisTaps::new(24, 37, Kernel::KeysCubic);
        let expect = |i: usize, first: usize, weights: &[f64]| {
            assert_eq!(taps.spans[i], (first, weights.len()), "span of output {i}");
            for (got, want) in taps.weights_of(i).iter().zip(weights) {
                assert!((got - want).abs() < 5e-7, "output {i}: {got} vs {want}");
            }
        };
        expect(0, 0, &[1.068504, -0.068504]);
        expect(1, 0, &[0.562502, 0.492814, -0.055315]);
        expect(2, 0, &[-0.046918, 0.965719, 0.087696, -0.006496]);
        expect(18, 10, &[-0.0625, 0.5625, 0.5625, -0.0625]);
        expect(36, 22, &[-0.068504, 1.068504]);
    }

    #[test]
    fn bicubic_downsampling_taps_match_the_spec_example() {
        let taps = AxisTaps::new(24, 17, Kernel::KeysCubic);
        let want = [0.702086, 0.351198, -0.053127, -0.000157];
        assert_eq!(taps.spans[0], (0, 4));
        for (got, want) in taps.weights_of(0).iter().zip(want) {
            assert!((got - want).abs() < 5e-7, "{got} vs {want}");
        }
    }

    #[test]
    fn fixed_point_rounds_half_away_from_zero() {
        let taps = AxisTaps {
            spans: vec![(0, 4)],
            weights: vec![0.5 / 4194304.0, -0.5 / 4194304.0, 0.25, -1.4 / 4194304.0],
            stride: 4,
        };
        assert_eq!(taps.to_fixed().weights, vec![1, -1, 1 << 20, -1]);
    }

    #[test]
    fn clip8_floors_and_clamps() {
        assert_eq!(clip8(HALF), 0);
        assert_eq!(clip8((3 << PRECISION_BITS) + HALF - 1), 3);
        assert_eq!(clip8(-1), 0);
        assert_eq!(clip8(300 << PRECISION_BITS), 255);
    }

    #[test]
    fn nearest_accumulates_the_position() {
        // 3 → 2: positions 0.75, 2.25.
        assert_eq!(nearest_sources(3, 2), vec![Some(0), Some(2)]);
        // Upsampling 2 → 5: positions 0.2, 0.6, 1.0, 1.4, 1.8.
        assert_eq!(
            nearest_sources(2, 5),
            vec![Some(0), Some(0), Some(1), Some(1), Some(1)]
        );
    }

    #[test]
    fn pass_order_follows_pillow() {
        let order = PassOrder::Pillow13;
        assert!(PassPlan::new((700, 512), (518, 518), order).horizontal_first);
        assert!(!PassPlan::new((1000, 1500), (518, 518), order).horizontal_first);
        assert!(PassPlan::new((37, 53), (518, 518), order).horizontal_first);
        let legacy = PassOrder::HorizontalFirst;
        assert!(PassPlan::new((1000, 1500), (518, 518), legacy).horizontal_first);
    }

    /// The pass order changes the result (the intermediate image is rounded to 8 bits), so
    /// the fixtures where Pillow runs the vertical pass first do test the order.
    #[test]
    fn pass_order_changes_the_result() {
        let mut state = 12345u32;
        let src: Vec<u8> = (0..100 * 150)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 24) as u8
            })
            .collect();
        let (in_size, out_size) = ((100, 150), (52, 52));
        let plan = PassPlan::new(in_size, out_size, PassOrder::Pillow13);
        assert!(!plan.horizontal_first);
        let flipped = PassPlan {
            horizontal_first: true,
            ..plan
        };
        let pillow_order = convolve_u8::<1>(&src, in_size, out_size, Kernel::KeysCubic, plan);
        let other_order = convolve_u8::<1>(&src, in_size, out_size, Kernel::KeysCubic, flipped);
        assert_ne!(pillow_order, other_order);
    }

    #[test]
    fn empty_outputs_do_not_panic() {
        let src = vec![7u8; 4 * 3 * 3];
        let order = PassOrder::Pillow13;
        assert!(resize_u8::<3>(&src, (4, 3), (0, 5), Filter::Bicubic, order).is_empty());
        assert!(resize_u8::<3>(&src, (4, 3), (5, 0), Filter::Bilinear, order).is_empty());
        assert!(resize_u8::<3>(&src, (4, 3), (0, 0), Filter::Nearest, order).is_empty());
        let fsrc = vec![1.0f32; 12];
        assert!(resize_f32(&fsrc, (4, 3), (0, 2), Filter::Bicubic).is_empty());
        assert!(resize_f32(&fsrc, (4, 3), (2, 0), Filter::Bicubic).is_empty());
    }

    #[test]
    fn constant_images_stay_constant() {
        let src = vec![200u8; 9 * 5];
        for filter in [Filter::Nearest, Filter::Bilinear, Filter::Bicubic] {
            let out = resize_u8::<1>(&src, (9, 5), (4, 11), filter, PassOrder::Pillow13);
            assert!(out.iter().all(|&v| v == 200), "{filter:?}");
        }
    }
}
