//! Decoding to the pixel values that Pillow's `Image.open(...)` holds, and its `convert("RGB")`
//! and `convert("L")` (Pillow 13, `Convert.c`).
//!
//! What Pillow does, per source layout:
//! * grey 1-bit (mode "1"): 0 → 0, 1 → 255; grey 2/4-bit: scaled by 85 / 17; grey 8-bit: as is.
//! * grey 16-bit (PNG, TIFF; mode "I;16"): **clipped** to 255 (`v > 255 → 255`), not shifted.
//! * RGB, RGBA, grey+alpha with 16 bits per sample: the high byte (Pillow unpacks with
//!   "RGB;16B", "RGBA;16B", "LA;16B", ...).
//! * alpha is dropped, never composited; palette images look up their colours (indices past the
//!   end of the palette are black); transparency chunks change nothing.
//! * "L" from colour is ITU-R 601-2 luma in Pillow's integer form
//!   `(19595 R + 38470 G + 7471 B + 0x8000) >> 16`, also for palette entries.
//! * JPEG (libjpeg-turbo in Pillow's wheels, zune-jpeg here) differs by a few levels: the
//!   inverse DCT and chroma upsampling are not the same code. CMYK JPEGs are inverted and
//!   converted with `nk − nk·C/255` (Pillow) which equals zune-jpeg's `C'·K'/255` on the stored
//!   values.
//! * EXIF orientation is ignored, as `Image.open` does.

use std::borrow::Cow;
use std::io::Cursor;

use image::{DynamicImage, GrayAlphaImage, GrayImage, ImageBuffer, Luma, RgbImage, RgbaImage};

use crate::limits::ImageLimits;
use crate::ImagingError;

/// A 256-entry RGB palette (Pillow's palettes always have 256 entries; missing ones are black).
type Palette = Box<[[u8; 3]; 256]>;

/// Pixel data as Pillow holds it after `Image.open`, before any conversion.
enum PilImage {
    /// Modes "1" and "L" (1-, 2- and 4-bit grey already expanded to 0..=255).
    L(GrayImage),
    /// Mode "LA" (and 16-bit grey+alpha reduced to its high bytes).
    La(GrayAlphaImage),
    /// Mode "I;16": 16-bit grey.
    I16(ImageBuffer<Luma<u16>, Vec<u16>>),
    /// Mode "RGB".
    Rgb(RgbImage),
    /// Mode "RGBA".
    Rgba(RgbaImage),
    /// Mode "P": one index per pixel into a 256-entry palette.
    P {
        indices: GrayImage,
        palette: Palette,
    },
}

/// ITU-R 601-2 luma with Pillow's integer weights and rounding (`L24(rgb) >> 16`).
pub(crate) fn luma_of(r: u8, g: u8, b: u8) -> u8 {
    let weighted = u32::from(r) * 19595 + u32::from(g) * 38470 + u32::from(b) * 7471 + 0x8000;
    (weighted >> 16) as u8
}

/// Pillow's `I;16 → L` and `I;16 → RGB`: values above 255 saturate.
fn clip_u16(v: u16) -> u8 {
    v.min(255) as u8
}

impl PilImage {
    /// `convert("RGB")`.
    fn into_rgb(self) -> RgbImage {
        match self {
            PilImage::Rgb(img) => img,
            PilImage::L(img) => map_pixels(&img, |p| {
                let v = p[0];
                [v, v, v]
            }),
            PilImage::La(img) => map_pixels(&img, |p| {
                let v = p[0];
                [v, v, v]
            }),
            PilImage::I16(img) => map_pixels(&img, |p| {
                let v = clip_u16(p[0]);
                [v, v, v]
            }),
            PilImage::Rgba(img) => map_pixels(&img, |p| [p[0], p[1], p[2]]),
            PilImage::P { indices, palette } => {
                map_pixels(&indices, |p| palette[usize::from(p[0])])
            }
        }
    }

