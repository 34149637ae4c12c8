//! OpenAI's CLIP BPE tokenizer (`spec/clip.md` §9), built with the `tokenizers` crate from the
//! vocabulary file every CLIP repository ships (`assets/bpe_simple_vocab_16e6.txt.gz`).
//!
//! Text cleaning follows `open_clip.tokenizer` (`basic_clean` + `whitespace_clean` + lower-case):
//! the ftfy steps that apply to well-formed text (HTML unescaping, Latin ligatures, full/half-width
//! forms, curly quotes, line breaks, control characters, NFC) and `html.unescape` twice. ftfy's
//! mojibake repair (re-decoding text that was decoded with the wrong codec) and its C1-control
//! fix are not reproduced: they only change text that is already garbled.
use std::io::Read;

use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};
use unicode_normalization::UnicodeNormalization;

use crate::ClipError;

/// Start of text (OpenAI spells it `<|startoftext|>`, open_clip `<start_of_text>`).
pub const SOT_ID: u32 = 49406;
/// End of text (`<|endoftext|>` / `<end_of_text>`).
pub const EOT_ID: u32 = 49407;
/// open_clip's spelling of the special tokens, which is what text may contain to produce them;
/// OpenAI's `<|startoftext|>` in a text is tokenized as ordinary characters, as open_clip does.
const SOT: &str = "<start_of_text>";
const EOT: &str = "<end_of_text>";
/// OpenAI's context length.
pub const CONTEXT_LENGTH: usize = 77;

const VOCAB_GZ: &[u8] = include_bytes!("../assets/bpe_simple_vocab_16e6.txt.gz");
/// Merge lines used by CLIP: 49152 − 256 − 2 = 48894 (the first line is a header).
const MERGES: usize = 49152 - 256 - 2;
const SPLIT_PATTERN: &str =
    r"(?i)<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// GPT-2's reversible byte → printable-character table, in CLIP's vocabulary order.
fn byte_symbols() -> Vec<char> {
    let mut bytes: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut chars: Vec<u32> = bytes.clone();
    let mut extra = 0;
    for b in 0..256u32 {
        if !bytes.contains(&b) {
            bytes.push(b);
            chars.push(256 + extra);
            extra += 1;
        }
    }
    chars.into_iter().map(|c| char::from_u32(c).expect("valid char")).collect()
}

/// The CLIP tokenizer.
pub struct ClipTokenizer {
    inner: Tokenizer,
}

impl ClipTokenizer {
    /// The OpenAI vocabulary embedded in the crate.
    pub fn openai() -> Result<Self, ClipError> {
        Self::from_vocab_gz(VOCAB_GZ)
    }

