//! The training pipelines: joint image/mask geometry, parameter distributions, the BGR quirk and the mosaic.

use image::{GrayImage, Luma, Rgb, RgbImage};
use vlad_data::augment::{
    AaClipAugment, AaClipGeometry, BayesPflAugment, BayesPflParams, MosaicPolicy, OneOfChoice,
    Planar, choose_mosaic_tiles, cv, mosaic_2x2,
};
use vlad_data::{DatasetFormat, DatasetIndex, Label, Sample, SeededRng, Split};

fn pattern(w: u32, h: u32) -> (RgbImage, GrayImage) {
    let img = RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            (x * 9 % 256) as u8,
            (y * 7 % 256) as u8,
            ((x + y) * 3 % 256) as u8,
        ])
    });
    let mask = GrayImage::from_fn(w, h, |x, y| {
        Luma([if (x / 5 + y / 4) % 3 == 0 { 255 } else { 0 }])
    });
    (img, mask)
}

#[test]
fn aa_clip_geometry_moves_image_and_mask_together() {
    let (img, mask) = pattern(40, 30);
    let mut t = Planar::from_image_and_mask(&img, &mask, [0.0; 3], [1.0; 3]).unwrap();
    // Make channel 0 a copy of the mask so alignment can be checked after any transform.
    let n = 40 * 30;
    for i in 0..n {
        t.data[i] = t.data[3 * n + i];
    }
    let aug = AaClipAugment::stage2();
    let mut rng = SeededRng::new(3);
    for _ in 0..40 {
        let out = aug.geometric(&t, &mut rng).unwrap();
        assert_eq!(out.channel(0), out.channel(3));
        assert!(
            out.channel(3).iter().all(|&v| v == 0.0 || v == 1.0),
            "mask stays binary"
        );
    }
    let g = AaClipGeometry {
        rotate: Some(90.0),
        translate: None,
        hflip: false,
        vflip: false,
    };
    let rotated = AaClipAugment::apply_geometry(&g, &t).unwrap();
    assert_ne!(rotated, t);
}

#[test]
fn aa_clip_draws_follow_the_spec_distribution() {
    let aug = AaClipAugment::stage2();
    let mut rng = SeededRng::new(1);
    let (mut rot, mut tr, mut hf) = (0, 0, 0);
    let trials = 4000;
    for _ in 0..trials {
        let g = aug.draw_geometry(518, 518, &mut rng);
        if let Some(a) = g.rotate {
            assert!((-30.0..30.0).contains(&a));
            rot += 1;
        }
        if let Some((tx, ty)) = g.translate {
            // max 0.15·518 = 77.7 → rounded to at most 78
            assert!(tx.abs() <= 78 && ty.abs() <= 78);
            tr += 1;
        }
        hf += usize::from(g.hflip);
    }
    for (name, n) in [("rotate", rot), ("translate", tr), ("hflip", hf)] {
        assert!((1800..=2200).contains(&n), "{name}: {n} of {trials}");
    }
    // Stage 1 has no colour jitter; stage 2 is reproducible per seed.
    let (img, _) = pattern(20, 20);
    assert_eq!(
        AaClipAugment::stage1().colour(&img, &mut SeededRng::new(0)),
        img
    );
    let a = aug.colour(&img, &mut SeededRng::new(9));
    let b = aug.colour(&img, &mut SeededRng::new(9));
    assert_eq!(a, b);
}

#[test]
fn bayes_pfl_geometry_uses_linear_for_images_and_nearest_for_masks() {
    let (img, mask) = pattern(33, 27);
    let aug = BayesPflAugment::default();
    let params = BayesPflParams {
        rotate: Some(17.0),
        rot90: Some(1),
        brightness_contrast: None,
        noise: None,
        one_of: None,
    };
    let (i2, m2) = aug.apply(&params, &img, &mask).unwrap();
    let expected_img = cv::rot90(&cv::rotate(&img, 17.0, cv::Interpolation::Linear), 1);
    let expected_mask = cv::rot90(&cv::rotate(&mask, 17.0, cv::Interpolation::Nearest), 1);
    assert_eq!(i2, expected_img);
    assert_eq!(m2, expected_mask);
    assert_eq!(m2.dimensions(), (27, 33));
    assert!(m2.iter().all(|&v| v == 0 || v == 255));
    // Image-only transforms leave the mask alone.
    let params = BayesPflParams {
        rotate: None,
        rot90: None,
        brightness_contrast: Some((1.1, 0.1)),
        noise: Some((5.0, 1)),
        one_of: Some(OneOfChoice::Blur),
    };
    let (i3, m3) = aug.apply(&params, &img, &mask).unwrap();
    assert_eq!(m3, mask);
    assert_ne!(i3, img);
}

#[test]
fn bayes_pfl_colour_jitter_sees_bgr_data_unless_the_quirk_is_off() {
    let (img, mask) = pattern(16, 16);
    let mut rng = SeededRng::new(5);
    let params = loop {
        let p = BayesPflAugment::default().draw(&mut rng);
        if matches!(p.one_of, Some(OneOfChoice::ColorJitter(_))) {
            break BayesPflParams {
                rotate: None,
                rot90: None,
                brightness_contrast: None,
                noise: None,
                ..p
            };
        }
    };
    let Some(OneOfChoice::ColorJitter(cj)) = params.one_of else {
        unreachable!()
    };
    let swap = |i: &RgbImage| {
        let mut o = i.clone();
        o.pixels_mut().for_each(|p| p.0.swap(0, 2));
        o
    };
    let quirk = BayesPflAugment::default()
        .apply(&params, &img, &mask)
        .unwrap()
        .0;
    assert_eq!(quirk, swap(&cj.apply(&swap(&img))));
    let clean = BayesPflAugment {
        bgr_colour_quirk: false,
        ..Default::default()
    }
    .apply(&params, &img, &mask)
    .unwrap()
    .0;
    assert_eq!(clean, cj.apply(&img));
    assert_ne!(quirk, clean);
}

