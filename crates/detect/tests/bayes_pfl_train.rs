//! Bayes-PFL training against the official code (`tools/fixtures/bayes_pfl.py` follows `train.py`
//! on the tiny configuration with recorded noise and the prompt index fixed to 1): the flow samples,
//! log-determinants and KL terms; one stage-1 step's losses (CE, focal and dice per layer, KL,
//! orthogonality), gradients of every parameter and the parameters after the Adam step with the
//! four learning-rate groups; then one stage-2 step (CE on the `fuse`/`image_mapping` head, its 10
//! gradients, a fresh Adam on the three stage-2 modules). Also the cosine schedule against
//! transformers' `get_cosine_schedule_with_warmup`.
#![cfg(feature = "train")]
mod bayes_pfl_common;

use std::collections::{BTreeMap, VecDeque};

use bayes_pfl_common::{Tensors, assert_close, assert_parity, device, fixture, json, tiny_clip, values};
use vlad_detect::bayes_pfl::checkpoint::official_state_dict;
use vlad_detect::bayes_pfl::detector::open_checkpoint;
use vlad_detect::bayes_pfl::flow::kl_divergence;
use vlad_detect::bayes_pfl::train::{CosineWarmup, TrainBatch, TrainOptions, Trainer};
use vlad_detect::bayes_pfl::{BayesPflCheckpoint, FixedNoise, Stage, StageChoice, StateKind, load_checkpoint};

fn checkpoint() -> BayesPflCheckpoint {
    load_checkpoint(&open_checkpoint(&fixture("head.pth")).unwrap(), &device(), StageChoice::FromFile, false).unwrap()
}

fn batch(refs: &Tensors) -> TrainBatch {
    let device = device();
    TrainBatch {
        pixels: refs.tensor::<4>("images", &device),
        masks: refs.tensor::<3>("masks", &device),
        labels: refs.values("labels").iter().map(|&v| v as usize).collect(),
        classes: vec!["pcb1".into(), "bottle".into()],
    }
}

fn scalar(v: &serde_json::Value) -> f32 {
    v.as_f64().unwrap() as f32
}

#[test]
fn flows_and_kl_terms_match_the_official_code() {
    let refs = Tensors::open("train.safetensors");
    let meta = json("train_meta.json");
    let ck = checkpoint();
    let model = tiny_clip();
    let device = device();
    let out = model.visual.forward(refs.tensor::<4>("images", &device), Default::default()).unwrap();
    let g = model.visual.pool(out.last);
    let eps = refs.tensor::<2>("s1_eps_context", &device).reshape([1, 2, 32]);
    let context = ck.head.context_samples(g, eps);
    assert_parity("context μ", &values(context.mu.clone()), refs.values("s1_context_mu"));
    assert_parity("context variance exp(h/2)", &values(context.h.clone().mul_scalar(0.5).exp()), refs.values("s1_context_var"));
    assert_parity("context z0", &values(context.z0.clone()), refs.values("s1_context_z0"));
    assert_parity("context zK", &values(context.zk.clone()), refs.values("s1_context_zk"));
    assert_parity("context log-det", &values(context.log_det.clone()), refs.values("s1_context_logdet"));
    let kl = kl_divergence(context.mu, context.h, context.z0.reshape([2, 32]), context.zk.reshape([2, 32]), context.log_det.reshape([2]), 2).mul_scalar(0.01);
    assert_close("0.01·KL context", &values(kl), &[scalar(&meta["s1"]["kl"][0])], 1e-4);
    for (i, (kind, name)) in [(StateKind::Normal, "normal"), (StateKind::Abnormal, "abnormal")].into_iter().enumerate() {
        let state = ck.head.state_samples(kind, refs.tensor::<2>(&format!("s1_eps_{name}"), &device));
        assert_parity(&format!("{name} μ"), &values(state.mu.clone()), refs.values(&format!("s1_{name}_mu")));
        assert_parity(&format!("{name} z0"), &values(state.z0.clone()), refs.values(&format!("s1_{name}_z0")));
        assert_parity(&format!("{name} zK"), &values(state.zk.clone()), refs.values(&format!("s1_{name}_zk")));
        assert_parity(&format!("{name} log-det"), &values(state.log_det.clone()), refs.values(&format!("s1_{name}_logdet")));
        // The state KL is divided by the image batch size (2), its density term broadcast to
        // the batch, as in the official code.
        let kl = kl_divergence(state.mu, state.h, state.z0, state.zk, state.log_det, 2).mul_scalar(0.01);
        assert_close(&format!("0.01·KL {name}"), &values(kl), &[scalar(&meta["s1"]["kl"][i + 1])], 1e-4);
    }
}

