//! Checkpoints: the released `train_visa.pth` / `train_mvtec.pth` (`{'MyModel': state_dict}`,
//! `spec/bayes-pfl.md` §12), the official per-epoch files, and vlad's own burnpack files, which
//! hold the same keys plus metadata (stage, dimensions).
//!
//! The official state dict has 131 keys. Shared modules appear under several names
//! (`PFL_context.encoder` = `context_encoder`, `PFL_{normal,abnormal}.encoder` = `state_encoder`,
//! and the same for the decoders): the import loads the canonical name and checks that every
//! alias holds the same values. The decoders and the three `p_mu` layers are dead weights (the
//! reconstruction term is not in the loss): they are not part of the model, but they are kept so
//! that a checkpoint written back in the official format loads with `strict=True`.
use std::collections::BTreeMap;
use std::sync::Arc;

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData};
use vlad_clip::weights::{Entry, LoadReport, WeightFile, WeightReader};

use super::head::{BayesPflHead, GaussianEncoder, HeadConfig, InferenceBlock, Stage};
use crate::DetectError;

/// Metadata key of the stage in vlad's files.
pub const META_STAGE: &str = "vlad.bayes_pfl.stage";
/// Metadata key of the head dimensions (JSON) in vlad's files.
pub const META_CONFIG: &str = "vlad.bayes_pfl.config";
/// Metadata key naming the method.
pub const META_METHOD: &str = "vlad.method";

/// Where the stage comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StageChoice {
    /// vlad's metadata if present, else the official file-name rule: a name containing
    /// `epoch_post` carries the stage after its last `_` (`epoch_post_12_1.pth` → 1); any other
    /// name is stage 2 (the released files).
    #[default]
    FromFile,
    /// This stage, whatever the file says.
    Fixed(Stage),
}

/// The stage by the official `test.py` rule applied to a file name.
pub fn stage_from_file_name(path: &str) -> Result<Stage, DetectError> {
    let name = path.rsplit(['/', '\\']).next().unwrap_or(path);
    if !path.contains("epoch_post") {
        return Ok(Stage::Two);
    }
    let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    let last = stem.rsplit('_').next().unwrap_or("");
    last.parse::<u32>().ok().and_then(Stage::from_number).ok_or_else(|| {
        DetectError::Invalid(format!("{path}: an `epoch_post` file name must end in `_1` or `_2` (the training stage), found `{last}`"))
    })
}

/// Names of the dead keys (decoders and `p_mu`, canonical names only) for a head.
fn dead_keys(config: &HeadConfig) -> Vec<(String, Vec<usize>)> {
    let (e, hid) = (config.width, config.hidden());
    let mut out = Vec::new();
    for decoder in ["context_decoder", "state_decoder"] {
        out.extend(block_keys(&format!("{decoder}.weight_mean"), e, hid, e));
    }
    for pfl in ["PFL_context", "PFL_normal", "PFL_abnormal"] {
        out.push((format!("{pfl}.p_mu.0.weight"), vec![e, e]));
        out.push((format!("{pfl}.p_mu.0.bias"), vec![e]));
    }
    out
}

fn block_keys(prefix: &str, input: usize, hidden: usize, output: usize) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    for (i, (d_in, d_out)) in [(0, (input, hidden)), (2, (hidden, hidden)), (4, (hidden, output))] {
        out.push((format!("{prefix}.module.{i}.weight"), vec![d_out, d_in]));
        out.push((format!("{prefix}.module.{i}.bias"), vec![d_out]));
    }
    out
}

fn encoder_keys(prefix: &str, config: &HeadConfig) -> Vec<(String, Vec<usize>)> {
    let (e, hid) = (config.width, config.hidden());
    let mut out = block_keys(&format!("{prefix}.weight_mean"), e, hid, e);
    out.extend(block_keys(&format!("{prefix}.weight_log_variance"), e, hid, e));
    out
}

/// Alias prefixes: (alias, canonical).
const ALIASES: [(&str, &str); 6] = [
    ("PFL_context.encoder", "context_encoder"),
    ("PFL_context.decoder", "context_decoder"),
    ("PFL_normal.encoder", "state_encoder"),
    ("PFL_normal.decoder", "state_decoder"),
    ("PFL_abnormal.encoder", "state_encoder"),
    ("PFL_abnormal.decoder", "state_decoder"),
];

