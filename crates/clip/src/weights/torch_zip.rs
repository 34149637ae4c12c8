//! PyTorch zip checkpoints (`torch.save`) read from memory. Natively, files go through
//! `pytorch-reader`, which needs a path; the browser has bytes only, so this reader covers the
//! part of the pickle protocol that `torch.save` writes for (nested) state dicts: dicts and
//! OrderedDicts, lists and tuples, scalars and strings, and tensors rebuilt with
//! `torch._utils._rebuild_tensor_v2` / `_rebuild_parameter` from the archive's `data/<key>`
//! storages. Anything else (arbitrary classes) is kept as an opaque value and only reported when a
//! tensor would have to come out of it. Names are the dotted paths `pytorch-reader` gives.
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io::{Cursor, Read};
use std::rc::Rc;

use super::file::SourceDType;

/// One tensor: stored element type, shape, contiguous little-endian bytes.
pub(crate) struct RawTensor {
    pub dtype: SourceDType,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

/// A pickled value (only what state dicts use; everything else is `Opaque`). Scalars other than
/// integers and strings are kept as their kind only: no tensor is built from them.
#[derive(Clone)]
enum Value {
    None,
    Bool,
    Int(i64),
    Float,
    Str(String),
    Bytes,
    Tuple(Rc<Vec<Value>>),
    List(Rc<RefCell<Vec<Value>>>),
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    Global(Rc<(String, String)>),
    Storage(Rc<Storage>),
    Tensor(Rc<TensorRef>),
    /// An object of a class this reader does not rebuild (its class name).
    Opaque(Rc<String>),
    Mark,
}

struct Storage {
    key: String,
    dtype: SourceDType,
    size: usize,
}

struct TensorRef {
    storage: Rc<Storage>,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

impl Value {
    fn kind(&self) -> String {
        match self {
            Self::None => "None".into(),
            Self::Bool => "bool".into(),
            Self::Int(_) => "int".into(),
            Self::Float => "float".into(),
            Self::Str(_) => "str".into(),
            Self::Bytes => "bytes".into(),
            Self::Tuple(_) => "tuple".into(),
            Self::List(_) => "list".into(),
            Self::Dict(_) => "dict".into(),
            Self::Global(g) => format!("class {}.{}", g.0, g.1),
            Self::Storage(_) => "storage".into(),
            Self::Tensor(_) => "tensor".into(),
            Self::Opaque(name) => format!("object of {name}"),
            Self::Mark => "mark".into(),
        }
    }

    fn items(&self) -> Option<Vec<Value>> {
        match self {
            Self::Tuple(v) => Some(v.as_ref().clone()),
            Self::List(v) => Some(v.borrow().clone()),
            _ => None,
        }
    }

    fn usize(&self) -> Option<usize> {
        match self {
            Self::Int(i) if *i >= 0 => Some(*i as usize),
            _ => None,
        }
    }
}

/// Storage class name (`torch.FloatStorage`, …) → element type and size in bytes.
fn storage_dtype(name: &str) -> Option<(SourceDType, usize)> {
    Some(match name {
        "FloatStorage" => (SourceDType::F32, 4),
        "HalfStorage" => (SourceDType::F16, 2),
        "BFloat16Storage" => (SourceDType::BF16, 2),
        "DoubleStorage" => (SourceDType::F64, 8),
        "LongStorage" => (SourceDType::Integer("i64"), 8),
        "IntStorage" => (SourceDType::Integer("i32"), 4),
        "ShortStorage" => (SourceDType::Integer("i16"), 2),
        "CharStorage" => (SourceDType::Integer("i8"), 1),
        "ByteStorage" => (SourceDType::Integer("u8"), 1),
        "BoolStorage" => (SourceDType::Integer("bool"), 1),
        _ => return None,
    })
}

fn element_size(dtype: SourceDType) -> usize {
    match dtype {
        SourceDType::F16 | SourceDType::BF16 => 2,
        SourceDType::F32 => 4,
        SourceDType::F64 => 8,
        SourceDType::Integer("i64" | "u64") => 8,
        SourceDType::Integer("i32" | "u32") => 4,
        SourceDType::Integer("i16" | "u16") => 2,
        SourceDType::Integer(_) => 1,
    }
}

/// The pickle machine's state.
struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or_else(|| format!("the pickle ends early at byte {}", self.pos))?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[self.pos..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or("a GLOBAL name has no line end")?;
        let text = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(text)
    }

