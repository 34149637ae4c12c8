//! A trivial, CLIP-free baseline: the per-pixel distance of an image to the mean of the normal
//! reference images of its class, at the detector's input size.
//!
//! It exists so that the evaluation harness can be run end to end (on the synthetic benchmark, on
//! any backend, without weights) before the real detectors are available, and as a floor any
//! learned detector should beat. It is not a method from the literature.
//!
//! With references `r_1 … r_K` (preprocessed `[3, S, S]`, CLIP mean/std), per channel `c` and pixel
//! `p`: `μ = mean_k r_k`, `σ = max(std_k r_k, min_std)` (population std). The map of an image `x` is
//! the channel mean of `|x − μ|` (or of `|x − μ| / σ` when `std_normalize` is set); the image score is
//! the map's maximum and the patch map averages the map over `patch × patch` cells.
use burn::tensor::{Device, Tensor};
use vlad_clip::preprocess::Preprocess;

use crate::{DetectError, Detection, Detector};

/// Options of the mean-image baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct BaselineConfig {
    /// Input (and map) side S.
    pub image_size: usize,
    /// Side of the cells averaged into the patch map; must divide `image_size`.
    pub patch: usize,
    /// Divide the distance by the per-pixel standard deviation of the references.
    pub std_normalize: bool,
    /// Floor of that standard deviation, in preprocessed units (one grey level is about 0.015), so
    /// that pixels that never change in the references (or a single reference) do not divide by 0.
    pub min_std: f32,
}

impl Default for BaselineConfig {
    /// S = 224, 16-pixel cells (a 14 × 14 patch map, as a ViT-B/16 would give), plain distance.
    fn default() -> Self {
        Self { image_size: 224, patch: 16, std_normalize: false, min_std: 0.05 }
    }
}

/// References per chunk when their statistics are measured.
const REFERENCE_CHUNK: usize = 16;

/// Statistics of the normal references of one class, `[1, 3, S, S]` each.
#[derive(Clone)]
struct Reference {
    mean: Tensor<4>,
    std: Tensor<4>,
}

/// The mean-image distance baseline (see the module documentation).
pub struct MeanImageBaseline {
    config: BaselineConfig,
    device: Device,
    class: Option<String>,
    reference: Option<Reference>,
}

impl MeanImageBaseline {
    /// A baseline on `device`; the configuration is checked here.
    pub fn new(config: BaselineConfig, device: Device) -> Result<Self, DetectError> {
        let BaselineConfig { image_size, patch, min_std, .. } = config;
        if image_size == 0 || patch == 0 || !image_size.is_multiple_of(patch) {
            return Err(DetectError::Invalid(format!(
                "baseline: the patch side ({patch}) must be at least 1 and divide the image size ({image_size})"
            )));
        }
        if !(min_std.is_finite() && min_std > 0.0) {
            return Err(DetectError::Invalid(format!("baseline: min_std must be positive, got {min_std}")));
        }
        Ok(Self { config, device, class: None, reference: None })
    }

    /// The configuration.
    pub fn config(&self) -> &BaselineConfig {
        &self.config
    }
}