/// One key of the official state dict.
#[derive(Debug, Clone, PartialEq)]
pub struct OfficialKey {
    /// Name.
    pub name: String,
    /// PyTorch shape.
    pub shape: Vec<usize>,
    /// The canonical key whose tensor this key shares, for aliases.
    pub alias_of: Option<String>,
    /// A decoder or `p_mu` tensor (or an alias of one): not used by the model.
    pub dead: bool,
}

/// Every key of `Context_Prompting.state_dict()` in PyTorch's order (own parameters, then
/// sub-modules in registration order), with shapes, aliases and dead keys marked. For the released
/// configuration these are the 131 keys of `train_visa.pth`.
pub fn official_keys(config: &HeadConfig) -> Vec<OfficialKey> {
    let (b, p, q, k, e, dv, hid, l) =
        (config.prompt_num, config.context_len, config.state_len, config.num_flows, config.width, config.vision_width, config.hidden(), config.layers);
    let mut out: Vec<OfficialKey> = Vec::new();
    let mut push = |name: String, shape: Vec<usize>, alias_of: Option<String>, dead: bool| out.push(OfficialKey { name, shape, alias_of, dead });
    let plain = |v: Vec<(String, Vec<usize>)>| v;
    for (name, shape) in [
        ("prompt_context", vec![b, p, e]),
        ("prompt_state_normal", vec![b, q, e]),
        ("prompt_state_abnormal", vec![b, q, e]),
        ("temperature_pixel", vec![]),
        ("temperature_image", vec![]),
    ] {
        push(name.into(), shape, None, false);
    }
    let decoder = |prefix: &str| block_keys(&format!("{prefix}.weight_mean"), e, hid, e);
    for (name, shape) in plain(encoder_keys("context_encoder", config)) {
        push(name, shape, None, false);
    }
    for (name, shape) in decoder("context_decoder") {
        push(name, shape, None, true);
    }
    for (name, shape) in encoder_keys("state_encoder", config) {
        push(name, shape, None, false);
    }
    for (name, shape) in decoder("state_decoder") {
        push(name, shape, None, true);
    }
    let aliased = |alias: &str, canonical: &str, keys: Vec<(String, Vec<usize>)>| -> Vec<(String, Vec<usize>, String)> {
        keys.into_iter()
            .map(|(name, shape)| {
                let target = format!("{canonical}{}", &name[alias.len()..]);
                (name, shape, target)
            })
            .collect()
    };
    // PFL_context: encoder, decoder, p_mu, then the amortised flow layers.
    for (name, shape, target) in aliased("PFL_context.encoder", "context_encoder", encoder_keys("PFL_context.encoder", config)) {
        push(name, shape, Some(target), false);
    }
    for (name, shape, target) in aliased("PFL_context.decoder", "context_decoder", decoder("PFL_context.decoder")) {
        push(name, shape, Some(target), true);
    }
    push("PFL_context.p_mu.0.weight".into(), vec![e, e], None, true);
    push("PFL_context.p_mu.0.bias".into(), vec![e], None, true);
    for (name, out_dim) in [("amor_u", k * e), ("amor_w", k * e), ("amor_b", k)] {
        push(format!("PFL_context.{name}.weight"), vec![out_dim, e], None, false);
        push(format!("PFL_context.{name}.bias"), vec![out_dim], None, false);
    }
    // PFL_normal / PFL_abnormal: own parameters, then encoder, decoder, p_mu.
    for pfl in ["PFL_normal", "PFL_abnormal"] {
        push(format!("{pfl}.amor_u"), vec![1, k, e, 1], None, false);
        push(format!("{pfl}.amor_w"), vec![1, k, 1, e], None, false);
        push(format!("{pfl}.amor_b"), vec![1, k, 1, 1], None, false);
        push(format!("{pfl}.state"), vec![1, e], None, false);
        let enc = format!("{pfl}.encoder");
        for (name, shape, target) in aliased(&enc, "state_encoder", encoder_keys(&enc, config)) {
            push(name, shape, Some(target), false);
        }
        let dec = format!("{pfl}.decoder");
        for (name, shape, target) in aliased(&dec, "state_decoder", decoder(&dec)) {
            push(name, shape, Some(target), true);
        }
        push(format!("{pfl}.p_mu.0.weight"), vec![e, e], None, true);
        push(format!("{pfl}.p_mu.0.bias"), vec![e], None, true);
    }
    for (name, shape) in [
        ("fuse.fuse_modules.weight", vec![hid, l * dv]),
        ("fuse.fuse_modules.bias", vec![hid]),
        ("fuse.compress.weight", vec![1, hid]),
        ("fuse.compress.bias", vec![1]),
        ("fuse.post_process.weight", vec![e, hid]),
        ("fuse.post_process.bias", vec![e]),
        ("RCA.q_proj_pre.weight", vec![e, e, 1]),
        ("RCA.q_proj_pre.bias", vec![e]),
    ] {
        push(name.into(), shape, None, false);
    }
    for i in 0..l {
        push(format!("RCA.linear_proj.{i}.weight"), vec![e, dv], None, false);
    }
    for name in ["class_mapping", "image_mapping"] {
        push(format!("{name}.weight"), vec![e, e], None, false);
        push(format!("{name}.bias"), vec![e], None, false);
    }
    out
}

