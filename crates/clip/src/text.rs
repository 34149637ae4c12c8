//! The text tower (`spec/clip.md` §8): causal transformer, EOT pooling, prompt vectors injected at
//! the embedding level, deep prompts, outputs before and after `text_projection`.
use burn::module::{Module, Param};
use burn::nn::{Initializer, LayerNorm};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::ClipError;
use crate::config::{Activation, TextConfig};
use crate::tokenizer::EOT_ID;
use crate::transformer::{ResidualBlock, causal_mask, layer_norm};
use crate::vision::BlockHook;

/// Deep prompts (AnomalyCLIP, AdaCLIP): before the 0-based blocks listed, hidden rows
/// `1 .. 1 + n` are overwritten by the given `[n, W]` tensor (broadcast over the batch).
pub struct DeepPrompts {
    /// `(0-based block index, [n, W] prompt rows)`.
    pub layers: Vec<(usize, Tensor<2>)>,
}

/// Options of a text forward.
#[derive(Default, Clone, Copy)]
pub struct TextForward<'a> {
    /// Deep prompts.
    pub deep_prompts: Option<&'a DeepPrompts>,
    /// Per-block module (AA-CLIP text adapters), called with 1-based block numbers.
    pub hook: Option<&'a dyn BlockHook>,
}

/// Result of a text forward.
pub struct TextOutput {
    /// `ln_final` output at the EOT position, `[N, W]` (before `text_projection`).
    pub pooled: Tensor<2>,
    /// `pooled @ text_projection`, `[N, E]` (not normalised).
    pub projected: Tensor<2>,
}

/// Largest tensor a kernel may bind: WebGPU's `maxStorageBufferBindingSize` default (128 MiB),
/// which wgpu also applies natively unless a device asks for more.
const MAX_BINDING_BYTES: usize = 128 << 20;

/// Where a `[vocab, width]` token table is kept for a tower running on `device`: on `device`
/// itself, except on a GPU when the f32 table is larger than one binding (ViT-L's 49408 × 768 is
/// 145 MiB); then it stays on the CPU backend and only the looked-up rows travel. The table is
/// never trained by the methods here (prompts are spliced in after the lookup).
pub fn token_table_device(device: &Device, vocab: usize, width: usize) -> Device {
    #[cfg(feature = "flex")]
    if vocab * width * 4 > MAX_BINDING_BYTES && !crate::precise::on_cpu(device) {
        return Device::flex();
    }
    let _ = (vocab, width);
    device.clone()
}

/// The CLIP text transformer.
#[derive(Module, Debug)]
pub struct TextTransformer {
    /// `[vocab, W]` token table.
    pub token_embedding: Param<Tensor<2>>,
    /// `[context, W]`.
    pub positional_embedding: Param<Tensor<2>>,
    /// Residual blocks (causal).
    pub resblocks: Vec<ResidualBlock>,
    /// Final LayerNorm.
    pub ln_final: LayerNorm,
    /// `[W, E]`, used as `x @ P`.
    pub text_projection: Param<Tensor<2>>,
    /// MLP activation.
    #[module(skip)]
    pub activation: Activation,
}

/// Index of the first EOT token (id 49407) in each row: correct for OpenAI zero padding and for HF
/// padding with EOT alike (`spec/clip.md` §8.2).
pub fn eot_positions(ids: &[Vec<u32>]) -> Result<Vec<usize>, ClipError> {
    ids.iter()
        .enumerate()
        .map(|(row, ids)| {
            ids.iter().position(|&id| id == EOT_ID).ok_or_else(|| ClipError::Shape(format!("token row {row} has no EOT token (49407)")))
        })
        .collect()
}

impl TextTransformer {
    /// Randomly initialised tower.
    pub fn new(config: &TextConfig, embed_dim: usize, activation: Activation, device: &Device) -> Self {
        let w = config.width;
        // Lazy parameters: a checkpoint load replaces them before they are materialised.
        let normal = |shape: [usize; 2], std: f64| Initializer::Normal { mean: 0.0, std }.init(shape, device);
        let table_device = token_table_device(device, config.vocab_size, w);
        Self {
            token_embedding: Initializer::Normal { mean: 0.0, std: 0.02 }.init([config.vocab_size, w], &table_device),
            positional_embedding: normal([config.context_length, w], 0.01),
            resblocks: (0..config.layers).map(|_| ResidualBlock::new(w, config.heads, device)).collect(),
            ln_final: layer_norm(w, device),
            text_projection: normal([w, embed_dim], (w as f64).powf(-0.5)),
            activation,
        }
    }

    /// Width W.
    pub fn width(&self) -> usize {
        self.positional_embedding.dims()[1]
    }

    /// Context length (77).
    pub fn context_length(&self) -> usize {
        self.positional_embedding.dims()[0]
    }

    /// Token-embedding lookup `[N, T]` ids → `[N, T, W]` (no positions).
    pub fn embed_ids(&self, ids: &[Vec<u32>]) -> Result<Tensor<3>, ClipError> {
        let n = ids.len();
        let t = ids.first().map_or(0, Vec::len);
        let vocab = self.token_embedding.dims()[0];
        let mut flat = Vec::with_capacity(n * t);
        for (row, r) in ids.iter().enumerate() {
            if r.len() != t {
                return Err(ClipError::Shape(format!("token row {row} has {} ids, row 0 has {t}", r.len())));
            }
            if let Some(&bad) = r.iter().find(|&&id| id as usize >= vocab) {
                return Err(ClipError::Shape(format!("token id {bad} in row {row} is outside the vocabulary of {vocab}")));
            }
            flat.extend(r.iter().map(|&id| id as i64));
        }
        let w = self.width();
        let index = Tensor::<1, Int>::from_data(TensorData::new(flat, [n * t]), &self.token_embedding.device());
        let rows = self.token_embedding.val().select(0, index).reshape([n, t, w]);
        // The table may live on the CPU (see `token_table_device`); the tower runs where the
        // positions are.
        let compute = self.positional_embedding.device();
        Ok(if rows.device() == compute { rows } else { rows.to_device(&compute) })
    }

