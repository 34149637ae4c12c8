//! PyTorch zip checkpoints (`torch.save`), read from bytes in memory or a memory-mapped file,
//! for the CLI and the browser alike. The reader covers the part of the pickle protocol that
//! `torch.save` writes for (nested) state dicts: dicts and OrderedDicts, lists and tuples,
//! scalars and strings, and tensors rebuilt with `torch._utils._rebuild_tensor_v2` /
//! `_rebuild_parameter` from the archive's `data/<key>` storages. Names are the dotted paths
//! `pytorch-reader` gives (tested against it on every fixture).
//!
//! Nothing in a pickle is ever called. Files come from strangers, so the reader is bounded:
//! * opcodes outside that subset (INST, OBJ, EXT*, PERSID, the text opcodes, …) and imports
//!   outside the state-dict allow-list (`os.system`, `builtins.eval`, …) are refused by name;
//! * values live in one arena (no recursive drop), the containers built may hold at most a few
//!   items per pickle byte, object graphs are walked at most [`MAX_DEPTH`] deep and in a bounded
//!   number of steps, and a container that contains itself is refused;
//! * shapes, strides and offsets are checked for overflow and against their storage, storages
//!   against the archive, and everything the reader allocates beyond the file's own bytes
//!   (strided views copied out) counts against a budget, by default the file's size;
//! * entries must be stored uncompressed, as `torch.save` writes them: there is no inflater, so
//!   no zip bomb.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Cursor;

use super::file::SourceDType;

/// How deep the walk from the root object to a tensor may go (a state dict is 2–4 deep).
pub(crate) const MAX_DEPTH: usize = 64;
/// Container items the pickle may create per byte of pickle (plus a constant), so that memo
/// references cannot multiply a small pickle into a huge object graph.
const ITEMS_PER_BYTE: usize = 4;

/// Where a tensor's bytes are.
pub(crate) enum TensorBytes {
    /// Contiguous bytes of the archive itself: `bytes[start..end]` of what [`read`] was given.
    Span { start: usize, end: usize },
    /// A strided view copied out into contiguous row-major order.
    Owned(Vec<u8>),
}

/// One tensor: stored element type, shape, contiguous little-endian bytes.
pub(crate) struct RawTensor {
    pub dtype: SourceDType,
    pub shape: Vec<usize>,
    pub bytes: TensorBytes,
}

/// Index of a value in the machine's arena.
type Id = usize;

/// A pickled value (only what state dicts use). Scalars other than integers and strings are
/// kept as their kind only: no tensor is built from them.
enum Value {
    None,
    Bool,
    Int(i64),
    Float,
    Str(String),
    Bytes,
    Tuple(Vec<Id>),
    List(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Global(String, String),
    Storage(Storage),
    Tensor(TensorRef),
    /// An object of an allowed data class this reader does not rebuild (its class name).
    Opaque(String),
}

#[derive(Clone)]
struct Storage {
    key: String,
    dtype: SourceDType,
    size: usize,
}

#[derive(Clone)]
struct TensorRef {
    storage: Storage,
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
            Self::Global(m, n) => format!("class {m}.{n}"),
            Self::Storage(_) => "storage".into(),
            Self::Tensor(_) => "tensor".into(),
            Self::Opaque(name) => format!("object of {name}"),
        }
    }

    fn usize(&self) -> Option<usize> {
        match self {
            Self::Int(i) if *i >= 0 => usize::try_from(*i).ok(),
            _ => None,
        }
    }
}

