//! The synthetic classes: three textures and three objects, each drawn procedurally with per-image variation
//! in pose, colour and structure (so that normal images are not identical and detection has to generalise).
//! All lengths are given for a 256-pixel image and scaled with the size.

use std::f32::consts::PI;

use super::canvas::{Canvas, Scene, hue_rotate, mix3, segment_distance, smoothstep};
use super::defects::DefectKind;
use super::noise::{Noise, fast_floor, hash01};
use crate::rng::SeededRng;

/// A synthetic class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SynthClass {
    /// Woven fabric (texture).
    Weave,
    /// Wood grain (texture).
    Wood,
    /// Veined marble (texture).
    Marble,
    /// A metal washer on a dark background (object).
    Washer,
    /// A speckled capsule-shaped pill on a dark background (object).
    Pill,
    /// A knurled bottle cap seen from above on paper (object).
    BottleCap,
}

impl SynthClass {
    /// Every class, in output order.
    pub const ALL: [SynthClass; 6] = [
        SynthClass::Weave,
        SynthClass::Wood,
        SynthClass::Marble,
        SynthClass::Washer,
        SynthClass::Pill,
        SynthClass::BottleCap,
    ];

    /// Folder and class name.
    pub fn name(self) -> &'static str {
        match self {
            SynthClass::Weave => "weave",
            SynthClass::Wood => "wood",
            SynthClass::Marble => "marble",
            SynthClass::Washer => "washer",
            SynthClass::Pill => "pill",
            SynthClass::BottleCap => "bottle_cap",
        }
    }

    /// Parse a class name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Textures fill the frame; objects sit on a background.
    pub fn is_texture(self) -> bool {
        matches!(
            self,
            SynthClass::Weave | SynthClass::Wood | SynthClass::Marble
        )
    }

    /// The defect types generated for this class (their folder names are [`DefectKind::name`]).
    pub fn defects(self) -> &'static [DefectKind] {
        use DefectKind::*;
        match self {
            SynthClass::Weave => &[Hole, Stain, ColorShift, Scratch],
            SynthClass::Wood => &[Scratch, Crack, Stain, Hole],
            SynthClass::Marble => &[Crack, Stain, ColorShift, Scratch],
            SynthClass::Washer => &[Scratch, MissingPart, Crack, Stain],
            SynthClass::Pill => &[ColorShift, Crack, MissingPart, Stain],
            SynthClass::BottleCap => &[Scratch, Hole, ColorShift, MissingPart],
        }
    }
}

/// Where the object is, for placing defects.
#[derive(Clone, Copy, Debug)]
pub enum Geometry {
    /// The whole frame is surface.
    Texture,
    /// An annulus.
    Ring {
        cx: f32,
        cy: f32,
        r_in: f32,
        r_out: f32,
    },
    /// A stadium: the points within `r` of the segment a–b.
    Capsule {
        a: (f32, f32),
        b: (f32, f32),
        r: f32,
    },
    /// A disc.
    Disc { cx: f32, cy: f32, r: f32 },
}

/// A rendered defect-free scene and its geometry.
pub struct Rendered {
    pub scene: Scene,
    pub geometry: Geometry,
}

fn seed32(rng: &mut SeededRng) -> u32 {
    (rng.next_u64() >> 32) as u32
}

fn scale3(c: [f32; 3], k: f32) -> [f32; 3] {
    [c[0] * k, c[1] * k, c[2] * k]
}

/// Draw one defect-free image of `class` at `size`×`size`.
pub fn render(class: SynthClass, size: usize, rng: &mut SeededRng) -> Rendered {
    match class {
        SynthClass::Weave => weave(size, rng),
        SynthClass::Wood => wood(size, rng),
        SynthClass::Marble => marble(size, rng),
        SynthClass::Washer => washer(size, rng),
        SynthClass::Pill => pill(size, rng),
        SynthClass::BottleCap => bottle_cap(size, rng),
    }
}

/// Per-channel colour jitter of ±`amount` and a common brightness factor.
fn jitter_colour(c: [f32; 3], rng: &mut SeededRng, amount: f32, brightness: f32) -> [f32; 3] {
    let b = rng.range_f32(1.0 - brightness, 1.0 + brightness);
    [
        c[0] * b * rng.range_f32(1.0 - amount, 1.0 + amount),
        c[1] * b * rng.range_f32(1.0 - amount, 1.0 + amount),
        c[2] * b * rng.range_f32(1.0 - amount, 1.0 + amount),
    ]
}

