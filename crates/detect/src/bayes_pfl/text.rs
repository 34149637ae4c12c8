//! Class names, the placeholder prompt and the text encoding of the prompt bank
//! (`spec/bayes-pfl.md` §3, `spec/clip.md` §8.3).
use burn::tensor::Tensor;
use vlad_clip::ClipTokenizer;
use vlad_clip::text::{TextForward, TextTransformer, eot_positions, shifted_eot, splice_prompt_vectors};

use super::head::BayesPflHead;
use crate::DetectError;
use crate::prompts::l2_normalize;

/// The official `class_mapping` of dataset class names to the words used in prompts; any other
/// name is used as it is (then lower-cased).
pub const CLASS_WORDS: [(&str, &str); 9] = [
    ("macaroni1", "macaroni"),
    ("macaroni2", "macaroni"),
    ("pcb1", "printed circuit board"),
    ("pcb2", "printed circuit board"),
    ("pcb3", "printed circuit board"),
    ("pcb4", "printed circuit board"),
    ("pipe_fryum", "pipe fryum"),
    ("chewinggum", "chewing gum"),
    ("metal_nut", "metal nut"),
];

/// Classes whose map statistic is the mean of the 20 largest values (every other class: 2000),
/// hard-coded in the official `calcuate_metric_pixel`.
pub const TOP_20_CLASSES: [&str; 7] = ["capsules", "macaroni1", "macaroni2", "pipe_fryum", "screw", "cashew", "chewinggum"];

/// The tokenizer input for a dataset class: `"X " + word.lower()`.
pub fn prompt_text(class_name: &str) -> String {
    let word = CLASS_WORDS.iter().find(|(name, _)| *name == class_name).map_or(class_name, |(_, word)| word);
    format!("X {}", word.to_lowercase())
}

/// The official top-k of the map statistic for a class (20 or 2000).
pub fn official_top_k(class_name: &str) -> usize {
    if TOP_20_CLASSES.contains(&class_name) { 20 } else { 2000 }
}

/// A class's tokenised placeholder prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassPrompt {
    /// Dataset class name as given.
    pub class_name: String,
    /// Tokenizer input, e.g. `X printed circuit board`.
    pub text: String,
    /// 77 token ids.
    pub ids: Vec<u32>,
    /// EOT index of `ids` (before the shift).
    pub eot: usize,
}

impl ClassPrompt {
    /// Tokenises `"X " + word` and checks that `X` is the single token at position 1 and that the
    /// shifted EOT stays inside the context after `prompt_len` vectors replace it.
    pub fn new(tokenizer: &ClipTokenizer, class_name: &str, prompt_len: usize) -> Result<Self, DetectError> {
        if class_name.trim().is_empty() {
            return Err(DetectError::Invalid("empty class name".into()));
        }
        let text = prompt_text(class_name);
        let ids = tokenizer.tokenize_batch(&[text.as_str()])?.remove(0);
        let placeholder = tokenizer.encode_raw("X")?;
        if placeholder.len() != 1 || ids.get(1) != placeholder.first() {
            return Err(DetectError::Invalid(format!("`{text}`: the placeholder X is not the single token at position 1")));
        }
        let eot = eot_positions(std::slice::from_ref(&ids))?[0];
        let shifted = shifted_eot(eot, prompt_len);
        if shifted >= ids.len() {
            return Err(DetectError::Invalid(format!(
                "class name `{class_name}` is too long: `{text}` ends at token {eot}, and with {prompt_len} prompt vectors the end token would be at {shifted}, beyond the {} positions",
                ids.len()
            )));
        }
        Ok(Self { class_name: class_name.to_string(), text, ids, eot })
    }
}

/// Token embeddings with the prompt vectors spliced in, for N images of classes `prompts[n]`:
/// `[N·2·R·B, 77, E]` (no positional embedding yet) and the shifted EOT index of every sequence.
pub fn spliced_prompts(
    text: &TextTransformer,
    head: &BayesPflHead,
    prompts: &[&ClassPrompt],
    zk_context: Tensor<3>,
    zk_normal: Tensor<2>,
    zk_abnormal: Tensor<2>,
) -> Result<(Tensor<3>, Vec<usize>), DetectError> {
    let [r, n, _] = zk_context.dims();
    if prompts.len() != n {
        return Err(DetectError::Invalid(format!("{} class prompts for {n} images", prompts.len())));
    }
    let per_image = 2 * r * head.config.prompt_num;
    let ids: Vec<Vec<u32>> = prompts.iter().map(|p| p.ids.clone()).collect();
    let tokens = text.embed_ids(&ids)?;
    let [_, t, w] = tokens.dims();
    let tokens = tokens.reshape([n, 1, t, w]).expand([n, per_image, t, w]).reshape([n * per_image, t, w]);
    // The official tokens live on the backbone's device; the vectors may carry autodiff (training).
    let vectors = head.prompt_vectors(zk_context, zk_normal, zk_abnormal);
    let tokens = if vectors.is_autodiff() { tokens.autodiff() } else { tokens };
    let spliced = splice_prompt_vectors(tokens, 1, vectors);
    let k = head.config.prompt_len();
    let eot = prompts.iter().flat_map(|p| std::iter::repeat_n(shifted_eot(p.eot, k), per_image)).collect();
    Ok((spliced, eot))
}

/// The normalised text features `[N, 2·R·B, E]` of every prompt of every image, all sequences in
/// one batch through the text tower.
pub fn encode_prompts(
    text: &TextTransformer,
    head: &BayesPflHead,
    prompts: &[&ClassPrompt],
    zk_context: Tensor<3>,
    zk_normal: Tensor<2>,
    zk_abnormal: Tensor<2>,
) -> Result<Tensor<3>, DetectError> {
    let [r, n, _] = zk_context.dims();
    let (x, eot) = spliced_prompts(text, head, prompts, zk_context, zk_normal, zk_abnormal)?;
    let projected = text.forward_embeddings(x, &eot, TextForward::default())?.projected;
    let [_, e] = projected.dims();
    Ok(l2_normalize(projected.reshape([n, 2 * r * head.config.prompt_num, e])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_words_and_top_k_follow_the_official_tables() {
        assert_eq!(prompt_text("pcb3"), "X printed circuit board");
        assert_eq!(prompt_text("metal_nut"), "X metal nut");
        assert_eq!(prompt_text("Brain CT"), "X brain ct");
        assert_eq!(prompt_text("bottle"), "X bottle");
        assert_eq!(official_top_k("screw"), 20);
        assert_eq!(official_top_k("chewinggum"), 20);
        assert_eq!(official_top_k("bottle"), 2000);
    }

    #[test]
    fn placeholder_prompts_tokenise_and_long_names_are_rejected() {
        let tokenizer = ClipTokenizer::openai().unwrap();
        let p = ClassPrompt::new(&tokenizer, "pcb1", 10).unwrap();
        assert_eq!(p.text, "X printed circuit board");
        assert_eq!(p.ids[0], vlad_clip::tokenizer::SOT_ID);
        assert_eq!(p.eot, 5);
        let long = vec!["word"; 70].join(" ");
        let err = ClassPrompt::new(&tokenizer, &long, 10).unwrap_err().to_string();
        assert!(err.contains("too long"), "{err}");
        assert!(ClassPrompt::new(&tokenizer, "  ", 10).is_err());
    }
}