/// Storage class name (`torch.FloatStorage`, …) → element type.
fn storage_dtype(name: &str) -> Option<SourceDType> {
    Some(match name {
        "FloatStorage" => SourceDType::F32,
        "HalfStorage" => SourceDType::F16,
        "BFloat16Storage" => SourceDType::BF16,
        "DoubleStorage" => SourceDType::F64,
        "LongStorage" => SourceDType::Integer("i64"),
        "IntStorage" => SourceDType::Integer("i32"),
        "ShortStorage" => SourceDType::Integer("i16"),
        "CharStorage" => SourceDType::Integer("i8"),
        "ByteStorage" => SourceDType::Integer("u8"),
        "BoolStorage" => SourceDType::Integer("bool"),
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

/// Whether `module.name` may appear in a checkpoint's pickle. The list is what `torch.save`
/// writes for tensors and state dicts (the same set `torch.load(weights_only=True)` accepts)
/// plus plain-data classes training scripts commonly save beside them (numpy scalars and
/// arrays, `argparse.Namespace`). None of them is ever called; everything else, `os.system`
/// and `builtins.eval` included, makes the file unreadable.
fn allowed_global(module: &str, name: &str) -> bool {
    match module {
        "collections" => name == "OrderedDict",
        "torch._utils" => matches!(name, "_rebuild_tensor" | "_rebuild_tensor_v2" | "_rebuild_parameter" | "_rebuild_parameter_with_state"),
        "torch" => {
            storage_dtype(name).is_some()
                || matches!(
                    name,
                    "Size" | "device" | "float32" | "float16" | "bfloat16" | "float64" | "int64" | "int32" | "int16" | "int8" | "uint8" | "bool"
                )
        }
        "torch.serialization" => name == "_get_layout",
        "builtins" => matches!(name, "set" | "frozenset" | "complex" | "slice" | "bytearray"),
        "_codecs" => name == "encode",
        "copyreg" => name == "_reconstructor",
        "argparse" => name == "Namespace",
        "numpy" => matches!(name, "dtype" | "ndarray"),
        "numpy.core.multiarray" | "numpy._core.multiarray" => matches!(name, "scalar" | "_reconstruct"),
        _ => false,
    }
}

/// Pickle opcode names, for refusals.
fn opcode_name(op: u8) -> &'static str {
    match op {
        b'i' => "INST",
        b'o' => "OBJ",
        b'P' => "PERSID",
        b'I' => "INT",
        b'L' => "LONG",
        b'S' => "STRING",
        b'V' => "UNICODE",
        b'F' => "FLOAT",
        b'g' => "GET",
        b'p' => "PUT",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x8b => "LONG4",
        0x8e => "BINBYTES8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => "an unknown opcode",
    }
}

enum Slot {
    Mark,
    Value(Id),
}

/// The pickle machine's state.
struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    arena: Vec<Value>,
    stack: Vec<Slot>,
    memo: HashMap<u32, Id>,
    /// Container items that may still be created.
    items_left: usize,
}

impl<'a> Machine<'a> {
    fn new(data: &'a [u8]) -> Self {
        let items_left = data.len().saturating_mul(ITEMS_PER_BYTE).saturating_add(1024);
        Self { data, pos: 0, arena: Vec::new(), stack: Vec::new(), memo: HashMap::new(), items_left }
    }

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

    /// A length read from the pickle; it must fit in what is left of the pickle.
    fn len_u64(&mut self) -> Result<usize, String> {
        let n = self.u64()?;
        usize::try_from(n).ok().filter(|&n| n <= self.data.len() - self.pos).ok_or_else(|| format!("a length of {n} bytes at byte {} runs past the pickle", self.pos))
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

    fn alloc(&mut self, value: Value) -> Id {
        self.arena.push(value);
        self.arena.len() - 1
    }

    fn push(&mut self, value: Value) {
        let id = self.alloc(value);
        self.stack.push(Slot::Value(id));
    }

    /// Charges `n` container items against the budget.
    fn spend(&mut self, n: usize) -> Result<(), String> {
        self.items_left = self.items_left.checked_sub(n).ok_or_else(|| {
            format!("the pickle builds more container items than its size allows (at byte {}); not a state dict", self.pos)
        })?;
        Ok(())
    }

    fn pop(&mut self) -> Result<Id, String> {
        match self.stack.pop() {
            Some(Slot::Value(id)) => Ok(id),
            Some(Slot::Mark) => Err(format!("a MARK where a value was expected at byte {}", self.pos)),
            None => Err(format!("stack underflow at byte {}", self.pos)),
        }
    }

    fn pop_mark(&mut self) -> Result<Vec<Id>, String> {
        let at = self.stack.iter().rposition(|v| matches!(v, Slot::Mark)).ok_or_else(|| format!("no MARK before byte {}", self.pos))?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items.into_iter().map(|s| match s {
            Slot::Value(id) => id,
            Slot::Mark => unreachable!("no MARK after the last one"),
        }).collect())
    }

    fn top(&self) -> Result<Id, String> {
        match self.stack.last() {
            Some(Slot::Value(id)) => Ok(*id),
            Some(Slot::Mark) => Err(format!("a MARK where a value was expected at byte {}", self.pos)),
            None => Err(format!("stack underflow at byte {}", self.pos)),
        }
    }

    fn memo_get(&self, index: u32) -> Result<Id, String> {
        self.memo.get(&index).copied().ok_or_else(|| format!("memo entry {index} read before it was written (byte {})", self.pos))
    }

    fn memo_put(&mut self, index: u32) -> Result<(), String> {
        let top = self.top()?;
        self.memo.insert(index, top);
        Ok(())
    }

    /// The items of a tuple or list, `None` for other values.
    fn items(&self, id: Id) -> Option<Vec<Id>> {
        match &self.arena[id] {
            Value::Tuple(v) | Value::List(v) => Some(v.clone()),
            _ => None,
        }
    }

    fn set_items(&mut self, pairs: Vec<Id>) -> Result<(), String> {
        if !pairs.len().is_multiple_of(2) {
            return Err(format!("odd number of dict items before byte {}", self.pos));
        }
        let top = self.top()?;
        self.spend(pairs.len() / 2)?;
        let kind = self.arena[top].kind();
        match &mut self.arena[top] {
            Value::Dict(d) => {
                d.extend(pairs.chunks_exact(2).map(|kv| (kv[0], kv[1])));
                Ok(())
            }
            _ => Err(format!("SETITEM(S) on a {kind} at byte {}", self.pos)),
        }
    }

    fn append(&mut self, items: Vec<Id>) -> Result<(), String> {
        let top = self.top()?;
        self.spend(items.len())?;
        let kind = self.arena[top].kind();
        match &mut self.arena[top] {
            Value::List(l) => {
                l.extend(items);
                Ok(())
            }
            _ => Err(format!("APPEND(S) on a {kind} at byte {}", self.pos)),
        }
    }

    fn global(&mut self, module: String, name: String, at: usize) -> Result<(), String> {
        if !allowed_global(&module, &name) {
            return Err(format!(
                "it imports `{module}.{name}` (byte {at}), which no state dict needs; refused (vlad never runs pickled \
                 code, but a file that asks to is not a plain checkpoint)"
            ));
        }
        self.push(Value::Global(module, name));
        Ok(())
    }

    fn run(mut self) -> Result<(Vec<Value>, Id), String> {
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
                b'.' => {
                    let root = self.pop()?;
                    return Ok((self.arena, root));
                }
                b'(' => self.stack.push(Slot::Mark),
                b'N' => self.push(Value::None),
                0x88 | 0x89 => self.push(Value::Bool),
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Value::Int(v as i64));
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Value::Int(v as i64));
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
                    self.push(Value::Int(v));
                }
                b'G' => {
                    self.take(8)?;
                    self.push(Value::Float);
                }
                b'X' | b'T' => {
                    let n = self.u32()? as usize;
                    let s = self.string(n)?;
                    self.push(s);
                }
                0x8c | b'U' => {
                    let n = self.u8()? as usize;
                    let s = self.string(n)?;
                    self.push(s);
                }
                0x8d => {
                    let n = self.len_u64()?;
                    let s = self.string(n)?;
                    self.push(s);
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    self.take(n)?;
                    self.push(Value::Bytes);
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    self.take(n)?;
                    self.push(Value::Bytes);
                }
                b'}' => self.push(Value::Dict(Vec::new())),
                b']' => self.push(Value::List(Vec::new())),
                b')' => self.push(Value::Tuple(Vec::new())),
                b'd' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Dict(Vec::new()));
                    self.set_items(items)?;
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.spend(items.len())?;
                    self.push(Value::List(items));
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.spend(items.len())?;
                    self.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = vec![0; n];
                    for slot in items.iter_mut().rev() {
                        *slot = self.pop()?;
                    }
                    self.spend(n)?;
                    self.push(Value::Tuple(items));
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
                    let i = u32::try_from(self.memo.len()).map_err(|_| "too many memo entries".to_string())?;
                    self.memo_put(i)?;
                }
                b'h' => {
                    let i = self.u8()? as u32;
                    let v = self.memo_get(i)?;
                    self.stack.push(Slot::Value(v));
                }
                b'j' => {
                    let i = self.u32()?;
                    let v = self.memo_get(i)?;
                    self.stack.push(Slot::Value(v));
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(module, name, at)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (&self.arena[module], &self.arena[name]) {
                        (Value::Str(m), Value::Str(n)) => {
                            let (m, n) = (m.clone(), n.clone());
                            self.global(m, n, at)?;
                        }
                        _ => return Err(format!("STACK_GLOBAL without two strings at byte {at}")),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let storage = self.persistent_storage(pid).map_err(|e| format!("{e} (byte {at})"))?;
                    self.push(Value::Storage(storage));
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let value = self.reduce(callable, args).map_err(|e| format!("{e} (byte {at})"))?;
                    self.push(value);
                }
                0x81 => {
                    // NEWOBJ: cls.__new__(cls, *args) for an allowed data class; not rebuilt.
                    let _args = self.pop()?;
                    let cls = self.pop()?;
                    let kind = self.arena[cls].kind();
                    self.push(Value::Opaque(kind));
                }
                b'b' => {
                    // BUILD sets attributes (e.g. an OrderedDict's `_metadata`): nothing to keep.
                    self.pop()?;
                    self.top()?;
                }
                b'0' => {
                    self.pop()?;
                }
                b'2' => {
                    let top = self.top()?;
                    self.stack.push(Slot::Value(top));
                }
                b'1' => {
                    self.pop_mark()?;
                }
                other => {
                    return Err(format!(
                        "pickle opcode {} (0x{other:02x}) at byte {at} is outside the state-dict subset torch.save writes",
                        opcode_name(other)
                    ));
                }
            }
        }
    }

    /// `('storage', torch.FloatStorage, key, location, numel)`.
    fn persistent_storage(&self, pid: Id) -> Result<Storage, String> {
        let items = self.items(pid).ok_or_else(|| format!("a persistent id is a {}, expected a tuple", self.arena[pid].kind()))?;
        let values: Vec<&Value> = items.iter().map(|&i| &self.arena[i]).collect();
        match values.as_slice() {
            [Value::Str(tag), class, Value::Str(key), _location, size] if tag == "storage" => {
                let Value::Global(module, name) = class else {
                    return Err(format!("storage `{key}` names a {} as its type", class.kind()));
                };
                let dtype = storage_dtype(name).ok_or_else(|| format!("storage `{key}` has the unsupported type {module}.{name}"))?;
                let size = size.usize().ok_or_else(|| format!("storage `{key}` has no element count"))?;
                Ok(Storage { key: key.clone(), dtype, size })
            }
            _ => Err("a persistent id is not a ('storage', type, key, location, size) tuple".into()),
        }
    }

    fn reduce(&mut self, callable: Id, args: Id) -> Result<Value, String> {
        let Value::Global(module, name) = &self.arena[callable] else {
            return Ok(Value::Opaque(self.arena[callable].kind()));
        };
        let (module, name) = (module.clone(), name.clone());
        let args = self.items(args).unwrap_or_default();
        match (module.as_str(), name.as_str()) {
            ("collections", "OrderedDict") => {
                let mut pairs = Vec::new();
                if let Some(list) = args.first().and_then(|&a| self.items(a)) {
                    self.spend(list.len())?;
                    for pair in list {
                        if let Some([k, v]) = self.items(pair).as_deref() {
                            pairs.push((*k, *v));
                        }
                    }
                }
                Ok(Value::Dict(pairs))
            }
            ("torch", "Size") => {
                let dims = args.first().and_then(|&a| self.items(a)).unwrap_or_default();
                self.spend(dims.len())?;
                Ok(Value::Tuple(dims))
            }
            ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => {
                let [storage, offset, shape, stride, ..] = args.as_slice() else {
                    return Err(format!("{module}.{name} called without (storage, offset, size, stride)"));
                };
                let Value::Storage(storage) = &self.arena[*storage] else {
                    return Err(format!("{module}.{name} called on a {}, expected a storage", self.arena[*storage].kind()));
                };
                let ints = |v: Id, what: &str| -> Result<Vec<usize>, String> {
                    self.items(v)
                        .ok_or_else(|| format!("tensor {what} is a {}", self.arena[v].kind()))?
                        .iter()
                        .map(|&d| self.arena[d].usize().ok_or_else(|| format!("tensor {what} is not a list of sizes")))
                        .collect()
                };
                let offset = self.arena[*offset].usize().ok_or("tensor storage offset is not a size")?;
                let (shape, stride) = (ints(*shape, "size")?, ints(*stride, "stride")?);
                if shape.len() != stride.len() {
                    return Err(format!("tensor size {shape:?} and stride {stride:?} differ in rank"));
                }
                Ok(Value::Tensor(TensorRef { storage: storage.clone(), offset, shape, stride }))
            }
            ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
                let data = *args.first().ok_or_else(|| "_rebuild_parameter without data".to_string())?;
                match &self.arena[data] {
                    Value::Tensor(t) => Ok(Value::Tensor(t.clone())),
                    other => Err(format!("_rebuild_parameter of a {}, expected a tensor", other.kind())),
                }
            }
            (module, name) => Ok(Value::Opaque(format!("{module}.{name}"))),
        }
    }
}