fn weave(s: usize, rng: &mut SeededRng) -> Rendered {
    let k = s as f32 / 256.0;
    let period = 11.0 * k * rng.range_f32(0.95, 1.05);
    let theta = rng.range_f32(-0.05, 0.05);
    let (ox, oy) = (rng.range_f32(0.0, 64.0), rng.range_f32(0.0, 64.0));
    let warp = jitter_colour([0.58, 0.49, 0.35], rng, 0.03, 0.05);
    let weft = scale3(warp, rng.range_f32(0.80, 0.88));
    let fibre = Noise::new(seed32(rng));
    let thread_seed = seed32(rng);
    let (c, sn) = (theta.cos(), theta.sin());
    let fg = Canvas::from_fn(s, s, |x, y| {
        let u = (x * c + y * sn) / period + ox;
        let v = (-x * sn + y * c) / period + oy;
        let (i, j) = (fast_floor(u), fast_floor(v));
        let (fu, fv) = (u - i, v - j);
        let warp_on_top = (i as i64 + j as i64).rem_euclid(2) == 0;
        // The thread on top: warp runs along v (its cross-section is across u), weft the other way.
        let (cross, along, col, tid) = if warp_on_top {
            (fu, fv, warp, hash01(i as i32, 0, thread_seed))
        } else {
            (fv, fu, weft, hash01(0, j as i32, thread_seed))
        };
        let profile = (PI * cross).sin().max(0.0).sqrt();
        let bulge = 0.82 + 0.18 * (PI * along).sin();
        let shade = (0.28 + 0.72 * profile * bulge) * (0.94 + 0.12 * tid);
        let f = fibre.fbm(x * 0.30 / k, y * 0.30 / k, 2, 0.5) * 0.05;
        [col[0] * shade + f, col[1] * shade + f, col[2] * shade + f]
    });
    Rendered {
        scene: Scene::texture(fg),
        geometry: Geometry::Texture,
    }
}

fn wood(s: usize, rng: &mut SeededRng) -> Rendered {
    let k = s as f32 / 256.0;
    let theta = rng.range_f32(-0.08, 0.08);
    let freq = rng.range_f32(0.85, 1.15) / (24.0 * k);
    let phase = rng.range_f32(0.0, 10.0);
    let light = jitter_colour([0.80, 0.60, 0.40], rng, 0.03, 0.05);
    let dark = scale3(light, rng.range_f32(0.62, 0.70));
    let warp_n = Noise::new(seed32(rng));
    let grain_n = Noise::new(seed32(rng));
    let pore_n = Noise::new(seed32(rng));
    let (c, sn) = (theta.cos(), theta.sin());
    let fg = Canvas::from_fn(s, s, |x, y| {
        let u = x * c + y * sn;
        let v = -x * sn + y * c;
        let w = warp_n.fbm(u * 0.004 / k, v * 0.010 / k, 4, 0.5) * 2.4;
        let r = v * freq + w + phase;
        let ring = r - fast_floor(r);
        // Early wood (light) to late wood (dark), with a sharp return at the ring boundary.
        let t = smoothstep(0.45, 0.92, ring) * (1.0 - smoothstep(0.95, 1.0, ring));
        let base = mix3(light, dark, t);
        let grain = grain_n.fbm(u * 0.012 / k, v * 0.40 / k, 3, 0.5);
        let pore = pore_n.at(u * 0.10 / k, v * 0.85 / k);
        let m = (1.0 + 0.07 * grain) * if pore > 0.55 { 0.93 } else { 1.0 };
        scale3(base, m)
    });
    Rendered {
        scene: Scene::texture(fg),
        geometry: Geometry::Texture,
    }
}

