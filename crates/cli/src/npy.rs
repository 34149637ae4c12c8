//! `.npy` input/output for the CLI contract: little-endian, C order, version 1.0 headers.
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Writes f32 values with `shape` as a v1.0 `.npy` file (refuses to replace an existing file
/// unless `overwrite`).
pub fn write_f32(path: &Path, shape: &[usize], values: &[f32], overwrite: bool) -> Result<()> {
    let expected: usize = shape.iter().product();
    if expected != values.len() {
        bail!("internal: {} values do not fill shape {shape:?}", values.len());
    }
    if path.exists() && !overwrite {
        bail!("{}: already exists (pass --force to replace it)", path.display());
    }
    let dims = match shape {
        [one] => format!("({one},)"),
        _ => format!("({})", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n' is padded to a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + values.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut f = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(&out).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_header_alignment() {
        let dir = std::env::temp_dir().join(format!("vlad-npy-{}", std::process::id()));
        let path = dir.join("a.npy");
        write_f32(&path, &[2, 3], &[1., 2., 3., 4., 5., 6.], true).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        // Read back by the reader of `vlad metrics`.
        assert_eq!(crate::cmd::metrics::read_f32(&path).unwrap(), (vec![1., 2., 3., 4., 5., 6.], vec![2, 3]));
        assert!(write_f32(&path, &[1], &[0.], false).unwrap_err().to_string().contains("already exists"));
        std::fs::remove_dir_all(dir).ok();
    }
}
