//! The two training pipelines, as parameter draws plus deterministic application.

use image::{GrayImage, RgbImage};

use super::cv::{self, Interpolation};
use super::pil;
use super::tensor::{self, Planar};
use crate::error::DataError;
use crate::rng::SeededRng;

/// AA-CLIP's `BaseDataset` augmentation (aa-clip.md §8.5).
///
/// Stage 2 (`colour_jitter = true`) first applies, to the PIL image before resizing and each independently with
/// p = 0.7, `ColorJitter(brightness=0.5)`, `ColorJitter(contrast=0.5)`, `ColorJitter(saturation=0.5)` (factors
/// uniform in [0.5, 1.5]). After resizing and normalisation the image and its mask are stacked into one
/// 4-channel tensor ([`Planar::from_image_and_mask`]) and transformed together: `RandomRotation(±30°)` with p 0.5,
/// `RandomAffine(translate=(0.15, 0.15))` with p 0.5 (both nearest, fill 0 — the dataset mean in normalised
/// space), then horizontal and vertical flips with p 0.5 each.
#[derive(Clone, Debug, PartialEq)]
pub struct AaClipAugment {
    /// Apply the colour jitter (stage 2 only).
    pub colour_jitter: bool,
    /// Probability of each colour operation.
    pub colour_p: f64,
    /// Brightness / contrast / saturation jitter amounts (factor in [1 − a, 1 + a]).
    pub colour_amounts: [f64; 3],
    /// Probability of the rotation.
    pub rotate_p: f64,
    /// Maximum rotation in degrees.
    pub max_degrees: f64,
    /// Probability of the translation.
    pub translate_p: f64,
    /// Maximum translation as a fraction of width / height.
    pub max_translate: f64,
    /// Probability of the horizontal flip.
    pub hflip_p: f64,
    /// Probability of the vertical flip.
    pub vflip_p: f64,
}

/// The geometric parameters of one AA-CLIP draw.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AaClipGeometry {
    /// Rotation angle in degrees, if applied.
    pub rotate: Option<f64>,
    /// Integer translation (x, y), if applied.
    pub translate: Option<(i64, i64)>,
    /// Horizontal flip.
    pub hflip: bool,
    /// Vertical flip.
    pub vflip: bool,
}

impl AaClipAugment {
    /// Stage 1 (text adapters): geometric transforms only.
    pub fn stage1() -> Self {
        Self {
            colour_jitter: false,
            ..Self::stage2()
        }
    }

    /// Stage 2 (image adapters): colour jitter and geometric transforms.
    pub fn stage2() -> Self {
        Self {
            colour_jitter: true,
            colour_p: 0.7,
            colour_amounts: [0.5, 0.5, 0.5],
            rotate_p: 0.5,
            max_degrees: 30.0,
            translate_p: 0.5,
            max_translate: 0.15,
            hflip_p: 0.5,
            vflip_p: 0.5,
        }
    }

    /// The colour part, on the 8-bit image before resizing. Draw order: for brightness, contrast, saturation in
    /// turn, one `chance(p)` and, if applied, one factor.
    pub fn colour(&self, image: &RgbImage, rng: &mut SeededRng) -> RgbImage {
        let mut out = image.clone();
        if !self.colour_jitter {
            return out;
        }
        let ops: [fn(&RgbImage, f64) -> RgbImage; 3] =
            [pil::brightness, pil::contrast, pil::saturation];
        for (op, amount) in ops.into_iter().zip(self.colour_amounts) {
            if rng.chance(self.colour_p) {
                let factor = rng.range_f64((1.0 - amount).max(0.0), 1.0 + amount);
                out = op(&out, factor);
            }
        }
        out
    }

    /// Draw geometric parameters for a `width`×`height` tensor. Draw order: rotation (chance, angle), translation
    /// (chance, dx, dy), horizontal flip, vertical flip.
    pub fn draw_geometry(
        &self,
        width: usize,
        height: usize,
        rng: &mut SeededRng,
    ) -> AaClipGeometry {
        let rotate = rng
            .chance(self.rotate_p)
            .then(|| rng.range_f64(-self.max_degrees, self.max_degrees));
        let translate = rng.chance(self.translate_p).then(|| {
            let (max_dx, max_dy) = (
                self.max_translate * width as f64,
                self.max_translate * height as f64,
            );
            // torchvision: int(round(uniform(-max, max))) — Python rounds half to even.
            let tx = rng.range_f64(-max_dx, max_dx).round_ties_even() as i64;
            let ty = rng.range_f64(-max_dy, max_dy).round_ties_even() as i64;
            (tx, ty)
        });
        let hflip = rng.chance(self.hflip_p);
        let vflip = rng.chance(self.vflip_p);
        AaClipGeometry {
            rotate,
            translate,
            hflip,
            vflip,
        }
    }