/// Official-named host tensors of a head.
fn named(head: &vlad_detect::bayes_pfl::BayesPflHead, ck: &BayesPflCheckpoint) -> BTreeMap<String, Vec<f32>> {
    official_state_dict(head, &ck.dead).unwrap().into_iter().map(|(n, _, v)| (n, v.as_ref().clone())).collect()
}

fn check_losses(tag: &str, got: &vlad_detect::bayes_pfl::train::LossReport, want: &serde_json::Value) {
    let close = |what: &str, g: f64, w: &serde_json::Value| assert_close(&format!("{tag} {what}"), &[g as f32], &[scalar(w)], 1e-4);
    close("loss", got.total, &want["loss"]);
    close("CE", got.ce, &want["ce"]);
    close("seg", got.seg, &want["seg"]);
    close("dist", got.dist, &want["dist"]);
    close("orth", got.orth, &want["orth"]);
    for i in 0..4 {
        close(&format!("focal {i}"), got.focal[i], &want["focal"][i]);
        close(&format!("dice {i}"), got.dice[i], &want["dice"][i]);
    }
    for i in 0..3 {
        // KL terms of the order of 1e-2 from sums over hundreds of terms: absolute 1e-6.
        let (g, w) = (got.kl[i], scalar(&want["kl"][i]) as f64);
        assert!((g - w).abs() < 1e-6, "{tag} KL {i}: {g} vs {w}");
    }
}

/// Gradients: relative 1e-3 of the tensor's largest gradient (long autodiff chains through the
/// text tower in f32); a parameter the official code leaves without gradient must get zeros.
///
/// A gradient that is mathematically zero (e.g. `fuse.compress.bias`, a constant shift of the
/// logits of a softmax pooling) is float noise on both sides, so a relative comparison with
/// itself means nothing: where the reference's largest value is below 1e-6 of the step's largest
/// gradient, ours must be below that bound too.
fn check_gradients(tag: &str, grads: &BTreeMap<String, Vec<f32>>, refs: &Tensors, expected: &[String], trainable: &[&str]) {
    let max_abs = |v: &[f32]| v.iter().fold(0f32, |m, x| m.max(x.abs()));
    let step_max = expected.iter().map(|n| max_abs(refs.values(&format!("{tag}_grad.{n}")))).fold(0f32, f32::max);
    let zero_bound = 1e-6 * step_max;
    for name in expected {
        let want = refs.values(&format!("{tag}_grad.{name}"));
        if max_abs(want) < zero_bound {
            let got = max_abs(&grads[name]);
            assert!(got < zero_bound, "{tag} grad {name}: the reference is zero up to float noise ({:e}), ours is {got:e} (bound {zero_bound:e})", max_abs(want));
            continue;
        }
        assert_close(&format!("{tag} grad {name}"), &grads[name], want, 1e-3);
    }
    for name in trainable {
        if !expected.iter().any(|e| e == name) {
            assert!(grads[*name].iter().all(|&v| v == 0.0), "{tag}: `{name}` must get no gradient");
        }
    }
}

