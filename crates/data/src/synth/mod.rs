//! A small synthetic anomaly-detection benchmark in the MVTec-AD layout.
//!
//! **Synthetic data is not a substitute for MVTec-AD or VisA.** It exists so demos and tests have data that ships
//! with the code: procedural textures (`weave`, `wood`, `marble`) and objects (`washer`, `pill`, `bottle_cap`)
//! with per-image variation in pose, colour, lighting and sensor noise, and six defect types (scratch, hole,
//! crack, stain, missing part, colour shift). Numbers measured on it say nothing about real-world accuracy.
//!
//! Every anomalous image comes with an **exact** mask: the image is rendered twice from the same random draws,
//! without and with the defect, and the mask is 255 exactly where the two 8-bit images differ (in any channel).
//!
//! Output is a pure function of the [`SynthConfig`]: each image draws from its own ChaCha8 stream derived from
//! `(seed, class, split, defect, index)`, so images are byte-identical across runs and thread counts, and a class
//! looks the same whichever other classes are generated with it. (Floating-point `sin`/`exp` come from the
//! platform's maths library; another OS or CPU architecture may differ in the last bit of a few pixels.)
//!
//! Layout written by [`write_dataset`] (default 256×256 PNG):
//! ```text
//! <out>/README.md                                   what this is (and is not)
//! <out>/meta.json                                   evaluation.md §5.1 format, read by the meta reader
//! <out>/<class>/train/good/NNN.png
//! <out>/<class>/test/good/NNN.png
//! <out>/<class>/test/<defect>/NNN.png
//! <out>/<class>/ground_truth/<defect>/NNN_mask.png   0/255
//! ```

mod canvas;
mod classes;
mod defects;
mod noise;

use std::path::Path;

use image::{GrayImage, RgbImage};
use rayon::prelude::*;

pub use classes::SynthClass;
pub use defects::DefectKind;

use crate::error::DataError;
use crate::index::{Label, Split};
use crate::load::LoadedSample;
use crate::readers::{MetaEntry, write_meta_json};
use crate::rng::SeededRng;
use canvas::{Canvas, difference_mask};

/// Generator version, written into the README; bump it when the images change for the same options.
pub const GENERATOR_VERSION: u32 = 1;

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthConfig {
    /// Classes, in output order.
    pub classes: Vec<SynthClass>,
    /// Test images per class. A third (rounded up) are normal; the rest are anomalous, spread evenly over the
    /// class's defect types (earlier types get the remainder). The train split gets the same number of normal
    /// images.
    pub per_class: usize,
    /// Seed.
    pub seed: u64,
    /// Image side in pixels (square images), 64 to 2048.
    pub size: u32,
}

impl Default for SynthConfig {
    /// All six classes, 30 test + 30 train images each (360 images), seed 0, 256×256.
    fn default() -> Self {
        Self {
            classes: SynthClass::ALL.to_vec(),
            per_class: 30,
            seed: 0,
            size: 256,
        }
    }
}

impl SynthConfig {
    fn validate(&self) -> Result<(), DataError> {
        if self.classes.is_empty() {
            return Err(DataError::Argument(
                "synthetic benchmark needs at least one class".into(),
            ));
        }
        if self.per_class < 2 {
            return Err(DataError::Argument(format!(
                "per_class must be at least 2 (one normal and one anomalous test image), got {}",
                self.per_class
            )));
        }
        if !(64..=2048).contains(&self.size) {
            return Err(DataError::Argument(format!(
                "size must be between 64 and 2048 pixels, got {}",
                self.size
            )));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = self.classes.iter().find(|c| !seen.insert(**c)) {
            return Err(DataError::Argument(format!(
                "class {} listed twice",
                dup.name()
            )));
        }
        Ok(())
    }

    /// Number of normal test images per class.
    pub fn test_normal(&self) -> usize {
        self.per_class.div_ceil(3)
    }
}

/// Parse a comma-separated class list (`weave,pill`); an unknown name lists the valid ones.
pub fn parse_classes(list: &str) -> Result<Vec<SynthClass>, DataError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|name| {
            SynthClass::from_name(name).ok_or_else(|| {
                DataError::Argument(format!(
                    "unknown synthetic class {name:?} (classes: {})",
                    SynthClass::ALL.map(SynthClass::name).join(", ")
                ))
            })
        })
        .collect()
}

/// One generated image.
#[derive(Clone, Debug)]
pub struct SynthSample {
    /// The class.
    pub class: SynthClass,
    /// Train or test.
    pub split: Split,
    /// The defect, or `None` for a normal image.
    pub defect: Option<DefectKind>,
    /// Index within its folder (file stem `NNN`).
    pub index: usize,
    /// The image.
    pub image: RgbImage,
    /// The exact 0/255 mask of an anomalous image (`None` for normal ones).
    pub mask: Option<GrayImage>,
}