fn marble(s: usize, rng: &mut SeededRng) -> Rendered {
    let k = s as f32 / 256.0;
    let theta = rng.range_f32(-0.6, 0.6) + 0.8;
    let phase = rng.range_f32(0.0, 2.0);
    let base = jitter_colour([0.90, 0.89, 0.86], rng, 0.015, 0.03);
    let vein_col = jitter_colour([0.40, 0.41, 0.45], rng, 0.04, 0.06);
    let turb = Noise::new(seed32(rng));
    let cloud = Noise::new(seed32(rng));
    let turb2 = Noise::new(seed32(rng));
    let (c, sn) = (theta.cos(), theta.sin());
    let fg = Canvas::from_fn(s, s, |x, y| {
        let cl = cloud.fbm(x * 0.006 / k, y * 0.006 / k, 3, 0.5);
        let b = scale3(base, 1.0 + 0.05 * cl);
        let q = (x * c + y * sn) * 0.016 / k
            + 4.0 * turb.turbulence(x * 0.007 / k, y * 0.007 / k, 4)
            + phase;
        let v = (q * PI).sin().abs();
        let vein = (1.0 - v).powi(6);
        let q2 =
            (x * sn - y * c) * 0.03 / k + 3.0 * turb2.turbulence(x * 0.012 / k, y * 0.012 / k, 4);
        let vein2 = (1.0 - (q2 * PI).sin().abs()).powi(16) * 0.5;
        mix3(b, vein_col, (0.85 * vein + vein2).min(1.0))
    });
    Rendered {
        scene: Scene::texture(fg),
        geometry: Geometry::Texture,
    }
}

/// A soft drop shadow: `shape(x, y)` is the object's coverage; it is sampled at an offset and darkens `bg`.
fn drop_shadow(
    bg: &mut Canvas,
    offset: (f32, f32),
    strength: f32,
    soft: f32,
    shape: impl Fn(f32, f32) -> f32,
) {
    let w = bg.w;
    for (i, p) in bg.px.iter_mut().enumerate() {
        let (x, y) = (
            (i % w) as f32 + 0.5 - offset.0,
            (i / w) as f32 + 0.5 - offset.1,
        );
        let a = shape_soft(&shape, x, y, soft);
        let m = 1.0 - strength * a;
        *p = scale3(*p, m);
    }
}

/// Softened coverage: mean of the shape over a small cross of offsets.
fn shape_soft(shape: &impl Fn(f32, f32) -> f32, x: f32, y: f32, soft: f32) -> f32 {
    (shape(x, y)
        + shape(x + soft, y)
        + shape(x - soft, y)
        + shape(x, y + soft)
        + shape(x, y - soft))
        / 5.0
}

fn background(s: usize, rng: &mut SeededRng, colour: [f32; 3], texture: f32) -> Canvas {
    let k = s as f32 / 256.0;
    let colour = jitter_colour(colour, rng, 0.02, 0.05);
    let n = Noise::new(seed32(rng));
    let (gx, gy) = (rng.range_f32(-1.0, 1.0), rng.range_f32(-1.0, 1.0));
    Canvas::from_fn(s, s, |x, y| {
        let g = 1.0 + 0.04 * (gx * (x / s as f32 - 0.5) + gy * (y / s as f32 - 0.5));
        let t = 1.0 + texture * n.fbm(x * 0.03 / k, y * 0.03 / k, 3, 0.5);
        scale3(colour, g * t)
    })
}

