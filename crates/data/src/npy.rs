//! Reading the `.npy` arrays users hand to `vlad metrics` (scores, labels, maps, masks), safely.
//!
//! A strict reader of the subset numpy writes for these arrays (format versions 1–3, a header dict
//! with `descr`, `fortran_order` and `shape`, little-endian `f4` or one-byte `u1`/`b1` data) rather
//! than `npyz`: on hostile headers `npyz` 0.8 multiplies the shape unchecked (an overflow panic),
//! allocates the declared header length before reading it (up to 4 GiB) and parses the dict with a
//! recursive grammar. Here every size is checked against the bytes actually present before
//! anything is allocated, so reading never allocates more than the file's own size.

use std::fmt;

/// What went wrong reading a `.npy` array (the caller adds the file name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NpyError {
    /// Not a `.npy` file, or its header is damaged.
    Header(String),
    /// The dtype is not the one this input takes.
    Dtype { found: String, expected: &'static str },
    /// Fortran order for an array of rank > 1.
    FortranOrder,
    /// The shape's byte size overflows or exceeds the data present.
    Size { shape: Vec<u64>, declared: Option<u128>, present: u64 },
}

impl fmt::Display for NpyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NpyError::Header(why) => write!(f, "not a valid .npy file: {why}"),
            NpyError::Dtype { found, expected } => write!(f, "dtype {found}, expected {expected}"),
            NpyError::FortranOrder => write!(f, "Fortran-ordered array; save it C-ordered (np.ascontiguousarray)"),
            NpyError::Size { shape, declared: Some(bytes), present } => {
                write!(f, "shape {shape:?} needs {bytes} data bytes, the file holds {present}")
            }
            NpyError::Size { shape, declared: None, present } => {
                write!(f, "shape {shape:?} overflows any size (the file holds {present} data bytes)")
            }
        }
    }
}

impl std::error::Error for NpyError {}

/// The element types `vlad metrics` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NpyDtype {
    /// `<f4` (also `=f4`/`f4` on a little-endian writer).
    F32,
    /// `|u1`.
    U8,
    /// `|b1`.
    Bool,
}

/// A parsed header: dtype string, order and shape, and where the data starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    pub descr: String,
    pub fortran_order: bool,
    pub shape: Vec<u64>,
    pub data_offset: usize,
}

/// The largest header numpy itself reads without `allow_pickle`-style overrides (`max_header_size`,
/// numpy ≥ 1.24: 10000 bytes); we allow more, since rank-32 shapes are still small.
pub const MAX_HEADER_BYTES: usize = 65_536;
/// numpy's own maximum number of dimensions (NPY_MAXDIMS, numpy 2).
pub const MAX_RANK: usize = 64;

/// Parses the header of a `.npy` file held in `bytes`.
pub fn parse_header(bytes: &[u8]) -> Result<NpyHeader, NpyError> {
    let bad = |why: &str| NpyError::Header(why.to_string());
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("magic \\x93NUMPY not found"));
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad("truncated before the header length"));
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(NpyError::Header(format!("format version {v}.{} is not 1.0, 2.0 or 3.0", bytes[7]))),
    };
    if len > MAX_HEADER_BYTES {
        return Err(NpyError::Header(format!("header of {len} bytes (at most {MAX_HEADER_BYTES} accepted)")));
    }
    let end = start.checked_add(len).filter(|&e| e <= bytes.len()).ok_or_else(|| {
        NpyError::Header(format!("header of {len} bytes, only {} present", bytes.len().saturating_sub(start)))
    })?;
    // Version 3 is UTF-8, versions 1–2 Latin-1; the keys and values we accept are ASCII in both.
    let text = std::str::from_utf8(&bytes[start..end]).map_err(|_| bad("header is not text"))?;
    let mut parser = DictParser { text, pos: 0 };
    let (descr, fortran_order, shape) = parser.dict()?;
    Ok(NpyHeader { descr, fortran_order, shape, data_offset: end })
}

