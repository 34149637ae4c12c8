//! Float canvases, the object/background scene they compose, and the shape helpers defects draw with.

use image::{GrayImage, RgbImage};

use super::noise::Noise;

/// An RGB image with f32 channels in [0, 1] (values outside are clamped when quantised).
#[derive(Clone, Debug)]
pub struct Canvas {
    pub w: usize,
    pub h: usize,
    pub px: Vec<[f32; 3]>,
}

impl Canvas {
    pub fn filled(w: usize, h: usize, c: [f32; 3]) -> Self {
        Self {
            w,
            h,
            px: vec![c; w * h],
        }
    }

    /// Fill every pixel from a function of its centre coordinates.
    pub fn from_fn(w: usize, h: usize, f: impl Fn(f32, f32) -> [f32; 3]) -> Self {
        let mut px = Vec::with_capacity(w * h);
        for y in 0..h {
            for x in 0..w {
                px.push(f(x as f32 + 0.5, y as f32 + 0.5));
            }
        }
        Self { w, h, px }
    }

    /// Like [`Canvas::from_fn`] but only where `coverage > 0` (elsewhere black): an object's colours are never
    /// visible outside its coverage, which only ever shrinks.
    pub fn from_fn_where(
        w: usize,
        h: usize,
        coverage: &[f32],
        f: impl Fn(f32, f32) -> [f32; 3],
    ) -> Self {
        let mut px = vec![[0.0; 3]; w * h];
        for (i, p) in px.iter_mut().enumerate() {
            if coverage[i] > 0.0 {
                *p = f((i % w) as f32 + 0.5, (i / w) as f32 + 0.5);
            }
        }
        Self { w, h, px }
    }
}

/// What a class renders: an object (foreground colours + coverage) over a background. Textures cover the whole
/// frame (coverage 1). Surface defects edit `fg`, missing parts edit `coverage`; [`Scene::compose`] mixes them.
#[derive(Clone, Debug)]
pub struct Scene {
    pub bg: Canvas,
    pub fg: Canvas,
    pub coverage: Vec<f32>,
}

impl Scene {
    pub fn texture(fg: Canvas) -> Self {
        let n = fg.w * fg.h;
        Self {
            bg: Canvas::filled(fg.w, fg.h, [0.0; 3]),
            fg,
            coverage: vec![1.0; n],
        }
    }

    pub fn w(&self) -> usize {
        self.fg.w
    }

    pub fn h(&self) -> usize {
        self.fg.h
    }

    /// Coverage at a point (nearest pixel; 0 outside the frame).
    pub fn coverage_at(&self, x: f32, y: f32) -> f32 {
        if x < 0.0 || y < 0.0 {
            return 0.0;
        }
        let (xi, yi) = (x as usize, y as usize);
        if xi >= self.w() || yi >= self.h() {
            return 0.0;
        }
        self.coverage[yi * self.w() + xi]
    }

    /// `bg·(1 − c) + fg·c` per pixel.
    pub fn compose(&self) -> Canvas {
        let mut out = self.bg.clone();
        for ((o, f), &c) in out.px.iter_mut().zip(&self.fg.px).zip(&self.coverage) {
            if c > 0.0 {
                for k in 0..3 {
                    o[k] += (f[k] - o[k]) * c;
                }
            }
        }
        out
    }
}

/// An axis-aligned pixel box, clipped to the frame.
#[derive(Clone, Copy, Debug)]
pub struct PixelBox {
    pub x0: usize,
    pub y0: usize,
    pub x1: usize,
    pub y1: usize,
}

impl PixelBox {
    pub fn around(points: &[(f32, f32)], margin: f32, w: usize, h: usize) -> Self {
        let (mut lx, mut ly, mut hx, mut hy) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
        for &(x, y) in points {
            lx = lx.min(x);
            ly = ly.min(y);
            hx = hx.max(x);
            hy = hy.max(y);
        }
        let clip = |v: f32, n: usize| v.clamp(0.0, n as f32) as usize;
        Self {
            x0: clip((lx - margin).floor(), w),
            y0: clip((ly - margin).floor(), h),
            x1: clip((hx + margin).ceil() + 1.0, w),
            y1: clip((hy + margin).ceil() + 1.0, h),
        }
    }