/// The dead tensors of a checkpoint (decoders and `p_mu`), by canonical name, kept for export.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeadWeights {
    /// Name → (PyTorch shape, values).
    pub tensors: BTreeMap<String, (Vec<usize>, Arc<Vec<f32>>)>,
}

impl DeadWeights {
    /// The official initialisation (`_initialize_weights`: Linear weights N(0, 0.02), zero biases)
    /// with normals from `normal`.
    pub fn initialized(config: &HeadConfig, mut normal: impl FnMut() -> f32) -> Self {
        let tensors = dead_keys(config)
            .into_iter()
            .map(|(name, shape)| {
                let n = shape.iter().product();
                let values = if name.ends_with(".bias") { vec![0.0; n] } else { (0..n).map(|_| 0.02 * normal()).collect() };
                (name, (shape, Arc::new(values)))
            })
            .collect();
        Self { tensors }
    }
}

/// What an import did.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportReport {
    /// The reader's books: tensors loaded, problems, unused tensors.
    pub load: LoadReport,
    /// Alias keys checked against their canonical key (alias, canonical).
    pub aliases: Vec<(String, String)>,
    /// Dead keys read and kept for export (decoders, `p_mu`).
    pub dead: Vec<String>,
    /// Stage and where it came from.
    pub stage: (Stage, String),
}

impl std::fmt::Display for ImportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{}: {} tensors read ({} aliases checked against their canonical keys, {} dead decoder/p_mu tensors kept for export), stage {} ({})",
            self.load.origin,
            self.load.loaded,
            self.aliases.len(),
            self.dead.len(),
            self.stage.0.number(),
            self.stage.1
        )?;
        for p in &self.load.problems {
            writeln!(f, "  - {p}")?;
        }
        for (name, shape) in &self.load.unused {
            writeln!(f, "  - unused `{name}` {shape:?}")?;
        }
        Ok(())
    }
}

/// A loaded checkpoint.
#[derive(Debug)]
pub struct BayesPflCheckpoint {
    /// The model.
    pub head: BayesPflHead,
    /// Dead tensors, for export.
    pub dead: DeadWeights,
    /// Image head stage.
    pub stage: Stage,
    /// What was read.
    pub report: ImportReport,
}