    /// Apply geometric parameters to the stacked image+mask tensor (fill 0 in every channel).
    pub fn apply_geometry(geometry: &AaClipGeometry, t: &Planar) -> Result<Planar, DataError> {
        let fill = vec![0.0; t.channels];
        let mut out = t.clone();
        if let Some(angle) = geometry.rotate {
            out = tensor::rotate_nearest(&out, angle, &fill)?;
        }
        if let Some((tx, ty)) = geometry.translate {
            out = tensor::translate_nearest(&out, tx, ty, &fill)?;
        }
        if geometry.hflip {
            out = tensor::hflip(&out);
        }
        if geometry.vflip {
            out = tensor::vflip(&out);
        }
        Ok(out)
    }

    /// Draw and apply the geometric part.
    pub fn geometric(&self, t: &Planar, rng: &mut SeededRng) -> Result<Planar, DataError> {
        let g = self.draw_geometry(t.width, t.height, rng);
        Self::apply_geometry(&g, t)
    }
}

/// albumentations `ColorJitter()` parameters (defaults 0.2 each): factors and the shuffled order of
/// (brightness, contrast, saturation, hue).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ColorJitterParams {
    /// Brightness factor.
    pub brightness: f64,
    /// Contrast factor.
    pub contrast: f64,
    /// Saturation factor.
    pub saturation: f64,
    /// Hue shift (fraction of the hue circle).
    pub hue: f64,
    /// Application order (indices into brightness, contrast, saturation, hue).
    pub order: [usize; 4],
}

impl ColorJitterParams {
    /// Apply to an RGB image (albumentations treats channel 0 as red).
    pub fn apply(&self, img: &RgbImage) -> RgbImage {
        let mut out = img.clone();
        for i in self.order {
            out = match i {
                0 => cv::cj_brightness(&out, self.brightness),
                1 => cv::cj_contrast(&out, self.contrast),
                2 => cv::cj_saturation(&out, self.saturation),
                _ => cv::cj_hue(&out, self.hue),
            };
        }
        out
    }
}

/// The member of Bayes-PFL's `OneOf` that was chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OneOfChoice {
    /// `Blur(blur_limit=3)`: a 3×3 box blur.
    Blur,
    /// `ColorJitter()`.
    ColorJitter(ColorJitterParams),
    /// `GaussianBlur()`: kernel 3, 5 or 7 with σ from OpenCV's default.
    GaussianBlur {
        /// Kernel size.
        ksize: usize,
    },
}

/// The parameters of one Bayes-PFL draw (`None` = transform not applied).
#[derive(Clone, Debug, PartialEq)]
pub struct BayesPflParams {
    /// `Rotate` angle in degrees.
    pub rotate: Option<f64>,
    /// `RandomRotate90` factor.
    pub rot90: Option<u32>,
    /// `RandomBrightnessContrast` (alpha, beta).
    pub brightness_contrast: Option<(f64, f64)>,
    /// `GaussNoise`: (sigma, seed of the per-value normal draws).
    pub noise: Option<(f64, u64)>,
    /// `OneOf` choice.
    pub one_of: Option<OneOfChoice>,
}

/// Bayes-PFL's albumentations 1.3.1 pipeline (bayes-pfl.md §9), on the 8-bit image and mask:
/// `Rotate(limit=30, p=0.5)` (image bilinear, mask nearest, `BORDER_REFLECT_101`), `RandomRotate90(p=0.5)`,
/// `RandomBrightnessContrast(p=0.5)`, `GaussNoise(var_limit=(10, 50), p=0.5)` and
/// `OneOf([Blur(3), ColorJitter(), GaussianBlur()], p=0.5)`; the last three touch the image only.
///
/// Bayes-PFL reads images with `cv2.imread`, so albumentations' colour operations see **BGR** data as if it were
/// RGB. With `bgr_colour_quirk` (the default) the RGB input is swapped to BGR around `ColorJitter`, reproducing
/// that; turn it off for the clean behaviour. The mosaic is separate ([`super::mosaic_2x2`]).
#[derive(Clone, Debug, PartialEq)]
pub struct BayesPflAugment {
    /// Probability of `Rotate`.
    pub rotate_p: f64,
    /// Rotation limit in degrees.
    pub rotate_limit: f64,
    /// Probability of `RandomRotate90`.
    pub rot90_p: f64,
    /// Probability of `RandomBrightnessContrast`.
    pub brightness_contrast_p: f64,
    /// Brightness limit.
    pub brightness_limit: f64,
    /// Contrast limit.
    pub contrast_limit: f64,
    /// Probability of `GaussNoise`.
    pub noise_p: f64,
    /// Variance range of `GaussNoise`.
    pub noise_var: (f64, f64),
    /// Probability of the `OneOf` block.
    pub one_of_p: f64,
    /// Apply colour jitter to BGR data, as the official code does.
    pub bgr_colour_quirk: bool,
}