    fn string(&mut self, n: usize) -> Result<Value, String> {
        let bytes = self.take(n)?;
        Ok(Value::Str(std::str::from_utf8(bytes).map_err(|_| format!("a string before byte {} is not UTF-8", self.pos))?.to_string()))
    }

    fn pop(&mut self) -> Result<Value, String> {
        self.stack.pop().ok_or_else(|| format!("stack underflow at byte {}", self.pos))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let at = self.stack.iter().rposition(|v| matches!(v, Value::Mark)).ok_or_else(|| format!("no MARK before byte {}", self.pos))?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }

    fn top(&mut self) -> Result<&mut Value, String> {
        let pos = self.pos;
        self.stack.last_mut().ok_or_else(|| format!("stack underflow at byte {pos}"))
    }

    fn memo_get(&self, index: u32) -> Result<Value, String> {
        self.memo.get(&index).cloned().ok_or_else(|| format!("memo entry {index} read before it was written (byte {})", self.pos))
    }

    fn memo_put(&mut self, index: u32) -> Result<(), String> {
        let top = self.stack.last().cloned().ok_or_else(|| format!("stack underflow at byte {}", self.pos))?;
        self.memo.insert(index, top);
        Ok(())
    }

    fn set_items(&mut self, pairs: Vec<Value>) -> Result<(), String> {
        if !pairs.len().is_multiple_of(2) {
            return Err(format!("odd number of dict items before byte {}", self.pos));
        }
        match self.top()? {
            Value::Dict(d) => {
                let mut d = d.borrow_mut();
                let mut it = pairs.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    d.push((k, v));
                }
                Ok(())
            }
            other => Err(format!("SETITEM(S) on a {}", other.kind())),
        }
    }

    fn append(&mut self, items: Vec<Value>) -> Result<(), String> {
        match self.top()? {
            Value::List(l) => {
                l.borrow_mut().extend(items);
                Ok(())
            }
            other => Err(format!("APPEND(S) on a {}", other.kind())),
        }
    }

