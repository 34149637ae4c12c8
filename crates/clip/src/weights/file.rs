//! Reading the containers into named tensors without converting them yet.
use std::collections::BTreeMap;
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;
use std::sync::Arc;

use super::WeightError;
use super::torch_zip::TensorBytes;

/// Container format of a weight file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// Hugging Face safetensors.
    Safetensors,
    /// PyTorch zip pickle (`torch.save` state dict).
    PytorchZip,
    /// burn's burnpack (what `vlad convert` writes).
    Burnpack,
}

impl std::fmt::Display for WeightFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Safetensors => "safetensors",
            Self::PytorchZip => "PyTorch zip",
            Self::Burnpack => "burnpack",
        })
    }
}

/// Element type as stored in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceDType {
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// f32.
    F32,
    /// f64.
    F64,
    /// Integer or boolean types (ids, counters); not loadable as weights.
    Integer(&'static str),
}

impl std::fmt::Display for SourceDType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::F16 => f.write_str("f16"),
            Self::BF16 => f.write_str("bf16"),
            Self::F32 => f.write_str("f32"),
            Self::F64 => f.write_str("f64"),
            Self::Integer(name) => f.write_str(name),
        }
    }
}

/// Backing storage shared by the entries of one file.
enum Buffer {
    Owned(Vec<u8>),
    #[cfg(feature = "mmap")]
    Mapped(memmap2::Mmap),
}

impl Buffer {
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Owned(v) => v,
            #[cfg(feature = "mmap")]
            Self::Mapped(m) => m,
        }
    }
}

#[derive(Clone)]
enum Payload {
    Slice { buffer: Arc<Buffer>, start: usize, end: usize },
    Burnpack(burn_pack::Tensor),
    Values(Arc<Vec<f32>>),
}

/// One named tensor of a file, not yet converted.
#[derive(Clone)]
pub struct Entry {
    /// Shape as stored (after any transpose that naming rules mark).
    pub shape: Vec<usize>,
    /// Element type as stored.
    pub dtype: SourceDType,
    /// The stored `[a, b]` matrix is transposed on conversion (HF projection weights).
    pub transpose: bool,
    payload: Payload,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}{}", self.dtype, self.shape, if self.transpose { " (transposed)" } else { "" })
    }
}

fn convert(bytes: &[u8], dtype: SourceDType, name: &str) -> Result<Vec<f32>, WeightError> {
    let err = |message: String| WeightError::Tensor { name: name.to_string(), message };
    let width = match dtype {
        SourceDType::F16 | SourceDType::BF16 => 2,
        SourceDType::F32 => 4,
        SourceDType::F64 => 8,
        SourceDType::Integer(t) => return Err(err(format!("has integer type {t}, expected a floating-point weight"))),
    };
    if !bytes.len().is_multiple_of(width) {
        return Err(err(format!("{} bytes are not a whole number of {dtype} values", bytes.len())));
    }
    Ok(bytes
        .chunks_exact(width)
        .map(|c| match dtype {
            SourceDType::F16 => half::f16::from_le_bytes([c[0], c[1]]).to_f32(),
            SourceDType::BF16 => half::bf16::from_le_bytes([c[0], c[1]]).to_f32(),
            SourceDType::F32 => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            _ => f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32,
        })
        .collect())
}

