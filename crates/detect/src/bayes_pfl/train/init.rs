//! The official initialisation of a head trained from scratch (`Context_Prompting.__init__`,
//! `spec/bayes-pfl.md` §9): every `nn.Linear` N(0, 0.02) with zero bias (amortised flow layers,
//! encoders, decoders, `p_mu`, RCA projections, mappings, `fuse`); the RCA query Conv1d keeps
//! PyTorch's default `U(−1/√fan_in, 1/√fan_in)` for weight and bias; the image-agnostic `state`
//! and flow parameters N(0, 1); both temperatures ln(1/0.07); the prompts truncated normals
//! (std 0.02, bounds ±2) with means 0 (context), +0.5 (normal states) and −0.5 (abnormal states).
//! Draws come from a seeded [`SeededNoise`] stream (not PyTorch's).
use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData};

use crate::DetectError;
use crate::bayes_pfl::checkpoint::DeadWeights;
use crate::bayes_pfl::head::{BayesPflHead, GaussianEncoder, HeadConfig, InferenceBlock, StateFlow};
use crate::bayes_pfl::noise::SeededNoise;

struct Init<'a> {
    rng: SeededNoise,
    device: &'a Device,
}

impl Init<'_> {
    fn tensor<const D: usize>(&self, values: Vec<f32>, shape: [usize; D]) -> Param<Tensor<D>> {
        Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), self.device))
    }

    fn normal(&mut self, n: usize, mean: f64, std: f64) -> Vec<f32> {
        (0..n).map(|_| (mean + std * self.rng.normal()) as f32).collect()
    }

    /// `nn.init.trunc_normal_(mean, std, a=−2, b=2)`: redraw values outside [−2, 2].
    fn truncated(&mut self, n: usize, mean: f64, std: f64) -> Vec<f32> {
        (0..n)
            .map(|_| loop {
                let v = mean + std * self.rng.normal();
                if (-2.0..=2.0).contains(&v) {
                    break v as f32;
                }
            })
            .collect()
    }

    fn linear(&mut self, linear: &mut Linear) {
        let [d_in, d_out] = linear.weight.lazy_shape().dims();
        let weight = self.normal(d_in * d_out, 0.0, 0.02);
        linear.weight = self.tensor(weight, [d_in, d_out]);
        if let Some(bias) = linear.bias.as_mut() {
            *bias = self.tensor(vec![0.0; d_out], [d_out]);
        }
    }

    fn block(&mut self, block: &mut InferenceBlock) {
        self.linear(&mut block.layer0);
        self.linear(&mut block.layer2);
        self.linear(&mut block.layer4);
    }

    fn encoder(&mut self, encoder: &mut GaussianEncoder) {
        self.block(&mut encoder.weight_mean);
        self.block(&mut encoder.weight_log_variance);
    }

    fn state_flow(&mut self, flow: &mut StateFlow) {
        let [k, e] = flow.amor_u.lazy_shape().dims();
        let (u, w, b, state) = (self.normal(k * e, 0.0, 1.0), self.normal(k * e, 0.0, 1.0), self.normal(k, 0.0, 1.0), self.normal(e, 0.0, 1.0));
        flow.amor_u = self.tensor(u, [k, e]);
        flow.amor_w = self.tensor(w, [k, e]);
        flow.amor_b = self.tensor(b, [k]);
        flow.state = self.tensor(state, [1, e]);
    }
}

/// A head and its dead decoder/`p_mu` tensors, initialised as the official code does.
pub fn official_head(config: &HeadConfig, seed: u64, device: &Device) -> Result<(BayesPflHead, DeadWeights), DetectError> {
    let mut head = BayesPflHead::new(config, device)?;
    let mut init = Init { rng: SeededNoise::new(seed), device };
    let (b, p, q, e) = (config.prompt_num, config.context_len, config.state_len, config.width);
    let (context, normal, abnormal) = (init.truncated(b * p * e, 0.0, 0.02), init.truncated(b * q * e, 0.5, 0.02), init.truncated(b * q * e, -0.5, 0.02));
    head.prompts.context = init.tensor(context, [b, p, e]);
    head.prompts.state_normal = init.tensor(normal, [b, q, e]);
    head.prompts.state_abnormal = init.tensor(abnormal, [b, q, e]);
    let ln = (1.0f32 / 0.07).ln();
    head.temperatures.pixel = init.tensor(vec![ln], [1]);
    head.temperatures.image = init.tensor(vec![ln], [1]);
    init.encoder(&mut head.context_encoder);
    init.encoder(&mut head.state_encoder);
    init.linear(&mut head.context_flow.amor_u);
    init.linear(&mut head.context_flow.amor_w);
    init.linear(&mut head.context_flow.amor_b);
    init.state_flow(&mut head.normal_flow);
    init.state_flow(&mut head.abnormal_flow);
    init.linear(&mut head.fuse.fuse_modules);
    init.linear(&mut head.fuse.compress);
    init.linear(&mut head.fuse.post_process);
    // The query projection is a Conv1d: PyTorch's default init, bound 1/√(in_channels · kernel).
    let bound = 1.0 / (e as f64).sqrt();
    let uniform = |init: &mut Init, n: usize| (0..n).map(|_| ((2.0 * init.rng.uniform() - 1.0) * bound) as f32).collect::<Vec<_>>();
    let weight = uniform(&mut init, e * e);
    head.rca.q_proj_pre.weight = init.tensor(weight, [e, e]);
    if let Some(bias) = head.rca.q_proj_pre.bias.as_mut() {
        let values = uniform(&mut init, e);
        *bias = init.tensor(values, [e]);
    }
    for linear in head.rca.linear_proj.iter_mut() {
        init.linear(linear);
    }
    init.linear(&mut head.class_mapping);
    init.linear(&mut head.image_mapping);
    let dead = DeadWeights::initialized(config, || init.rng.normal() as f32);
    Ok((head, dead))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
    }

    fn stats(v: &[f32]) -> (f64, f64) {
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        (mean, (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt())
    }

    #[test]
    fn initialisation_follows_the_official_distributions() {
        let config = HeadConfig { prompt_num: 3, context_len: 5, state_len: 5, num_flows: 4, layers: 2, vision_width: 64, width: 32, rca_heads: 4 };
        let device = Device::default();
        let (head, dead) = official_head(&config, 1, &device).unwrap();
        let (m, s) = stats(&host(head.prompts.state_normal.val()));
        assert!((m - 0.5).abs() < 0.01 && (s - 0.02).abs() < 0.005, "{m} {s}");
        let (m, _) = stats(&host(head.prompts.state_abnormal.val()));
        assert!((m + 0.5).abs() < 0.01);
        let (m, s) = stats(&host(head.context_flow.amor_u.weight.val()));
        assert!(m.abs() < 0.002 && (s - 0.02).abs() < 0.002, "{m} {s}");
        assert!(host(head.context_flow.amor_u.bias.as_ref().unwrap().val()).iter().all(|&v| v == 0.0));
        let (_, s) = stats(&host(head.normal_flow.amor_u.val()));
        assert!((s - 1.0).abs() < 0.2, "{s}");
        let q = host(head.rca.q_proj_pre.weight.val());
        assert!(q.iter().all(|&v| v.abs() <= 1.0 / 32f32.sqrt()));
        assert_eq!(host(head.temperatures.pixel.val()), vec![(1.0f32 / 0.07).ln()]);
        assert_eq!(dead.tensors.len(), 18);
        // Same seed, same head.
        let (again, _) = official_head(&config, 1, &device).unwrap();
        assert_eq!(host(again.prompts.context.val()), host(head.prompts.context.val()));
    }
}