    fn run(mut self) -> Result<Value, String> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let protocol = self.u8()?;
                    if protocol > 5 {
                        return Err(format!("pickle protocol {protocol} is not supported (0–5)"));
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: a length hint only
                }
                b'.' => return self.pop(),
                b'(' => self.stack.push(Value::Mark),
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool),
                0x89 => self.stack.push(Value::Bool),
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(v as i64));
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    self.stack.push(Value::Int(v as i64));
                }
                0x8a => {
                    // LONG1: little-endian two's complement of n ≤ 8 bytes.
                    let n = self.u8()? as usize;
                    if n > 8 {
                        return Err(format!("an integer of {n} bytes at byte {at} does not fit 64 bits"));
                    }
                    let bytes = self.take(n)?;
                    let mut v: i64 = 0;
                    for (i, &b) in bytes.iter().enumerate() {
                        v |= (b as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && bytes[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.stack.push(Value::Int(v));
                }
                b'G' => {
                    self.take(8)?;
                    self.stack.push(Value::Float);
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let s = self.string(n)?;
                    self.stack.push(s);
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let s = self.string(n)?;
                    self.stack.push(s);
                }
                0x8d => {
                    let n = usize::try_from(self.u64()?).map_err(|_| "a string is too long".to_string())?;
                    let s = self.string(n)?;
                    self.stack.push(s);
                }
                b'U' => {
                    let n = self.u8()? as usize;
                    let s = self.string(n)?;
                    self.stack.push(s);
                }
                b'T' => {
                    let n = self.u32()? as usize;
                    let s = self.string(n)?;
                    self.stack.push(s);
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    self.take(n)?;
                    self.stack.push(Value::Bytes);
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    self.take(n)?;
                    self.stack.push(Value::Bytes);
                }
                b'}' => self.stack.push(Value::Dict(Rc::new(RefCell::new(Vec::new())))),
                b']' => self.stack.push(Value::List(Rc::new(RefCell::new(Vec::new())))),
                b')' => self.stack.push(Value::Tuple(Rc::new(Vec::new()))),
                b'd' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Dict(Rc::new(RefCell::new(Vec::new()))));
                    self.set_items(items)?;
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(Rc::new(RefCell::new(items))));
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(format!("stack underflow at byte {at}"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                b'q' => {
                    let i = self.u8()? as u32;
                    self.memo_put(i)?;
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i = self.memo.len() as u32;
                    self.memo_put(i)?;
                }
                b'h' => {
                    let i = self.u8()? as u32;
                    let v = self.memo_get(i)?;
                    self.stack.push(v);
                }
                b'j' => {
                    let i = self.u32()?;
                    let v = self.memo_get(i)?;
                    self.stack.push(v);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(Rc::new((module, name))));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.stack.push(Value::Global(Rc::new((m, n)))),
                        _ => return Err(format!("STACK_GLOBAL without two strings at byte {at}")),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let storage = persistent_storage(&pid).map_err(|e| format!("{e} (byte {at})"))?;
                    self.stack.push(Value::Storage(Rc::new(storage)));
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let value = reduce(&callable, &args).map_err(|e| format!("{e} (byte {at})"))?;
                    self.stack.push(value);
                }
                0x81 => {
                    // NEWOBJ: cls.__new__(cls, *args) — classes this reader does not rebuild.
                    let _args = self.pop()?;
                    let cls = self.pop()?;
                    self.stack.push(Value::Opaque(Rc::new(cls.kind())));
                }
                b'b' => {
                    // BUILD sets attributes (e.g. an OrderedDict's `_metadata`): nothing to keep.
                    self.pop()?;
                }
                b'0' => {
                    self.pop()?;
                }
                b'2' => {
                    let top = self.top()?.clone();
                    self.stack.push(top);
                }
                b'1' => {
                    self.pop_mark()?;
                }
                other => return Err(format!("pickle opcode 0x{other:02x} at byte {at} is not supported by the in-memory reader")),
            }
        }
    }
}

/// `('storage', torch.FloatStorage, key, location, numel)`.
fn persistent_storage(pid: &Value) -> Result<Storage, String> {
    let items = pid.items().ok_or_else(|| format!("a persistent id is a {}, expected a tuple", pid.kind()))?;
    match items.as_slice() {
        [Value::Str(tag), class, Value::Str(key), _location, size] if tag == "storage" => {
            let Value::Global(g) = class else {
                return Err(format!("storage `{key}` names a {} as its type", class.kind()));
            };
            let (dtype, _) = storage_dtype(&g.1).ok_or_else(|| format!("storage `{key}` has the unsupported type {}.{}", g.0, g.1))?;
            let size = size.usize().ok_or_else(|| format!("storage `{key}` has no element count"))?;
            Ok(Storage { key: key.clone(), dtype, size })
        }
        _ => Err("a persistent id is not a ('storage', type, key, location, size) tuple".into()),
    }
}

