//! MVFA-AD training against the official `train_few.main` (fixtures of `tools/fixtures/mvfa.py
//! --part train`, three runs on the tiny Brain layout stopped after their second step): the
//! recorded inputs go through `mvfa::train::image_loss`, and the det/seg losses of both steps, the
//! 16 gradients of step 1 and the adapters after two Adam steps (lr 1e-3, betas (0.5, 0.999)) are
//! compared with the official ones.
//!   seg  Brain as released: det + seg loss, both adapter lists step;
//!   det  `CLASS_INDEX['Brain'] = -3`: det loss only, only the det adapters step (the seg ones get
//!        gradients through the modified stream but stay put, as `det_optimizer.step()` alone);
//!   bce  `BCELoss` in place of `BCEWithLogitsLoss`: the corrected image loss.
//!
//! Tolerance (the detector rule): max |diff| ≤ 1e-4 · max |reference|.
#![cfg(feature = "train")]
mod common;
mod linear_common;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Tensor, TensorData};
use common::{assert_close, device, values};
use linear_common::{json, npy};
use vlad_detect::mvfa::train::{DetLoss, image_loss, trainable};
use vlad_detect::mvfa::{ClipAdapter, Mvfa, MvfaAdapters, MvfaHead};

const TOL: f64 = 1e-4;
const DIR: &str = "mvfa";
const S: usize = 24;

fn detector() -> Mvfa {
    linear_common::mvfa_detector()
}

/// The 16 weights in train.json's order (`seg_adapters.{i}.fc{1,2}`, then `det_adapters`), each
/// as PyTorch's `[out, in]`.
fn layers(adapters: &MvfaAdapters) -> Vec<&burn::nn::Linear> {
    fn pair(x: &ClipAdapter) -> [&burn::nn::Linear; 2] {
        [&x.fc1, &x.fc2]
    }
    adapters.seg.iter().chain(&adapters.det).flat_map(pair).collect()
}

/// Splits a flat fixture into the 16 tensors of `shapes`.
fn split(flat: &[f32], shapes: &[(usize, usize)]) -> Vec<Vec<f32>> {
    let mut at = 0;
    shapes
        .iter()
        .map(|&(o, i)| {
            let part = flat[at..at + o * i].to_vec();
            at += o * i;
            part
        })
        .collect()
}