    /// `convert("L")`.
    fn into_luma(self) -> GrayImage {
        match self {
            PilImage::L(img) => img,
            PilImage::La(img) => map_gray(&img, |p| p[0]),
            PilImage::I16(img) => map_gray(&img, |p| clip_u16(p[0])),
            PilImage::Rgb(img) => map_gray(&img, |p| luma_of(p[0], p[1], p[2])),
            PilImage::Rgba(img) => map_gray(&img, |p| luma_of(p[0], p[1], p[2])),
            PilImage::P { indices, palette } => {
                let lumas: Vec<u8> = palette.iter().map(|&[r, g, b]| luma_of(r, g, b)).collect();
                map_gray(&indices, |p| lumas[usize::from(p[0])])
            }
        }
    }
}

fn map_pixels<P: image::Pixel>(
    img: &ImageBuffer<P, Vec<P::Subpixel>>,
    f: impl Fn(&[P::Subpixel]) -> [u8; 3],
) -> RgbImage {
    let (width, height) = img.dimensions();
    let channels = usize::from(P::CHANNEL_COUNT);
    let data = img.as_raw().chunks_exact(channels).flat_map(f).collect();
    RgbImage::from_raw(width, height, data).expect("three bytes per pixel")
}

fn map_gray<P: image::Pixel>(
    img: &ImageBuffer<P, Vec<P::Subpixel>>,
    f: impl Fn(&[P::Subpixel]) -> u8,
) -> GrayImage {
    let (width, height) = img.dimensions();
    let channels = usize::from(P::CHANNEL_COUNT);
    let data = img.as_raw().chunks_exact(channels).map(f).collect();
    GrayImage::from_raw(width, height, data).expect("one byte per pixel")
}

/// Decodes encoded image bytes (PNG, JPEG, TIFF, BMP) to RGB exactly as
/// `PIL.Image.open(...).convert("RGB")` does (see the module notes; JPEG differs slightly).
/// The process-wide pixel limit ([`crate::max_image_pixels`]) applies.
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, ImagingError> {
    decode_rgb_with_limits(bytes, &ImageLimits::current())
}

/// Decodes encoded image bytes to 8-bit grey exactly as `PIL.Image.open(...).convert("L")`
/// does (see the module notes; JPEG differs slightly). The process-wide pixel limit applies.
pub fn decode_luma(bytes: &[u8]) -> Result<GrayImage, ImagingError> {
    decode_luma_with_limits(bytes, &ImageLimits::current())
}

/// [`decode_rgb`] under explicit limits instead of the process-wide ones.
pub fn decode_rgb_with_limits(bytes: &[u8], limits: &ImageLimits) -> Result<RgbImage, ImagingError> {
    Ok(decode_pil(bytes, limits)?.into_rgb())
}

/// [`decode_luma`] under explicit limits instead of the process-wide ones.
pub fn decode_luma_with_limits(bytes: &[u8], limits: &ImageLimits) -> Result<GrayImage, ImagingError> {
    Ok(decode_pil(bytes, limits)?.into_luma())
}

/// Reads and decodes an image file like `PIL.Image.open(path).convert("RGB")`; errors name
/// the file.
pub fn open_rgb(path: &std::path::Path) -> Result<RgbImage, ImagingError> {
    let bytes = read_file(path)?;
    decode_rgb(&bytes).map_err(|e| e.in_file(path))
}