impl SynthSample {
    /// Normal or anomalous.
    pub fn label(&self) -> Label {
        if self.defect.is_some() {
            Label::Anomalous
        } else {
            Label::Normal
        }
    }

    /// Folder name below `train/` or `test/`: `good` or the defect name.
    pub fn folder(&self) -> &'static str {
        self.defect.map_or("good", DefectKind::name)
    }

    /// Image path relative to the output root, `/`-separated.
    pub fn image_path(&self) -> String {
        format!(
            "{}/{}/{}/{:03}.png",
            self.class.name(),
            self.split,
            self.folder(),
            self.index
        )
    }

    /// Mask path relative to the output root, for anomalous images.
    pub fn mask_path(&self) -> Option<String> {
        self.defect.map(|d| {
            format!(
                "{}/ground_truth/{}/{:03}_mask.png",
                self.class.name(),
                d.name(),
                self.index
            )
        })
    }

    /// The image and its mask (all zero for normal images) as a [`LoadedSample`].
    pub fn to_loaded(&self) -> LoadedSample {
        LoadedSample {
            image: self.image.clone(),
            mask: self
                .mask
                .clone()
                .unwrap_or_else(|| GrayImage::new(self.image.width(), self.image.height())),
        }
    }
}

/// A generated benchmark held in memory.
#[derive(Clone, Debug)]
pub struct SynthDataset {
    /// The options it was generated with.
    pub config: SynthConfig,
    /// Samples: per class, train normals, test normals, then each defect type.
    pub samples: Vec<SynthSample>,
}

/// One image to generate.
#[derive(Clone, Copy, Debug)]
struct Job {
    class: SynthClass,
    split: Split,
    defect: Option<DefectKind>,
    index: usize,
}

fn plan(config: &SynthConfig) -> Vec<Job> {
    let mut jobs = Vec::new();
    for &class in &config.classes {
        for index in 0..config.per_class {
            jobs.push(Job {
                class,
                split: Split::Train,
                defect: None,
                index,
            });
        }
        let normal = config.test_normal();
        for index in 0..normal {
            jobs.push(Job {
                class,
                split: Split::Test,
                defect: None,
                index,
            });
        }
        let anomalous = config.per_class - normal;
        let kinds = class.defects();
        for (i, &kind) in kinds.iter().enumerate() {
            let count = anomalous / kinds.len() + usize::from(i < anomalous % kinds.len());
            for index in 0..count {
                jobs.push(Job {
                    class,
                    split: Split::Test,
                    defect: Some(kind),
                    index,
                });
            }
        }
    }
    jobs
}

/// Generate the benchmark in memory (in parallel; the result does not depend on the thread count).
pub fn generate(config: &SynthConfig) -> Result<SynthDataset, DataError> {
    config.validate()?;
    let samples = plan(config)
        .into_par_iter()
        .map(|job| render_job(config, job))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SynthDataset {
        config: config.clone(),
        samples,
    })
}

/// Render one image and, for anomalous jobs, its defect-free twin and exact mask:
/// returns `(image, Some((defect_free, mask)))` or `(image, None)`.
fn render_pair(
    config: &SynthConfig,
    job: Job,
) -> Result<(RgbImage, Option<(RgbImage, GrayImage)>), DataError> {
    let size = config.size as usize;
    let label = format!(
        "synth/v{GENERATOR_VERSION}/{}/{}/{}/{}",
        job.class.name(),
        job.split,
        job.defect.map_or("good", DefectKind::name),
        job.index
    );
    let mut rng = SeededRng::derive(config.seed, &label);
    let rendered = classes::render(job.class, size, &mut rng);
    let post = Post::draw(size, &mut rng);
    let clean_canvas = rendered.scene.compose();
    let clean = post.apply(&clean_canvas);
    let Some(kind) = job.defect else {
        return Ok((clean, None));
    };
    // A defect that lands (almost) off the object changes too few pixels to be a fair example: draw again.
    let k = size as f32 / 256.0;
    let min_pixels = (40.0 * k * k).max(12.0) as usize;
    for _ in 0..32 {
        let mut defective = classes::Rendered {
            scene: rendered.scene.clone(),
            geometry: rendered.geometry,
        };
        defects::apply(kind, job.class, &mut defective, size, &mut rng);
        let image = post.apply_changes(&clean, &clean_canvas, &defective.scene.compose());
        let mask = difference_mask(&clean, &image);
        if mask.iter().filter(|&&v| v != 0).count() >= min_pixels {
            return Ok((image, Some((clean, mask))));
        }
    }
    Err(DataError::Argument(format!(
        "could not place a visible {} on {} image {} (size {})",
        kind.name(),
        job.class.name(),
        job.index,
        config.size
    )))
}