    /// Builds the tokenizer from a gzipped `bpe_simple_vocab_16e6.txt`.
    pub fn from_vocab_gz(gz: &[u8]) -> Result<Self, ClipError> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_string(&mut text)
            .map_err(|e| ClipError::Tokenizer(format!("cannot read the BPE vocabulary: {e}")))?;
        let lines: Vec<&str> = text.lines().skip(1).take(MERGES).collect();
        if lines.len() != MERGES {
            return Err(ClipError::Tokenizer(format!("BPE vocabulary has {} merges, expected {MERGES}", lines.len())));
        }
        let merges: Vec<(String, String)> = lines
            .iter()
            .map(|l| {
                let (a, b) = l.split_once(' ').ok_or_else(|| ClipError::Tokenizer(format!("bad merge line `{l}`")))?;
                Ok((a.to_string(), b.to_string()))
            })
            .collect::<Result<_, ClipError>>()?;
        let symbols = byte_symbols();
        let mut tokens: Vec<String> = symbols.iter().map(|c| c.to_string()).collect();
        tokens.extend(symbols.iter().map(|c| format!("{c}</w>")));
        tokens.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        tokens.push(SOT.into());
        tokens.push(EOT.into());
        let vocab: tokenizers::models::bpe::Vocab = tokens.into_iter().enumerate().map(|(i, t)| (t, i as u32)).collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .end_of_word_suffix("</w>".into())
            .build()
            .map_err(|e| ClipError::Tokenizer(format!("cannot build BPE: {e}")))?;
        let mut inner = Tokenizer::new(bpe);
        let split = Split::new(SplitPattern::Regex(SPLIT_PATTERN.into()), SplitDelimiterBehavior::Removed, true)
            .map_err(|e| ClipError::Tokenizer(format!("bad split pattern: {e}")))?;
        inner.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Split(split),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, false)),
        ]))));
        let _ = inner.add_special_tokens([AddedToken::from(SOT, true), AddedToken::from(EOT, true)]);
        Ok(Self { inner })
    }

    /// BPE ids of the cleaned text, without SOT/EOT.
    pub fn encode_raw(&self, text: &str) -> Result<Vec<u32>, ClipError> {
        let cleaned = clean_text(text);
        let encoding = self.inner.encode(cleaned.as_str(), false).map_err(|e| ClipError::Tokenizer(format!("cannot tokenize `{text}`: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// `[SOT] + ids + [EOT]`, zero-padded to `context_length`; overlong text is truncated and EOT
    /// forced into the last slot (OpenCLIP's behaviour).
    pub fn tokenize(&self, text: &str, context_length: usize) -> Result<Vec<u32>, ClipError> {
        if context_length < 2 {
            return Err(ClipError::Tokenizer(format!("context length {context_length} cannot hold SOT and EOT")));
        }
        let mut ids = Vec::with_capacity(context_length);
        ids.push(SOT_ID);
        ids.extend(self.encode_raw(text)?);
        ids.push(EOT_ID);
        if ids.len() > context_length {
            ids.truncate(context_length);
            ids[context_length - 1] = EOT_ID;
        }
        ids.resize(context_length, 0);
        Ok(ids)
    }

    /// Tokenizes several texts to 77 ids each.
    pub fn tokenize_batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<u32>>, ClipError> {
        texts.iter().map(|t| self.tokenize(t.as_ref(), CONTEXT_LENGTH)).collect()
    }
}

/// ftfy's Latin ligature table (the ones it expands; others are left alone).
fn ligature(c: char) -> Option<&'static str> {
    Some(match c {
        'Ĳ' => "IJ",
        'ĳ' => "ij",
        'ŉ' => "ʼn",
        'Ǳ' => "DZ",
        'ǲ' => "Dz",
        'ǳ' => "dz",
        'Ǆ' => "DŽ",
        'ǅ' => "Dž",
        'ǆ' => "dž",
        'Ǉ' => "LJ",
        'ǈ' => "Lj",
        'ǉ' => "lj",
        'Ǌ' => "NJ",
        'ǋ' => "Nj",
        'ǌ' => "nj",
        'ﬀ' => "ff",
        'ﬁ' => "fi",
        'ﬂ' => "fl",
        'ﬃ' => "ffi",
        'ﬄ' => "ffl",
        'ﬅ' => "ſt",
        'ﬆ' => "st",
        _ => return None,
    })
}

/// Control characters ftfy removes.
fn is_removed_control(c: char) -> bool {
    matches!(c as u32, 0x00..=0x08 | 0x0B | 0x0E..=0x1F | 0x7F | 0x206A..=0x206F | 0xFEFF | 0xFFF9..=0xFFFC)
}

/// The ftfy steps of `fix_text` that apply to well-formed text, in ftfy's order.
fn ftfy_fix(text: &str) -> String {
    let text = if text.contains('<') { text.to_string() } else { htmlize::unescape(text).into_owned() };
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if let Some(l) = ligature(c) {
            out.push_str(l);
            continue;
        }
        let cp = c as u32;
        if cp == 0x3000 {
            out.push(' ');
        } else if (0xFF01..0xFFF0).contains(&cp) {
            // Full/half-width forms → their NFKC equivalents.
            out.extend(std::iter::once(c).nfkc());
        } else if matches!(cp, 0x02BC | 0x2018..=0x201B) {
            out.push('\'');
        } else if (0x201C..=0x201F).contains(&cp) {
            out.push('"');
        } else if c == '\r' {
            // \r\n and lone \r become \n.
            if chars.peek() == Some(&'\n') {
                chars.next();
            }
            out.push('\n');
        } else if matches!(cp, 0x2028 | 0x2029 | 0x0085) {
            out.push('\n');
        } else if !is_removed_control(c) {
            out.push(c);
        }
    }
    out.nfc().collect()
}

/// `whitespace_clean(basic_clean(text)).lower()` of open_clip.
pub fn clean_text(text: &str) -> String {
    let fixed = ftfy_fix(text);
    let unescaped = htmlize::unescape(htmlize::unescape(fixed.as_str()).into_owned()).into_owned();
    unescaped.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_prompt_ids() {
        let tok = ClipTokenizer::openai().unwrap();
        // "a photo of a cat" in every CLIP repository's examples.
        let ids = tok.tokenize("a photo of a cat", 77).unwrap();
        assert_eq!(&ids[..7], &[49406, 320, 1125, 539, 320, 2368, 49407]);
        assert!(ids[7..].iter().all(|&i| i == 0));
        assert_eq!(ids.len(), 77);
    }

    #[test]
    fn truncation_keeps_eot() {
        let tok = ClipTokenizer::openai().unwrap();
        let long = "defect ".repeat(200);
        let ids = tok.tokenize(&long, 77).unwrap();
        assert_eq!(ids.len(), 77);
        assert_eq!(ids[0], SOT_ID);
        assert_eq!(ids[76], EOT_ID);
    }
}