    /// Visit each pixel index with its centre coordinates.
    pub fn for_each(&self, w: usize, mut f: impl FnMut(usize, f32, f32)) {
        for y in self.y0..self.y1 {
            for x in self.x0..self.x1 {
                f(y * w + x, x as f32 + 0.5, y as f32 + 0.5);
            }
        }
    }
}

/// Distance from a point to a segment.
pub fn segment_distance(px: f32, py: f32, (ax, ay): (f32, f32), (bx, by): (f32, f32)) -> f32 {
    let (dx, dy) = (bx - ax, by - ay);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (((px - ax) * dx + (py - ay) * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (cx, cy) = (ax + t * dx, ay + t * dy);
    ((px - cx).powi(2) + (py - cy).powi(2)).sqrt()
}

/// Distance from a point to a polyline.
pub fn polyline_distance(px: f32, py: f32, line: &[(f32, f32)]) -> f32 {
    line.windows(2)
        .map(|s| segment_distance(px, py, s[0], s[1]))
        .fold(f32::MAX, f32::min)
}

/// Anti-aliased coverage of a stroke of half-width `half` at distance `d` (a one-pixel ramp).
pub fn stroke_alpha(d: f32, half: f32) -> f32 {
    (half + 0.5 - d).clamp(0.0, 1.0)
}

/// `3t² − 2t³` on [0, 1].
pub fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// An irregular blob: radius `r0·(1 + amp·noise(direction))` around a centre.
#[derive(Clone, Copy, Debug)]
pub struct Blob {
    pub cx: f32,
    pub cy: f32,
    pub r0: f32,
    pub amp: f32,
    pub noise: Noise,
}

impl Blob {
    /// Signed distance-like value: `dist − radius(direction)` (negative inside).
    pub fn signed(&self, x: f32, y: f32) -> f32 {
        let (dx, dy) = (x - self.cx, y - self.cy);
        let d = (dx * dx + dy * dy).sqrt();
        if d < 1e-6 {
            return -self.r0;
        }
        // Sample the noise on a circle so the outline is periodic in the angle.
        let (ux, uy) = (dx / d, dy / d);
        let r = self.r0 * (1.0 + self.amp * self.noise.fbm(ux * 1.7 + 5.0, uy * 1.7 + 5.0, 3, 0.5));
        d - r
    }

    /// Bounding box of everything the blob can touch, plus a margin.
    pub fn bbox(&self, margin: f32, w: usize, h: usize) -> PixelBox {
        let r = self.r0 * (1.0 + self.amp.abs()) + margin;
        PixelBox::around(
            &[(self.cx - r, self.cy - r), (self.cx + r, self.cy + r)],
            1.0,
            w,
            h,
        )
    }
}

/// Linear mix `a + (b − a)·t`.
pub fn mix3(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

/// Rotate a colour's hue by `angle` radians around the grey axis (luminance-preserving rotation).
pub fn hue_rotate(c: [f32; 3], cos: f32, sin: f32) -> [f32; 3] {
    // Rodrigues rotation about (1,1,1)/√3.
    let k = (1.0 - cos) / 3.0;
    let s = sin / 3f32.sqrt();
    let m = [
        [cos + k, k - s, k + s],
        [k + s, cos + k, k - s],
        [k - s, k + s, cos + k],
    ];
    [
        m[0][0] * c[0] + m[0][1] * c[1] + m[0][2] * c[2],
        m[1][0] * c[0] + m[1][1] * c[1] + m[1][2] * c[2],
        m[2][0] * c[0] + m[2][1] * c[1] + m[2][2] * c[2],
    ]
}

/// Quantise one channel: `⌊clamp(v, 0, 1)·255 + 0.5⌋`.
pub fn to_u8(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8
}

/// Mask of pixels that differ between two images in any channel (255 where they differ).
pub fn difference_mask(a: &RgbImage, b: &RgbImage) -> GrayImage {
    let mut out = GrayImage::new(a.width(), a.height());
    for ((m, pa), pb) in out.pixels_mut().zip(a.pixels()).zip(b.pixels()) {
        if pa != pb {
            m.0[0] = 255;
        }
    }
    out
}
