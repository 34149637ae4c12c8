//! vlad in the browser. One [`Engine`] owns the device (WebGPU when the browser offers it, else the
//! CPU `flex` backend), the backbone loaded from bytes (burnpack or safetensors), and the chosen
//! detector. Everything is computed client-side; results are read back asynchronously (the only
//! way WebGPU allows). Errors come back as JS `Error`s with a readable message.
use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor};
use serde::Serialize;
use vlad_clip::model::LoadOptions;
use vlad_clip::weights::{WeightFile, canonicalize, infer_config};
use vlad_clip::{Activation, ClipConfig, ClipModel, ClipTokenizer, PosEmbedResize};
use vlad_detect::aa_clip::{AaClip, AaClipConfig, AaClipOptions};
use vlad_detect::bayes_pfl::{BayesPfl, BayesPflOptions, NoiseMode, StageChoice};
use vlad_detect::calibration::ScoreCalibration;
use vlad_detect::ada_clip::{AdaClip, AdaClipOptions};
use vlad_detect::anomaly_clip::{AnomalyClip, AnomalyClipOptions};
use vlad_detect::clip_ad::{ClipAd, ClipAdConfig, ClipAdOptions, Rvs};
use vlad_detect::vand::{Vand, VandOptions};
use vlad_detect::winclip::{WinClip, WinClipConfig};
use vlad_detect::zero_shot::{ZeroShotClip, ZeroShotConfig, ZeroShotPrompts};
use vlad_detect::{DetectError, Detection, Detector, Staged};
use wasm_bindgen::prelude::*;
use web_time::Instant;

/// What [`Engine::set_detector`] accepts.
const DETECTORS: &[&str] = &["zero-shot", "winclip", "aa-clip", "bayes-pfl", "vand", "clip-ad", "clip-ad-plus", "anomaly-clip", "ada-clip"];

/// Detectors that need trained weights of their own ([`Engine::add_checkpoint`]).
const NEEDS_CHECKPOINT: &[&str] = &["aa-clip", "bayes-pfl", "vand", "clip-ad-plus", "anomaly-clip", "ada-clip"];

#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
}

fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// `detect` with every mid-way read-back awaited (AdaCLIP's k-means reads tokens back, which
/// WebGPU can only do asynchronously).
pub async fn detect_async(detector: &dyn Detector, x: Tensor<4>) -> Result<Detection, JsError> {
    let Some(staged) = detector.host_staged() else {
        return detector.detect(x).map_err(js_err);
    };
    let mut step = staged.stage_start(x).map_err(js_err)?;
    loop {
        match step {
            Staged::Done(detection) => return Ok(*detection),
            Staged::Read { tensors, state } => {
                let mut host = Vec::with_capacity(tensors.len());
                for t in tensors {
                    host.push(read_f32(t).await?);
                }
                step = staged.stage_continue(state, host).map_err(js_err)?;
            }
        }
    }
}

async fn read_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, JsError> {
    let data = t.into_data_async().await.map_err(|e| js_err(format!("cannot read back a result: {e:?}")))?;
    data.convert::<f32>().try_into_vec::<f32>().map_err(|e| js_err(format!("cannot read back a result: {e:?}")))
}

/// What [`Engine::load_weights`] reports.
#[derive(Serialize)]
struct ModelInfo {
    architecture: String,
    activation: &'static str,
    image_size: usize,
    tensors: usize,
    warnings: Vec<String>,
}

/// One scored image, as returned to JavaScript.
#[derive(Serialize)]
struct ScoreResult {
    /// Raw single-image score of the detector.
    score: f32,
    /// Calibrated score in [0, 1] when reference images were given.
    calibrated: Option<f32>,
    /// Side of the square map.
    size: usize,
    /// Patch-grid side.
    grid: usize,
    /// Minimum and maximum of the map.
    map_min: f32,
    map_max: f32,
    /// Milliseconds per stage.
    timings: BTreeMap<&'static str, f64>,
}