fn run(name: &str, head: MvfaHead, det_loss: DetLoss) {
    let summary = json(DIR, "train.json");
    let names: Vec<String> = summary["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect();
    let shapes: Vec<(usize, usize)> = summary["shapes"].as_array().unwrap().iter().map(|s| (s[0].as_u64().unwrap() as usize, s[1].as_u64().unwrap() as usize)).collect();
    let steps = summary["runs"][name]["steps"].as_array().unwrap().clone();
    let mvfa = detector();
    let text = mvfa.text().unwrap().clone();
    let dev = device();
    let (_, images) = npy(DIR, &format!("train_{name}_images.npy"));
    let (_, masks) = npy(DIR, &format!("train_{name}_masks.npy"));
    let want_grads = split(&npy(DIR, &format!("train_{name}_grads.npy")).1, &shapes);
    let want_params = split(&npy(DIR, &format!("train_{name}_params.npy")).1, &shapes);
    let initial: Vec<Vec<f32>> = layers(mvfa.adapters()).iter().map(|l| values(l.weight.val().transpose())).collect();

    let mut adapters = trainable(mvfa.adapters().clone(), &dev);
    let mut optimizer = AdamConfig::new().with_beta_1(0.5).with_beta_2(0.999).with_epsilon(1e-8).init();
    for (k, step) in steps.iter().enumerate() {
        let pixels = Tensor::<4>::from_data(TensorData::new(images[k * 3 * S * S..(k + 1) * 3 * S * S].to_vec(), [1, 3, S, S]), &dev);
        let mask = Tensor::<3>::from_data(TensorData::new(masks[k * S * S..(k + 1) * S * S].to_vec(), [1, S, S]), &dev);
        let label = step["label"].as_f64().unwrap() as u8;
        let loss = image_loss(mvfa.model(), &adapters, mvfa.config(), &text, pixels, mask, label, head, det_loss).unwrap();
        let det = values(loss.det.clone());
        assert_close(&format!("{name} step {} det loss (Σ taps)", k + 1), &det, &[step["det"].as_f64().unwrap() as f32], TOL);
        match (&loss.seg, head) {
            (Some(seg), MvfaHead::Segmentation) => {
                assert_close(&format!("{name} step {} seg loss (Σ taps focal + dice)", k + 1), &values(seg.clone()), &[step["seg"].as_f64().unwrap() as f32], TOL);
            }
            (None, MvfaHead::Classification) => assert_eq!(step["seg"].as_f64().unwrap(), 0.0),
            _ => panic!("{name}: seg loss present for the wrong head"),
        }
        let grads = loss.total.backward();
        if k == 0 {
            for ((layer, want), n) in layers(&adapters).iter().zip(&want_grads).zip(&names) {
                let got = layer.weight.grad(&grads).map(|g| values(g.transpose())).unwrap_or_else(|| vec![0.0; want.len()]);
                assert_close(&format!("{name} step 1 grad {n}"), &got, want, TOL);
            }
        }
        let grads = match head {
            MvfaHead::Segmentation => GradientsParams::from_grads(grads, &adapters),
            MvfaHead::Classification => GradientsParams::from_grads(grads, &adapters.det),
        };
        adapters = optimizer.step(1e-3, adapters, grads);
    }
    let after = adapters.valid();
    for (((layer, want), n), start) in layers(&after).iter().zip(&want_params).zip(&names).zip(&initial) {
        let got = values(layer.weight.val().transpose());
        // Adam's first update is lr·g/(|g| + eps) with eps 1e-8: its sensitivity to the gradient,
        // lr·eps/(|g| + eps)², turns a gradient difference the gradient tolerance allows
        // (1e-4·max|grad|) into more than the parameter tolerance (1e-4·max|param|) where |g| is
        // near eps. Those entries are not determined by a parity-level gradient and are skipped
        // (counted in the message; at least three quarters of each tensor are compared).
        let g1 = &want_grads[names.iter().position(|x| x == n).unwrap()];
        let (gmax, pmax) = (g1.iter().fold(0f32, |m, x| m.max(x.abs())) as f64, want.iter().fold(0f32, |m, x| m.max(x.abs())) as f64);
        let conditioned = |g: f32| g == 0.0 || 1e-3 * 1e-8 * TOL * gmax / (g.abs() as f64 + 1e-8).powi(2) <= TOL * pmax;
        let keep: Vec<usize> = (0..got.len()).filter(|&i| conditioned(g1[i])).collect();
        let skipped = got.len() - keep.len();
        assert!(skipped * 4 <= got.len(), "{n}: {skipped} of {} entries have ill-conditioned Adam steps", got.len());
        let pick = |v: &[f32]| keep.iter().map(|&i| v[i]).collect::<Vec<f32>>();
        assert_close(&format!("{name} {n} after two Adam steps ({skipped} ill-conditioned entries skipped)"), &pick(&got), &pick(want), TOL);
        // A weight moves exactly when the official one does: the det run leaves the seg adapters
        // alone, and the last tap's fc2 never gets a gradient (only its `med` is read).
        assert_eq!(got != *start, want != start, "{n}: moved {} vs official {}", got != *start, want != start);
        if head == MvfaHead::Classification && n.starts_with("seg_") {
            assert_eq!(&got, start, "{n} moved in a det-only run");
        }
    }
}

#[test]
fn segmentation_head_steps_match_train_few() {
    run("seg", MvfaHead::Segmentation, DetLoss::Official);
}

#[test]
fn classification_head_steps_only_det_adapters_as_train_few() {
    run("det", MvfaHead::Classification, DetLoss::Official);
}

#[test]
fn corrected_det_loss_matches_bce_on_probabilities() {
    run("bce", MvfaHead::Segmentation, DetLoss::Corrected);
}