impl Default for BayesPflAugment {
    fn default() -> Self {
        Self {
            rotate_p: 0.5,
            rotate_limit: 30.0,
            rot90_p: 0.5,
            brightness_contrast_p: 0.5,
            brightness_limit: 0.2,
            contrast_limit: 0.2,
            noise_p: 0.5,
            noise_var: (10.0, 50.0),
            one_of_p: 0.5,
            bgr_colour_quirk: true,
        }
    }
}

fn swap_rb(img: &RgbImage) -> RgbImage {
    let mut out = img.clone();
    for p in out.pixels_mut() {
        p.0.swap(0, 2);
    }
    out
}

impl BayesPflAugment {
    /// Draw parameters, in pipeline order (each transform: one `chance(p)`, then its parameters if applied).
    pub fn draw(&self, rng: &mut SeededRng) -> BayesPflParams {
        let rotate = rng
            .chance(self.rotate_p)
            .then(|| rng.range_f64(-self.rotate_limit, self.rotate_limit));
        let rot90 = rng.chance(self.rot90_p).then(|| rng.below(4) as u32);
        let brightness_contrast = rng.chance(self.brightness_contrast_p).then(|| {
            // albumentations draws alpha (contrast) first, then beta (brightness).
            let alpha = 1.0 + rng.range_f64(-self.contrast_limit, self.contrast_limit);
            let beta = rng.range_f64(-self.brightness_limit, self.brightness_limit);
            (alpha, beta)
        });
        let noise = rng.chance(self.noise_p).then(|| {
            let var = rng.range_f64(self.noise_var.0, self.noise_var.1);
            (var.sqrt(), rng.next_u64())
        });
        let one_of = rng.chance(self.one_of_p).then(|| match rng.below(3) {
            0 => OneOfChoice::Blur,
            1 => {
                let mut order = [0, 1, 2, 3];
                let brightness = rng.range_f64(0.8, 1.2);
                let contrast = rng.range_f64(0.8, 1.2);
                let saturation = rng.range_f64(0.8, 1.2);
                let hue = rng.range_f64(-0.2, 0.2);
                rng.shuffle(&mut order);
                OneOfChoice::ColorJitter(ColorJitterParams {
                    brightness,
                    contrast,
                    saturation,
                    hue,
                    order,
                })
            }
            _ => {
                // randrange(3, 8), even sizes bumped to the next odd one: P(3) = 1/5, P(5) = P(7) = 2/5.
                let k = rng.range_i64(3, 7) as usize;
                OneOfChoice::GaussianBlur {
                    ksize: if k.is_multiple_of(2) { k + 1 } else { k },
                }
            }
        });
        BayesPflParams {
            rotate,
            rot90,
            brightness_contrast,
            noise,
            one_of,
        }
    }

    /// Apply drawn parameters. Image and mask must have the same size.
    pub fn apply(
        &self,
        params: &BayesPflParams,
        image: &RgbImage,
        mask: &GrayImage,
    ) -> Result<(RgbImage, GrayImage), DataError> {
        if image.dimensions() != mask.dimensions() {
            return Err(DataError::Argument(format!(
                "image is {:?} but mask is {:?}",
                image.dimensions(),
                mask.dimensions()
            )));
        }
        let (mut img, mut m) = (image.clone(), mask.clone());
        if let Some(angle) = params.rotate {
            img = cv::rotate(&img, angle, Interpolation::Linear);
            m = cv::rotate(&m, angle, Interpolation::Nearest);
        }
        if let Some(k) = params.rot90 {
            img = cv::rot90(&img, k);
            m = cv::rot90(&m, k);
        }
        if let Some((alpha, beta)) = params.brightness_contrast {
            img = cv::brightness_contrast(&img, alpha, beta, true);
        }
        if let Some((sigma, seed)) = params.noise {
            let mut rng = SeededRng::new(seed);
            let noise: Vec<f64> = (0..img.as_raw().len())
                .map(|_| rng.normal() * sigma)
                .collect();
            img = cv::add_noise(&img, &noise)?;
        }
        match params.one_of {
            None => {}
            Some(OneOfChoice::Blur) => img = cv::box_blur(&img, 3)?,
            Some(OneOfChoice::GaussianBlur { ksize }) => img = cv::gaussian_blur(&img, ksize)?,
            Some(OneOfChoice::ColorJitter(cj)) => {
                img = if self.bgr_colour_quirk {
                    swap_rb(&cj.apply(&swap_rb(&img)))
                } else {
                    cj.apply(&img)
                };
            }
        }
        Ok((img, m))
    }

    /// Draw and apply.
    pub fn augment(
        &self,
        image: &RgbImage,
        mask: &GrayImage,
        rng: &mut SeededRng,
    ) -> Result<(RgbImage, GrayImage), DataError> {
        let params = self.draw(rng);
        self.apply(&params, image, mask)
    }
}