/// The browser-side detector engine.
#[wasm_bindgen]
pub struct Engine {
    device: Device,
    backend: String,
    adapter: String,
    model: Option<ClipModel>,
    detector: Option<Box<dyn Detector>>,
    detector_name: String,
    class_name: String,
    calibration: Option<ScoreCalibration>,
    /// Preprocessed normal reference images of the current class (`[3, S, S]` each).
    references: Vec<Vec<f32>>,
    /// Whether the detector keeps the references as its few-shot memory (WinCLIP+).
    memory: bool,
    /// Checkpoint files of the detectors that need trained weights, by detector name.
    checkpoints: BTreeMap<String, Vec<WeightFile>>,
}

#[wasm_bindgen]
impl Engine {
    /// Creates the engine: WebGPU when `prefer_gpu` and the browser provides an adapter, otherwise
    /// (or when WebGPU initialisation fails) the CPU backend.
    pub async fn create(prefer_gpu: bool) -> Engine {
        let mut engine = Engine {
            device: Device::flex(),
            backend: "cpu".into(),
            adapter: "CPU (flex, WebAssembly)".into(),
            model: None,
            detector: None,
            detector_name: String::new(),
            class_name: "object".into(),
            calibration: None,
            references: Vec::new(),
            memory: false,
            checkpoints: BTreeMap::new(),
        };
        if prefer_gpu {
            match Device::wgpu_options().init_with_setup_async().await {
                Ok((device, setup)) => {
                    let info = setup.adapter.get_info();
                    engine.device = device;
                    engine.backend = "webgpu".into();
                    // Browsers usually hide the adapter's name from wgpu; the page adds what
                    // `navigator.gpu` tells it (vendor, architecture).
                    engine.adapter = if info.name.is_empty() { "name not exposed by the browser".to_string() } else { info.name.clone() };
                }
                Err(e) => {
                    engine.adapter = format!("CPU (flex, WebAssembly); WebGPU unavailable: {e}");
                }
            }
        }
        engine
    }

    /// Names of the detectors [`Engine::set_detector`] accepts, as a JSON array (the page enables
    /// those and shows the others as coming).
    pub fn detectors() -> String {
        serde_json::to_string(DETECTORS).expect("a list of names serialises")
    }

    /// `webgpu` or `cpu`.
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    /// Adapter description (GPU name, or why the CPU is used).
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> String {
        self.adapter.clone()
    }

    /// Loads a backbone from burnpack or safetensors bytes (OpenAI or HF names). `arch` may be empty
    /// to use the file's metadata or shapes; `activation` is `quick`, `exact` or empty (the
    /// architecture's own). Returns a JSON description.
    pub fn load_weights(&mut self, bytes: Vec<u8>, arch: &str, activation: &str) -> Result<String, JsError> {
        let file = WeightFile::from_bytes(bytes, "uploaded weights").map_err(js_err)?;
        let mut config = if !arch.is_empty() {
            ClipConfig::preset(arch).map_err(js_err)?
        } else if let Some(json) = file.metadata.get("vlad.clip_config") {
            ClipConfig::from_json(json).map_err(js_err)?
        } else {
            let (_, entries) = canonicalize(&file).map_err(js_err)?;
            infer_config(&entries).ok_or_else(|| js_err("cannot recognise the architecture of these weights"))?
        };
        if !activation.is_empty() {
            config = config.with_activation(Activation::parse(activation).map_err(js_err)?);
        }
        let (model, report) = ClipModel::load(&config, &file, &self.device, LoadOptions::default()).map_err(js_err)?;
        let info = ModelInfo {
            architecture: config.name.clone(),
            activation: config.activation.as_str(),
            image_size: config.vision.image_size,
            tensors: report.loaded,
            warnings: report.ignored.iter().map(|n| format!("ignored {n}")).collect(),
        };
        self.model = Some(model);
        self.detector = None;
        serde_json::to_string(&info).map_err(js_err)
    }

