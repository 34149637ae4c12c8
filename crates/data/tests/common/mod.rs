//! Helpers shared by the integration tests: small image files in temporary trees.
#![allow(dead_code)]

use std::path::Path;

use image::{GrayImage, Luma, Rgb, RgbImage};

/// Write an RGB image of the given size with a simple pattern (format from the extension).
pub fn write_image(path: &Path, w: u32, h: u32, seed: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            (x as u8).wrapping_mul(7) ^ seed,
            (y as u8).wrapping_mul(5),
            seed,
        ])
    });
    img.save(path).unwrap();
}

/// Write a grey mask whose pixels inside the rectangle hold `value` (0 elsewhere).
pub fn write_mask(path: &Path, w: u32, h: u32, rect: (u32, u32, u32, u32), value: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let (x0, y0, x1, y1) = rect;
    let img = GrayImage::from_fn(w, h, |x, y| {
        Luma([if x >= x0 && x < x1 && y >= y0 && y < y1 {
            value
        } else {
            0
        }])
    });
    img.save(path).unwrap();
}

/// Write text, creating parent folders.
pub fn write_text(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}