/// Reads and decodes an image file like `PIL.Image.open(path).convert("L")`; errors name the
/// file.
pub fn open_luma(path: &std::path::Path) -> Result<GrayImage, ImagingError> {
    let bytes = read_file(path)?;
    decode_luma(&bytes).map_err(|e| e.in_file(path))
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, ImagingError> {
    std::fs::read(path).map_err(|source| ImagingError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// RGB from a browser canvas' RGBA bytes (`ImageData.data`, not premultiplied): alpha is
/// dropped, as Pillow's `convert("RGB")` does for "RGBA".
pub fn rgb_from_rgba_bytes(rgba: &[u8], width: u32, height: u32) -> Result<RgbImage, ImagingError> {
    let expected = (width as usize)
        .checked_mul(height as usize)
        .and_then(|n| n.checked_mul(4));
    if expected != Some(rgba.len()) {
        return Err(ImagingError::BufferLength {
            what: "RGBA buffer",
            expected: expected.unwrap_or(usize::MAX),
            found: rgba.len(),
            width,
            height,
        });
    }
    let data = rgba
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    Ok(RgbImage::from_raw(width, height, data).expect("length checked above"))
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Width and height from the header alone (nothing proportional to the size is allocated).
pub fn image_dimensions(bytes: &[u8]) -> Result<(u32, u32), ImagingError> {
    if bytes.starts_with(PNG_SIGNATURE) {
        let reader = png::Decoder::new(Cursor::new(bytes)).read_info().map_err(png_error)?;
        return Ok((reader.info().width, reader.info().height));
    }
    let (format, format_name) = guess(bytes)?;
    if format == image::ImageFormat::Tiff {
        tiff_palette::check_value_sizes(bytes)?;
    }
    image::ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|e| ImagingError::Decode { format: format_name, message: e.to_string() })
}

/// Width and height from the header alone, refused as decoding would refuse them: above twice
/// `limits.max_image_pixels` the error names the format, the size and the limit. For callers
/// that decode elsewhere (the page hands uploads to the browser's decoder) but must keep the
/// same limit.
pub fn checked_dimensions(bytes: &[u8], limits: &ImageLimits) -> Result<(u32, u32), ImagingError> {
    check_raw_header(bytes, limits)?;
    let format = if bytes.starts_with(PNG_SIGNATURE) { "PNG" } else { guess(bytes)?.1 };
    let (width, height) = image_dimensions(bytes)?;
    limits.check(format, width, height)?;
    Ok((width, height))
}

/// Format, width and height of a PNG (its IHDR chunk, the first by the specification) or a BMP
/// (its DIB header), read directly from the bytes. The limit must be checked before the
/// decoders read these headers: on 32-bit targets (wasm32, the page) the `png` and BMP
/// decoders fail on a bomb's size with messages that do not say why.
fn raw_header_size(bytes: &[u8]) -> Option<(&'static str, u32, u32)> {
    let u32_le = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    let u16_le = |at: usize| Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?));
    if bytes.starts_with(PNG_SIGNATURE) {
        if bytes.get(8..16)? != b"\0\0\0\x0dIHDR" {
            return None;
        }
        let width = u32::from_be_bytes(bytes.get(16..20)?.try_into().ok()?);
        let height = u32::from_be_bytes(bytes.get(20..24)?.try_into().ok()?);
        return Some(("PNG", width, height));
    }
    if bytes.starts_with(b"BM") {
        // BITMAPCOREHEADER (12 bytes) has 16-bit sides; the later headers signed 32-bit ones,
        // the height negative for top-down rows.
        return match u32_le(14)? {
            12 => Some(("BMP", u32::from(u16_le(18)?), u32::from(u16_le(20)?))),
            n if n >= 40 => {
                let width = u32_le(18)? as i32;
                let height = u32_le(22)? as i32;
                Some(("BMP", width.unsigned_abs(), height.unsigned_abs()))
            }
            _ => None,
        };
    }
    None
}

/// Refuses, from the raw header, a PNG or BMP above the limit (see [`raw_header_size`]).
fn check_raw_header(bytes: &[u8], limits: &ImageLimits) -> Result<(), ImagingError> {
    match raw_header_size(bytes) {
        Some((format, width, height)) => limits.check(format, width, height),
        None => Ok(()),
    }
}

/// The container of non-PNG bytes, with its name for messages.
fn guess(bytes: &[u8]) -> Result<(image::ImageFormat, &'static str), ImagingError> {
    // `image` guesses classic TIFF only; its TIFF decoder also reads BigTIFF (as Pillow does).
    let big_tiff = bytes.starts_with(b"II+\0") || bytes.starts_with(b"MM\0+");
    let format = if big_tiff { Ok(image::ImageFormat::Tiff) } else { image::guess_format(bytes) };
    let format = format.map_err(|_| ImagingError::UnknownFormat {
        start: bytes
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" "),
    })?;
    let format_name = match format {
        image::ImageFormat::Jpeg => "JPEG",
        image::ImageFormat::Tiff => "TIFF",
        image::ImageFormat::Bmp => "BMP",
        other => {
            return Err(ImagingError::UnknownFormat {
                start: format!("{other:?} data, which is not enabled"),
            });
        }
    };
    Ok((format, format_name))
}

