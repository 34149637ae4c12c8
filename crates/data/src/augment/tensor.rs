//! torchvision's tensor transforms on a CHW float image (AA-CLIP applies them to the normalised image stacked
//! with its mask): `F.rotate` and `F.affine` with nearest interpolation and a constant fill, and flips.
//!
//! Rotation follows `torchvision.transforms.functional.rotate` → `_get_inverse_affine_matrix` (f64) →
//! `_gen_affine_grid` (f32) → `grid_sample(mode="nearest", align_corners=False)`, whose CPU kernel unnormalises
//! with `(g + 1)·(size/2) − 0.5` and rounds half to even. The grid in torch comes from an `sgemm`, whose summation
//! order we cannot see; a pixel whose source coordinate lies within an ulp of a rounding boundary may therefore
//! pick the neighbouring source pixel (the parity test bounds how many do).

use image::{GrayImage, RgbImage};

use crate::error::DataError;

/// A float image in channel-first layout (`data[c][y][x]`), like a `[C, H, W]` tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Planar {
    /// Number of channels.
    pub channels: usize,
    /// Height.
    pub height: usize,
    /// Width.
    pub width: usize,
    /// `channels·height·width` values.
    pub data: Vec<f32>,
}

impl Planar {
    /// A zero image.
    pub fn zeros(channels: usize, height: usize, width: usize) -> Self {
        Self {
            channels,
            height,
            width,
            data: vec![0.0; channels * height * width],
        }
    }

    /// Wrap data, checking its length.
    pub fn from_vec(
        channels: usize,
        height: usize,
        width: usize,
        data: Vec<f32>,
    ) -> Result<Self, DataError> {
        if data.len() != channels * height * width {
            return Err(DataError::Argument(format!(
                "planar data has {} values, expected {channels}×{height}×{width} = {}",
                data.len(),
                channels * height * width
            )));
        }
        Ok(Self {
            channels,
            height,
            width,
            data,
        })
    }

    /// The 4-channel tensor AA-CLIP transforms: `(rgb/255 − mean)/std` for the three colour channels and the mask
    /// as 0/1 in the fourth. Image and mask must have the same size.
    pub fn from_image_and_mask(
        image: &RgbImage,
        mask: &GrayImage,
        mean: [f32; 3],
        std: [f32; 3],
    ) -> Result<Self, DataError> {
        if image.dimensions() != mask.dimensions() {
            return Err(DataError::Argument(format!(
                "image is {:?} but mask is {:?}",
                image.dimensions(),
                mask.dimensions()
            )));
        }
        let (w, h) = (image.width() as usize, image.height() as usize);
        let mut out = Self::zeros(4, h, w);
        for (i, p) in image.pixels().enumerate() {
            for c in 0..3 {
                // ToTensor divides by 255 in f32; Normalize subtracts and divides in f32.
                out.data[c * w * h + i] = (f32::from(p.0[c]) / 255.0 - mean[c]) / std[c];
            }
        }
        for (i, m) in mask.pixels().enumerate() {
            out.data[3 * w * h + i] = if m.0[0] != 0 { 1.0 } else { 0.0 };
        }
        Ok(out)
    }

    /// One channel as a slice.
    pub fn channel(&self, c: usize) -> &[f32] {
        &self.data[c * self.height * self.width..(c + 1) * self.height * self.width]
    }

    /// Resample with a per-output-pixel source index (`None` → `fill`).
    fn remap(
        &self,
        fill: &[f32],
        source: impl Fn(usize, usize) -> Option<(usize, usize)>,
    ) -> Planar {
        let (w, h) = (self.width, self.height);
        let mut out = Planar::zeros(self.channels, h, w);
        for y in 0..h {
            for x in 0..w {
                let src = source(x, y);
                for (c, &f) in fill.iter().enumerate() {
                    out.data[c * w * h + y * w + x] = match src {
                        Some((sx, sy)) => self.data[c * w * h + sy * w + sx],
                        None => f,
                    };
                }
            }
        }
        out
    }
}

fn check_fill(img: &Planar, fill: &[f32]) -> Result<(), DataError> {
    if fill.len() != img.channels {
        return Err(DataError::Argument(format!(
            "fill has {} values for {} channels",
            fill.len(),
            img.channels
        )));
    }
    Ok(())
}

/// Nearest-neighbour sampling of an inverse affine `matrix` (torchvision's 2×3 layout, centre-origin
/// coordinates) with `grid_sample(align_corners=False)` semantics.
fn affine_nearest(img: &Planar, matrix: [f64; 6], fill: &[f32]) -> Planar {
    let (w, h) = (img.width, img.height);
    let theta: [f32; 6] = matrix.map(|v| v as f32);
    let (hw, hh) = (0.5 * w as f32, 0.5 * h as f32);
    // rescaled_theta = thetaᵀ / [0.5·w, 0.5·h]
    let r = [
        theta[0] / hw,
        theta[3] / hh,
        theta[1] / hw,
        theta[4] / hh,
        theta[2] / hw,
        theta[5] / hh,
    ];
    img.remap(fill, |x, y| {
        let bx = -(w as f32) * 0.5 + 0.5 + x as f32;
        let by = -(h as f32) * 0.5 + 0.5 + y as f32;
        let gx = bx * r[0] + by * r[2] + r[4];
        let gy = bx * r[1] + by * r[3] + r[5];
        let ix = ((gx + 1.0) * hw - 0.5).round_ties_even();
        let iy = ((gy + 1.0) * hh - 0.5).round_ties_even();
        (ix >= 0.0 && iy >= 0.0 && ix < w as f32 && iy < h as f32)
            .then_some((ix as usize, iy as usize))
    })
}

/// `F.rotate(img, angle_degrees, NEAREST, expand=False, center=None, fill)` on a tensor (counter-clockwise for
/// positive angles, about the image centre).
pub fn rotate_nearest(img: &Planar, angle_degrees: f64, fill: &[f32]) -> Result<Planar, DataError> {
    check_fill(img, fill)?;
    // _get_inverse_affine_matrix(center=[0,0], angle=-angle, translate=[0,0], scale=1, shear=[0,0])
    let rot = (-angle_degrees).to_radians();
    let (a, b, c, d) = (rot.cos(), -rot.sin(), rot.sin(), rot.cos());
    Ok(affine_nearest(img, [d, -b, 0.0, -c, a, 0.0], fill))
}

/// `F.affine(img, angle=0, translate=[tx, ty], scale=1, shear=0, NEAREST, fill)`: RandomAffine's integer
/// translation (x right, y down).
pub fn translate_nearest(
    img: &Planar,
    tx: i64,
    ty: i64,
    fill: &[f32],
) -> Result<Planar, DataError> {
    check_fill(img, fill)?;
    Ok(affine_nearest(
        img,
        [1.0, 0.0, -(tx as f64), 0.0, 1.0, -(ty as f64)],
        fill,
    ))
}

/// Mirror left–right.
pub fn hflip(img: &Planar) -> Planar {
    let w = img.width;
    img.remap(&vec![0.0; img.channels], |x, y| Some((w - 1 - x, y)))
}

/// Mirror top–bottom.
pub fn vflip(img: &Planar) -> Planar {
    let h = img.height;
    img.remap(&vec![0.0; img.channels], |x, y| Some((x, h - 1 - y)))
}