fn render_job(config: &SynthConfig, job: Job) -> Result<SynthSample, DataError> {
    let (image, pair) = render_pair(config, job)?;
    Ok(SynthSample {
        class: job.class,
        split: job.split,
        defect: job.defect,
        index: job.index,
        image,
        mask: pair.map(|(_, mask)| mask),
    })
}

/// For tests and the demo: the defect-free twin of a test image (same pose, lighting and noise), or `None`
/// for normal images or indices outside the plan.
pub fn defect_free_twin(
    config: &SynthConfig,
    sample: &SynthSample,
) -> Result<Option<RgbImage>, DataError> {
    let job = Job {
        class: sample.class,
        split: sample.split,
        defect: sample.defect,
        index: sample.index,
    };
    Ok(render_pair(config, job)?.1.map(|(clean, _)| clean))
}

/// Lighting and sensor noise shared by an image and its defect-free twin. The noise of each pixel is a hash of
/// (noise seed, pixel, channel), so any pixel can be recomputed on its own.
struct Post {
    gain: [f32; 3],
    gradient: (f32, f32),
    vignette: f32,
    noise_sigma: f32,
    noise_seed: u64,
    size: usize,
}

/// SplitMix64's output function: a strong 64-bit mixer.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Post {
    fn draw(size: usize, rng: &mut SeededRng) -> Self {
        let b = rng.range_f32(0.94, 1.06);
        Self {
            gain: [
                b * rng.range_f32(0.985, 1.015),
                b,
                b * rng.range_f32(0.985, 1.015),
            ],
            gradient: (rng.range_f32(-0.06, 0.06), rng.range_f32(-0.06, 0.06)),
            vignette: rng.range_f32(0.0, 0.12),
            noise_sigma: rng.range_f32(0.004, 0.009),
            noise_seed: rng.next_u64(),
            size,
        }
    }

    /// The final 8-bit value of pixel `i` whose composed colour is `c`.
    fn pixel(&self, i: usize, c: [f32; 3]) -> [u8; 3] {
        let s = self.size as f32;
        let (x, y) = (
            ((i % self.size) as f32 + 0.5) / s - 0.5,
            ((i / self.size) as f32 + 0.5) / s - 0.5,
        );
        let light = (1.0 + 2.0 * (self.gradient.0 * x + self.gradient.1 * y))
            * (1.0 - 2.0 * self.vignette * (x * x + y * y));
        // Sensor noise: per channel the sum of two uniforms (a triangular distribution with the drawn standard
        // deviation), six 10-bit uniforms from one hash per pixel; cheap and free of transcendental functions.
        let word = mix64(self.noise_seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let uniform = |k: u32| ((word >> (10 * k)) & 0x3ff) as f32 * (1.0 / 1023.0);
        // Var(u1 + u2 − 1) = 1/6.
        let scale = self.noise_sigma * 6f32.sqrt();
        let mut out = [0u8; 3];
        for (ch, o) in out.iter_mut().enumerate() {
            let n = uniform(2 * ch as u32) + uniform(2 * ch as u32 + 1) - 1.0;
            *o = canvas::to_u8(c[ch] * self.gain[ch] * light + n * scale);
        }
        out
    }

    fn apply(&self, c: &Canvas) -> RgbImage {
        let mut out = RgbImage::new(c.w as u32, c.h as u32);
        for (i, (dst, src)) in out.pixels_mut().zip(&c.px).enumerate() {
            dst.0 = self.pixel(i, *src);
        }
        out
    }

    /// `base` (the post-processed `base_canvas`) with the pixels where `canvas` differs recomputed.
    fn apply_changes(&self, base: &RgbImage, base_canvas: &Canvas, canvas: &Canvas) -> RgbImage {
        let mut out = base.clone();
        for (i, (dst, (a, b))) in out
            .pixels_mut()
            .zip(base_canvas.px.iter().zip(&canvas.px))
            .enumerate()
        {
            if a != b {
                dst.0 = self.pixel(i, *b);
            }
        }
        out
    }
}