/// Walks the root object the way pytorch-reader names tensors: dict keys and list indices joined
/// with dots. Shared containers are fine (optimizer param groups share their default `betas`
/// tuple), cycles are refused, and the walk is bounded in depth and in steps.
struct Walk<'a> {
    arena: &'a [Value],
    on_path: HashSet<Id>,
    steps_left: usize,
    path: Vec<String>,
    out: Vec<(String, TensorRef)>,
}

impl Walk<'_> {
    fn visit(&mut self, id: Id) -> Result<(), String> {
        let value = &self.arena[id];
        let container = matches!(value, Value::Dict(_) | Value::List(_) | Value::Tuple(_));
        if container {
            if self.path.len() >= MAX_DEPTH {
                return Err(format!("containers nest deeper than {MAX_DEPTH} levels at `{}`; not a state dict", self.path.join(".")));
            }
            if !self.on_path.insert(id) {
                return Err(format!("the container at `{}` contains itself; not a state dict", self.path.join(".")));
            }
        }
        self.steps_left = self.steps_left.checked_sub(1).ok_or("the object graph is far larger than its pickle (shared containers reached many times); not a state dict")?;
        match value {
            Value::Dict(d) => {
                for &(k, v) in d {
                    let key = match &self.arena[k] {
                        Value::Str(s) => s.clone(),
                        Value::Int(i) => i.to_string(),
                        other => other.kind(),
                    };
                    self.path.push(key);
                    self.visit(v)?;
                    self.path.pop();
                }
            }
            Value::List(items) | Value::Tuple(items) => {
                for (i, &v) in items.iter().enumerate() {
                    self.path.push(i.to_string());
                    self.visit(v)?;
                    self.path.pop();
                }
            }
            Value::Tensor(t) => self.out.push((self.path.join("."), t.clone())),
            _ => {}
        }
        if container {
            self.on_path.remove(&id);
        }
        Ok(())
    }
}