fn washer(s: usize, rng: &mut SeededRng) -> Rendered {
    let k = s as f32 / 256.0;
    let sf = s as f32;
    let cx = sf * (0.5 + rng.range_f32(-0.03, 0.03));
    let cy = sf * (0.5 + rng.range_f32(-0.03, 0.03));
    let r_out = 0.36 * sf * rng.range_f32(0.97, 1.03);
    let r_in = r_out * rng.range_f32(0.44, 0.48);
    let phi = rng.range_f32(-PI, PI);
    let metal = jitter_colour([0.64, 0.65, 0.67], rng, 0.015, 0.05);
    let mut bg = background(s, rng, [0.20, 0.21, 0.23], 0.06);
    let brush = Noise::new(seed32(rng));
    let spots = Noise::new(seed32(rng));
    let ring = move |x: f32, y: f32| {
        let d = ((x - cx).powi(2) + (y - cy).powi(2)).sqrt();
        (r_out + 0.5 - d).clamp(0.0, 1.0) * (d - r_in + 0.5).clamp(0.0, 1.0)
    };
    drop_shadow(&mut bg, (3.0 * k, 4.0 * k), 0.45, 2.5 * k, ring);
    let coverage: Vec<f32> = (0..s * s)
        .map(|i| ring((i % s) as f32 + 0.5, (i / s) as f32 + 0.5))
        .collect();
    let fg = Canvas::from_fn_where(s, s, &coverage, |x, y| {
        let (dx, dy) = (x - cx, y - cy);
        let d = (dx * dx + dy * dy).sqrt();
        let rel = ((d - r_in) / (r_out - r_in)).clamp(0.0, 1.0);
        let ang = dy.atan2(dx);
        let facing = (ang - phi).cos();
        // Bevels at both edges catch the light on opposite sides.
        let inner = 1.0 - smoothstep(0.0, 0.12, rel);
        let outer = smoothstep(0.88, 1.0, rel);
        let bevel = 0.22 * facing * (outer - inner) - 0.10 * (inner + outer);
        let brushed = 0.05 * brush.fbm(d * 0.9 / k, 3.0, 2, 0.5)
            + 0.015 * spots.fbm(x * 0.08 / k, y * 0.08 / k, 2, 0.5);
        let mut da = ang - phi;
        da -= (da / (2.0 * PI)).round() * 2.0 * PI;
        let highlight =
            0.20 * (-da * da / 0.30).exp() + 0.08 * (-(da.abs() - PI).powi(2) / 0.30).exp();
        scale3(metal, 0.86 + bevel + brushed + highlight)
    });
    Rendered {
        scene: Scene { bg, fg, coverage },
        geometry: Geometry::Ring {
            cx,
            cy,
            r_in,
            r_out,
        },
    }
}

fn pill(s: usize, rng: &mut SeededRng) -> Rendered {
    let k = s as f32 / 256.0;
    let sf = s as f32;
    let cx = sf * (0.5 + rng.range_f32(-0.03, 0.03));
    let cy = sf * (0.5 + rng.range_f32(-0.03, 0.03));
    let theta = rng.range_f32(-0.15, 0.15);
    let half = 0.22 * sf * rng.range_f32(0.97, 1.03);
    let r = 0.13 * sf * rng.range_f32(0.97, 1.03);
    let (ux, uy) = (theta.cos(), theta.sin());
    let a = (cx - ux * half, cy - uy * half);
    let b = (cx + ux * half, cy + uy * half);
    let cream = jitter_colour([0.93, 0.90, 0.83], rng, 0.015, 0.03);
    let speck_col = jitter_colour([0.72, 0.30, 0.26], rng, 0.05, 0.08);
    let speck_seed = seed32(rng);
    let surface = Noise::new(seed32(rng));
    let mut bg = background(s, rng, [0.14, 0.13, 0.13], 0.08);
    let shape = move |x: f32, y: f32| (r + 0.5 - segment_distance(x, y, a, b)).clamp(0.0, 1.0);
    drop_shadow(&mut bg, (3.0 * k, 4.0 * k), 0.5, 3.0 * k, shape);
    let cell = 6.0 * k;
    let light = {
        let l = [-0.35f32, -0.45, 0.82];
        let n = (l[0] * l[0] + l[1] * l[1] + l[2] * l[2]).sqrt();
        [l[0] / n, l[1] / n, l[2] / n]
    };
    let coverage: Vec<f32> = (0..s * s)
        .map(|i| shape((i % s) as f32 + 0.5, (i / s) as f32 + 0.5))
        .collect();
    let fg = Canvas::from_fn_where(s, s, &coverage, |x, y| {
        // Closest point on the axis gives the surface normal of the capsule.
        let t = (((x - a.0) * (b.0 - a.0) + (y - a.1) * (b.1 - a.1)) / (4.0 * half * half))
            .clamp(0.0, 1.0);
        let (px, py) = (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1));
        let (nx, ny) = ((x - px) / r, (y - py) / r);
        let nz = (1.0 - nx * nx - ny * ny).max(0.0).sqrt();
        let diffuse = (nx * light[0] + ny * light[1] + nz * light[2]).max(0.0);
        let spec = diffuse.powi(24) * 0.18;
        let mut col = scale3(cream, 0.55 + 0.45 * diffuse);
        col = [col[0] + spec, col[1] + spec, col[2] + spec];
        let grain = 0.02 * surface.fbm(x * 0.15 / k, y * 0.15 / k, 2, 0.5);
        col = [col[0] + grain, col[1] + grain, col[2] + grain];
        // Speckles: at most one dot per grid cell, at a hashed position and size.
        let (ci, cj) = (fast_floor(x / cell) as i32, fast_floor(y / cell) as i32);
        if hash01(ci, cj, speck_seed) < 0.20 {
            let sx = (ci as f32 + 0.3 + 0.4 * hash01(ci, cj, speck_seed ^ 1)) * cell;
            let sy = (cj as f32 + 0.3 + 0.4 * hash01(ci, cj, speck_seed ^ 2)) * cell;
            let sr = (0.6 + 0.7 * hash01(ci, cj, speck_seed ^ 3)) * k;
            let dd = ((x - sx).powi(2) + (y - sy).powi(2)).sqrt();
            let alpha = (sr + 0.5 - dd).clamp(0.0, 1.0) * 0.85;
            col = mix3(col, scale3(speck_col, 0.6 + 0.4 * diffuse), alpha);
        }
        // The break line across the middle.
        let along = (x - cx) * ux + (y - cy) * uy;
        let groove = (1.0 - (along.abs() / (0.9 * k)).min(1.0))
            * (1.0 - smoothstep(0.6, 0.85, nx.hypot(ny)));
        scale3(col, 1.0 - 0.25 * groove)
    });
    Rendered {
        scene: Scene { bg, fg, coverage },
        geometry: Geometry::Capsule { a, b, r },
    }
}