/// Checks dtype (one of `want`), order and size, and returns the dtype, the data bytes and the shape.
fn read_bytes<'a>(bytes: &'a [u8], want: &[NpyDtype], expected: &'static str) -> Result<(NpyDtype, &'a [u8], Vec<usize>), NpyError> {
    let header = parse_header(bytes)?;
    let dtype = match header.descr.as_str() {
        "<f4" | "=f4" | "f4" => Some(NpyDtype::F32),
        "|u1" | "<u1" | "=u1" | "u1" => Some(NpyDtype::U8),
        "|b1" | "<b1" | "=b1" | "b1" | "?" | "|?" => Some(NpyDtype::Bool),
        _ => None,
    };
    let dtype = match dtype {
        Some(d) if want.contains(&d) => d,
        _ => return Err(NpyError::Dtype { found: header.descr, expected }),
    };
    if header.fortran_order && header.shape.len() > 1 {
        return Err(NpyError::FortranOrder);
    }
    let item = if dtype == NpyDtype::F32 { 4u128 } else { 1 };
    let present = (bytes.len() - header.data_offset) as u64;
    let declared = header.shape.iter().try_fold(item, |acc, &d| acc.checked_mul(d as u128));
    match declared {
        Some(n) if n <= present as u128 => {}
        declared => return Err(NpyError::Size { shape: header.shape, declared, present }),
    }
    let n = declared.unwrap() as usize;
    let shape = header.shape.iter().map(|&d| d as usize).collect();
    Ok((dtype, &bytes[header.data_offset..header.data_offset + n], shape))
}

/// A little-endian float32 array and its shape.
pub fn read_f32(bytes: &[u8]) -> Result<(Vec<f32>, Vec<usize>), NpyError> {
    let (_, data, shape) = read_bytes(bytes, &[NpyDtype::F32], "float32 ('<f4')")?;
    let values = data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok((values, shape))
}

/// A uint8 or bool array (bool read as 0/1; any non-zero byte of a bool array counts as 1, as numpy
/// views it) and its shape.
pub fn read_u8_or_bool(bytes: &[u8]) -> Result<(Vec<u8>, Vec<usize>), NpyError> {
    let (dtype, data, shape) = read_bytes(bytes, &[NpyDtype::U8, NpyDtype::Bool], "uint8 ('|u1') or bool ('|b1')")?;
    let values = match dtype {
        NpyDtype::Bool => data.iter().map(|&b| u8::from(b != 0)).collect(),
        _ => data.to_vec(),
    };
    Ok((values, shape))
}

/// The header dict: `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }` in any key order,
/// with Python's spacing and trailing-comma freedom; nothing else (no nesting, no other keys).
struct DictParser<'a> {
    text: &'a str,
    pos: usize,
}