/// Head dimensions from the tensors of a checkpoint.
pub fn infer_head_config(file: &WeightFile) -> Result<HeadConfig, DetectError> {
    if let Some(json) = file.metadata.get(META_CONFIG) {
        let config: HeadConfig = serde_json::from_str(json).map_err(|e| DetectError::Invalid(format!("{}: invalid `{META_CONFIG}` metadata: {e}", file.origin)))?;
        config.validate()?;
        return Ok(config);
    }
    let shape = |name: &str| file.entries.get(name).map(|e| e.shape.clone());
    let needed = ["prompt_context", "prompt_state_normal", "PFL_context.amor_b.weight", "RCA.linear_proj.0.weight"];
    let missing: Vec<&str> = needed.iter().copied().filter(|n| !file.entries.contains_key(*n)).collect();
    if !missing.is_empty() {
        let sample: Vec<&String> = file.entries.keys().take(8).collect();
        return Err(DetectError::Invalid(format!(
            "{}: not a Bayes-PFL checkpoint: missing {} (the file has {} tensors, e.g. {:?}; the released files keep the state dict under the top-level key `MyModel`)",
            file.origin,
            missing.join(", "),
            file.entries.len(),
            sample
        )));
    }
    let bad = |name: &str, found: &[usize], expected: &str| {
        DetectError::Invalid(format!("{}: `{name}` has shape {found:?}, expected {expected}", file.origin))
    };
    let ctx = shape("prompt_context").unwrap_or_default();
    let [b, p, e] = ctx[..] else { return Err(bad("prompt_context", &ctx, "[B, P, E]")) };
    let state = shape("prompt_state_normal").unwrap_or_default();
    let [_, q, _] = state[..] else { return Err(bad("prompt_state_normal", &state, "[B, Q, E]")) };
    let amor_b = shape("PFL_context.amor_b.weight").unwrap_or_default();
    let [k, _] = amor_b[..] else { return Err(bad("PFL_context.amor_b.weight", &amor_b, "[K, E]")) };
    let proj = shape("RCA.linear_proj.0.weight").unwrap_or_default();
    let [_, dv] = proj[..] else { return Err(bad("RCA.linear_proj.0.weight", &proj, "[E, Dv]")) };
    let mut layers = 0;
    while file.entries.contains_key(&format!("RCA.linear_proj.{layers}.weight")) {
        layers += 1;
    }
    let config = HeadConfig { prompt_num: b, context_len: p, state_len: q, num_flows: k, layers, vision_width: dv, width: e, rca_heads: 4 };
    config.validate()?;
    Ok(config)
}

fn load_linear(r: &mut WeightReader, linear: &mut Linear, prefix: &str) {
    r.linear(linear, prefix);
}

fn load_block(r: &mut WeightReader, block: &mut InferenceBlock, prefix: &str) {
    load_linear(r, &mut block.layer0, &format!("{prefix}.module.0"));
    load_linear(r, &mut block.layer2, &format!("{prefix}.module.2"));
    load_linear(r, &mut block.layer4, &format!("{prefix}.module.4"));
}

fn load_encoder(r: &mut WeightReader, encoder: &mut GaussianEncoder, prefix: &str) {
    load_block(r, &mut encoder.weight_mean, &format!("{prefix}.weight_mean"));
    load_block(r, &mut encoder.weight_log_variance, &format!("{prefix}.weight_log_variance"));
}

fn load_scalar(r: &mut WeightReader, param: &mut Param<Tensor<1>>, name: &str) {
    if let Some(values) = r.values(name, &[]) {
        let device = r.device().clone();
        *param = Param::from_tensor(Tensor::from_data(TensorData::new(values, [1]), &device));
    }
}

fn load_reshaped<const D: usize, const S: usize>(r: &mut WeightReader, param: &mut Param<Tensor<D>>, name: &str, stored: [usize; S]) {
    if let Some(t) = r.tensor::<S>(name, stored) {
        let target: [usize; D] = param.lazy_shape().dims();
        *param = Param::from_tensor(t.reshape(target));
    }
}