#[test]
fn bayes_pfl_gaussian_blur_kernel_sizes_follow_albumentations() {
    // randrange(3, 8) with even sizes bumped up: 3 → 1/5, 5 → 2/5, 7 → 2/5.
    let aug = BayesPflAugment {
        one_of_p: 1.0,
        ..Default::default()
    };
    let mut rng = SeededRng::new(2);
    let mut counts = [0usize; 8];
    let mut members = [0usize; 3];
    for _ in 0..6000 {
        match aug.draw(&mut rng).one_of.unwrap() {
            OneOfChoice::Blur => members[0] += 1,
            OneOfChoice::ColorJitter(_) => members[1] += 1,
            OneOfChoice::GaussianBlur { ksize } => {
                members[2] += 1;
                counts[ksize] += 1;
            }
        }
    }
    assert!(
        members.iter().all(|&m| (1800..=2200).contains(&m)),
        "{members:?}"
    );
    let g = members[2] as f64;
    assert_eq!(counts[4] + counts[6], 0);
    assert!((counts[3] as f64 / g - 0.2).abs() < 0.04, "{counts:?}");
    assert!((counts[5] as f64 / g - 0.4).abs() < 0.04, "{counts:?}");
}

#[test]
fn mosaic_places_tiles_and_masks_row_major() {
    let tiles: Vec<(RgbImage, GrayImage)> = (0..4u8)
        .map(|i| {
            (
                RgbImage::from_pixel(4, 3, Rgb([i * 60, 0, 0])),
                GrayImage::from_pixel(4, 3, Luma([if i == 2 { 255 } else { 0 }])),
            )
        })
        .collect();
    let (img, mask) = mosaic_2x2([
        (&tiles[0].0, &tiles[0].1),
        (&tiles[1].0, &tiles[1].1),
        (&tiles[2].0, &tiles[2].1),
        (&tiles[3].0, &tiles[3].1),
    ])
    .unwrap();
    assert_eq!(img.dimensions(), (8, 6));
    assert_eq!(img.get_pixel(5, 1).0[0], 60); // top right = tile 1
    assert_eq!(img.get_pixel(1, 4).0[0], 120); // bottom left = tile 2
    assert_eq!(mask.iter().filter(|&&v| v == 255).count(), 12);
    assert_eq!(mask.get_pixel(0, 3).0[0], 255);
    let bad = GrayImage::new(3, 3);
    let err = mosaic_2x2([
        (&tiles[0].0, &bad),
        (&tiles[1].0, &tiles[1].1),
        (&tiles[2].0, &tiles[2].1),
        (&tiles[3].0, &tiles[3].1),
    ])
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("mosaic tile 0: image is (4, 3) but mask is (3, 3)")
    );
}

#[test]
fn mosaic_tiles_come_from_one_class_and_the_policy_pool() {
    let mk = |class: &str, defect: &str, i: usize| Sample {
        class_name: class.into(),
        image_path: format!("/r/{class}/test/{defect}/{i}.png").into(),
        mask_path: None,
        label: if defect == "good" {
            Label::Normal
        } else {
            Label::Anomalous
        },
        defect_type: defect.into(),
        split: Split::Test,
    };
    let samples = vec![
        mk("a", "good", 0),
        mk("a", "good", 1),
        mk("a", "cut", 0),
        mk("b", "cut", 0),
    ];
    let index = DatasetIndex {
        root: "/r".into(),
        format: DatasetFormat::Mvtec,
        samples,
        problems: vec![],
    };
    let mut rng = SeededRng::new(0);
    for _ in 0..50 {
        let tiles = choose_mosaic_tiles(&index, "a", Split::Test, MosaicPolicy::BayesPfl, &mut rng)
            .unwrap();
        assert!(
            tiles
                .iter()
                .all(|s| s.class_name == "a" && s.label == Label::Anomalous)
        );
        let tiles =
            choose_mosaic_tiles(&index, "a", Split::Test, MosaicPolicy::Vand, &mut rng).unwrap();
        assert!(tiles.iter().all(|s| s.class_name == "a"));
    }
    let err =
        choose_mosaic_tiles(&index, "a", Split::Train, MosaicPolicy::Vand, &mut rng).unwrap_err();
    assert!(
        err.to_string()
            .contains("no images of class \"a\" in the train split")
    );
    // AdaCLIP: `random.sample(meta[cls], 4)` needs four distinct images of the class.
    let err = choose_mosaic_tiles(&index, "a", Split::Test, MosaicPolicy::AdaClip, &mut rng)
        .unwrap_err();
    assert!(err.to_string().contains("4 distinct images") && err.to_string().contains("found 3"), "{err}");
    let mut more = index.clone();
    more.samples.extend([mk("a", "cut", 1), mk("a", "scratch", 0)]);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let tiles =
            choose_mosaic_tiles(&more, "a", Split::Test, MosaicPolicy::AdaClip, &mut rng).unwrap();
        let paths: std::collections::BTreeSet<_> = tiles.iter().map(|s| s.image_path.clone()).collect();
        assert_eq!(paths.len(), 4, "four distinct images");
        assert!(tiles.iter().all(|s| s.class_name == "a"));
        seen.extend(paths);
    }
    // Normal images are drawn too (uniform over the class's five).
    assert_eq!(seen.len(), 5);
}