impl Entry {
    /// An entry holding converted values (used for merged q/k/v and in tests).
    pub fn from_values(shape: Vec<usize>, values: Vec<f32>) -> Self {
        assert_eq!(shape.iter().product::<usize>(), values.len(), "values do not fill the shape");
        Self { shape, dtype: SourceDType::F32, transpose: false, payload: Payload::Values(Arc::new(values)) }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values as f32 in the stored layout, with the marked transpose applied; f16/bf16/f64 are
    /// converted exactly (f64 rounds to nearest).
    pub fn to_f32(&self, name: &str) -> Result<Vec<f32>, WeightError> {
        let values = match &self.payload {
            Payload::Values(v) => v.as_ref().clone(),
            Payload::Slice { buffer, start, end } => convert(&buffer.bytes()[*start..*end], self.dtype, name)?,
            Payload::Burnpack(t) => {
                let bytes = t.to_bytes().map_err(|e| WeightError::Tensor { name: name.to_string(), message: format!("cannot read: {e}") })?;
                convert(&bytes, self.dtype, name)?
            }
        };
        if values.len() != self.len() {
            return Err(WeightError::Tensor {
                name: name.to_string(),
                message: format!("holds {} values, its shape {:?} needs {}", values.len(), self.shape, self.len()),
            });
        }
        if self.transpose {
            let [rows, cols] = self.shape[..] else {
                return Err(WeightError::Tensor { name: name.to_string(), message: "only 2-D tensors can be transposed".into() });
            };
            // `shape` is already the transposed shape: the stored matrix is [cols, rows].
            let mut out = vec![0.0; values.len()];
            for r in 0..cols {
                for c in 0..rows {
                    out[c * cols + r] = values[r * rows + c];
                }
            }
            return Ok(out);
        }
        Ok(values)
    }
}

/// All tensors of one file, by name, plus string metadata (burnpack and safetensors headers).
pub struct WeightFile {
    /// Where it came from (path or a label), for messages.
    pub origin: String,
    /// Container format.
    pub format: WeightFormat,
    /// String metadata of the container.
    pub metadata: BTreeMap<String, String>,
    /// The tensors.
    pub entries: BTreeMap<String, Entry>,
    /// Non-tensor or non-float entries that were skipped, with why.
    pub skipped: Vec<(String, String)>,
}

fn file_error(origin: &str, message: impl Into<String>) -> WeightError {
    WeightError::File { path: origin.to_string(), message: message.into() }
}

/// burnpack files start with the little-endian magic 0x4255524E ("NRUB").
const BURNPACK_MAGIC: [u8; 4] = 0x4255524Eu32.to_le_bytes();

impl WeightFile {
    /// Opens a file, detecting the container from its first bytes (zip → PyTorch; `BURN` →
    /// burnpack; otherwise safetensors). `top_level_key` selects a nested state dict in a
    /// PyTorch file (e.g. `state_dict`, `MyModel`). Safetensors and PyTorch files are mapped
    /// into memory (feature `mmap`), not read.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: &Path, top_level_key: Option<&str>) -> Result<Self, WeightError> {
        use std::io::Read;
        let origin = path.display().to_string();
        let mut head = [0u8; 4];
        let mut file = std::fs::File::open(path).map_err(|e| file_error(&origin, format!("cannot open: {e}")))?;
        let n = file.read(&mut head).map_err(|e| file_error(&origin, format!("cannot read: {e}")))?;
        let is_zip = n >= 4 && &head == b"PK\x03\x04";
        if top_level_key.is_some() && !is_zip {
            return Err(file_error(&origin, "a top-level key only applies to PyTorch files"));
        }
        if n >= 4 && head == BURNPACK_MAGIC {
            let reader = burn_pack::Reader::from_file(path).map_err(|e| file_error(&origin, format!("invalid burnpack: {e}")))?;
            return Self::parse_burnpack(reader, origin);
        }
        #[cfg(feature = "mmap")]
        let buffer = Buffer::Mapped(
            // SAFETY: the map is read-only and the file is not expected to change while loading.
            unsafe { memmap2::Mmap::map(&file) }.map_err(|e| file_error(&origin, format!("cannot map: {e}")))?,
        );
        #[cfg(not(feature = "mmap"))]
        let buffer = Buffer::Owned(std::fs::read(path).map_err(|e| file_error(&origin, format!("cannot read: {e}")))?);
        if is_zip {
            return Self::parse_pytorch(Arc::new(buffer), origin, top_level_key);
        }
        Self::parse_safetensors(Arc::new(buffer), origin)
    }

    /// Reads a safetensors, burnpack or PyTorch zip file from memory (the browser path).
    pub fn from_bytes(bytes: Vec<u8>, origin: &str) -> Result<Self, WeightError> {
        Self::from_bytes_with_key(bytes, origin, None)
    }

