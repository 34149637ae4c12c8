//! Defects drawn onto a rendered scene. Each edits the scene's foreground colours (surface defects) or its
//! coverage (missing parts) only inside a bounded region; the exact mask is obtained afterwards by comparing the
//! final image with the defect-free one, so it holds exactly the pixels the defect changed.

use std::f32::consts::PI;

use super::canvas::{
    Blob, PixelBox, hue_rotate, mix3, polyline_distance, smoothstep, stroke_alpha,
};
use super::classes::{Geometry, Rendered, SynthClass};
use super::noise::Noise;
use crate::rng::SeededRng;

/// A defect type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DefectKind {
    /// A thin curved line, lighter or darker than the surface.
    Scratch,
    /// A dark opening with a raised rim (wood: a cluster of worm holes).
    Hole,
    /// A thin, jagged, branching dark line.
    Crack,
    /// A soft-edged discoloured blob (oil, water, rust, dirt).
    Stain,
    /// Part of the object is absent (a bite from a washer, a chipped pill end, a broken cap edge).
    MissingPart,
    /// A region whose hue or saturation differs (dye fault, discolouration, faded paint).
    ColorShift,
}

impl DefectKind {
    /// Every defect type.
    pub const ALL: [DefectKind; 6] = [
        DefectKind::Scratch,
        DefectKind::Hole,
        DefectKind::Crack,
        DefectKind::Stain,
        DefectKind::MissingPart,
        DefectKind::ColorShift,
    ];

    /// Folder name.
    pub fn name(self) -> &'static str {
        match self {
            DefectKind::Scratch => "scratch",
            DefectKind::Hole => "hole",
            DefectKind::Crack => "crack",
            DefectKind::Stain => "stain",
            DefectKind::MissingPart => "missing_part",
            DefectKind::ColorShift => "color_shift",
        }
    }
}

fn seed32(rng: &mut SeededRng) -> u32 {
    (rng.next_u64() >> 32) as u32
}

/// Draw `kind` onto `r` (a rendered image of `class` of side `size`).
pub fn apply(
    kind: DefectKind,
    class: SynthClass,
    r: &mut Rendered,
    size: usize,
    rng: &mut SeededRng,
) {
    let k = size as f32 / 256.0;
    match kind {
        DefectKind::Scratch => scratch(class, r, size, k, rng),
        DefectKind::Crack => crack(class, r, size, k, rng),
        DefectKind::Hole => hole(class, r, size, k, rng),
        DefectKind::Stain => stain(class, r, size, k, rng),
        DefectKind::MissingPart => missing_part(r, size, k, rng),
        DefectKind::ColorShift => color_shift(class, r, size, k, rng),
    }
}

/// A random point on the object's surface at least `margin` pixels inside it (rejection sampling on the
/// coverage, falling back to the geometry's centre line).
fn surface_point(r: &Rendered, size: usize, margin: f32, rng: &mut SeededRng) -> (f32, f32) {
    let s = size as f32;
    let inside = |x: f32, y: f32| {
        [
            (0.0, 0.0),
            (margin, 0.0),
            (-margin, 0.0),
            (0.0, margin),
            (0.0, -margin),
        ]
        .iter()
        .all(|(dx, dy)| r.scene.coverage_at(x + dx, y + dy) >= 0.999)
    };
    let lo = margin.min(s * 0.45);
    for _ in 0..400 {
        let (x, y) = (rng.range_f32(lo, s - lo), rng.range_f32(lo, s - lo));
        if inside(x, y) {
            return (x, y);
        }
    }
    match r.geometry {
        Geometry::Texture => (s / 2.0, s / 2.0),
        Geometry::Ring {
            cx,
            cy,
            r_in,
            r_out,
        } => (cx + (r_in + r_out) / 2.0, cy),
        Geometry::Capsule { a, b, .. } => ((a.0 + b.0) / 2.0, (a.1 + b.1) / 2.0),
        Geometry::Disc { cx, cy, .. } => (cx, cy),
    }
}