/// Parameters after the step: the Adam update of one step is about lr·sign(g), so compare the
/// update `after − before` per tensor, relative 1e-3 of its largest value, on the elements
/// whose reference gradient is not negligible (where |g| is at the level of float noise, the
/// direction of a first Adam step is arbitrary).
fn check_updates(tag: &str, before: &BTreeMap<String, Vec<f32>>, after: &BTreeMap<String, Vec<f32>>, refs: &Tensors) {
    for (name, now) in after {
        let key = format!("{tag}_after.{name}");
        if !refs.0.contains_key(&key) {
            continue;
        }
        let want_after = refs.values(&key);
        let grad_key = format!("{tag}_grad.{name}");
        let want_update: Vec<f32> = want_after.iter().zip(&before[name]).map(|(a, b)| a - b).collect();
        let got_update: Vec<f32> = now.iter().zip(&before[name]).map(|(a, b)| a - b).collect();
        let (mut got_kept, mut want_kept) = (Vec::new(), Vec::new());
        let grad = refs.0.get(&grad_key).map(|(_, g)| g.clone());
        // A tensor the step does not optimise (no reference gradient): ours must stay exactly as
        // it was; the reference "update" is then the difference between the two runs' states
        // before the step (our `before` comes from our own stage-1 step, matched above to 1e-3
        // of its size, which is at most the largest learning rate, 1e-2).
        if grad.is_none() && got_update.iter().all(|&v| v == 0.0) {
            let noise = want_update.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(noise <= 1e-5, "{tag}: `{name}` is unchanged here, but the reference changed it by up to {noise:e}");
            continue;
        }
        let max_grad = grad.as_ref().map_or(0.0, |g| g.iter().fold(0f32, |m, v| m.max(v.abs())));
        // A gradient that is zero up to float noise (see `check_gradients`) gives a first Adam
        // step of arbitrary direction: only its size is bounded (|Δ| ≤ lr for Adam's first step).
        let step_max = refs.0.iter().filter(|(k, _)| k.starts_with(&format!("{tag}_grad."))).flat_map(|(_, (_, g))| g.iter()).fold(0f32, |m, v| m.max(v.abs()));
        if grad.is_some() && max_grad < 1e-6 * step_max {
            let largest = got_update.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(largest <= 1.001e-3, "{tag}: `{name}` has a zero gradient but moved by {largest:e}");
            continue;
        }
        for (i, (g, w)) in got_update.iter().zip(&want_update).enumerate() {
            let significant = grad.as_ref().is_some_and(|gr| gr[i].abs() > 1e-4 * max_grad);
            if significant || grad.is_none() {
                got_kept.push(*g);
                want_kept.push(*w);
            }
        }
        if want_kept.iter().all(|&v| v == 0.0) {
            assert!(got_kept.iter().all(|&v| v == 0.0), "{tag}: `{name}` must not change");
            continue;
        }
        assert_close(&format!("{tag} update {name}"), &got_kept, &want_kept, 1e-3);
    }
}