/// Pillow's `DecompressionBombWarning`, on standard error (natively; the browser has none).
fn warn_if_large(limits: &ImageLimits, width: u32, height: u32) {
    if let Some(warning) = limits.warning(width, height) {
        #[cfg(not(target_arch = "wasm32"))]
        eprintln!("warning: {warning}");
        #[cfg(target_arch = "wasm32")]
        let _ = warning;
    }
}

fn decode_pil(bytes: &[u8], limits: &ImageLimits) -> Result<PilImage, ImagingError> {
    if bytes.starts_with(PNG_SIGNATURE) {
        return decode_png(bytes, limits);
    }
    let (format, format_name) = guess(bytes)?;
    check_raw_header(bytes, limits)?;
    if format == image::ImageFormat::Tiff {
        tiff_palette::check_value_sizes(bytes)?;
    }
    // The `tiff` crate does not decode palette images: decode the indices as grey and apply
    // the colour map here.
    let (to_decode, tiff_palette) = match format {
        image::ImageFormat::Tiff => match tiff_palette::split(bytes) {
            Some((patched, palette)) => (Cow::Owned(patched), Some(palette)),
            None => (Cow::Borrowed(bytes), None),
        },
        _ => (Cow::Borrowed(bytes), None),
    };
    let decode_error = |e: image::ImageError| ImagingError::Decode {
        format: format_name,
        message: e.to_string(),
    };
    // The size comes from the header alone; it is checked before the decoder allocates
    // anything proportional to it, and the decoder itself is held to the same budget.
    let reader = || image::ImageReader::with_format(Cursor::new(&to_decode[..]), format);
    let (width, height) = reader().into_dimensions().map_err(decode_error)?;
    limits.check(format_name, width, height)?;
    warn_if_large(limits, width, height);
    let mut reader = reader();
    reader.limits(limits.decoder_limits());
    let decoded = reader.decode().map_err(decode_error)?;
    let mut pil = from_dynamic(decoded, format_name)?;
    if let Some(palette) = tiff_palette {
        let PilImage::L(indices) = pil else {
            return Err(ImagingError::UnsupportedLayout {
                format: format_name,
                layout: "palette image whose indices are not 8-bit".into(),
            });
        };
        pil = PilImage::P { indices, palette };
    }
    if let Some(layout) = (format == image::ImageFormat::Bmp)
        .then(|| bmp16::layout(bytes))
        .flatten()
    {
        match &mut pil {
            PilImage::Rgb(img) => bmp16::rescale_to_pillow(img, 3, layout),
            PilImage::Rgba(img) => bmp16::rescale_to_pillow(img, 4, layout),
            _ => {}
        }
    }
    Ok(pil)
}

/// Maps the `image` crate's decoded buffer to Pillow's post-`open` pixel data.
fn from_dynamic(img: DynamicImage, format: &'static str) -> Result<PilImage, ImagingError> {
    let high_byte = |v: &u16| (v >> 8) as u8;
    Ok(match img {
        DynamicImage::ImageLuma8(img) => PilImage::L(img),
        DynamicImage::ImageLumaA8(img) => PilImage::La(img),
        DynamicImage::ImageRgb8(img) => PilImage::Rgb(img),
        DynamicImage::ImageRgba8(img) => PilImage::Rgba(img),
        DynamicImage::ImageLuma16(img) => PilImage::I16(img),
        DynamicImage::ImageLumaA16(img) => {
            let (w, h) = img.dimensions();
            let data = img.as_raw().iter().map(high_byte).collect();
            PilImage::La(GrayAlphaImage::from_raw(w, h, data).expect("same length"))
        }
        DynamicImage::ImageRgb16(img) => {
            let (w, h) = img.dimensions();
            let data = img.as_raw().iter().map(high_byte).collect();
            PilImage::Rgb(RgbImage::from_raw(w, h, data).expect("same length"))
        }
        DynamicImage::ImageRgba16(img) => {
            let (w, h) = img.dimensions();
            let data = img.as_raw().iter().map(high_byte).collect();
            PilImage::Rgba(RgbaImage::from_raw(w, h, data).expect("same length"))
        }
        other => {
            return Err(ImagingError::UnsupportedLayout {
                format,
                layout: format!("{:?}", other.color()),
            });
        }
    })
}

fn png_error(e: png::DecodingError) -> ImagingError {
    ImagingError::Decode {
        format: "PNG",
        message: e.to_string(),
    }
}