impl Detector for MeanImageBaseline {
    fn name(&self) -> &'static str {
        "baseline"
    }

    fn device(&self) -> Device {
        self.device.clone()
    }

    fn preprocess(&self) -> Preprocess {
        Preprocess::squash(self.config.image_size as u32)
    }

    fn grid(&self) -> usize {
        self.config.image_size / self.config.patch
    }

    /// Forgets the references of the previous class: they describe that class only.
    fn set_class(&mut self, name: &str) -> Result<(), DetectError> {
        if name.trim().is_empty() {
            return Err(DetectError::Invalid("empty class name".into()));
        }
        self.class = Some(name.to_string());
        self.reference = None;
        Ok(())
    }

    fn detect(&self, pixels: Tensor<4>) -> Result<Detection, DetectError> {
        let Some(reference) = self.reference.clone() else {
            let class = self.class.as_deref().unwrap_or("(no class set)");
            return Err(DetectError::Invalid(format!(
                "baseline: no normal reference images for class `{class}`; call fit_reference first"
            )));
        };
        let s = self.config.image_size;
        let [b, c, h, w] = pixels.dims();
        if b == 0 || c != 3 || h != s || w != s {
            return Err(DetectError::Invalid(format!("baseline takes images [B ≥ 1, 3, {s}, {s}], got [{b}, {c}, {h}, {w}]")));
        }
        let mut distance = pixels.sub(reference.mean).abs();
        if self.config.std_normalize {
            distance = distance.div(reference.std);
        }
        let map = distance.mean_dim(1).reshape([b, s, s]);
        let image_score = map.clone().reshape([b, s * s]).max_dim(1).reshape([b]);
        let (p, g) = (self.config.patch, self.grid());
        let patch_map = map.clone().reshape([b, g, p, g, p]).mean_dim(4).mean_dim(2).reshape([b, g, g]);
        Ok(Detection { image_score, map, patch_map, map_components: vec![], components: vec![] })
    }

    /// Measures the per-pixel mean and standard deviation of `[K ≥ 1, 3, S, S]` normal images.
    fn fit_reference(&mut self, normal: Tensor<4>) -> Result<(), DetectError> {
        let s = self.config.image_size;
        let [k, c, h, w] = normal.dims();
        if k == 0 || c != 3 || h != s || w != s {
            return Err(DetectError::Invalid(format!("baseline references must be [K ≥ 1, 3, {s}, {s}], got [{k}, {c}, {h}, {w}]")));
        }
        // Two passes over chunks of the references (sum, then squared deviations), so that the
        // intermediates stay small however many references a class has.
        let chunks: Vec<std::ops::Range<usize>> = (0..k).step_by(REFERENCE_CHUNK).map(|a| a..(a + REFERENCE_CHUNK).min(k)).collect();
        let part = |range: &std::ops::Range<usize>| normal.clone().slice([range.clone(), 0..3, 0..s, 0..s]);
        let sum_over = |f: &dyn Fn(Tensor<4>) -> Tensor<4>| {
            chunks.iter().map(|r| f(part(r)).sum_dim(0)).reduce(|a, b| a + b).expect("k ≥ 1")
        };
        let mean = sum_over(&|x| x).div_scalar(k as f32);
        let variance = sum_over(&|x| x.sub(mean.clone()).square()).div_scalar(k as f32);
        let std = variance.sqrt().clamp_min(self.config.min_std);
        self.reference = Some(Reference { mean, std });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use burn::tensor::TensorData;

    use super::*;

    fn fixture(name: &str) -> (Vec<usize>, Vec<f32>) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/eval").join(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
        let shape = npy.shape().iter().map(|&d| d as usize).collect();
        (shape, npy.into_vec::<f32>().unwrap())
    }

    fn tensor4(name: &str, device: &Device) -> Tensor<4> {
        let (shape, values) = fixture(name);
        Tensor::from_data(TensorData::new(values, [shape[0], shape[1], shape[2], shape[3]]), device)
    }

    fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
    }

    /// `VLAD_TEST_BACKEND=wgpu` runs the tests on wgpu in builds that have it; flex by default.
    fn test_device() -> Device {
        let name = std::env::var("VLAD_TEST_BACKEND").unwrap_or_else(|_| "flex".into());
        vlad_clip::device_for(vlad_clip::Backend::parse(&name).unwrap()).unwrap()
    }

    fn assert_close(name: &str, got: &[f32], want: &[f32], tol: f32) {
        assert_eq!(got.len(), want.len(), "{name}: length");
        let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst <= tol, "{name}: max |Δ| = {worst} > {tol}");
    }

    /// Against numpy (`tools/fixtures/eval.py`): K = 3 references and 2 test images at S = 8 with
    /// 4-pixel cells, plain and std-normalised (where the floor is active for a constant pixel).
    #[test]
    fn maps_scores_and_patch_maps_match_numpy() {
        let device = test_device();
        for (std_normalize, tag) in [(false, "plain"), (true, "std")] {
            let config = BaselineConfig { image_size: 8, patch: 4, std_normalize, min_std: 0.05 };
            let mut det = MeanImageBaseline::new(config, device.clone()).unwrap();
            det.set_class("bottle").unwrap();
            det.fit_reference(tensor4("baseline_references.npy", &device)).unwrap();
            let out = det.detect(tensor4("baseline_images.npy", &device)).unwrap();
            assert_eq!(out.map.dims(), [2, 8, 8]);
            assert_eq!(out.patch_map.dims(), [2, 2, 2]);
            // f32 sums of a handful of terms: a few ulps of values of order 1.
            assert_close(tag, &host(out.map), &fixture(&format!("baseline_{tag}_map.npy")).1, 1e-5);
            assert_close(tag, &host(out.image_score), &fixture(&format!("baseline_{tag}_score.npy")).1, 1e-5);
            assert_close(tag, &host(out.patch_map), &fixture(&format!("baseline_{tag}_patch_map.npy")).1, 1e-5);
        }
    }

    #[test]
    fn bad_configuration_and_missing_references_are_errors() {
        let device = test_device();
        let err = |c: BaselineConfig| MeanImageBaseline::new(c, device.clone()).err().unwrap().to_string();
        assert!(err(BaselineConfig { image_size: 30, patch: 16, ..Default::default() }).contains("divide the image size (30)"));
        assert!(err(BaselineConfig { min_std: 0.0, ..Default::default() }).contains("min_std"));
        let mut det = MeanImageBaseline::new(BaselineConfig { image_size: 8, patch: 4, ..Default::default() }, device.clone()).unwrap();
        det.set_class("pill").unwrap();
        let images = tensor4("baseline_images.npy", &device);
        let e = det.detect(images.clone()).err().unwrap().to_string();
        assert!(e.contains("no normal reference images for class `pill`"), "{e}");
        det.fit_reference(tensor4("baseline_references.npy", &device)).unwrap();
        assert!(det.detect(images.clone()).is_ok());
        // A new class drops the old class's references.
        det.set_class("screw").unwrap();
        assert!(det.detect(images.clone()).is_err());
        let wrong = Tensor::<4>::zeros([1, 3, 4, 4], &device);
        assert!(det.fit_reference(wrong).err().unwrap().to_string().contains("[K ≥ 1, 3, 8, 8], got [1, 3, 4, 4]"));
    }
}
