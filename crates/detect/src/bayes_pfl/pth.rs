//! A minimal writer of PyTorch's zip checkpoint format (what `torch.save` produces since 1.6), for
//! f32 state dicts: `archive/data.pkl` (pickle protocol 2), one `archive/data/<key>` record per
//! storage, `archive/version` and `archive/byteorder`. The pickle is the one PyTorch writes for a
//! dict of `OrderedDict`s of tensors: each tensor is `torch._utils._rebuild_tensor_v2(storage,
//! offset 0, size, contiguous stride, requires_grad False, OrderedDict())` with a persistent id
//! `('storage', torch.FloatStorage, key, 'cpu', numel)`. Tensors sharing an `Arc` share one storage,
//! as aliased parameters do in PyTorch. Records are stored uncompressed and 64-byte aligned.
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use zip::CompressionMethod;
use zip::write::{SimpleFileOptions, ZipWriter};

/// Pickle opcodes used here.
mod op {
    pub const PROTO: u8 = 0x80;
    pub const EMPTY_DICT: u8 = b'}';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const MARK: u8 = b'(';
    pub const TUPLE: u8 = b't';
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const BINUNICODE: u8 = b'X';
    pub const GLOBAL: u8 = b'c';
    pub const REDUCE: u8 = b'R';
    pub const BINPERSID: u8 = b'Q';
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const BININT2: u8 = b'M';
    pub const NEWFALSE: u8 = 0x89;
    pub const SETITEM: u8 = b's';
    pub const SETITEMS: u8 = b'u';
    pub const STOP: u8 = b'.';
}

struct Pickle(Vec<u8>);

impl Pickle {
    fn string(&mut self, s: &str) {
        self.0.push(op::BINUNICODE);
        self.0.extend((s.len() as u32).to_le_bytes());
        self.0.extend(s.as_bytes());
    }

    fn global(&mut self, module: &str, name: &str) {
        self.0.push(op::GLOBAL);
        self.0.extend(format!("{module}\n{name}\n").as_bytes());
    }

    fn int(&mut self, v: usize) -> std::io::Result<()> {
        if v < 256 {
            self.0.extend([op::BININT1, v as u8]);
        } else if v < 65536 {
            self.0.push(op::BININT2);
            self.0.extend((v as u16).to_le_bytes());
        } else {
            let v = i32::try_from(v).map_err(|_| std::io::Error::other(format!("{v} does not fit a pickle int")))?;
            self.0.push(op::BININT);
            self.0.extend(v.to_le_bytes());
        }
        Ok(())
    }

    fn tuple(&mut self, values: &[usize]) -> std::io::Result<()> {
        match values.len() {
            0 => self.0.push(op::EMPTY_TUPLE),
            n @ 1..=3 => {
                for &v in values {
                    self.int(v)?;
                }
                self.0.push([op::TUPLE1, op::TUPLE2, op::TUPLE3][n - 1]);
            }
            _ => {
                self.0.push(op::MARK);
                for &v in values {
                    self.int(v)?;
                }
                self.0.push(op::TUPLE);
            }
        }
        Ok(())
    }

    fn ordered_dict(&mut self) {
        self.global("collections", "OrderedDict");
        self.0.extend([op::EMPTY_TUPLE, op::REDUCE]);
    }

    fn tensor(&mut self, key: &str, shape: &[usize]) -> std::io::Result<()> {
        let numel: usize = shape.iter().product();
        self.global("torch._utils", "_rebuild_tensor_v2");
        self.0.push(op::MARK);
        // Persistent id of the storage.
        self.0.push(op::MARK);
        self.string("storage");
        self.global("torch", "FloatStorage");
        self.string(key);
        self.string("cpu");
        self.int(numel)?;
        self.0.extend([op::TUPLE, op::BINPERSID]);
        self.int(0)?;
        self.tuple(shape)?;
        let mut stride = vec![1usize; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            stride[i] = stride[i + 1] * shape[i + 1];
        }
        self.tuple(&stride)?;
        self.0.push(op::NEWFALSE);
        self.ordered_dict();
        self.0.extend([op::TUPLE, op::REDUCE]);
        Ok(())
    }
}