fn reduce(callable: &Value, args: &Value) -> Result<Value, String> {
    let Value::Global(g) = callable else {
        return Ok(Value::Opaque(Rc::new(callable.kind())));
    };
    let args = args.items().unwrap_or_default();
    match (g.0.as_str(), g.1.as_str()) {
        ("collections", "OrderedDict") | ("builtins", "dict") => {
            let dict = Rc::new(RefCell::new(Vec::new()));
            if let Some(pairs) = args.first().and_then(Value::items) {
                for pair in pairs {
                    if let Some([k, v]) = pair.items().as_deref() {
                        dict.borrow_mut().push((k.clone(), v.clone()));
                    }
                }
            }
            Ok(Value::Dict(dict))
        }
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => {
            let [Value::Storage(storage), offset, shape, stride, ..] = args.as_slice() else {
                return Err(format!("{}.{} called without (storage, offset, size, stride)", g.0, g.1));
            };
            let ints = |v: &Value, what: &str| -> Result<Vec<usize>, String> {
                v.items().ok_or_else(|| format!("tensor {what} is a {}", v.kind()))?.iter().map(|d| d.usize().ok_or_else(|| format!("tensor {what} is not a list of sizes"))).collect()
            };
            let offset = offset.usize().ok_or("tensor storage offset is not a size")?;
            let (shape, stride) = (ints(shape, "size")?, ints(stride, "stride")?);
            if shape.len() != stride.len() {
                return Err(format!("tensor size {shape:?} and stride {stride:?} differ in rank"));
            }
            Ok(Value::Tensor(Rc::new(TensorRef { storage: storage.clone(), offset, shape, stride })))
        }
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
            args.into_iter().next().ok_or_else(|| "_rebuild_parameter without data".to_string())
        }
        (module, name) => Ok(Value::Opaque(Rc::new(format!("{module}.{name}")))),
    }
}

/// Walks the root object the way pytorch-reader names tensors: dict keys and list indices joined
/// with dots.
fn walk(value: &Value, path: &mut Vec<String>, out: &mut Vec<(String, Rc<TensorRef>)>) {
    match value {
        Value::Dict(d) => {
            for (k, v) in d.borrow().iter() {
                let key = match k {
                    Value::Str(s) => s.clone(),
                    Value::Int(i) => i.to_string(),
                    other => other.kind(),
                };
                path.push(key);
                walk(v, path, out);
                path.pop();
            }
        }
        Value::List(_) | Value::Tuple(_) => {
            for (i, v) in value.items().unwrap_or_default().iter().enumerate() {
                path.push(i.to_string());
                walk(v, path, out);
                path.pop();
            }
        }
        Value::Tensor(t) => out.push((path.join("."), t.clone())),
        _ => {}
    }
}

