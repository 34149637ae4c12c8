//! Training batches as the official `BaseDataset` makes them (`spec/aa-clip.md` §8.5): PIL read,
//! colour jitter (stage 2 only) before the bicubic resize to S, CLIP normalisation, the mask with
//! PIL nearest and `!= 0`, then rotation, translation and flips of the stacked image + mask.
//! Parameters are drawn from a stream per (seed, stage, epoch, sample), so a batch does not depend
//! on the thread count or on where a resumed run started; torch's random streams are not
//! reproduced (`vlad_data::augment`).
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;
use vlad_data::augment::{AaClipAugment, Planar};
use vlad_data::load::{MaskRule, open_image, open_mask, resize_binary_mask};
use vlad_data::{Label, Sample, SeededRng};
use vlad_imaging::{CLIP_MEAN, CLIP_STD, Filter};

use crate::DetectError;

/// A batch on the host.
#[derive(Debug, Clone)]
pub struct HostBatch {
    /// Side S.
    pub size: usize,
    /// Normalised pixels, `[B, 3, S, S]` row-major.
    pub pixels: Vec<f32>,
    /// Masks 0/1, `[B, 1, S, S]`.
    pub masks: Vec<f32>,
    /// 0 normal, 1 anomalous.
    pub labels: Vec<usize>,
    /// Class names as stored in the dataset.
    pub classes: Vec<String>,
}

impl HostBatch {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels and masks as device tensors.
    pub fn tensors(&self, device: &Device) -> (Tensor<4>, Tensor<4>) {
        let (b, s) = (self.len(), self.size);
        let pixels = Tensor::from_data(TensorData::new(self.pixels.clone(), [b, 3, s, s]), device);
        let masks = Tensor::from_data(TensorData::new(self.masks.clone(), [b, 1, s, s]), device);
        (pixels, masks)
    }
}

/// How a sample is augmented.
#[derive(Debug, Clone)]
pub enum Augmentation {
    /// None (calibration and validation).
    Off,
    /// The official list, with parameters from the stream `label` of `seed`.
    On {
        /// Stage 1 (geometric only) or stage 2 (colour jitter too).
        augment: AaClipAugment,
        /// Seed of the run.
        seed: u64,
        /// Stream label of this sample (stage, epoch, sample index).
        label: String,
    },
}

/// One sample as `([3, S, S] normalised pixels, [S, S] 0/1 mask)`.
pub fn load_sample(sample: &Sample, size: usize, augmentation: &Augmentation) -> Result<(Vec<f32>, Vec<f32>), DetectError> {
    let data_error = |e: vlad_data::DataError| DetectError::Invalid(e.to_string());
    let image = open_image(&sample.image_path).map_err(data_error)?;
    let (w, h) = image.dimensions();
    let mask = match (&sample.mask_path, sample.label) {
        (Some(path), Label::Anomalous) => {
            let mask = open_mask(path).map_err(data_error)?;
            if mask.dimensions() != (w, h) {
                return Err(DetectError::Invalid(format!(
                    "{}: mask is {:?}, its image {} is {:?}",
                    path.display(),
                    mask.dimensions(),
                    sample.image_path.display(),
                    (w, h)
                )));
            }
            Some(mask)
        }
        _ => None,
    };
    let s = size as u32;
    let mask = match mask {
        Some(m) => resize_binary_mask(&m, s, s, MaskRule::Nearest),
        None => vlad_imaging::GrayImage::new(s, s),
    };
    let (image, rng) = match augmentation {
        Augmentation::Off => (image, None),
        Augmentation::On { augment, seed, label } => {
            let mut rng = SeededRng::derive(*seed, label);
            (augment.colour(&image, &mut rng), Some((augment, rng)))
        }
    };
    let image = vlad_imaging::resize_rgb(&image, s, s, Filter::Bicubic);
    let mut planar = Planar::from_image_and_mask(&image, &mask, CLIP_MEAN, CLIP_STD).map_err(data_error)?;
    if let Some((augment, mut rng)) = rng {
        planar = augment.geometric(&planar, &mut rng).map_err(data_error)?;
    }
    let plane = size * size;
    let mut data = planar.data;
    let mask: Vec<f32> = data.split_off(3 * plane).into_iter().map(|v| if v != 0.0 { 1.0 } else { 0.0 }).collect();
    Ok((data, mask))
}

/// Loads samples in parallel into one batch; `augmentation(i)` gives the augmentation of the
/// `i`-th sample of the batch. A file that cannot be read is an error naming it.
pub fn load_batch(samples: &[&Sample], size: usize, augmentation: impl Fn(usize) -> Augmentation + Sync) -> Result<HostBatch, DetectError> {
    let loaded: Vec<(Vec<f32>, Vec<f32>)> = samples.par_iter().enumerate().map(|(i, s)| load_sample(s, size, &augmentation(i))).collect::<Result<_, _>>()?;
    let mut batch = HostBatch { size, pixels: Vec::new(), masks: Vec::new(), labels: Vec::new(), classes: Vec::new() };
    for ((pixels, mask), sample) in loaded.into_iter().zip(samples) {
        batch.pixels.extend(pixels);
        batch.masks.extend(mask);
        batch.labels.push(sample.label.as_int() as usize);
        batch.classes.push(sample.class_name.clone());
    }
    Ok(batch)
}

/// The sample order of an epoch (a seeded shuffle, like `DataLoader(shuffle=True)`), cut into
/// batches of `batch_size` (the last one may be smaller).
pub fn epoch_batches(n: usize, batch_size: usize, seed: u64, stream: &str) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..n).collect();
    SeededRng::derive(seed, stream).shuffle(&mut order);
    order.chunks(batch_size.max(1)).map(<[usize]>::to_vec).collect()
}