    /// Runs the tower on token embeddings `[N, T, W]` (positions not yet added) and pools at `eot`.
    ///
    /// Only the first `max(eot) + 1` positions are computed: with the causal mask, later positions
    /// cannot influence the EOT rows, so this is exact and saves most of the work for short prompts.
    pub fn forward_embeddings(&self, x: Tensor<3>, eot: &[usize], options: TextForward<'_>) -> Result<TextOutput, ClipError> {
        let [n, t, w] = x.dims();
        if eot.len() != n {
            return Err(ClipError::Shape(format!("{} EOT positions for {n} sequences", eot.len())));
        }
        if t > self.context_length() || w != self.width() {
            return Err(ClipError::Shape(format!(
                "text embeddings [{n}, {t}, {w}] do not fit context {} and width {}",
                self.context_length(),
                self.width()
            )));
        }
        if let Some(&bad) = eot.iter().find(|&&e| e >= t) {
            return Err(ClipError::Shape(format!("EOT position {bad} is outside the {t} tokens")));
        }
        let keep = eot.iter().max().map_or(t, |m| m + 1);
        let device = x.device();
        let pos = self.positional_embedding.val().slice([0..keep, 0..w]).unsqueeze::<3>();
        let mut x = x.slice([0..n, 0..keep, 0..w]) + pos;
        let mask = causal_mask(keep, &device);
        for (index, block) in self.resblocks.iter().enumerate() {
            if let Some(prompts) = options.deep_prompts {
                for (layer, rows) in &prompts.layers {
                    if *layer == index {
                        x = overwrite_rows(x, rows.clone());
                    }
                }
            }
            x = block.forward(x, Some(&mask), self.activation);
            if let Some(hook) = options.hook {
                x = hook.after_block(index + 1, x);
            }
        }
        let x = self.ln_final.forward(x);
        let index = Tensor::<1, Int>::from_data(
            TensorData::new(eot.iter().enumerate().map(|(i, &e)| (i * keep + e) as i64).collect::<Vec<_>>(), [n]),
            &device,
        );
        let pooled = x.reshape([n * keep, w]).select(0, index);
        let projected = pooled.clone().matmul(self.text_projection.val());
        Ok(TextOutput { pooled, projected })
    }

    /// Token ids (rows of equal length, e.g. 77) → text features.
    pub fn encode_ids(&self, ids: &[Vec<u32>]) -> Result<TextOutput, ClipError> {
        let eot = eot_positions(ids)?;
        let x = self.embed_ids(ids)?;
        self.forward_embeddings(x, &eot, TextForward::default())
    }
}

/// Replaces rows `1 .. 1 + n` of every sequence by `rows` `[n, W]` (clipped to the sequence).
fn overwrite_rows(x: Tensor<3>, rows: Tensor<2>) -> Tensor<3> {
    let [b, t, w] = x.dims();
    let n = rows.dims()[0].min(t.saturating_sub(1));
    if n == 0 {
        return x;
    }
    let rows = rows.slice([0..n, 0..w]).unsqueeze::<3>().expand([b, n, w]);
    x.slice_assign([0..b, 1..1 + n, 0..w], rows)
}

/// Bayes-PFL style injection: the single placeholder token at `position` is replaced by `k` vectors
/// (`[N, k, W]`, or `[1, k, W]` broadcast) and the tail is cut to keep the length:
/// `[x[:, :position] | vectors | x[:, position+1 : T−k+1]]`. The EOT row moves by `k − 1`
/// (see [`shifted_eot`]).
pub fn splice_prompt_vectors(x: Tensor<3>, position: usize, vectors: Tensor<3>) -> Tensor<3> {
    let [n, t, w] = x.dims();
    let [nv, k, wv] = vectors.dims();
    assert_eq!(w, wv, "prompt vectors have width {wv}, the tower {w}");
    assert!(position < t && k >= 1 && k <= t - position, "cannot splice {k} vectors at {position} into {t} tokens");
    let vectors = if nv == n { vectors } else { vectors.expand([n, k, w]) };
    let head = x.clone().slice([0..n, 0..position, 0..w]);
    let tail_end = t + 1 - k;
    let mut parts = vec![head, vectors];
    if position + 1 < tail_end {
        parts.push(x.slice([0..n, position + 1..tail_end, 0..w]));
    }
    Tensor::cat(parts, 1)
}

/// EOT position after [`splice_prompt_vectors`] with `k` vectors (original + k − 1; Bayes-PFL's +9
/// for k = 10).
pub fn shifted_eot(original: usize, k: usize) -> usize {
    original + k - 1
}

/// AnomalyCLIP style: rows `start .. start + k` are replaced by `vectors` (`[N, k, W]` or
/// `[1, k, W]`), the length and the EOT position stay.
pub fn replace_token_rows(x: Tensor<3>, start: usize, vectors: Tensor<3>) -> Tensor<3> {
    let [n, t, w] = x.dims();
    let [nv, k, _] = vectors.dims();
    assert!(start + k <= t, "rows {start}..{} exceed {t} tokens", start + k);
    let vectors = if nv == n { vectors } else { vectors.expand([n, k, w]) };
    x.slice_assign([0..n, start..start + k, 0..w], vectors)
}