/// Copies a (possibly strided) view out of its storage as contiguous row-major bytes.
fn materialise(t: &TensorRef, storage: &[u8], name: &str) -> Result<Vec<u8>, String> {
    let es = element_size(t.storage.dtype);
    let numel: usize = t.shape.iter().product();
    if storage.len() < t.storage.size * es {
        return Err(format!("`{name}`: storage `{}` holds {} bytes, its header says {} elements of {es} bytes", t.storage.key, storage.len(), t.storage.size));
    }
    if numel == 0 {
        return Ok(Vec::new());
    }
    let last = t.offset + t.shape.iter().zip(&t.stride).map(|(&n, &s)| (n - 1) * s).sum::<usize>();
    if last >= t.storage.size {
        return Err(format!("`{name}`: the view (offset {}, size {:?}, stride {:?}) reaches past storage `{}` of {} elements", t.offset, t.shape, t.stride, t.storage.key, t.storage.size));
    }
    let mut contiguous = true;
    let mut expected = 1;
    for (&n, &s) in t.shape.iter().zip(&t.stride).rev() {
        if n != 1 && s != expected {
            contiguous = false;
        }
        expected *= n;
    }
    if contiguous {
        return Ok(storage[t.offset * es..(t.offset + numel) * es].to_vec());
    }
    let mut out = Vec::with_capacity(numel * es);
    let mut index = vec![0usize; t.shape.len()];
    for _ in 0..numel {
        let at = t.offset + index.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
        out.extend_from_slice(&storage[at * es..(at + 1) * es]);
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < t.shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Ok(out)
}

/// Reads every tensor of a PyTorch zip checkpoint held in memory, under `top_level_key` when
/// given, by name (non-tensor objects are left out).
pub(crate) fn read(bytes: &[u8], top_level_key: Option<&str>) -> Result<BTreeMap<String, RawTensor>, String> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| format!("not a readable zip archive: {e}"))?;
    let names: Vec<String> = archive
        .file_names()
        .map(|n| n.map(|n| n.into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not a readable zip archive: {e}"))?;
    let root = names
        .iter()
        .filter_map(|n| n.strip_suffix("data.pkl"))
        .filter(|r| r.is_empty() || r.ends_with('/'))
        .min_by_key(|r| r.len())
        .map(str::to_string)
        .ok_or("no data.pkl in the archive (not a PyTorch ≥ 1.6 checkpoint)")?;
    let mut entry = |name: &str| -> Result<Vec<u8>, String> {
        let mut file = archive.by_name(name).map_err(|e| format!("archive entry `{name}`: {e}"))?;
        let mut out = Vec::with_capacity(file.size() as usize);
        file.read_to_end(&mut out).map_err(|e| format!("archive entry `{name}`: {e}"))?;
        Ok(out)
    };
    if let Ok(order) = entry(&format!("{root}byteorder"))
        && order.trim_ascii() != b"little"
    {
        return Err(format!("byte order `{}` is not supported (little only)", String::from_utf8_lossy(&order)));
    }
    let pickle = entry(&format!("{root}data.pkl"))?;
    let machine = Machine { data: &pickle, pos: 0, stack: Vec::new(), memo: HashMap::new() };
    let mut value = machine.run().map_err(|e| format!("data.pkl: {e}"))?;
    if let Some(key) = top_level_key {
        let Value::Dict(d) = &value else {
            return Err(format!("cannot select top-level key `{key}`: the root is a {}", value.kind()));
        };
        let found = d.borrow().iter().find(|(k, _)| matches!(k, Value::Str(s) if s == key)).map(|(_, v)| v.clone());
        value = match found {
            Some(v) => v,
            None => {
                let keys: Vec<String> = d.borrow().iter().map(|(k, _)| if let Value::Str(s) = k { s.clone() } else { k.kind() }).collect();
                return Err(format!("top-level key `{key}` not found; the file has {keys:?}"));
            }
        };
    }
    if !matches!(value, Value::Dict(_)) {
        return Err(format!("expected a dictionary of tensors, the file holds a {}", value.kind()));
    }
    let mut found = Vec::new();
    walk(&value, &mut Vec::new(), &mut found);
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut tensors = BTreeMap::new();
    for (name, t) in found {
        if !storages.contains_key(&t.storage.key) {
            let bytes = entry(&format!("{root}data/{}", t.storage.key)).map_err(|e| format!("`{name}`: {e}"))?;
            storages.insert(t.storage.key.clone(), bytes);
        }
        let bytes = materialise(&t, &storages[&t.storage.key], &name)?;
        tensors.insert(name, RawTensor { dtype: t.storage.dtype, shape: t.shape.clone(), bytes });
    }
    Ok(tensors)
}

/// Parity with pytorch-reader (the native path) on every PyTorch fixture of the repository:
/// real `torch.save` files (the AA-CLIP adapters, the Bayes-PFL head, the OpenAI-format tiny
/// CLIP) and `tools/fixtures/torch_zip.py`'s strided/offset views and f16/bf16/f64 storages.
/// Names, shapes, element types and values must be identical.
#[cfg(all(test, feature = "pytorch"))]
mod tests {
    use std::path::PathBuf;

    use crate::weights::WeightFile;

    fn fixture(path: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(path)
    }

    fn same(path: &str, key: Option<&str>) -> usize {
        let file = fixture(path);
        let reference = WeightFile::open(&file, key).unwrap_or_else(|e| panic!("pytorch-reader on {path}: {e}"));
        let ours = WeightFile::from_bytes_with_key(std::fs::read(&file).unwrap(), path, key).unwrap_or_else(|e| panic!("in-memory reader on {path}: {e}"));
        let names = |f: &WeightFile| f.entries.keys().cloned().collect::<Vec<_>>();
        assert_eq!(names(&ours), names(&reference), "{path}: tensor names");
        let skipped = |f: &WeightFile| f.skipped.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        let (mut a, mut b) = (skipped(&ours), skipped(&reference));
        a.sort();
        b.sort();
        assert_eq!(a, b, "{path}: skipped integer tensors");
        for (name, want) in &reference.entries {
            let got = &ours.entries[name];
            assert_eq!((&got.shape, got.dtype), (&want.shape, want.dtype), "{path}: `{name}`");
            let (g, w) = (got.to_f32(name).unwrap(), want.to_f32(name).unwrap());
            assert!(g.iter().zip(&w).all(|(x, y)| x.to_bits() == y.to_bits()), "{path}: `{name}` values differ");
        }
        reference.entries.len()
    }

    #[test]
    fn real_torch_save_files_read_as_pytorch_reader_reads_them() {
        for path in ["aa_clip/text_adapter.pth", "aa_clip/image_adapter.pth", "aa_clip/image_adapter_relu.pth", "aa_clip/text_adapter_step1.pth", "aa_clip/image_adapter_step1.pth", "clip/tiny_openai.pt"] {
            assert!(same(path, None) > 0, "{path}");
        }
        assert_eq!(same("bayes_pfl/head.pth", Some("MyModel")), same("bayes_pfl/head.pth", Some("MyModel")));
        assert!(same("bayes_pfl/head.pth", None) > 100);
    }

    #[test]
    fn strided_views_and_other_element_types_read_as_pytorch_reader_reads_them() {
        assert_eq!(same("torch_zip/views.pth", None), 12);
        assert_eq!(same("torch_zip/views.pth", Some("model")), 10);
        let ours = WeightFile::from_bytes(std::fs::read(fixture("torch_zip/views.pth")).unwrap(), "views.pth").unwrap();
        // The transposed view holds the transpose, read through its strides.
        let w = ours.entries["model.linear.weight"].to_f32("w").unwrap();
        let t = ours.entries["model.linear.weight_t"].to_f32("t").unwrap();
        assert_eq!(t[4 + 1], w[6 + 1]); // t[1][1] == w[1][1]
        assert_eq!(t[2 * 4 + 3], w[3 * 6 + 2]); // t[2][3] == w[3][2]
    }

    #[test]
    fn damaged_files_are_errors_that_say_what_is_wrong() {
        let bytes = std::fs::read(fixture("aa_clip/text_adapter.pth")).unwrap();
        let err = |b: Vec<u8>, key: Option<&str>| WeightFile::from_bytes_with_key(b, "adapter.pth", key).err().expect("must fail").to_string();
        let truncated = err(bytes[..bytes.len() / 2].to_vec(), None);
        assert!(truncated.contains("adapter.pth") && truncated.contains("zip"), "{truncated}");
        let key = err(bytes.clone(), Some("MyModel"));
        assert!(key.contains("`MyModel` not found"), "{key}");
        let mut no_storage = bytes.clone();
        // Rename the storage entry `data/0` in both zip headers: the tensor's data is gone.
        let needle = b"text_adapter/data/0";
        let mut at = 0;
        while let Some(i) = no_storage[at..].windows(needle.len()).position(|w| w == needle) {
            no_storage[at + i + needle.len() - 1] = b'9';
            at += i + needle.len();
        }
        let missing = err(no_storage, None);
        assert!(missing.contains("data/0"), "{missing}");
        let safetensors_key = WeightFile::from_bytes_with_key(b"\x08\0\0\0\0\0\0\0{}      ".to_vec(), "x.safetensors", Some("k")).err().unwrap().to_string();
        assert!(safetensors_key.contains("top-level key"), "{safetensors_key}");
    }
}