/// Apply `f(old colour, alpha) -> new colour` over a box where `alpha(x, y)` is positive.
fn paint(
    r: &mut Rendered,
    bbox: PixelBox,
    alpha: impl Fn(f32, f32) -> f32,
    f: impl Fn([f32; 3], f32) -> [f32; 3],
) {
    let w = r.scene.w();
    let fg = &mut r.scene.fg.px;
    bbox.for_each(w, |i, x, y| {
        let a = alpha(x, y);
        if a > 0.0 {
            fg[i] = f(fg[i], a.min(1.0));
        }
    });
}

/// A quadratic Bézier sampled into a polyline.
fn bezier(p0: (f32, f32), p1: (f32, f32), p2: (f32, f32), n: usize) -> Vec<(f32, f32)> {
    (0..=n)
        .map(|i| {
            let t = i as f32 / n as f32;
            let u = 1.0 - t;
            (
                u * u * p0.0 + 2.0 * u * t * p1.0 + t * t * p2.0,
                u * u * p0.1 + 2.0 * u * t * p1.1 + t * t * p2.1,
            )
        })
        .collect()
}

fn scratch(class: SynthClass, r: &mut Rendered, size: usize, k: f32, rng: &mut SeededRng) {
    let s = size as f32;
    let p0 = surface_point(r, size, 4.0 * k, rng);
    let (lo, hi) = if class.is_texture() {
        (0.10, 0.32)
    } else {
        (0.08, 0.22)
    };
    let len = rng.range_f32(lo, hi) * s;
    let ang = rng.range_f32(-PI, PI);
    let bend = rng.range_f32(-0.25, 0.25) * len;
    let (dx, dy) = (ang.cos(), ang.sin());
    let p2 = (p0.0 + dx * len, p0.1 + dy * len);
    let p1 = (
        (p0.0 + p2.0) / 2.0 - dy * bend,
        (p0.1 + p2.1) / 2.0 + dx * bend,
    );
    let line = bezier(p0, p1, p2, 24);
    let (wlo, whi) = if class == SynthClass::Weave {
        (0.9, 1.6)
    } else {
        (0.5, 1.1)
    };
    let half = rng.range_f32(wlo, whi) * k;
    let intermittency = Noise::new(seed32(rng));
    let bbox = PixelBox::around(&line, half + 2.0, size, size);
    let alpha = |x: f32, y: f32| {
        let a = stroke_alpha(polyline_distance(x, y, &line), half);
        if a <= 0.0 {
            0.0
        } else {
            a * (0.75 + 0.25 * intermittency.at(x * 0.08 / k, y * 0.08 / k))
        }
    };
    match class {
        SynthClass::Wood if rng.chance(0.5) => {
            let m = rng.range_f32(0.45, 0.6);
            paint(r, bbox, alpha, |c, a| {
                mix3(c, [c[0] * m, c[1] * m, c[2] * m], a)
            });
        }
        SynthClass::Wood => {
            let strength = rng.range_f32(0.55, 0.75);
            paint(r, bbox, alpha, |c, a| {
                mix3(c, [0.93, 0.82, 0.64], a * strength)
            });
        }
        SynthClass::BottleCap => {
            let strength = rng.range_f32(0.75, 0.95);
            paint(r, bbox, alpha, |c, a| {
                mix3(c, [0.80, 0.80, 0.82], a * strength)
            });
        }
        SynthClass::Marble => {
            // A light stone shows scratches as grey lines.
            let strength = rng.range_f32(0.45, 0.7);
            paint(r, bbox, alpha, |c, a| {
                mix3(c, [0.50, 0.50, 0.53], a * strength)
            });
        }
        _ => {
            let strength = rng.range_f32(0.45, 0.75);
            paint(r, bbox, alpha, |c, a| {
                mix3(c, [0.97, 0.97, 0.97], a * strength)
            });
        }
    }
}