/// The bytes of a (possibly strided) view: a span of the storage when contiguous, else a copy
/// in row-major order charged against `budget`.
fn materialise(t: &TensorRef, storage: (usize, usize), file: &[u8], name: &str, budget: &mut u64) -> Result<TensorBytes, String> {
    let es = element_size(t.storage.dtype);
    let overflow = || format!("`{name}`: size {:?} with stride {:?} overflows", t.shape, t.stride);
    let numel = t.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or_else(overflow)?;
    let storage_bytes = t.storage.size.checked_mul(es).ok_or_else(overflow)?;
    let (start, end) = storage;
    if end - start != storage_bytes {
        return Err(format!(
            "`{name}`: storage `{}` holds {} bytes, its header says {} elements of {es} bytes",
            t.storage.key,
            end - start,
            t.storage.size
        ));
    }
    if numel == 0 {
        return Ok(TensorBytes::Owned(Vec::new()));
    }
    let reach = t.shape.iter().zip(&t.stride).try_fold(t.offset, |acc, (&n, &s)| (n - 1).checked_mul(s).and_then(|d| acc.checked_add(d))).ok_or_else(overflow)?;
    if reach >= t.storage.size {
        return Err(format!(
            "`{name}`: the view (offset {}, size {:?}, stride {:?}) reaches past storage `{}` of {} elements",
            t.offset, t.shape, t.stride, t.storage.key, t.storage.size
        ));
    }
    let mut contiguous = true;
    let mut expected = 1usize;
    for (&n, &s) in t.shape.iter().zip(&t.stride).rev() {
        if n != 1 && s != expected {
            contiguous = false;
        }
        expected = expected.saturating_mul(n);
    }
    if contiguous {
        // reach < size, so offset + numel ≤ size: within the storage.
        return Ok(TensorBytes::Span { start: start + t.offset * es, end: start + (t.offset + numel) * es });
    }
    let bytes = numel.checked_mul(es).ok_or_else(overflow)?;
    *budget = budget.checked_sub(bytes as u64).ok_or_else(|| {
        format!(
            "`{name}`: copying the strided view out needs {bytes} bytes, more than the allocation budget has left \
             ({budget} bytes; by default the file's size)"
        )
    })?;
    let storage = &file[start..end];
    let mut out = Vec::with_capacity(bytes);
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
    Ok(TensorBytes::Owned(out))
}