    /// Chooses the detector (needs loaded weights):
    /// - `zero-shot` — `{"prompts": "single"|"winclip", "image_size": S, "logit_scale": 100}`;
    /// - `winclip` — `{"temperature": 0.07, "scales": [2, 3]}`, at the backbone's native size;
    ///   reference images turn it into WinCLIP+;
    /// - `aa-clip` — `{"image_size": S}` (default: the checkpoint's, else 37 patches a side);
    /// - `bayes-pfl` — `{"samples": R, "image_size": S, "seed": 333, "taps": [6, 12, 18, 24],
    ///   "sigma": 8}` (defaults: the official test's, taps at the quarters of the vision depth);
    /// - `vand` — `{"image_size": S}` (default: the checkpoint's, else 37 patches a side);
    ///   reference images become its few-shot memory;
    /// - `clip-ad` (SDP) and `clip-ad-plus` (SDP+) — `{"image_size": S, "sigma": 8, "rvs":
    ///   "dbscan"|"dbscan-visa"|"mean"}` (defaults: the backbone's native size, σ 8, DBSCAN).
    ///
    /// - `anomaly-clip` — `{"image_size": S, "sigma": 4}` (default: the checkpoint's size, else 37
    ///   patches a side; DPAM tap = the last block, as the released models).
    ///
    /// `aa-clip`, `bayes-pfl`, `vand`, `clip-ad-plus` and `anomaly-clip` need their checkpoint
    /// ([`Engine::add_checkpoint`]).
    pub fn set_detector(&mut self, name: &str, options_json: &str) -> Result<(), JsError> {
        let model = self.model.clone().ok_or_else(|| js_err("load backbone weights first"))?;
        let options: serde_json::Value = if options_json.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(options_json).map_err(|e| js_err(format!("detector options are not valid JSON: {e}")))?
        };
        let native = model.config.vision.image_size;
        let image_size = options["image_size"].as_u64().map_or(native, |v| v as usize);
        let mut detector: Box<dyn Detector> = match name {
            "zero-shot" => {
                let prompts = match options["prompts"].as_str().unwrap_or("single") {
                    "single" => ZeroShotPrompts::Single,
                    "winclip" => ZeroShotPrompts::WinClipEnsemble,
                    other => return Err(js_err(format!("unknown prompt set `{other}` (single or winclip)"))),
                };
                let logit_scale = options["logit_scale"].as_f64().unwrap_or(100.0) as f32;
                let config = ZeroShotConfig { prompts, logit_scale, image_size, smoothing_sigma: None };
                Box::new(ZeroShotClip::new(model, config).map_err(js_err)?)
            }
            "winclip" => {
                let mut config = WinClipConfig::default();
                if let Some(t) = options["temperature"].as_f64() {
                    config.temperature = t as f32;
                }
                if let Some(scales) = options["scales"].as_array() {
                    config.scales = scales.iter().filter_map(|v| v.as_u64().map(|v| v as usize)).collect();
                }
                Box::new(WinClip::new(model, config).map_err(js_err)?)
            }
            "aa-clip" => {
                let files = self.checkpoint_files(name)?;
                let device = self.device.clone();
                let weights = vlad_detect::aa_clip::checkpoint::load_weight_files(files, &model.config, &device).map_err(js_err)?;
                // Without a size the checkpoint's own (or the backbone default: 37 patches a side).
                let image_size = options["image_size"].as_u64().map(|v| v as usize);
                Box::new(AaClip::new(model, weights, AaClipOptions { image_size, ..Default::default() }).map_err(js_err)?)
            }
            "bayes-pfl" => {
                let files = self.checkpoint_files(name)?;
                let checkpoint = vlad_detect::bayes_pfl::load_checkpoint(&files[0], &self.device, StageChoice::FromFile, false).map_err(js_err)?;
                // Defaults as the official test for ViT-L-14-336 (taps 6, 12, 18, 24 and 518 px),
                // scaled to other backbones the way AA-CLIP's are: taps at the quarters of the
                // vision depth, 37 patches a side.
                let scaled = AaClipConfig::for_backbone(&model.config);
                let mut config = BayesPflOptions { taps: scaled.levels, image_size: scaled.image_size, ..Default::default() };
                if let Some(size) = options["image_size"].as_u64() {
                    config.image_size = size as usize;
                }
                if let Some(r) = options["samples"].as_u64() {
                    config.samples = r as usize;
                }
                if let Some(seed) = options["seed"].as_u64() {
                    config.noise = NoiseMode::Sample { seed };
                }
                if let Some(taps) = options["taps"].as_array() {
                    config.taps = taps.iter().map(|t| t.as_u64().map(|t| t as usize).ok_or_else(|| js_err(format!("tap `{t}` is not a block number")))).collect::<Result<_, _>>()?;
                }
                match &options["sigma"] {
                    serde_json::Value::Null => {}
                    v => config.smoothing_sigma = v.as_f64().map(|s| if s == 0.0 { None } else { Some(s) }).ok_or_else(|| js_err("sigma must be a number (0 = no smoothing)"))?,
                }
                Box::new(BayesPfl::from_checkpoint(model, checkpoint, config).map_err(js_err)?)
            }
            "clip-ad" | "clip-ad-plus" => {
                let mut config = ClipAdConfig::for_backbone(&model.config);
                config.rvs = match options["rvs"].as_str().unwrap_or("dbscan") {
                    "dbscan" => Rvs::official_for("mvtec"),
                    "dbscan-visa" => Rvs::official_for("visa"),
                    "mean" => Rvs::Mean,
                    other => return Err(js_err(format!("unknown rvs `{other}` (dbscan, dbscan-visa or mean)"))),
                };
                // DBSCAN clusters the sentence embeddings on the host, and WebGPU cannot hand
                // tensors back inside this synchronous call.
                if self.backend == "webgpu" && config.rvs != Rvs::Mean {
                    return Err(js_err(
                        "CLIP-AD's DBSCAN prototypes are clustered on the CPU, which the WebGPU engine cannot read back here: choose the \"mean\" prototype, or untick \"Use the GPU\"",
                    ));
                }
                match &options["sigma"] {
                    serde_json::Value::Null => {}
                    v => config.sigma = v.as_f64().map(|s| if s == 0.0 { None } else { Some(s) }).ok_or_else(|| js_err("sigma must be a number (0 = no smoothing)"))?,
                }
                let layers = if name == "clip-ad-plus" {
                    let files = self.checkpoint_files(name)?;
                    Some(vlad_detect::vand::checkpoint::load_weight_file(&files[0], &model.config, Some(&config.taps), &self.device).map_err(js_err)?.layers)
                } else {
                    None
                };
                let options = ClipAdOptions { image_size: options["image_size"].as_u64().map(|v| v as usize) };
                Box::new(ClipAd::new(model, layers, config, options).map_err(js_err)?)
            }
            "anomaly-clip" => {
                let files = self.checkpoint_files(name)?;
                let mut weights = vlad_detect::anomaly_clip::checkpoint::load_weight_file(&files[0], &model.config, &self.device).map_err(js_err)?;
                match &options["sigma"] {
                    serde_json::Value::Null => {}
                    v => weights.config.sigma = v.as_f64().map(|s| if s == 0.0 { None } else { Some(s) }).ok_or_else(|| js_err("sigma must be a number (0 = no smoothing)"))?,
                }
                let options = AnomalyClipOptions { image_size: options["image_size"].as_u64().map(|v| v as usize), ..Default::default() };
                Box::new(AnomalyClip::from_weights(model, weights, options).map_err(js_err)?)
            }
            "ada-clip" => {
                let files = self.checkpoint_files(name)?;
                let mut weights = vlad_detect::ada_clip::checkpoint::load_weight_file(&files[0], &model.config, &self.device).map_err(js_err)?;
                match &options["sigma"] {
                    serde_json::Value::Null => {}
                    v => weights.config.sigma = v.as_f64().map(|s| if s == 0.0 { None } else { Some(s) }).ok_or_else(|| js_err("sigma must be a number (0 = no smoothing)"))?,
                }
                let options = AdaClipOptions {
                    image_size: options["image_size"].as_u64().map(|v| v as usize),
                    // The page's select sends "true"/"false".
                    no_hsf: options["no_hsf"].as_bool().unwrap_or(options["no_hsf"].as_str() == Some("true")),
                    ..Default::default()
                };
                Box::new(AdaClip::from_weights(model, weights, options).map_err(js_err)?)
            }
            "vand" => {
                let files = self.checkpoint_files(name)?;
                let weights = vlad_detect::vand::checkpoint::load_weight_file(&files[0], &model.config, None, &self.device).map_err(js_err)?;
                let options = VandOptions { image_size: options["image_size"].as_u64().map(|v| v as usize), ..Default::default() };
                Box::new(Vand::from_weights(model, weights, options).map_err(js_err)?)
            }
            other => return Err(js_err(format!("unknown detector `{other}` ({})", DETECTORS.join(", ")))),
        };
        detector.set_class(&self.class_name).map_err(js_err)?;
        self.detector = Some(detector);
        self.detector_name = name.to_string();
        self.calibration = None;
        self.references.clear();
        self.memory = false;
        Ok(())
    }

    /// Adds a checkpoint file (safetensors, burnpack or the official PyTorch `.pth` bytes) for a detector that needs trained
    /// weights: `aa-clip` takes its text- and image-adapter files (one call each, or one file
    /// holding both); `bayes-pfl`, `vand` and `clip-ad-plus` take one file each (a new one replaces
    /// the old). Takes effect at the
    /// next [`Engine::set_detector`]. Returns the number of tensors in the file.
    pub fn add_checkpoint(&mut self, detector: &str, bytes: Vec<u8>, name: &str) -> Result<usize, JsError> {
        if !NEEDS_CHECKPOINT.contains(&detector) {
            return Err(js_err(format!("`{detector}` takes no checkpoint (only {})", NEEDS_CHECKPOINT.join(", "))));
        }
        // The released Bayes-PFL files keep their state dict under `MyModel`; AA-CLIP's official
        // adapter files are plain state dicts.
        // VAND's official files keep theirs under `trainable_linearlayer`.
        let key = match detector {
            "bayes-pfl" => bytes.starts_with(b"PK\x03\x04").then_some("MyModel"),
            "vand" => vlad_detect::vand::checkpoint::top_level_key(&bytes),
            "clip-ad-plus" => vlad_detect::vand::checkpoint::keyed(&bytes, vlad_detect::clip_ad::TOP_LEVEL_KEY),
            "anomaly-clip" => vlad_detect::anomaly_clip::checkpoint::top_level_key(&bytes),
            _ => None,
        };
        let file = WeightFile::from_bytes_with_key(bytes, name, key).map_err(js_err)?;
        let tensors = file.entries.len();
        let files = self.checkpoints.entry(detector.to_string()).or_default();
        if detector != "aa-clip" {
            files.clear();
        }
        files.push(file);
        Ok(tensors)
    }

    /// Forgets the checkpoint files of a detector.
    pub fn clear_checkpoints(&mut self, detector: &str) {
        self.checkpoints.remove(detector);
    }

    /// Sets the inspected class / object name used in the prompts.
    pub fn set_class(&mut self, name: &str) -> Result<(), JsError> {
        let name = if name.trim().is_empty() { "object" } else { name.trim() };
        self.class_name = name.to_string();
        if let Some(d) = self.detector.as_mut() {
            d.set_class(name).map_err(js_err)?;
        }
        // References belong to a class: start over.
        self.calibration = None;
        self.references.clear();
        self.memory = false;
        Ok(())
    }

    fn checkpoint_files(&self, detector: &str) -> Result<&[WeightFile], JsError> {
        match self.checkpoints.get(detector) {
            Some(files) if !files.is_empty() => Ok(files),
            _ => Err(js_err(format!("{detector} needs its checkpoint: load the checkpoint file first"))),
        }
    }

    fn pixels(&self, rgba: &[u8], width: u32, height: u32) -> Result<Tensor<4>, JsError> {
        let detector = self.detector.as_ref().ok_or_else(|| js_err("choose a detector first"))?;
        let image = vlad_imaging::rgb_from_rgba_bytes(rgba, width, height).map_err(js_err)?;
        let pre = detector.preprocess();
        pre.batch(&[pre.to_chw(&image)], &self.device).map_err(js_err)
    }

    /// Adds a normal reference image (RGBA bytes) of the current class. Detectors with a few-shot
    /// memory (WinCLIP → WinCLIP+) keep all references as their memory. The calibrated score is
    /// measured on the references: directly for memory-less detectors, leave-one-out for the others
    /// (each reference scored against a memory of the rest, so at least 2 are needed). Returns the
    /// number of references.
    pub async fn add_reference(&mut self, rgba: Vec<u8>, width: u32, height: u32) -> Result<usize, JsError> {
        let detector = self.detector.as_ref().ok_or_else(|| js_err("choose a detector first"))?;
        let image = vlad_imaging::rgb_from_rgba_bytes(&rgba, width, height).map_err(js_err)?;
        self.references.push(detector.preprocess().to_chw(&image));
        let pre = detector.preprocess();
        let all = pre.batch(&self.references, &self.device).map_err(js_err)?;
        let detector = self.detector.as_mut().expect("checked above");
        self.memory = match detector.fit_reference(all) {
            Ok(()) => true,
            Err(DetectError::Unsupported { .. }) => false,
            Err(e) => return Err(js_err(e)),
        };
        let k = self.references.len();
        let mut scores = Vec::with_capacity(k);
        if self.memory {
            if k >= 2 {
                for held_out in 0..k {
                    let rest: Vec<Vec<f32>> = self.references.iter().enumerate().filter(|(i, _)| *i != held_out).map(|(_, r)| r.clone()).collect();
                    let detector = self.detector.as_mut().expect("checked above");
                    detector.fit_reference(pre.batch(&rest, &self.device).map_err(js_err)?).map_err(js_err)?;
                    let x = pre.batch(std::slice::from_ref(&self.references[held_out]), &self.device).map_err(js_err)?;
                    scores.extend(read_f32(detect_async(detector.as_ref(), x).await?.image_score).await?);
                }
                let detector = self.detector.as_mut().expect("checked above");
                detector.fit_reference(pre.batch(&self.references, &self.device).map_err(js_err)?).map_err(js_err)?;
            }
        } else {
            let x = pre.batch(&self.references, &self.device).map_err(js_err)?;
            let detector = self.detector.as_ref().expect("checked above");
            scores = read_f32(detect_async(detector.as_ref(), x).await?.image_score).await?;
        }
        self.calibration = ScoreCalibration::from_normal(&scores);
        Ok(k)
    }

    /// Scores one image given as RGBA bytes. Returns `{score, calibrated, size, grid, map_min,
    /// map_max, timings}`; the map itself is fetched with [`Engine::last_map`].
    pub async fn score(&mut self, rgba: Vec<u8>, width: u32, height: u32) -> Result<JsValue, JsError> {
        let mut timings = BTreeMap::new();
        let t0 = Instant::now();
        let x = self.pixels(&rgba, width, height)?;
        timings.insert("preprocess", t0.elapsed().as_secs_f64() * 1e3);
        let t1 = Instant::now();
        let detector = self.detector.as_ref().ok_or_else(|| js_err("choose a detector first"))?;
        let Detection { image_score, map, .. } = detect_async(detector.as_ref(), x).await?;
        let [_, size, _] = map.dims();
        let grid = detector.grid();
        timings.insert("submit", t1.elapsed().as_secs_f64() * 1e3);
        let t2 = Instant::now();
        let score = read_f32(image_score).await?[0];
        let values = read_f32(map).await?;
        timings.insert("compute_and_readback", t2.elapsed().as_secs_f64() * 1e3);
        timings.insert("total", t0.elapsed().as_secs_f64() * 1e3);
        let (map_min, map_max) = values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        LAST_MAP.with(|m| *m.borrow_mut() = values);
        let result = ScoreResult { score, calibrated: self.calibration.map(|c| c.apply(score)), size, grid, map_min, map_max, timings };
        serde_wasm_compatible(&result)
    }

    /// The map of the last [`Engine::score`] call, row-major `size × size`.
    pub fn last_map(&self) -> js_sys::Float32Array {
        LAST_MAP.with(|m| js_sys::Float32Array::from(m.borrow().as_slice()))
    }

    /// CLIP token ids of a text (77 ids, zero padded).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, JsError> {
        ClipTokenizer::openai().map_err(js_err)?.tokenize(text, 77).map_err(js_err)
    }

    /// Teaching mode: cosine similarity of an image with each prompt (the CLIP image embedding
    /// against the text embeddings), e.g. "a photo of a broken carpet." vs "… normal carpet.".
    pub async fn prompt_similarities(&self, rgba: Vec<u8>, width: u32, height: u32, prompts: Vec<String>) -> Result<Vec<f32>, JsError> {
        let model = self.model.as_ref().ok_or_else(|| js_err("load backbone weights first"))?;
        let image = vlad_imaging::rgb_from_rgba_bytes(&rgba, width, height).map_err(js_err)?;
        let pre = vlad_clip::preprocess::Preprocess::squash(model.config.vision.image_size as u32);
        let x = pre.batch(&[pre.to_chw(&image)], &self.device).map_err(js_err)?;
        let z = vlad_detect::prompts::l2_normalize(model.encode_image(x).map_err(js_err)?);
        let ids = ClipTokenizer::openai().map_err(js_err)?.tokenize_batch(&prompts).map_err(js_err)?;
        let t = vlad_detect::prompts::l2_normalize(model.encode_text(&ids).map_err(js_err)?);
        read_f32(z.matmul(t.transpose())).await
    }

    /// Rule used to resize positional embeddings for off-native inputs (`a`, `b` or `c`).
    pub fn set_pos_resize(&mut self, rule: &str) -> Result<(), JsError> {
        let rule = PosEmbedResize::parse(rule).ok_or_else(|| js_err(format!("unknown rule `{rule}`")))?;
        if let Some(m) = self.model.as_mut() {
            m.visual.pos_resize = rule;
        }
        Ok(())
    }
}