fn bottle_cap(s: usize, rng: &mut SeededRng) -> Rendered {
    let k = s as f32 / 256.0;
    let sf = s as f32;
    let cx = sf * (0.5 + rng.range_f32(-0.03, 0.03));
    let cy = sf * (0.5 + rng.range_f32(-0.03, 0.03));
    let big_r = 0.38 * sf * rng.range_f32(0.98, 1.02);
    let rho = rng.range_f32(0.0, 2.0 * PI);
    let hue = rng.range_f32(-0.06, 0.06);
    let paint = hue_rotate(
        jitter_colour([0.72, 0.14, 0.12], rng, 0.02, 0.05),
        hue.cos(),
        hue.sin(),
    );
    let hl = (
        cx + big_r * (-0.30 + rng.range_f32(-0.05, 0.05)),
        cy + big_r * (-0.38 + rng.range_f32(-0.05, 0.05)),
    );
    let mut bg = background(s, rng, [0.82, 0.79, 0.72], 0.025);
    let paint_n = Noise::new(seed32(rng));
    let disc = move |x: f32, y: f32| {
        (big_r + 0.5 - ((x - cx).powi(2) + (y - cy).powi(2)).sqrt()).clamp(0.0, 1.0)
    };
    drop_shadow(&mut bg, (4.0 * k, 5.0 * k), 0.35, 3.0 * k, disc);
    let ridges = 96.0;
    let coverage: Vec<f32> = (0..s * s)
        .map(|i| disc((i % s) as f32 + 0.5, (i / s) as f32 + 0.5))
        .collect();
    let fg = Canvas::from_fn_where(s, s, &coverage, |x, y| {
        let (dx, dy) = (x - cx, y - cy);
        let rel = (dx * dx + dy * dy).sqrt() / big_r;
        let shade = if rel > 0.86 {
            let ang = dy.atan2(dx);
            let ridge = 0.5 + 0.5 * (ang * ridges + rho).cos();
            (0.68 + 0.30 * ridge) * (1.0 - 0.30 * smoothstep(0.95, 1.0, rel))
        } else {
            let dome = 0.90 + 0.10 * (1.0 - rel * rel);
            let groove = 1.0 - 0.28 * (1.0 - ((rel - 0.845).abs() / 0.012).min(1.0));
            let logo = 1.0 + 0.10 * (1.0 - ((rel - 0.55).abs() / 0.010).min(1.0));
            dome * groove * logo
        };
        let spec = 0.22
            * (-((x - hl.0).powi(2) + (y - hl.1).powi(2)) / (2.0 * (0.14 * big_r).powi(2))).exp();
        let n = 0.015 * paint_n.fbm(x * 0.1 / k, y * 0.1 / k, 2, 0.5);
        let c = scale3(paint, shade);
        [c[0] + spec + n, c[1] + spec + n, c[2] + spec + n]
    });
    Rendered {
        scene: Scene { bg, fg, coverage },
        geometry: Geometry::Disc { cx, cy, r: big_r },
    }
}
