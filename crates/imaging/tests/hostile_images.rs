//! Decompression bombs (tests/fixtures/hostile, written by tools/fixtures/hostile.py) are refused
//! from their headers, before any buffer proportional to the declared size exists.

use std::path::PathBuf;

use vlad_imaging::{ImageLimits, ImagingError, checked_dimensions, decode_luma, decode_rgb, decode_rgb_with_limits, image_dimensions, open_rgb};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hostile").join(name)
}

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

const BOMBS: [(&str, &str, u32, u32); 4] = [
    ("bomb.png", "PNG", 100_000, 100_000),
    ("bomb.jpg", "JPEG", 65_500, 65_500),
    ("bomb.tiff", "TIFF", 100_000, 100_000),
    ("bomb.bmp", "BMP", 65_535, 65_535),
];

#[test]
fn bombs_are_refused_by_name_from_the_header() {
    for (name, format, w, h) in BOMBS {
        let data = bytes(name);
        assert_eq!(image_dimensions(&data).unwrap(), (w, h), "{name}");
        let header = checked_dimensions(&data, &ImageLimits::default()).unwrap_err();
        assert!(matches!(header, ImagingError::TooManyPixels { format: f, .. } if f == format), "{name}: {header:?}");
        assert_eq!(checked_dimensions(&data, &ImageLimits::none()).unwrap(), (w, h), "{name}");
        for err in [decode_rgb(&data).map(|_| ()).unwrap_err(), decode_luma(&data).map(|_| ()).unwrap_err()] {
            match &err {
                ImagingError::TooManyPixels { format: f, width, height, pixels, limit } => {
                    assert_eq!((*f, *width, *height), (format, w, h), "{name}");
                    assert_eq!(*pixels, w as u64 * h as u64);
                    assert_eq!(*limit, 2 * 89_478_485, "Pillow's refusal threshold");
                }
                other => panic!("{name}: expected TooManyPixels, got {other:?}"),
            }
            let text = err.to_string();
            assert!(text.contains(&format!("{w}x{h}")) && text.contains("decompression bomb") && text.contains("--max-image-pixels"), "{text}");
        }
        let err = open_rgb(&fixture(name)).unwrap_err().to_string();
        assert!(err.contains(name) && err.contains("decompression bomb"), "{err}");
    }
}

#[test]
fn a_lower_limit_refuses_what_pillow_only_warns_about() {
    let data = bytes("large_10000.png");
    let pillow = ImageLimits { max_image_pixels: Some(89_478_485) };
    assert_eq!(pillow.check("PNG", 10_000, 10_000).map_err(|e| e.to_string()), Ok(()));
    assert!(pillow.warning(10_000, 10_000).is_some(), "100 M pixels is above Pillow's warning threshold");
    let strict = ImageLimits { max_image_pixels: Some(40_000_000) };
    let err = decode_rgb_with_limits(&data, &strict).unwrap_err();
    assert!(matches!(err, ImagingError::TooManyPixels { limit: 80_000_000, .. }), "{err}");
}

/// Found by `vlad-fuzz`: a TIFF field declaring more values than the file holds made the `tiff`
/// crate reserve up to 256 MiB while opening a 500-byte file, before any limit applied.
#[test]
fn tiff_fields_declaring_more_bytes_than_the_file_are_refused() {
    for (name, count, len) in [("tiff_field_count.tiff", 0x7fff_ffffu64, 150u64), ("bigtiff_field_count.tiff", 1 << 40, 248)] {
        let data = bytes(name);
        let errors = [
            image_dimensions(&data).map(|_| ()).unwrap_err(),
            decode_rgb(&data).map(|_| ()).unwrap_err(),
            decode_luma(&data).map(|_| ()).unwrap_err(),
        ];
        for err in errors {
            assert!(matches!(err, ImagingError::Decode { format: "TIFF", .. }), "{name}: {err:?}");
            let text = err.to_string();
            let expected = format!("field 305 declares {count} values ({count} bytes) but the whole file has {len} bytes");
            assert!(text.contains(&expected), "{name}: {text}");
        }
    }
    let err = decode_luma(&bytes("bigtiff_unknown_type.tiff")).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("BigTIFF field 305 has the unknown type 99"), "{err}");
    // The same file with an honest count decodes: the check refuses only impossible counts.
    for name in ["tiff_field_ok.tiff", "bigtiff_field_ok.tiff"] {
        let ok = decode_luma(&bytes(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ok.dimensions(), (4, 4), "{name}");
        assert!(ok.pixels().all(|p| p.0 == [0x80]), "{name}");
    }
}

/// Peak resident memory of this test process (every test in this file runs in it).
#[cfg(target_os = "linux")]
#[test]
fn refusing_bombs_allocates_nothing_large() {
    for _ in 0..3 {
        for name in BOMBS.map(|b| b.0).into_iter().chain(["tiff_field_count.tiff", "bigtiff_field_count.tiff"]) {
            let data = bytes(name);
            assert!(decode_rgb(&data).is_err() && decode_luma(&data).is_err());
        }
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    eprintln!("peak RSS after refusing the bombs: {} MB", hwm_kb / 1024);
    assert!(hwm_kb < 100 * 1024, "peak RSS {hwm_kb} kB, expected < 100 MB");
}
