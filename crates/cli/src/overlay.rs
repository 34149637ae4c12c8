//! Heat-map overlays for `vlad infer`: the anomaly map, bilinearly resized to the *original* image
//! size (`align_corners = false`, the detectors' own convention), coloured with the turbo colormap
//! and blended over the image, with a vertical legend bar on the right whose ends are labelled with
//! the raw map values they stand for (drawn with a built-in 3×5 pixel font, so no font file ships).
use vlad_detect::postprocess::AxisMap;
use vlad_imaging::RgbImage;

/// How map values become colours: `lo` maps to the bottom of the colormap, `hi` to the top.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColorScale {
    /// Raw value drawn with the first colour.
    pub lo: f32,
    /// Raw value drawn with the last colour.
    pub hi: f32,
}

impl ColorScale {
    /// Position of `v` on the colormap, in [0, 1] (the middle for a flat scale).
    fn position(&self, v: f32) -> f64 {
        let range = (self.hi - self.lo) as f64;
        if range.is_finite() && range > 0.0 { ((v - self.lo) as f64 / range).clamp(0.0, 1.0) } else { 0.5 }
    }
}

fn turbo(t: f64) -> [u8; 3] {
    let c = colorous::TURBO.eval_continuous(t.clamp(0.0, 1.0));
    [c.r, c.g, c.b]
}

/// `map` (`side × side`, row-major) resized to `width × height` bilinearly.
fn resize_map(map: &[f32], side: usize, width: usize, height: usize) -> Vec<f64> {
    let cols = AxisMap::bilinear(side, width, false);
    let rows = AxisMap::bilinear(side, height, false);
    let wide: Vec<Vec<f64>> = map.chunks(side).map(|row| cols.apply_host(&row.iter().map(|&v| v as f64).collect::<Vec<_>>())).collect();
    let mut out = vec![0.0; width * height];
    for x in 0..width {
        let column: Vec<f64> = wide.iter().map(|row| row[x]).collect();
        for (y, v) in rows.apply_host(&column).into_iter().enumerate() {
            out[y * width + x] = v;
        }
    }
    out
}

/// 3×5 glyphs (rows top to bottom, bit 2 = left column) for the characters of a number.
fn glyph(c: char) -> [u8; 5] {
    match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        '+' => [0, 2, 7, 2, 0],
        'e' => [0, 7, 7, 4, 7],
        'i' => [2, 0, 2, 2, 2],
        'n' => [0, 6, 5, 5, 5],
        'f' => [3, 4, 7, 4, 4],
        'a' => [0, 7, 1, 7, 7],
        'N' => [5, 7, 7, 7, 5],
        _ => [0, 0, 0, 0, 0],
    }
}

/// Short text for a legend value.
pub fn label(v: f32) -> String {
    let a = v.abs();
    if v == 0.0 || (1e-3..1e4).contains(&a) { format!("{v:.3}") } else { format!("{v:.2e}") }
}

fn text_width(text: &str, scale: u32) -> u32 {
    text.chars().count() as u32 * 4 * scale
}

fn draw_text(img: &mut RgbImage, text: &str, x0: u32, y0: u32, scale: u32, color: [u8; 3]) {
    for (i, c) in text.chars().enumerate() {
        let gx = x0 + i as u32 * 4 * scale;
        for (row, bits) in glyph(c).iter().enumerate() {
            for col in 0..3u32 {
                if bits & (4 >> col) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let (x, y) = (gx + col * scale + dx, y0 + row as u32 * scale + dy);
                        if x < img.width() && y < img.height() {
                            img.get_pixel_mut(x, y).0 = color;
                        }
                    }
                }
            }
        }
    }
}

/// The overlay: `image` with `map` (`side × side`) blended in with opacity `alpha`, plus the legend
/// panel on the right.
pub fn render(image: &RgbImage, map: &[f32], side: usize, scale: ColorScale, alpha: f32) -> RgbImage {
    let (w, h) = (image.width(), image.height());
    let values = resize_map(map, side, w as usize, h as usize);
    let alpha = alpha.clamp(0.0, 1.0) as f64;
    let text_scale = (h / 120).clamp(1, 4);
    let (lo_text, hi_text) = (label(scale.lo), label(scale.hi));
    let bar_width = 6 * text_scale + 4;
    let margin = 2 * text_scale + 2;
    let panel = margin * 2 + bar_width.max(text_width(&lo_text, text_scale)).max(text_width(&hi_text, text_scale));
    let mut out = RgbImage::new(w + panel, h.max(8 * text_scale + 24));
    out.pixels_mut().for_each(|p| p.0 = [255, 255, 255]);
    for (x, y, p) in image.enumerate_pixels() {
        let c = turbo(scale.position(values[(y * w + x) as usize] as f32));
        let mix = |a: u8, b: u8| ((1.0 - alpha) * a as f64 + alpha * b as f64).round().clamp(0.0, 255.0) as u8;
        out.get_pixel_mut(x, y).0 = [mix(p[0], c[0]), mix(p[1], c[1]), mix(p[2], c[2])];
    }
    // Legend: hi label, bar from the top colour down to the bottom colour, lo label.
    let text_height = 5 * text_scale;
    let bar_top = margin + text_height + margin;
    let bar_bottom = out.height().saturating_sub(margin + text_height + margin).max(bar_top + 1);
    let bar_x = w + margin;
    for y in bar_top..bar_bottom {
        let t = 1.0 - (y - bar_top) as f64 / (bar_bottom - bar_top - 1).max(1) as f64;
        let c = turbo(t);
        for x in bar_x..bar_x + bar_width {
            out.get_pixel_mut(x, y).0 = c;
        }
    }
    let ink = [0, 0, 0];
    draw_text(&mut out, &hi_text, bar_x, margin, text_scale, ink);
    draw_text(&mut out, &lo_text, bar_x, bar_bottom + margin, text_scale, ink);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_use_only_drawable_characters() {
        for v in [0.0, 0.5, -0.25, 1234.5, 1e-7, -3e9, f32::NAN, f32::INFINITY] {
            let text = label(v);
            assert!(text.chars().all(|c| glyph(c) != [0; 5]), "{text}");
        }
    }

    #[test]
    fn overlay_has_the_image_size_plus_a_legend_and_follows_the_map() {
        let mut image = RgbImage::new(40, 30);
        image.pixels_mut().for_each(|p| p.0 = [128, 128, 128]);
        // A 2×2 map: low on the left, high on the right.
        let out = render(&image, &[0.0, 1.0, 0.0, 1.0], 2, ColorScale { lo: 0.0, hi: 1.0 }, 1.0);
        assert!(out.width() > 40 && out.height() >= 30);
        assert_eq!(out.get_pixel(0, 15).0, turbo(0.0));
        assert_eq!(out.get_pixel(39, 15).0, turbo(1.0));
        // Half opacity mixes the image and the colour.
        let half = render(&image, &[1.0; 4], 2, ColorScale { lo: 0.0, hi: 1.0 }, 0.5);
        let c = turbo(1.0);
        assert_eq!(half.get_pixel(5, 5).0[0], ((128.0 + c[0] as f64) / 2.0).round() as u8);
    }
}
