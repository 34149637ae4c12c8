//! The 2×2 mosaic of APRIL-GAN/VAND (`aug_rate` 0.2, four test images of one class, any defect or good) and
//! Bayes-PFL (MVTec only, p 0.4, four anomalous images of one class).

use image::{GrayImage, RgbImage};

use crate::error::DataError;
use crate::index::{DatasetIndex, Label, Sample, Split};
use crate::rng::SeededRng;

/// Paste four (image, mask) tiles row-major into a canvas twice the first tile's width and height, as PIL's
/// `paste` does in APRIL-GAN's `combine_img` (a larger tile is cropped, a smaller one leaves black).
pub fn mosaic_2x2(tiles: [(&RgbImage, &GrayImage); 4]) -> Result<(RgbImage, GrayImage), DataError> {
    for (i, (img, mask)) in tiles.iter().enumerate() {
        if img.dimensions() != mask.dimensions() {
            return Err(DataError::Argument(format!(
                "mosaic tile {i}: image is {:?} but mask is {:?}",
                img.dimensions(),
                mask.dimensions()
            )));
        }
    }
    let (w, h) = tiles[0].0.dimensions();
    let mut image = RgbImage::new(2 * w, 2 * h);
    let mut mask = GrayImage::new(2 * w, 2 * h);
    for (i, (tile, tile_mask)) in tiles.iter().enumerate() {
        let (ox, oy) = ((i as u32 % 2) * w, (i as u32 / 2) * h);
        for y in 0..tile.height().min(2 * h - oy) {
            for x in 0..tile.width().min(2 * w - ox) {
                image.put_pixel(ox + x, oy + y, *tile.get_pixel(x, y));
                mask.put_pixel(ox + x, oy + y, *tile_mask.get_pixel(x, y));
            }
        }
    }
    Ok((image, mask))
}

/// How the four mosaic tiles are chosen (always from one class of one split, with replacement).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MosaicPolicy {
    /// APRIL-GAN/VAND: a defect folder uniformly (`good` included), then a file in it uniformly.
    Vand,
    /// Bayes-PFL: uniformly among the class's anomalous images.
    BayesPfl,
    /// AdaCLIP: four **distinct** images of the class uniformly (`random.sample(meta[cls], 4)`,
    /// normal ones included; audit D4).
    AdaClip,
}

/// Choose four tiles for a mosaic of `class_name`.
pub fn choose_mosaic_tiles(
    index: &DatasetIndex,
    class_name: &str,
    split: Split,
    policy: MosaicPolicy,
    rng: &mut SeededRng,
) -> Result<[Sample; 4], DataError> {
    let mut pool: Vec<&Sample> = index
        .select(class_name, split)
        .filter(|s| policy != MosaicPolicy::BayesPfl || s.label == Label::Anomalous)
        .collect();
    pool.sort_by(|a, b| a.image_path.cmp(&b.image_path));
    if pool.is_empty() {
        return Err(DataError::Request(format!(
            "no {}images of class {class_name:?} in the {split} split for a mosaic",
            if policy != MosaicPolicy::BayesPfl {
                ""
            } else {
                "anomalous "
            }
        )));
    }
    let mut folders: Vec<&str> = pool.iter().map(|s| s.defect_type.as_str()).collect();
    folders.dedup();
    folders.sort_unstable();
    folders.dedup();
    if policy == MosaicPolicy::AdaClip {
        if pool.len() < 4 {
            return Err(DataError::Request(format!(
                "an AdaCLIP mosaic needs 4 distinct images of class {class_name:?} in the {split} split, found {}",
                pool.len()
            )));
        }
        // A partial Fisher–Yates draw: four distinct positions, in draw order.
        let mut positions: Vec<usize> = (0..pool.len()).collect();
        for i in 0..4 {
            let j = i + rng.index(pool.len() - i);
            positions.swap(i, j);
        }
        return Ok([0, 1, 2, 3].map(|i| pool[positions[i]].clone()));
    }
    let pick = |rng: &mut SeededRng| -> Sample {
        match policy {
            MosaicPolicy::BayesPfl => pool[rng.index(pool.len())].clone(),
            MosaicPolicy::AdaClip => unreachable!("drawn above"),
            MosaicPolicy::Vand => {
                let folder = folders[rng.index(folders.len())];
                let files: Vec<&&Sample> =
                    pool.iter().filter(|s| s.defect_type == folder).collect();
                (*files[rng.index(files.len())]).clone()
            }
        }
    };
    Ok([pick(rng), pick(rng), pick(rng), pick(rng)])
}