    /// [`WeightFile::from_bytes`] with a top-level key selecting a nested state dict of a PyTorch
    /// file (e.g. `MyModel`); an error for the other formats.
    pub fn from_bytes_with_key(bytes: Vec<u8>, origin: &str, top_level_key: Option<&str>) -> Result<Self, WeightError> {
        if bytes.starts_with(b"PK\x03\x04") {
            return Self::parse_pytorch(Arc::new(Buffer::Owned(bytes)), origin.to_string(), top_level_key);
        }
        if top_level_key.is_some() {
            return Err(file_error(origin, "a top-level key only applies to PyTorch files"));
        }
        if bytes.starts_with(&BURNPACK_MAGIC) {
            let reader = burn_pack::Reader::from_bytes(burn_pack::Bytes::from_bytes_vec(bytes))
                .map_err(|e| file_error(origin, format!("invalid burnpack: {e}")))?;
            return Self::parse_burnpack(reader, origin.to_string());
        }
        Self::parse_safetensors(Arc::new(Buffer::Owned(bytes)), origin.to_string())
    }

    fn parse_pytorch(buffer: Arc<Buffer>, origin: String, top_level_key: Option<&str>) -> Result<Self, WeightError> {
        let bytes = buffer.bytes();
        // Strided views copied out may take at most as many bytes as the file has.
        let tensors = super::torch_zip::read(bytes, top_level_key, bytes.len() as u64)
            .map_err(|e| file_error(&origin, format!("not a readable PyTorch checkpoint: {e}")))?;
        let mut entries = BTreeMap::new();
        let mut skipped = Vec::new();
        for (name, t) in tensors {
            if let SourceDType::Integer(kind) = t.dtype {
                skipped.push((name, format!("{kind} tensor")));
                continue;
            }
            let payload = match t.bytes {
                TensorBytes::Span { start, end } => Payload::Slice { buffer: buffer.clone(), start, end },
                TensorBytes::Owned(data) => {
                    let end = data.len();
                    Payload::Slice { buffer: Arc::new(Buffer::Owned(data)), start: 0, end }
                }
            };
            entries.insert(name, Entry { shape: t.shape, dtype: t.dtype, transpose: false, payload });
        }
        Ok(Self { origin, format: WeightFormat::PytorchZip, metadata: BTreeMap::new(), entries, skipped })
    }

    fn parse_safetensors(buffer: Arc<Buffer>, origin: String) -> Result<Self, WeightError> {
        let (header_len, metadata) = safetensors::SafeTensors::read_metadata(buffer.bytes())
            .map_err(|e| file_error(&origin, explain_safetensors(buffer.bytes(), e)))?;
        let data_start = 8 + header_len;
        let mut entries = BTreeMap::new();
        let mut skipped = Vec::new();
        for (name, info) in metadata.tensors() {
            use safetensors::Dtype as S;
            let dtype = match info.dtype {
                S::F16 => SourceDType::F16,
                S::BF16 => SourceDType::BF16,
                S::F32 => SourceDType::F32,
                S::F64 => SourceDType::F64,
                S::I64 => SourceDType::Integer("i64"),
                S::I32 => SourceDType::Integer("i32"),
                S::BOOL => SourceDType::Integer("bool"),
                S::U8 => SourceDType::Integer("u8"),
                _ => SourceDType::Integer("other"),
            };
            if let SourceDType::Integer(t) = dtype {
                skipped.push((name.clone(), format!("{t} tensor")));
                continue;
            }
            let (start, end) = info.data_offsets;
            entries.insert(
                name.clone(),
                Entry {
                    shape: info.shape.clone(),
                    dtype,
                    transpose: false,
                    payload: Payload::Slice { buffer: buffer.clone(), start: data_start + start, end: data_start + end },
                },
            );
        }
        let metadata = metadata.metadata().clone().map(|m| m.into_iter().collect()).unwrap_or_default();
        Ok(Self { origin, format: WeightFormat::Safetensors, metadata, entries, skipped })
    }

    fn parse_burnpack(reader: burn_pack::Reader, origin: String) -> Result<Self, WeightError> {
        let metadata = reader.metadata().clone();
        let mut entries = BTreeMap::new();
        let mut skipped = Vec::new();
        for tensor in reader.into_tensors().map_err(|e| file_error(&origin, format!("invalid burnpack: {e}")))? {
            use burn_pack::DType as B;
            let dtype = match tensor.dtype {
                B::F16 => SourceDType::F16,
                B::BF16 => SourceDType::BF16,
                B::F32 => SourceDType::F32,
                B::F64 => SourceDType::F64,
                _ => {
                    skipped.push((tensor.name.clone(), format!("{:?} tensor", tensor.dtype)));
                    continue;
                }
            };
            let shape = tensor.shape.iter().copied().collect();
            entries.insert(tensor.name.clone(), Entry { shape, dtype, transpose: false, payload: Payload::Burnpack(tensor) });
        }
        Ok(Self { origin, format: WeightFormat::Burnpack, metadata, entries, skipped })
    }