/// One tensor of a state dict: name, PyTorch shape, row-major f32 values (aliases share the `Arc`).
pub type NamedTensor = (String, Vec<usize>, Arc<Vec<f32>>);

/// Writes `tensors` (name, PyTorch shape, row-major f32 values) as a state dict, nested under
/// `top_level_key` when given (`{'MyModel': state_dict}`), to `path`.
pub fn write_state_dict(path: &Path, top_level_key: Option<&str>, tensors: &[NamedTensor]) -> std::io::Result<()> {
    // One storage per distinct Arc.
    let mut storages: Vec<Arc<Vec<f32>>> = Vec::new();
    let mut keys = Vec::with_capacity(tensors.len());
    for (name, shape, values) in tensors {
        let n: usize = shape.iter().product();
        if values.len() != n {
            return Err(std::io::Error::other(format!("`{name}`: {} values for shape {shape:?}", values.len())));
        }
        let index = match storages.iter().position(|s| Arc::ptr_eq(s, values)) {
            Some(i) => i,
            None => {
                storages.push(values.clone());
                storages.len() - 1
            }
        };
        keys.push(index);
    }
    let mut p = Pickle(vec![op::PROTO, 2]);
    p.0.push(op::EMPTY_DICT);
    if let Some(key) = top_level_key {
        p.string(key);
        p.ordered_dict();
    }
    p.0.push(op::MARK);
    for ((name, shape, _), index) in tensors.iter().zip(&keys) {
        p.string(name);
        p.tensor(&index.to_string(), shape)?;
    }
    p.0.push(op::SETITEMS);
    if top_level_key.is_some() {
        p.0.push(op::SETITEM);
    }
    p.0.push(op::STOP);

    let archive = path.file_stem().and_then(|s| s.to_str()).filter(|s| !s.is_empty() && s.is_ascii()).unwrap_or("archive").to_string();
    let file = std::fs::File::create(path)?;
    let mut zip = ZipWriter::new(std::io::BufWriter::new(file));
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Stored).with_alignment(64).large_file(false);
    let record = |zip: &mut ZipWriter<_>, name: String, bytes: &[u8]| -> std::io::Result<()> {
        zip.start_file(name, options).map_err(std::io::Error::other)?;
        zip.write_all(bytes)
    };
    record(&mut zip, format!("{archive}/data.pkl"), &p.0)?;
    record(&mut zip, format!("{archive}/byteorder"), b"little")?;
    for (i, storage) in storages.iter().enumerate() {
        let bytes: Vec<u8> = storage.iter().flat_map(|v| v.to_le_bytes()).collect();
        record(&mut zip, format!("{archive}/data/{i}"), &bytes)?;
    }
    record(&mut zip, format!("{archive}/version"), b"3\n")?;
    zip.finish().map_err(std::io::Error::other)?.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_the_pytorch_reader() {
        let dir = std::env::temp_dir().join(format!("vlad-pth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("round_trip.pth");
        let shared = Arc::new(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let big = Arc::new((0..70_000).map(|i| i as f32 * 0.5).collect::<Vec<_>>());
        let tensors = vec![
            ("a.weight".to_string(), vec![2, 3], shared.clone()),
            ("alias.weight".to_string(), vec![2, 3], shared),
            ("scalar".to_string(), vec![], Arc::new(vec![2.5])),
            ("four_d".to_string(), vec![1, 2, 1, 35_000], big.clone()),
        ];
        write_state_dict(&path, Some("MyModel"), &tensors).unwrap();
        let file = vlad_clip::weights::WeightFile::open(&path, Some("MyModel")).unwrap();
        for (name, shape, values) in &tensors {
            let entry = &file.entries[name];
            assert_eq!(&entry.shape, shape, "{name}");
            assert_eq!(&entry.to_f32(name).unwrap(), values.as_ref(), "{name}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