/// Reads a checkpoint (official `.pth` opened with the top-level key `MyModel`, or vlad's
/// burnpack/safetensors with the same names). Every tensor of the model is taken from its
/// canonical key; aliases must equal their canonical tensor; dead keys are kept; anything missing,
/// mis-shaped, unreadable or unknown is an error listing all problems unless `allow_partial`.
pub fn load_checkpoint(file: &WeightFile, device: &Device, stage: StageChoice, allow_partial: bool) -> Result<BayesPflCheckpoint, DetectError> {
    let config = infer_head_config(file)?;
    let mut head = BayesPflHead::new(&config, device)?;
    let mut r = WeightReader::new(file.origin.clone(), file.entries.clone(), device);
    let (k, e) = (config.num_flows, config.width);

    r.param(&mut head.prompts.context, "prompt_context");
    r.param(&mut head.prompts.state_normal, "prompt_state_normal");
    r.param(&mut head.prompts.state_abnormal, "prompt_state_abnormal");
    load_scalar(&mut r, &mut head.temperatures.pixel, "temperature_pixel");
    load_scalar(&mut r, &mut head.temperatures.image, "temperature_image");
    load_encoder(&mut r, &mut head.context_encoder, "context_encoder");
    load_encoder(&mut r, &mut head.state_encoder, "state_encoder");
    load_linear(&mut r, &mut head.context_flow.amor_u, "PFL_context.amor_u");
    load_linear(&mut r, &mut head.context_flow.amor_w, "PFL_context.amor_w");
    load_linear(&mut r, &mut head.context_flow.amor_b, "PFL_context.amor_b");
    for (flow, pfl) in [(&mut head.normal_flow, "PFL_normal"), (&mut head.abnormal_flow, "PFL_abnormal")] {
        load_reshaped(&mut r, &mut flow.amor_u, &format!("{pfl}.amor_u"), [1, k, e, 1]);
        load_reshaped(&mut r, &mut flow.amor_w, &format!("{pfl}.amor_w"), [1, k, 1, e]);
        load_reshaped(&mut r, &mut flow.amor_b, &format!("{pfl}.amor_b"), [1, k, 1, 1]);
        r.param(&mut flow.state, &format!("{pfl}.state"));
    }
    load_linear(&mut r, &mut head.fuse.fuse_modules, "fuse.fuse_modules");
    load_linear(&mut r, &mut head.fuse.compress, "fuse.compress");
    load_linear(&mut r, &mut head.fuse.post_process, "fuse.post_process");
    // The Conv1d (kernel 1) query projection is a Linear: [E, E, 1] → [E, E], then transposed.
    if let Some(w) = r.tensor::<3>("RCA.q_proj_pre.weight", [e, e, 1]) {
        head.rca.q_proj_pre.weight = Param::from_tensor(w.reshape([e, e]).transpose());
    }
    if let Some(bias) = head.rca.q_proj_pre.bias.as_mut() {
        r.param(bias, "RCA.q_proj_pre.bias");
    }
    for (i, linear) in head.rca.linear_proj.iter_mut().enumerate() {
        load_linear(&mut r, linear, &format!("RCA.linear_proj.{i}"));
    }
    load_linear(&mut r, &mut head.class_mapping, "class_mapping");
    load_linear(&mut r, &mut head.image_mapping, "image_mapping");

    // Dead weights: read (checked) and kept.
    let mut dead = DeadWeights::default();
    let mut dead_names = Vec::new();
    for (name, shape) in dead_keys(&config) {
        if let Some(values) = r.values(&name, &shape) {
            dead.tensors.insert(name.clone(), (shape, Arc::new(values)));
        }
        dead_names.push(name);
    }
    // Aliases: present ones must equal their canonical tensor (missing ones are fine: vlad's
    // files store each tensor once).
    let mut aliases = Vec::new();
    let mut alias_problems = Vec::new();
    for key in official_keys(&config) {
        let Some(target) = key.alias_of else { continue };
        if !file.entries.contains_key(&key.name) {
            continue;
        }
        r.skip(&key.name);
        let same = match (file.entries.get(&key.name), file.entries.get(&target)) {
            (Some(a), Some(b)) if a.shape == b.shape => match (a.to_f32(&key.name), b.to_f32(&target)) {
                (Ok(x), Ok(y)) => x == y,
                _ => false,
            },
            _ => false,
        };
        if !same {
            alias_problems.push(format!("alias `{}` does not hold the same tensor as `{target}`", key.name));
        }
        aliases.push((key.name, target));
    }
    let load = r.report();
    let (stage, source) = match stage {
        StageChoice::Fixed(s) => (s, "set by the caller".to_string()),
        StageChoice::FromFile => match file.metadata.get(META_STAGE) {
            Some(v) => (
                v.parse().ok().and_then(Stage::from_number).ok_or_else(|| DetectError::Invalid(format!("{}: invalid `{META_STAGE}` metadata `{v}`", file.origin)))?,
                "vlad metadata".to_string(),
            ),
            None => (stage_from_file_name(&file.origin)?, "official file-name rule".to_string()),
        },
    };
    let report = ImportReport { load, aliases, dead: dead_names, stage: (stage, source) };
    if !alias_problems.is_empty() {
        return Err(DetectError::Invalid(format!("{}: {}", file.origin, alias_problems.join("; "))));
    }
    if !(report.load.is_complete() || allow_partial) {
        return Err(DetectError::Invalid(format!("Bayes-PFL checkpoint does not fit the model:\n{report}")));
    }
    Ok(BayesPflCheckpoint { head, dead, stage, report })
}