#[test]
fn training_steps_match_the_official_code() {
    let refs = Tensors::open("train.safetensors");
    let meta = json("train_meta.json");
    let ck = checkpoint();
    let before = named(&ck.head, &ck);
    let noise = FixedNoise {
        context: VecDeque::from([refs.values("s1_eps_context").to_vec(), refs.values("s2_eps_context").to_vec()]),
        normal: VecDeque::from([refs.values("s1_eps_normal").to_vec(), refs.values("s2_eps_normal").to_vec()]),
        abnormal: VecDeque::from([refs.values("s1_eps_abnormal").to_vec(), refs.values("s2_eps_abnormal").to_vec()]),
    };
    // One iteration per epoch, 5 epochs: no warm-up, the first step runs at the full rate.
    let options = TrainOptions { taps: vec![1, 2, 3, 4], image_size: 48, ..TrainOptions::official(1, 5) };
    assert_eq!(options.schedule.multiplier(0) as f32, scalar(&meta["lr_multiplier_step0"]));
    let dead = ck.dead.clone();
    let head = ck.head.clone();
    let mut trainer = Trainer::new(tiny_clip(), head, dead, options, Box::new(noise), 0).unwrap();
    let batch = batch(&refs);
    let index = meta["index_prompt"].as_u64().unwrap() as usize;

    // Stage 1.
    let out = trainer.step(&batch, Some(index), true).unwrap();
    assert_eq!((out.stage, out.prompt_index), (Stage::One, index));
    check_losses("s1", &out.losses, &meta["s1"]);
    assert_parity("s1 text features", &values(out.text.unwrap()), refs.values("s1_text_embeddings"));
    assert_parity("s1 image logits", &values(out.image_logits.unwrap()), refs.values("s1_logits_image"));
    let grads = named(&out.gradients.unwrap(), &ck);
    let expected: Vec<String> = serde_json::from_value(meta["s1"]["grads"].clone()).unwrap();
    assert_eq!(expected.len(), 51);
    check_gradients("s1", &grads, &refs, &expected, &["fuse.fuse_modules.weight", "fuse.compress.bias", "image_mapping.weight"]);
    let after_one = named(&trainer.head(), &ck);
    check_updates("s1", &before, &after_one, &refs);

    // Stage 2 from the updated weights.
    trainer.start_stage_two();
    let out = trainer.step(&batch, Some(index), true).unwrap();
    assert_eq!(out.stage, Stage::Two);
    assert_close("s2 CE", &[out.losses.ce as f32], &[scalar(&meta["s2"]["ce"])], 1e-4);
    assert_close("s2 loss", &[out.losses.total as f32], &[scalar(&meta["s2"]["loss"])], 1e-4);
    assert_close("s2 seg (logged)", &[out.losses.seg as f32], &[scalar(&meta["s2"]["seg"])], 1e-4);
    let grads = named(&out.gradients.unwrap(), &ck);
    let expected: Vec<String> = serde_json::from_value(meta["s2"]["grads"].clone()).unwrap();
    assert_eq!(expected.len(), 10);
    check_gradients("s2", &grads, &refs, &expected, &["prompt_context", "temperature_pixel", "RCA.q_proj_pre.bias", "PFL_normal.state"]);
    let after_two = named(&trainer.head(), &ck);
    check_updates("s2", &after_one, &after_two, &refs);
}

#[test]
fn schedule_matches_transformers() {
    let reference = json("schedule.json");
    let schedule = CosineWarmup { warmup: reference["warmup"].as_u64().unwrap() as usize, total: reference["total"].as_u64().unwrap() as usize };
    assert_eq!(schedule, CosineWarmup::official(68, 30));
    for (step, want) in reference["steps"].as_array().unwrap().iter().zip(reference["multipliers"].as_array().unwrap()) {
        let got = schedule.multiplier(step.as_u64().unwrap() as usize);
        assert!((got - want.as_f64().unwrap()).abs() < 1e-12, "step {step}: {got} vs {want}");
    }
}

#[test]
fn bad_batches_are_errors() {
    let refs = Tensors::open("train.safetensors");
    let ck = checkpoint();
    let options = TrainOptions { taps: vec![1, 2, 3, 4], image_size: 48, ..TrainOptions::official(1, 5) };
    let mut trainer = Trainer::new(tiny_clip(), ck.head, ck.dead, options, Box::new(vlad_detect::bayes_pfl::ZeroNoise), 0).unwrap();
    let mut b = batch(&refs);
    b.labels = vec![0];
    let err = trainer.step(&b, None, false).err().unwrap().to_string();
    assert!(err.contains("2 labels (got 1)"), "{err}");
    let b = batch(&refs);
    let err = trainer.step(&b, Some(3), false).err().unwrap().to_string();
    assert!(err.contains("prompt index 3"), "{err}");
    // A normal step with drawn prompt index and ε = 0 runs and changes the prompts.
    let before = trainer.head().prompts.context.val();
    let out = trainer.step(&b, None, false).unwrap();
    assert!(out.prompt_index < 3 && out.losses.total.is_finite());
    let after = trainer.head().prompts.context.val();
    assert!(values(after.sub(before).abs()).iter().any(|&v| v > 0.0));
}