fn crack(class: SynthClass, r: &mut Rendered, size: usize, k: f32, rng: &mut SeededRng) {
    let s = size as f32;
    let start = surface_point(r, size, 6.0 * k, rng);
    let len = rng.range_f32(0.12, if class.is_texture() { 0.35 } else { 0.22 }) * s;
    let step = 2.0 * k;
    // A crack runs through the material: the walk stops where it would leave the object.
    let scene = &r.scene;
    let walk = |from: (f32, f32), heading: f32, length: f32, rng: &mut SeededRng| {
        let mut pts = vec![from];
        let (mut h, mut p) = (heading, from);
        for _ in 0..(length / step).ceil() as usize {
            h += rng.range_f32(-0.45, 0.45);
            p = (p.0 + h.cos() * step, p.1 + h.sin() * step);
            if scene.coverage_at(p.0, p.1) < 0.5 {
                break;
            }
            pts.push(p);
        }
        pts
    };
    let heading = rng.range_f32(-PI, PI);
    let mut lines = vec![walk(start, heading, len, rng)];
    for _ in 0..rng.range_i64(1, 2) {
        let main = &lines[0];
        let from = main[rng.index(main.len())];
        let turn = rng.range_f32(0.5, 1.0) * if rng.chance(0.5) { 1.0 } else { -1.0 };
        let branch_len = len * rng.range_f32(0.25, 0.5);
        let branch = walk(from, heading + turn, branch_len, rng);
        lines.push(branch);
    }
    let half = rng.range_f32(0.45, 0.85) * k;
    let darkness = rng.range_f32(0.65, 0.8);
    let all: Vec<(f32, f32)> = lines.iter().flatten().copied().collect();
    let bbox = PixelBox::around(&all, half + 2.0, size, size);
    let alpha = |x: f32, y: f32| {
        let d = lines
            .iter()
            .map(|l| polyline_distance(x, y, l))
            .fold(f32::MAX, f32::min);
        stroke_alpha(d, half)
    };
    paint(r, bbox, alpha, |c, a| {
        let m = 1.0 - darkness * a;
        [c[0] * m, c[1] * m, c[2] * m]
    });
}

fn hole(class: SynthClass, r: &mut Rendered, size: usize, k: f32, rng: &mut SeededRng) {
    let s = size as f32;
    let count = if class == SynthClass::Wood {
        rng.range_i64(2, 4)
    } else {
        1
    };
    let (rlo, rhi) = if class == SynthClass::Wood {
        (0.010, 0.02)
    } else {
        (0.022, 0.05)
    };
    let rim = 1.6 * k;
    let first_r = rng.range_f32(rlo, rhi) * s;
    let anchor = surface_point(r, size, first_r + rim + 2.0, rng);
    let amp = if class == SynthClass::Weave {
        0.35
    } else {
        0.18
    };
    for i in 0..count {
        let r0 = if i == 0 {
            first_r
        } else {
            rng.range_f32(rlo, rhi) * s
        };
        let (cx, cy) = if i == 0 {
            anchor
        } else {
            (
                anchor.0 + rng.range_f32(-0.06, 0.06) * s,
                anchor.1 + rng.range_f32(-0.06, 0.06) * s,
            )
        };
        let blob = Blob {
            cx,
            cy,
            r0,
            amp,
            noise: Noise::new(seed32(rng)),
        };
        let depth = [0.06, 0.05, 0.045];
        let bbox = blob.bbox(rim + 2.0, size, size);
        let w = r.scene.w();
        let fg = &mut r.scene.fg.px;
        bbox.for_each(w, |idx, x, y| {
            let sd = blob.signed(x, y);
            if sd >= rim + 0.5 {
                return;
            }
            // Raised rim just outside the opening, then the dark inside (lighter towards the bottom centre).
            let rim_a = stroke_alpha((sd - rim / 2.0).abs(), rim / 2.0);
            let inside = (0.5 - sd).clamp(0.0, 1.0);
            let c = fg[idx];
            let lifted = mix3(c, [c[0] * 1.18, c[1] * 1.18, c[2] * 1.18], rim_a);
            let bottom = 1.0 + 1.2 * (-sd / r0).clamp(0.0, 1.0);
            fg[idx] = mix3(
                lifted,
                [depth[0] * bottom, depth[1] * bottom, depth[2] * bottom],
                inside,
            );
        });
    }
}