/// PNG through the `png` crate without transformations, so colour type and bit depth decide
/// the conversion exactly as they do in Pillow's `PngImagePlugin`.
fn decode_png(bytes: &[u8], limits: &ImageLimits) -> Result<PilImage, ImagingError> {
    use png::{BitDepth, ColorType};

    check_raw_header(bytes, limits)?;
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder.read_info().map_err(png_error)?;
    // The header's size decides the output buffer below: check it before allocating.
    let info = reader.info();
    limits.check("PNG", info.width, info.height)?;
    warn_if_large(limits, info.width, info.height);
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| ImagingError::Decode {
            format: "PNG",
            message: "image too large for this platform".into(),
        })?;
    let mut buffer = vec![0u8; size];
    let frame = reader.next_frame(&mut buffer).map_err(png_error)?;
    let (width, height) = (frame.width, frame.height);
    let (w, h) = (width as usize, height as usize);
    let lines = buffer.chunks_exact(frame.line_size.max(1)).take(h);
    let bits = frame.bit_depth as u8;

    let unpack = |scale: Option<u8>| -> Vec<u8> {
        // Samples of fewer than 8 bits, most significant first, rows padded to whole bytes.
        let per_byte = 8 / usize::from(bits);
        let mask = (1u16 << bits) as u8 - 1;
        let mut out = Vec::with_capacity(w * h);
        for line in lines.clone() {
            for x in 0..w {
                let byte = line[x / per_byte];
                let shift = 8 - bits as usize * (x % per_byte + 1);
                let value = (byte >> shift) & mask;
                out.push(match scale {
                    Some(factor) => value * factor,
                    None => value,
                });
            }
        }
        out
    };
    let rows_of = |bytes_per_pixel: usize| -> Vec<u8> {
        lines
            .clone()
            .flat_map(|line| &line[..w * bytes_per_pixel])
            .copied()
            .collect()
    };
    let high_bytes = |samples_per_pixel: usize| -> Vec<u8> {
        rows_of(samples_per_pixel * 2)
            .chunks_exact(2)
            .map(|s| s[0])
            .collect()
    };
    let gray = |data: Vec<u8>| GrayImage::from_raw(width, height, data).expect("w*h bytes");

    Ok(match (frame.color_type, frame.bit_depth) {
        (ColorType::Grayscale, BitDepth::Eight) => PilImage::L(gray(rows_of(1))),
        // Mode "1" (bit2l/bit2rgb map 1 → 255), "L;2" (× 0x55) and "L;4" (× 0x11).
        (ColorType::Grayscale, BitDepth::One) => PilImage::L(gray(unpack(Some(255)))),
        (ColorType::Grayscale, BitDepth::Two) => PilImage::L(gray(unpack(Some(0x55)))),
        (ColorType::Grayscale, BitDepth::Four) => PilImage::L(gray(unpack(Some(0x11)))),
        (ColorType::Grayscale, BitDepth::Sixteen) => {
            let data = rows_of(2)
                .chunks_exact(2)
                .map(|s| u16::from_be_bytes([s[0], s[1]]))
                .collect();
            PilImage::I16(ImageBuffer::from_raw(width, height, data).expect("w*h samples"))
        }
        (ColorType::GrayscaleAlpha, BitDepth::Eight) => PilImage::La(
            GrayAlphaImage::from_raw(width, height, rows_of(2)).expect("2 bytes per pixel"),
        ),
        (ColorType::GrayscaleAlpha, BitDepth::Sixteen) => PilImage::La(
            GrayAlphaImage::from_raw(width, height, high_bytes(2)).expect("2 bytes per pixel"),
        ),
        (ColorType::Rgb, BitDepth::Eight) => {
            PilImage::Rgb(RgbImage::from_raw(width, height, rows_of(3)).expect("3 bytes per pixel"))
        }
        (ColorType::Rgb, BitDepth::Sixteen) => PilImage::Rgb(
            RgbImage::from_raw(width, height, high_bytes(3)).expect("3 bytes per pixel"),
        ),
        (ColorType::Rgba, BitDepth::Eight) => PilImage::Rgba(
            RgbaImage::from_raw(width, height, rows_of(4)).expect("4 bytes per pixel"),
        ),
        (ColorType::Rgba, BitDepth::Sixteen) => PilImage::Rgba(
            RgbaImage::from_raw(width, height, high_bytes(4)).expect("4 bytes per pixel"),
        ),
        (ColorType::Indexed, depth) => {
            let indices = if depth == BitDepth::Eight {
                rows_of(1)
            } else {
                unpack(None)
            };
            let mut palette = Box::new([[0u8; 3]; 256]);
            if let Some(entries) = reader.info().palette.as_deref() {
                for (slot, rgb) in palette.iter_mut().zip(entries.chunks_exact(3)) {
                    *slot = [rgb[0], rgb[1], rgb[2]];
                }
            }
            PilImage::P {
                indices: gray(indices),
                palette,
            }
        }
        (color, depth) => {
            return Err(ImagingError::UnsupportedLayout {
                format: "PNG",
                layout: format!("{color:?} at {depth:?}"),
            });
        }
    })
}