/// Host values of a tensor.
fn host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, DetectError> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| DetectError::Invalid(format!("cannot read a tensor back: {e:?}")))
}

fn linear_values(linear: &Linear) -> Result<(Vec<f32>, Option<Vec<f32>>), DetectError> {
    // burn stores [in, out]; PyTorch [out, in].
    let weight = host(linear.weight.val().transpose())?;
    let bias = linear.bias.as_ref().map(|b| host(b.val())).transpose()?;
    Ok((weight, bias))
}

/// One tensor of a state dict: name, PyTorch shape, row-major f32 values.
pub type StateTensor = (String, Vec<usize>, Arc<Vec<f32>>);
/// File metadata (string keys and values).
pub type Metadata = BTreeMap<String, String>;

/// The tensors of the official state dict in PyTorch's order: `(name, shape, values)`, aliases
/// sharing the `Arc` of their canonical tensor (a PyTorch writer stores them once).
pub fn official_state_dict(head: &BayesPflHead, dead: &DeadWeights) -> Result<Vec<StateTensor>, DetectError> {
    let config = &head.config;
    let mut canonical: BTreeMap<String, Arc<Vec<f32>>> = BTreeMap::new();
    let mut put = |name: String, values: Vec<f32>| {
        canonical.insert(name, Arc::new(values));
    };
    put("prompt_context".into(), host(head.prompts.context.val())?);
    put("prompt_state_normal".into(), host(head.prompts.state_normal.val())?);
    put("prompt_state_abnormal".into(), host(head.prompts.state_abnormal.val())?);
    put("temperature_pixel".into(), host(head.temperatures.pixel.val())?);
    put("temperature_image".into(), host(head.temperatures.image.val())?);
    let mut linear = |name: &str, l: &Linear| -> Result<(), DetectError> {
        let (w, b) = linear_values(l)?;
        canonical.insert(format!("{name}.weight"), Arc::new(w));
        if let Some(b) = b {
            canonical.insert(format!("{name}.bias"), Arc::new(b));
        }
        Ok(())
    };
    for (prefix, encoder) in [("context_encoder", &head.context_encoder), ("state_encoder", &head.state_encoder)] {
        for (part, block) in [("weight_mean", &encoder.weight_mean), ("weight_log_variance", &encoder.weight_log_variance)] {
            linear(&format!("{prefix}.{part}.module.0"), &block.layer0)?;
            linear(&format!("{prefix}.{part}.module.2"), &block.layer2)?;
            linear(&format!("{prefix}.{part}.module.4"), &block.layer4)?;
        }
    }
    linear("PFL_context.amor_u", &head.context_flow.amor_u)?;
    linear("PFL_context.amor_w", &head.context_flow.amor_w)?;
    linear("PFL_context.amor_b", &head.context_flow.amor_b)?;
    linear("fuse.fuse_modules", &head.fuse.fuse_modules)?;
    linear("fuse.compress", &head.fuse.compress)?;
    linear("fuse.post_process", &head.fuse.post_process)?;
    linear("RCA.q_proj_pre", &head.rca.q_proj_pre)?;
    for (i, l) in head.rca.linear_proj.iter().enumerate() {
        linear(&format!("RCA.linear_proj.{i}"), l)?;
    }
    linear("class_mapping", &head.class_mapping)?;
    linear("image_mapping", &head.image_mapping)?;
    for (flow, pfl) in [(&head.normal_flow, "PFL_normal"), (&head.abnormal_flow, "PFL_abnormal")] {
        canonical.insert(format!("{pfl}.amor_u"), Arc::new(host(flow.amor_u.val())?));
        canonical.insert(format!("{pfl}.amor_w"), Arc::new(host(flow.amor_w.val())?));
        canonical.insert(format!("{pfl}.amor_b"), Arc::new(host(flow.amor_b.val())?));
        canonical.insert(format!("{pfl}.state"), Arc::new(host(flow.state.val())?));
    }
    for (name, (_, values)) in &dead.tensors {
        canonical.insert(name.clone(), values.clone());
    }
    official_keys(config)
        .into_iter()
        .map(|key| {
            let source = key.alias_of.as_deref().unwrap_or(&key.name);
            let values = canonical.get(source).cloned().ok_or_else(|| {
                DetectError::Invalid(format!("cannot write `{}`: no tensor `{source}` (dead weights missing?)", key.name))
            })?;
            let n: usize = key.shape.iter().product();
            if values.len() != n {
                return Err(DetectError::Invalid(format!("cannot write `{}`: {} values for shape {:?}", key.name, values.len(), key.shape)));
            }
            Ok((key.name, key.shape, values))
        })
        .collect()
}