/// Write the benchmark to `out` (PNG images, masks, `meta.json`, `README.md`). An existing non-empty folder is
/// refused unless `overwrite` is true (then files with the same names are replaced, nothing else is removed).
pub fn write_dataset(dataset: &SynthDataset, out: &Path, overwrite: bool) -> Result<(), DataError> {
    if out.exists() {
        if !out.is_dir() {
            return Err(DataError::Layout {
                path: out.to_path_buf(),
                message: "output exists and is not a folder".into(),
            });
        }
        let mut entries =
            std::fs::read_dir(out).map_err(|e| DataError::io("list folder", out, e))?;
        if entries.next().is_some() && !overwrite {
            return Err(DataError::Layout {
                path: out.to_path_buf(),
                message: "output folder is not empty; refusing to write into it (use --force to overwrite files)".into(),
            });
        }
    }
    let mkdir =
        |p: &Path| std::fs::create_dir_all(p).map_err(|e| DataError::io("create folder", p, e));
    mkdir(out)?;
    for s in &dataset.samples {
        mkdir(out.join(s.image_path()).parent().expect("has parent"))?;
        if let Some(m) = s.mask_path() {
            mkdir(out.join(&m).parent().expect("has parent"))?;
        }
    }
    dataset.samples.par_iter().try_for_each(|s| {
        save_png(
            &out.join(s.image_path()),
            s.image.as_raw(),
            s.image.width(),
            s.image.height(),
            image::ExtendedColorType::Rgb8,
        )?;
        if let (Some(mask), Some(path)) = (&s.mask, s.mask_path()) {
            save_png(
                &out.join(path),
                mask.as_raw(),
                mask.width(),
                mask.height(),
                image::ExtendedColorType::L8,
            )?;
        }
        Ok::<(), DataError>(())
    })?;
    let write = |name: &str, text: String| {
        let p = out.join(name);
        std::fs::write(&p, text).map_err(|e| DataError::io("write", p, e))
    };
    write("meta.json", meta_json(dataset))?;
    write("README.md", readme(dataset))?;
    Ok(())
}

/// Generate and write in one call.
pub fn generate_to_dir(
    config: &SynthConfig,
    out: &Path,
    overwrite: bool,
) -> Result<SynthDataset, DataError> {
    let dataset = generate(config)?;
    write_dataset(&dataset, out, overwrite)?;
    Ok(dataset)
}

fn save_png(
    path: &Path,
    bytes: &[u8],
    w: u32,
    h: u32,
    colour: image::ExtendedColorType,
) -> Result<(), DataError> {
    use image::ImageEncoder;
    let file = std::fs::File::create(path).map_err(|e| DataError::io("create", path, e))?;
    let writer = std::io::BufWriter::new(file);
    image::codecs::png::PngEncoder::new(writer)
        .write_image(bytes, w, h, colour)
        .map_err(|source| DataError::Encode {
            path: path.to_path_buf(),
            source,
        })
}

/// The `meta.json` text (evaluation.md §5.1): both splits, classes in config order.
pub fn meta_json(dataset: &SynthDataset) -> String {
    let entries = |split: Split| -> Vec<(String, Vec<MetaEntry>)> {
        dataset
            .config
            .classes
            .iter()
            .map(|class| {
                let list = dataset
                    .samples
                    .iter()
                    .filter(|s| s.class == *class && s.split == split)
                    .map(|s| MetaEntry {
                        img_path: s.image_path(),
                        mask_path: s.mask_path().unwrap_or_default(),
                        cls_name: class.name().to_string(),
                        specie_name: s.folder().to_string(),
                        anomaly: s.label().as_int(),
                    })
                    .collect();
                (class.name().to_string(), list)
            })
            .collect()
    };
    write_meta_json(&entries(Split::Train), &entries(Split::Test))
}

/// The `README.md` text written next to the data.
pub fn readme(dataset: &SynthDataset) -> String {
    let c = &dataset.config;
    let mut rows = String::new();
    for class in &c.classes {
        let count = |split: Split, normal: bool| {
            dataset
                .samples
                .iter()
                .filter(|s| s.class == *class && s.split == split && s.defect.is_none() == normal)
                .count()
        };
        rows.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            class.name(),
            if class.is_texture() {
                "texture"
            } else {
                "object"
            },
            count(Split::Train, true),
            format_args!(
                "{} / {}",
                count(Split::Test, true),
                count(Split::Test, false)
            ),
            class
                .defects()
                .iter()
                .map(|d| d.name())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    format!(
        "# Synthetic anomaly-detection benchmark (vlad)\n\n\
         **This data is synthetic. It is not a substitute for MVTec-AD, VisA or any real inspection data, and \
         results measured on it say nothing about accuracy on real images.** It exists so that demos and tests \
         have small, redistributable data with exact masks.\n\n\
         Generated by `vlad data synth` (generator version {GENERATOR_VERSION}) with seed {seed}, {per} test images \
         per class and {size}×{size} pixels. The same options give byte-identical files.\n\n\
         Layout: MVTec-AD (`<class>/train/good`, `<class>/test/good`, `<class>/test/<defect>`, \
         `<class>/ground_truth/<defect>/NNN_mask.png`) plus `meta.json` in the VAND/AnomalyCLIP format.\n\n\
         Masks are exact: a mask pixel is 255 if and only if the defect changed that pixel of the 8-bit image \
         (the image is rendered with and without the defect from the same random draws and compared).\n\n\
         | class | kind | train (normal) | test normal / anomalous | defect types |\n\
         |---|---|---|---|---|\n{rows}",
        seed = c.seed,
        per = c.per_class,
        size = c.size,
    )
}