/// 8-bit palette TIFFs (PhotometricInterpretation 3), which the `tiff` crate rejects.
mod tiff_palette {
    const PHOTOMETRIC: u16 = 262;
    const BITS_PER_SAMPLE: u16 = 258;
    const SAMPLES_PER_PIXEL: u16 = 277;
    const COLOR_MAP: u16 = 320;
    const PALETTE: u16 = 3;
    const BLACK_IS_ZERO: u16 = 1;

    struct Reader<'a> {
        bytes: &'a [u8],
        big_endian: bool,
    }

    impl Reader<'_> {
        fn u16_at(&self, at: usize) -> Option<u16> {
            let raw: [u8; 2] = self.bytes.get(at..at.checked_add(2)?)?.try_into().ok()?;
            Some(if self.big_endian {
                u16::from_be_bytes(raw)
            } else {
                u16::from_le_bytes(raw)
            })
        }

        fn u32_at(&self, at: usize) -> Option<u32> {
            let raw: [u8; 4] = self.bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
            Some(if self.big_endian {
                u32::from_be_bytes(raw)
            } else {
                u32::from_le_bytes(raw)
            })
        }
    }

    /// Bytes per value of the TIFF field types (TIFF 6.0 and BigTIFF); 0 for unknown types.
    fn type_size(field_type: u16) -> u64 {
        match field_type {
            1 | 2 | 6 | 7 => 1,
            3 | 8 => 2,
            4 | 9 | 11 | 13 => 4,
            5 | 10 | 12 | 16 | 17 | 18 => 8,
            _ => 0,
        }
    }

    /// Refuses a TIFF whose first directory declares a field with more bytes than the file
    /// holds. The `tiff` crate reserves room for a field's declared values before reading them,
    /// while it opens the file and before any limit can be set: up to 256 MiB for a 500-byte
    /// file (found by `vlad-fuzz`). A real field's values are in the file, so a count above the
    /// file's length is a damaged or hostile file.
    pub(super) fn check_value_sizes(bytes: &[u8]) -> Result<(), crate::ImagingError> {
        let big_endian = match bytes.get(..2) {
            Some(b"II") => false,
            Some(b"MM") => true,
            _ => return Ok(()), // not TIFF: the decoder names the problem
        };
        let reader = Reader { bytes, big_endian };
        let u64_at = |at: usize| -> Option<u64> {
            let raw: [u8; 8] = bytes.get(at..at.checked_add(8)?)?.try_into().ok()?;
            Some(if big_endian { u64::from_be_bytes(raw) } else { u64::from_le_bytes(raw) })
        };
        // (IFD offset, entry count, entry size, where the count sits in an entry, count width)
        let layout = match reader.u16_at(2) {
            Some(42) => reader.u32_at(4).and_then(|ifd| {
                let ifd = usize::try_from(ifd).ok()?;
                Some((ifd.checked_add(2)?, u64::from(reader.u16_at(ifd)?), 12usize, false))
            }),
            Some(43) => u64_at(8).and_then(|ifd| {
                let ifd = usize::try_from(ifd).ok()?;
                Some((ifd.checked_add(8)?, u64_at(ifd)?, 20usize, true))
            }),
            _ => None,
        };
        // A directory that cannot be read is the decoder's error to report.
        let Some((first_entry, entries, entry_size, big)) = layout else { return Ok(()) };
        let file_len = bytes.len() as u64;
        for i in 0..entries.min(file_len / entry_size as u64) {
            // Checked: on wasm32 an offset near 4 GiB would wrap.
            let Some(entry) = usize::try_from(i).ok().and_then(|i| first_entry.checked_add(entry_size * i)) else {
                break;
            };
            let (Some(tag), Some(field_type)) = (reader.u16_at(entry), reader.u16_at(entry + 2)) else {
                break;
            };
            if big && type_size(field_type) == 0 {
                // `tiff` 0.11 skips 8 bytes of an unknown-type entry where BigTIFF has 16, and so
                // reads the rest of the directory out of frame (found by `vlad-fuzz`).
                return Err(crate::ImagingError::Decode {
                    format: "TIFF",
                    message: format!("BigTIFF field {tag} has the unknown type {field_type}, which the decoder cannot skip"),
                });
            }
            let count = if big { u64_at(entry + 4) } else { reader.u32_at(entry + 4).map(u64::from) };
            let Some(count) = count else { break };
            let declared = count.saturating_mul(type_size(field_type));
            if declared > file_len {
                return Err(crate::ImagingError::Decode {
                    format: "TIFF",
                    message: format!(
                        "field {tag} declares {count} values ({declared} bytes) but the whole file has {file_len} bytes"
                    ),
                });
            }
        }
        Ok(())
    }

    /// For a classic TIFF whose first image is an 8-bit, one-sample palette image: a copy of
    /// the bytes with PhotometricInterpretation set to BlackIsZero, and the palette reduced to
    /// 8 bits the way Pillow does (`value // 256`). `None` for every other TIFF.
    pub(super) fn split(bytes: &[u8]) -> Option<(Vec<u8>, super::Palette)> {
        let big_endian = match bytes.get(..2)? {
            b"II" => false,
            b"MM" => true,
            _ => return None,
        };
        let reader = Reader { bytes, big_endian };
        if reader.u16_at(2)? != 42 {
            return None;
        }
        let ifd = reader.u32_at(4)? as usize;
        let entries = usize::from(reader.u16_at(ifd)?);
        let (mut photometric_at, mut color_map_at, mut bits, mut samples) = (None, None, None, 1);
        for i in 0..entries {
            let entry = ifd.checked_add(2 + 12 * i)?;
            let (tag, count) = (reader.u16_at(entry)?, reader.u32_at(entry.checked_add(4)?)?);
            // SHORT values of count 1 sit in the first two bytes of the value field.
            match tag {
                PHOTOMETRIC if reader.u16_at(entry + 8)? == PALETTE => {
                    photometric_at = Some(entry + 8)
                }
                BITS_PER_SAMPLE if count == 1 => bits = Some(reader.u16_at(entry + 8)?),
                SAMPLES_PER_PIXEL => samples = reader.u16_at(entry + 8)?,
                COLOR_MAP if count == 3 * 256 => {
                    color_map_at = Some(reader.u32_at(entry + 8)? as usize)
                }
                _ => {}
            }
        }
        let (photometric_at, color_map_at) = (photometric_at?, color_map_at?);
        if bits != Some(8) || samples != 1 {
            return None;
        }
        let mut palette = Box::new([[0u8; 3]; 256]);
        for (i, rgb) in palette.iter_mut().enumerate() {
            for (c, value) in rgb.iter_mut().enumerate() {
                *value = (reader.u16_at(color_map_at.checked_add(2 * (c * 256 + i))?)? / 256) as u8;
            }
        }
        let mut patched = bytes.to_vec();
        let value = if big_endian {
            BLACK_IS_ZERO.to_be_bytes()
        } else {
            BLACK_IS_ZERO.to_le_bytes()
        };
        patched[photometric_at..photometric_at + 2].copy_from_slice(&value);
        Some((patched, palette))
    }
}