/// The span of an archive entry's bytes within `bytes`; the entry must be stored uncompressed.
fn entry_span(archive: &mut zip::ZipArchive<Cursor<&[u8]>>, name: &str, file_len: usize) -> Result<(usize, usize), String> {
    let file = archive.by_name(name).map_err(|e| format!("archive entry `{name}`: {e}"))?;
    if file.compression() != zip::CompressionMethod::Stored {
        return Err(format!("archive entry `{name}` is compressed ({}); torch.save stores entries uncompressed", file.compression()));
    }
    let start = file.data_start().ok_or_else(|| format!("archive entry `{name}`: no data offset"))?;
    let span = usize::try_from(start)
        .ok()
        .zip(usize::try_from(file.size()).ok())
        .and_then(|(s, n)| Some((s, s.checked_add(n)?)))
        .filter(|&(_, e)| e <= file_len)
        .ok_or_else(|| format!("archive entry `{name}` ({} bytes at {start}) runs past the end of the file ({file_len} bytes)", file.size()))?;
    Ok(span)
}

/// Reads every tensor of a PyTorch zip checkpoint, under `top_level_key` when given, by name
/// (non-tensor objects are left out). Copies of strided views may allocate at most `budget`
/// bytes in all.
pub(crate) fn read(bytes: &[u8], top_level_key: Option<&str>, mut budget: u64) -> Result<BTreeMap<String, RawTensor>, String> {
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
    let byteorder = format!("{root}byteorder");
    if names.contains(&byteorder) {
        let (s, e) = entry_span(&mut archive, &byteorder, bytes.len())?;
        if bytes[s..e].trim_ascii() != b"little" {
            return Err(format!("byte order `{}` is not supported (little only)", String::from_utf8_lossy(&bytes[s..e])));
        }
    }
    let (s, e) = entry_span(&mut archive, &format!("{root}data.pkl"), bytes.len())?;
    let (arena, root_id) = Machine::new(&bytes[s..e]).run().map_err(|e| format!("data.pkl: {e}"))?;
    let mut value = root_id;
    if let Some(key) = top_level_key {
        let Value::Dict(d) = &arena[value] else {
            return Err(format!("cannot select top-level key `{key}`: the root is a {}", arena[value].kind()));
        };
        value = match d.iter().find(|(k, _)| matches!(&arena[*k], Value::Str(s) if s == key)) {
            Some(&(_, v)) => v,
            None => {
                let keys: Vec<String> = d.iter().map(|&(k, _)| if let Value::Str(s) = &arena[k] { s.clone() } else { arena[k].kind() }).collect();
                return Err(format!("top-level key `{key}` not found; the file has {keys:?}"));
            }
        };
    }
    if !matches!(arena[value], Value::Dict(_)) {
        return Err(format!("expected a dictionary of tensors, the file holds a {}", arena[value].kind()));
    }
    let steps_left = arena.len().saturating_mul(ITEMS_PER_BYTE).saturating_add(1024);
    let mut walk = Walk { arena: &arena, on_path: HashSet::new(), steps_left, path: Vec::new(), out: Vec::new() };
    walk.visit(value)?;
    let mut storages: HashMap<String, (usize, usize)> = HashMap::new();
    let mut tensors = BTreeMap::new();
    for (name, t) in walk.out {
        let span = match storages.get(&t.storage.key) {
            Some(&span) => span,
            None => {
                let span = entry_span(&mut archive, &format!("{root}data/{}", t.storage.key), bytes.len()).map_err(|e| format!("`{name}`: {e}"))?;
                storages.insert(t.storage.key.clone(), span);
                span
            }
        };
        let data = materialise(&t, span, bytes, &name, &mut budget)?;
        tensors.insert(name, RawTensor { dtype: t.storage.dtype, shape: t.shape.clone(), bytes: data });
    }
    Ok(tensors)
}