impl DictParser<'_> {
    fn err(&self, what: &str) -> NpyError {
        NpyError::Header(format!("{what} at header byte {}", self.pos))
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.text[self.pos..].chars().next() {
            if c == ' ' || c == '\n' || c == '\t' || c == '\r' {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.text[self.pos..].starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), NpyError> {
        if self.eat(c) { Ok(()) } else { Err(self.err(&format!("expected '{c}'"))) }
    }

    fn string(&mut self) -> Result<String, NpyError> {
        self.skip_ws();
        let quote = match self.text[self.pos..].chars().next() {
            Some(q @ ('\'' | '"')) => q,
            _ => return Err(self.err("expected a quoted string")),
        };
        let body = &self.text[self.pos + 1..];
        let close = body.find(quote).ok_or_else(|| self.err("unterminated string"))?;
        let value = &body[..close];
        if value.contains('\\') {
            return Err(self.err("escapes in a header string"));
        }
        self.pos += close + 2;
        Ok(value.to_string())
    }

    fn word(&mut self) -> &str {
        self.skip_ws();
        let start = self.pos;
        let rest = &self.text[start..];
        let len = rest.find(|c: char| !c.is_ascii_alphanumeric() && c != '_').unwrap_or(rest.len());
        self.pos += len;
        &self.text[start..start + len]
    }

    fn shape(&mut self) -> Result<Vec<u64>, NpyError> {
        let close = if self.eat('(') {
            ')'
        } else if self.eat('[') {
            ']'
        } else {
            return Err(self.err("expected a shape tuple"));
        };
        let mut dims = Vec::new();
        loop {
            if self.eat(close) {
                return Ok(dims);
            }
            let pos = self.pos;
            let word = self.word().to_string();
            let dim: u64 = word.parse().map_err(|_| {
                NpyError::Header(format!("shape entry {word:?} is not a non-negative integer at header byte {pos}"))
            })?;
            dims.push(dim);
            if dims.len() > MAX_RANK {
                return Err(self.err(&format!("more than {MAX_RANK} dimensions")));
            }
            if !self.eat(',') {
                self.expect(close)?;
                return Ok(dims);
            }
        }
    }

    fn dict(&mut self) -> Result<(String, bool, Vec<u64>), NpyError> {
        self.expect('{')?;
        let (mut descr, mut fortran, mut shape) = (None, None, None);
        loop {
            if self.eat('}') {
                break;
            }
            let key = self.string()?;
            self.expect(':')?;
            match key.as_str() {
                "descr" if descr.is_none() => descr = Some(self.string()?),
                "fortran_order" if fortran.is_none() => {
                    fortran = Some(match self.word() {
                        "True" => true,
                        "False" => false,
                        _ => return Err(self.err("fortran_order is not True or False")),
                    })
                }
                "shape" if shape.is_none() => shape = Some(self.shape()?),
                "descr" | "fortran_order" | "shape" => return Err(NpyError::Header(format!("key '{key}' given twice"))),
                other => return Err(NpyError::Header(format!("unexpected key '{other}' (a structured or object array?)"))),
            }
            if !self.eat(',') {
                self.expect('}')?;
                break;
            }
        }
        self.skip_ws();
        if self.pos != self.text.len() {
            return Err(self.err("text after the header dict"));
        }
        let missing = |k: &str| NpyError::Header(format!("header lacks the key '{k}'"));
        Ok((descr.ok_or_else(|| missing("descr"))?, fortran.ok_or_else(|| missing("fortran_order"))?, shape.ok_or_else(|| missing("shape"))?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(header: &str, data: &[u8]) -> Vec<u8> {
        let mut h = header.to_string();
        let unpadded = 10 + h.len() + 1;
        h.push_str(&" ".repeat((64 - unpadded % 64) % 64));
        h.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn reads_what_numpy_writes_and_matches_npyz() {
        let data: Vec<u8> = [1.5f32, -2.0, 3.25, 0.0, 7.0, 8.5].iter().flat_map(|v| v.to_le_bytes()).collect();
        let file = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", &data);
        let (values, shape) = read_f32(&file).unwrap();
        let reference = npyz::NpyFile::new(&file[..]).unwrap();
        assert_eq!(reference.shape(), &[2, 3]);
        assert_eq!(values, reference.into_vec::<f32>().unwrap());
        assert_eq!(shape, vec![2, 3]);
        let file = npy("{'descr': '|b1', 'fortran_order': False, 'shape': (4,), }", &[0, 1, 1, 0]);
        assert_eq!(read_u8_or_bool(&file).unwrap(), (vec![0, 1, 1, 0], vec![4]));
        let file = npy("{'descr': '|u1', 'fortran_order': True, 'shape': (3,), }", &[0, 9, 1]);
        assert_eq!(read_u8_or_bool(&file).unwrap(), (vec![0, 9, 1], vec![3]));
        let file = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", &1f32.to_le_bytes());
        assert_eq!(read_f32(&file).unwrap(), (vec![1.0], vec![]));
    }

    #[test]
    fn refuses_hostile_headers_by_name() {
        let file = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4611686018427387904, 4611686018427387904), }", &[0; 16]);
        let err = read_f32(&file).unwrap_err();
        assert!(matches!(err, NpyError::Size { declared: None, .. }), "{err}");
        let file = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }", &[0; 16]);
        assert_eq!(read_f32(&file).unwrap_err().to_string(), "shape [1000000, 1000000] needs 4000000000000 data bytes, the file holds 16");
        let file = npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", &[0; 16]);
        assert_eq!(read_f32(&file).unwrap_err().to_string(), "dtype <f8, expected float32 ('<f4')");
        let file = npy("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", &[0; 8]);
        assert!(matches!(read_f32(&file).unwrap_err(), NpyError::Dtype { .. }));
        let file = npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 1), }", &[0; 8]);
        assert_eq!(read_f32(&file).unwrap_err(), NpyError::FortranOrder);
        let nested = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {}, }}", "(".repeat(5000));
        assert!(matches!(read_f32(&npy(&nested, &[])).unwrap_err(), NpyError::Header(_)));
        let mut huge = b"\x93NUMPY\x02\x00\xff\xff\xff\xff".to_vec();
        huge.extend_from_slice(b"{}");
        assert_eq!(read_f32(&huge).unwrap_err().to_string(), "not a valid .npy file: header of 4294967295 bytes (at most 65536 accepted)");
        assert!(matches!(read_f32(b"\x93NUMPY\x01").unwrap_err(), NpyError::Header(_)));
        let file = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", &[0; 8]);
        assert!(read_f32(&file).unwrap_err().to_string().contains("unexpected key 'x'"));
    }
}