    /// Removes a key prefix from every entry that has it (e.g. `module.`, `state_dict.`).
    pub fn strip_prefix(&mut self, prefix: &str) {
        if prefix.is_empty() {
            return;
        }
        let entries = std::mem::take(&mut self.entries);
        self.entries = entries
            .into_iter()
            .map(|(k, v)| match k.strip_prefix(prefix) {
                Some(rest) => (rest.to_string(), v),
                None => (k, v),
            })
            .collect();
    }

    /// Keeps only the entries under `prefix` (and strips it).
    pub fn select_prefix(&self, prefix: &str) -> BTreeMap<String, Entry> {
        self.entries.iter().filter_map(|(k, v)| k.strip_prefix(prefix).map(|rest| (rest.to_string(), v.clone()))).collect()
    }
}

/// A safetensors refusal in words: the crate's errors do not say which tensor or how large, so the
/// header is looked at again (it is already known to be at most 100 MB and inside the file).
fn explain_safetensors(bytes: &[u8], err: safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    let declared = bytes.get(..8).map(|b| u64::from_le_bytes(b.try_into().unwrap()));
    match (&err, declared) {
        (E::HeaderTooSmall, _) => return "not a safetensors, PyTorch zip or burnpack file (shorter than 8 bytes)".into(),
        (E::HeaderTooLarge, Some(n)) => {
            return format!(
                "safetensors header declares {n} bytes (at most 100000000 accepted, the file has {}); refused",
                bytes.len()
            );
        }
        (E::InvalidHeaderLength, Some(n)) => {
            return format!("safetensors header declares {n} bytes, the file has only {}", bytes.len());
        }
        (E::InvalidHeader(_) | E::InvalidHeaderDeserialization(_), _) => {
            return format!("not a safetensors, PyTorch zip or burnpack file ({err})");
        }
        _ => {}
    }
    let header = declared
        .and_then(|n| usize::try_from(n).ok()?.checked_add(8))
        .and_then(|end| bytes.get(8..end))
        .and_then(|h| serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(h).ok());
    let Some(header) = header else { return format!("invalid safetensors header: {err}") };
    let data_len = (bytes.len() as u128).saturating_sub(8 + declared.unwrap_or(0) as u128);
    for (name, info) in header.iter().filter(|(k, _)| k.as_str() != "__metadata__") {
        let shape: Vec<u64> = info["shape"].as_array().map(|a| a.iter().filter_map(|d| d.as_u64()).collect()).unwrap_or_default();
        let item_bits: u128 = match info["dtype"].as_str().unwrap_or("") {
            "F64" | "I64" | "U64" => 64,
            "F32" | "I32" | "U32" => 32,
            "F16" | "BF16" | "I16" | "U16" => 16,
            "F4" => 4,
            "F6_E2M3" | "F6_E3M2" => 6,
            _ => 8,
        };
        let offsets: Vec<u128> = info["data_offsets"].as_array().map(|a| a.iter().filter_map(|d| d.as_u64().map(u128::from)).collect()).unwrap_or_default();
        let needed = shape.iter().try_fold(item_bits, |acc, &d| acc.checked_mul(d as u128)).map(|bits| bits.div_ceil(8));
        let span = match offsets[..] {
            [s, e] if e >= s => Some((s, e)),
            _ => None,
        };
        match (needed, span) {
            (None, _) => return format!("tensor `{name}`: shape {shape:?} overflows any size"),
            (Some(n), Some((s, e))) if e - s != n => {
                return format!("tensor `{name}`: shape {shape:?} needs {n} bytes, its data_offsets [{s}, {e}] span {}", e - s);
            }
            (_, Some((_, e))) if e > data_len => {
                return format!("tensor `{name}`: data_offsets end at {e}, the data part has {data_len} bytes");
            }
            (_, None) => return format!("tensor `{name}`: invalid data_offsets {}", info["data_offsets"]),
            _ => {}
        }
    }
    format!("invalid safetensors: {err}")
}