/// Parity with burn's `pytorch-reader` (the reference) on every PyTorch fixture of the
/// repository: real `torch.save` files (the AA-CLIP adapters, the Bayes-PFL head, the
/// OpenAI-format tiny CLIP) and `tools/fixtures/torch_zip.py`'s strided/offset views and
/// f16/bf16/f64 storages. Names, shapes, element types and values must be identical, from a
/// mapped file and from bytes in memory.
#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use crate::weights::{SourceDType, WeightFile};

    fn fixture(path: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(path)
    }

    /// pytorch-reader's view of a file: name → (shape, dtype, f32 values; None for integers).
    fn reference(file: &std::path::Path, key: Option<&str>) -> BTreeMap<String, (Vec<usize>, SourceDType, Option<Vec<f32>>)> {
        use pytorch_reader::DType as P;
        let reader = match key {
            Some(key) => pytorch_reader::PytorchReader::with_top_level_key(file, key),
            None => pytorch_reader::PytorchReader::new(file),
        }
        .unwrap_or_else(|e| panic!("pytorch-reader on {}: {e}", file.display()));
        reader
            .into_tensors()
            .into_iter()
            .map(|(name, t)| {
                let dtype = match t.dtype() {
                    P::F16 => SourceDType::F16,
                    P::BF16 => SourceDType::BF16,
                    P::F32 => SourceDType::F32,
                    P::F64 => SourceDType::F64,
                    _ => SourceDType::Integer("int"),
                };
                let bytes = t.read().unwrap();
                let values = match dtype {
                    SourceDType::F16 => Some(bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()),
                    SourceDType::BF16 => Some(bytes.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect()),
                    SourceDType::F32 => Some(bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()),
                    SourceDType::F64 => Some(bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect()),
                    SourceDType::Integer(_) => None,
                };
                (name, (t.shape().to_vec(), dtype, values))
            })
            .collect()
    }

    fn same(path: &str, key: Option<&str>) -> usize {
        let file = fixture(path);
        let want = reference(&file, key);
        let mapped = WeightFile::open(&file, key).unwrap_or_else(|e| panic!("mapped {path}: {e}"));
        let in_memory = WeightFile::from_bytes_with_key(std::fs::read(&file).unwrap(), path, key).unwrap_or_else(|e| panic!("in memory {path}: {e}"));
        for ours in [&mapped, &in_memory] {
            let floats: Vec<&String> = want.iter().filter(|(_, w)| w.2.is_some()).map(|(n, _)| n).collect();
            assert_eq!(ours.entries.keys().collect::<Vec<_>>(), floats, "{path}: tensor names");
            let mut skipped: Vec<&String> = ours.skipped.iter().map(|(n, _)| n).collect();
            skipped.sort();
            let integers: Vec<&String> = want.iter().filter(|(_, w)| w.2.is_none()).map(|(n, _)| n).collect();
            assert_eq!(skipped, integers, "{path}: skipped integer tensors");
            for (name, (shape, dtype, values)) in want.iter().filter(|(_, w)| w.2.is_some()) {
                let got = &ours.entries[name];
                assert_eq!((&got.shape, got.dtype), (shape, *dtype), "{path}: `{name}`");
                let g = got.to_f32(name).unwrap();
                let w = values.as_ref().unwrap();
                assert!(g.len() == w.len() && g.iter().zip(w).all(|(x, y)| x.to_bits() == y.to_bits()), "{path}: `{name}` values differ");
            }
        }
        in_memory.entries.len()
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