/// 16-bit BMPs: the `image` crate widens 5- and 6-bit channels with rounding
/// (`round(v·255/31)`), Pillow with truncation (`v·255/31`). The widening is one-to-one, so
/// the decoded values are mapped back to the channel value and widened Pillow's way.
mod bmp16 {
    /// Bits of the red, green and blue fields.
    #[derive(Clone, Copy, Debug)]
    pub(super) struct Layout([u8; 3]);

    fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
        Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
    }

    fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    }

    /// The channel widths of a 16-bit BMP, `None` for every other BMP.
    pub(super) fn layout(bytes: &[u8]) -> Option<Layout> {
        const FILE_HEADER: usize = 14;
        let header_size = u32_at(bytes, FILE_HEADER)? as usize;
        if header_size < 40 || u16_at(bytes, FILE_HEADER + 14)? != 16 {
            return None;
        }
        const BI_RGB: u32 = 0;
        const BI_BITFIELDS: u32 = 3;
        match u32_at(bytes, FILE_HEADER + 16)? {
            BI_RGB => Some(Layout([5, 5, 5])),
            BI_BITFIELDS => {
                // The masks follow a 40-byte header or sit at the same place inside V2+ ones.
                let masks = [
                    u32_at(bytes, FILE_HEADER + 40)?,
                    u32_at(bytes, FILE_HEADER + 44)?,
                    u32_at(bytes, FILE_HEADER + 48)?,
                ];
                match masks {
                    [0xF800, 0x07E0, 0x001F] => Some(Layout([5, 6, 5])),
                    [0x7C00, 0x03E0, 0x001F] => Some(Layout([5, 5, 5])),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// For a field of `bits` bits: the `image` crate's widened value → Pillow's.
    fn table(bits: u8) -> [u8; 256] {
        let max = (1u32 << bits) - 1;
        let mut map: [u8; 256] = std::array::from_fn(|v| v as u8);
        for v in 0..=max {
            let rounded = (v * 255 * 2 + max) / (max * 2);
            let truncated = v * 255 / max;
            map[rounded as usize] = truncated as u8;
        }
        map
    }

    /// Rewrites the red, green and blue samples of interleaved pixels with `channels` samples.
    pub(super) fn rescale_to_pillow(data: &mut [u8], channels: usize, layout: Layout) {
        let tables = layout.0.map(table);
        for pixel in data.chunks_exact_mut(channels) {
            for (value, table) in pixel.iter_mut().zip(&tables) {
                *value = table[usize::from(*value)];
            }
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn tables_map_rounded_widening_to_truncated() {
            let five = super::table(5);
            assert_eq!(five[25], 24); // 3·255/31 = 24.68
            assert_eq!(five[255], 255);
            assert_eq!(five[0], 0);
            let six = super::table(6);
            assert_eq!(six[45], 44); // 11·255/63 = 44.52
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luma_uses_pillow_integer_weights() {
        assert_eq!(luma_of(255, 255, 255), 255);
        assert_eq!(luma_of(0, 0, 0), 0);
        assert_eq!(luma_of(255, 0, 0), 76);
        assert_eq!(luma_of(0, 255, 0), 150);
        assert_eq!(luma_of(0, 0, 255), 29);
        for v in 0..=255 {
            assert_eq!(luma_of(v, v, v), v);
        }
    }

    #[test]
    fn rgba_bytes_drop_alpha_and_check_length() {
        let rgb = rgb_from_rgba_bytes(&[1, 2, 3, 0, 4, 5, 6, 255], 2, 1).unwrap();
        assert_eq!(rgb.as_raw(), &[1, 2, 3, 4, 5, 6]);
        let err = rgb_from_rgba_bytes(&[0; 7], 2, 1).unwrap_err().to_string();
        assert!(err.contains("expected 8") && err.contains("7"), "{err}");
    }

    #[test]
    fn unknown_bytes_are_reported() {
        let err = decode_rgb(b"GIF89a....").unwrap_err();
        assert!(matches!(err, ImagingError::UnknownFormat { .. }), "{err}");
        let err = decode_rgb(b"hello world").unwrap_err().to_string();
        assert!(err.contains("68 65 6c 6c"), "{err}");
    }

    #[test]
    fn truncated_png_is_an_error() {
        let err = decode_rgb(PNG_SIGNATURE).unwrap_err();
        assert!(
            matches!(err, ImagingError::Decode { format: "PNG", .. }),
            "{err}"
        );
    }

    #[test]
    fn missing_file_names_the_path() {
        let path = std::path::Path::new("/nonexistent/vlad/image.png");
        let err = open_rgb(path).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/vlad/image.png"), "{err}");
    }
}