/// vlad's file: every canonical key once (no aliases), the stage and the dimensions as metadata.
pub fn vlad_entries(head: &BayesPflHead, dead: &DeadWeights, stage: Stage) -> Result<(BTreeMap<String, Entry>, Metadata), DetectError> {
    let entries = official_state_dict(head, dead)?
        .into_iter()
        .filter(|(name, _, _)| !ALIASES.iter().any(|(alias, _)| name.starts_with(&format!("{alias}."))))
        .map(|(name, shape, values)| (name, Entry::from_values(shape, values.as_ref().clone())))
        .collect();
    let mut metadata = BTreeMap::new();
    metadata.insert(META_METHOD.to_string(), "bayes-pfl".to_string());
    metadata.insert(META_STAGE.to_string(), stage.number().to_string());
    metadata.insert(META_CONFIG.to_string(), serde_json::to_string(&head.config).expect("config serialises"));
    Ok((entries, metadata))
}

/// Writes vlad's burnpack checkpoint.
#[cfg(not(target_arch = "wasm32"))]
pub fn save_vlad(path: &std::path::Path, head: &BayesPflHead, dead: &DeadWeights, stage: Stage, overwrite: bool) -> Result<(), DetectError> {
    let (entries, metadata) = vlad_entries(head, dead, stage)?;
    let options = vlad_clip::weights::WriteOptions { f16: false, overwrite, metadata };
    vlad_clip::weights::write_burnpack(&entries, path, &options).map_err(|e| DetectError::Clip(e.into()))
}

/// Writes the official format, `torch.save({'MyModel': state_dict})`, loadable by the official
/// `test.py` with `strict=True` (aliases share one storage, as in PyTorch).
#[cfg(not(target_arch = "wasm32"))]
pub fn save_official(path: &std::path::Path, head: &BayesPflHead, dead: &DeadWeights) -> Result<(), DetectError> {
    let tensors = official_state_dict(head, dead)?;
    super::pth::write_state_dict(path, Some("MyModel"), &tensors)
        .map_err(|e| DetectError::Invalid(format!("{}: cannot write the checkpoint: {e}", path.display())))
}

/// A head's tensors on the host under their official names (every key, aliases included), as a
/// [`WeightFile`] (round trips and tests).
pub fn as_weight_file(head: &BayesPflHead, dead: &DeadWeights, origin: &str) -> Result<WeightFile, DetectError> {
    let entries = official_state_dict(head, dead)?
        .into_iter()
        .map(|(name, shape, values)| (name, Entry::from_values(shape, values.as_ref().clone())))
        .collect();
    Ok(WeightFile { origin: origin.to_string(), format: vlad_clip::weights::WeightFormat::Safetensors, metadata: BTreeMap::new(), entries, skipped: vec![] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_file_name_rule() {
        assert_eq!(stage_from_file_name("bayes_weight/train_visa.pth").unwrap(), Stage::Two);
        assert_eq!(stage_from_file_name("my_exps/train_visa/epoch_post_12_1.pth").unwrap(), Stage::One);
        assert_eq!(stage_from_file_name("my_exps/epoch_post_30_2.pth").unwrap(), Stage::Two);
        assert!(stage_from_file_name("epoch_post_3_x.pth").is_err());
    }

    #[test]
    fn released_configuration_has_131_keys() {
        let keys = official_keys(&HeadConfig::official(1024, 768));
        assert_eq!(keys.len(), 131);
        let unique: usize = keys.iter().filter(|k| k.alias_of.is_none()).map(|k| k.shape.iter().product::<usize>()).sum();
        let stored: usize = keys.iter().map(|k| k.shape.iter().product::<usize>()).sum();
        assert_eq!(unique, 27_370_017);
        assert_eq!(stored, 36_823_329);
    }
}