fn stain(class: SynthClass, r: &mut Rendered, size: usize, k: f32, rng: &mut SeededRng) {
    let s = size as f32;
    let (rlo, rhi) = match class {
        SynthClass::Pill => (0.018, 0.035),
        SynthClass::Washer => (0.03, 0.06),
        _ => (0.04, 0.09),
    };
    let r0 = rng.range_f32(rlo, rhi) * s;
    let centre = surface_point(r, size, r0 * 0.5, rng);
    let blob = Blob {
        cx: centre.0,
        cy: centre.1,
        r0,
        amp: 0.35,
        noise: Noise::new(seed32(rng)),
    };
    let texture = Noise::new(seed32(rng));
    let edge = 0.3 * r0;
    let alpha = |x: f32, y: f32| {
        let sd = blob.signed(x, y);
        if sd >= 0.0 {
            return 0.0;
        }
        (1.0 - smoothstep(-edge, 0.0, sd))
            * (0.75 + 0.25 * texture.fbm(x * 0.08 / k, y * 0.08 / k, 2, 0.5))
    };
    let bbox = blob.bbox(2.0, size, size);
    let (tint, mode_multiply, strength) = match class {
        SynthClass::Wood => ([0.60, 0.52, 0.45], true, rng.range_f32(0.7, 0.9)),
        SynthClass::Marble => ([0.72, 0.47, 0.26], false, rng.range_f32(0.35, 0.55)),
        SynthClass::Weave => ([0.55, 0.52, 0.50], true, rng.range_f32(0.6, 0.85)),
        SynthClass::Washer => ([0.50, 0.27, 0.12], false, rng.range_f32(0.5, 0.8)),
        SynthClass::Pill => ([0.36, 0.28, 0.22], false, rng.range_f32(0.6, 0.9)),
        SynthClass::BottleCap => ([0.30, 0.25, 0.20], false, rng.range_f32(0.5, 0.8)),
    };
    paint(r, bbox, alpha, |c, a| {
        let target = if mode_multiply {
            [c[0] * tint[0], c[1] * tint[1], c[2] * tint[2]]
        } else {
            tint
        };
        mix3(c, target, a * strength)
    });
}

fn missing_part(r: &mut Rendered, size: usize, k: f32, rng: &mut SeededRng) {
    let s = size as f32;
    let w = r.scene.w();
    match r.geometry {
        Geometry::Ring {
            cx,
            cy,
            r_in,
            r_out,
        } => {
            let ang = rng.range_f32(-PI, PI);
            let outer = rng.chance(0.7);
            let rb = rng.range_f32(0.06, 0.11) * s;
            let at = if outer {
                r_out + rb * 0.35
            } else {
                r_in - rb * 0.35
            };
            let blob = Blob {
                cx: cx + ang.cos() * at,
                cy: cy + ang.sin() * at,
                r0: rb,
                amp: 0.15,
                noise: Noise::new(seed32(rng)),
            };
            cut(r, blob.bbox(2.0, size, size), w, |x, y| {
                (blob.signed(x, y) + 0.5).clamp(0.0, 1.0)
            });
        }
        Geometry::Capsule { a, b, r: radius } => {
            let (end, other) = if rng.chance(0.5) { (a, b) } else { (b, a) };
            let (ux, uy) = {
                let (dx, dy) = (end.0 - other.0, end.1 - other.1);
                let n = (dx * dx + dy * dy).sqrt();
                (dx / n, dy / n)
            };
            let side = rng.range_f32(-0.6, 0.6) * radius;
            let out = radius * rng.range_f32(0.55, 0.8);
            let rb = radius * rng.range_f32(0.45, 0.7);
            let blob = Blob {
                cx: end.0 + ux * out - uy * side,
                cy: end.1 + uy * out + ux * side,
                r0: rb,
                amp: 0.2,
                noise: Noise::new(seed32(rng)),
            };
            cut(r, blob.bbox(2.0, size, size), w, |x, y| {
                (blob.signed(x, y) + 0.5).clamp(0.0, 1.0)
            });
        }
        Geometry::Disc { cx, cy, r: radius } => {
            let ang = rng.range_f32(-PI, PI);
            let (ux, uy) = (ang.cos(), ang.sin());
            let at = radius * rng.range_f32(0.70, 0.84);
            let jag = Noise::new(seed32(rng));
            let bbox = PixelBox::around(
                &[(cx - radius, cy - radius), (cx + radius, cy + radius)],
                2.0,
                size,
                size,
            );
            cut(r, bbox, w, |x, y| {
                let (px, py) = (x - cx, y - cy);
                let proj = px * ux + py * uy;
                let along = -px * uy + py * ux;
                let edge = at + 2.5 * k * jag.fbm(along * 0.15 / k, 0.5, 3, 0.5);
                (edge - proj + 0.5).clamp(0.0, 1.0)
            });
        }
        Geometry::Texture => {
            // Textures have no outline to break; a missing part there is a hole.
            hole(SynthClass::Weave, r, size, k, rng);
        }
    }
}