/// Refuses an upload whose header declares more pixels than vlad accepts anywhere (twice
/// Pillow's `MAX_IMAGE_PIXELS`, [`vlad_imaging::ImageLimits`]), before the browser decodes it
/// into a bitmap that size. Formats vlad does not read (WebP, GIF, ...) and headers it cannot
/// parse pass: the browser's decoder judges those, and [`check_image_size`] the result.
#[wasm_bindgen]
pub fn check_image_header(bytes: &[u8]) -> Result<(), JsError> {
    match vlad_imaging::checked_dimensions(bytes, &vlad_imaging::ImageLimits::default()) {
        Err(e @ vlad_imaging::ImagingError::TooManyPixels { .. }) => Err(too_many_pixels(e, "was not decoded")),
        _ => Ok(()),
    }
}

/// The same limit on an image the browser has decoded (for formats [`check_image_header`] cannot
/// read), before its pixels are copied out.
#[wasm_bindgen]
pub fn check_image_size(width: u32, height: u32) -> Result<(), JsError> {
    vlad_imaging::ImageLimits::default().check("decoded", width, height).map_err(|e| too_many_pixels(e, "was not used"))
}

/// The page's wording of [`vlad_imaging::ImagingError::TooManyPixels`] (the native one points
/// to a command-line option).
fn too_many_pixels(e: vlad_imaging::ImagingError, outcome: &str) -> JsError {
    match e {
        vlad_imaging::ImagingError::TooManyPixels { format, width, height, pixels, limit } => js_err(format!(
            "{format} image of {width}×{height} = {pixels} pixels is over the limit of {limit} pixels (Pillow's \
             decompression-bomb rule) and {outcome}; the native CLI reads trusted huge images with \
             --max-image-pixels"
        )),
        other => js_err(other),
    }
}

thread_local! {
    static LAST_MAP: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Plain JS object from a serialisable value (via JSON, which keeps the wasm small).
fn serde_wasm_compatible<T: Serialize>(value: &T) -> Result<JsValue, JsError> {
    let json = serde_json::to_string(value).map_err(js_err)?;
    js_sys::JSON::parse(&json).map_err(|_| js_err("cannot build the result object"))
}