/// Multiply coverage by `keep(x, y)` inside `bbox`.
fn cut(r: &mut Rendered, bbox: PixelBox, w: usize, keep: impl Fn(f32, f32) -> f32) {
    let cov = &mut r.scene.coverage;
    bbox.for_each(w, |i, x, y| {
        let kf = keep(x, y);
        if kf < 1.0 {
            cov[i] *= kf;
        }
    });
}

fn color_shift(class: SynthClass, r: &mut Rendered, size: usize, k: f32, rng: &mut SeededRng) {
    let s = size as f32;
    let (rlo, rhi) = match class {
        SynthClass::Pill => (0.035, 0.07),
        _ => (0.06, 0.12),
    };
    let r0 = rng.range_f32(rlo, rhi) * s;
    let centre = surface_point(r, size, r0 * 0.4, rng);
    let blob = Blob {
        cx: centre.0,
        cy: centre.1,
        r0,
        amp: 0.3,
        noise: Noise::new(seed32(rng)),
    };
    let soft = 1.5 * k;
    let alpha = |x: f32, y: f32| 1.0 - smoothstep(-soft, 0.0, blob.signed(x, y));
    let bbox = blob.bbox(2.0, size, size);
    match class {
        SynthClass::Weave => {
            let turn = rng.range_f32(0.6, 1.2) * if rng.chance(0.5) { 1.0 } else { -1.0 };
            let (c, sn) = (turn.cos(), turn.sin());
            paint(r, bbox, alpha, |col, a| {
                let rotated = hue_rotate(col, c, sn);
                // Boost saturation a little so the dyed patch stands out from the khaki.
                let l = (rotated[0] + rotated[1] + rotated[2]) / 3.0;
                mix3(col, mix3([l, l, l], rotated, 1.6), a)
            });
        }
        SynthClass::BottleCap => {
            let fade = rng.range_f32(0.5, 0.8);
            paint(r, bbox, alpha, |col, a| {
                let l = 0.299 * col[0] + 0.587 * col[1] + 0.114 * col[2];
                mix3(col, [l * 1.3 + 0.1, l * 1.3 + 0.1, l * 1.3 + 0.1], a * fade)
            });
        }
        _ => {
            // Marble and pill: a pink-to-yellow discolouration.
            let tints = [[1.0, 0.78, 0.70], [1.0, 0.92, 0.62], [0.80, 0.90, 0.72]];
            let tint = tints[rng.index(tints.len())];
            let strength = rng.range_f32(0.7, 1.0);
            paint(r, bbox, alpha, |col, a| {
                mix3(
                    col,
                    [col[0] * tint[0], col[1] * tint[1], col[2] * tint[2]],
                    a * strength,
                )
            });
        }
    }
}
