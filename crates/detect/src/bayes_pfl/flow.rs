//! Planar flows and the distribution loss (`spec/bayes-pfl.md` §4.2, §4.7).
//!
//! A planar step is `f(z) = z + u·tanh(w·z + b)` with `log|det J| = log(|1 + (1 − tanh²(w·z + b))·(w·u)| + 1e-5)`
//! (the official `flows.Planar`, without the invertibility re-parameterisation of `u`). The steps
//! run in sequence and their log-determinants are summed.
use burn::tensor::Tensor;

/// Flow parameters for a batch of flows: `u`, `w` `[N, K, E]` and `b` `[N, K]` (N = 1 for the
/// image-agnostic flows, whose parameters are shared).
#[derive(Debug, Clone)]
pub struct PlanarParams {
    /// Direction added to `z`, `[N, K, E]`.
    pub u: Tensor<3>,
    /// Projection inside the tanh, `[N, K, E]`.
    pub w: Tensor<3>,
    /// Bias inside the tanh, `[N, K]`.
    pub b: Tensor<2>,
}

impl PlanarParams {
    /// Number of flow steps K.
    pub fn steps(&self) -> usize {
        self.b.dims()[1]
    }
}

/// Pushes `z0` `[R, N, E]` through the K planar steps of `params` (one set per image n, shared by
/// the R samples). Returns `zK` `[R, N, E]` and the summed log-determinants `[R, N]`.
pub fn planar_flows(z0: Tensor<3>, params: &PlanarParams) -> (Tensor<3>, Tensor<2>) {
    let [r, n, e] = z0.dims();
    let [pn, k, pe] = params.u.dims();
    assert!(pn == n && pe == e, "flow parameters [{pn}, {k}, {pe}] do not fit samples [{r}, {n}, {e}]");
    let mut z = z0;
    let mut log_det = Tensor::<3>::zeros([r, n, 1], &z.device());
    for step in 0..k {
        let u = params.u.clone().slice([0..n, step..step + 1, 0..e]).reshape([1, n, e]);
        let w = params.w.clone().slice([0..n, step..step + 1, 0..e]).reshape([1, n, e]);
        let b = params.b.clone().slice([0..n, step..step + 1]).reshape([1, n, 1]);
        let activation = vlad_clip::precise::tanh((z.clone() * w.clone()).sum_dim(2).add(b));
        // ψ·u = Σ_d w_d (1 − tanh²) u_d = (1 − tanh²) · (w·u).
        let wu = (w * u.clone()).sum_dim(2);
        let derivative = activation.clone().powi_scalar(2).neg().add_scalar(1.0);
        log_det = log_det + (derivative * wu).add_scalar(1.0).abs().add_scalar(1e-5).log();
        z = z + u * activation;
    }
    (z, log_det.reshape([r, n]))
}

/// The single-sample KL estimate of the official `binary_loss_function` for one distribution:
/// `(Σ_i [log q0(z0_i) − log p(zK_i)] − Σ_i Σ_k logdet_ik) / batch`, with
/// `log q0 = −½ Σ_d [log v_d + (z0_d − μ_d)²/v_d]` where the encoder's "variance" is
/// `v = exp(½ h)`, `log p(zK) = −½ Σ_d zK_d²` (2π constants dropped), each plus the official 1e-8.
/// `batch` is the image batch size, also for the image-agnostic flows. For those (a single
/// sample, M = 1) the official code builds `log p(zK)` against a `[batch, E]` zero log-variance,
/// so PyTorch broadcasts `log q0 − log p` to `batch` copies while the log-determinant is counted
/// once: their KL is `(batch·(log q0 − log p) − logdet) / batch`; this reproduces it. Rows of
/// `mu`, `h`, `z0`, `zk` `[M, E]` are samples, `log_det` is `[M]`. Returns a `[1]` tensor.
pub fn kl_divergence(mu: Tensor<2>, h: Tensor<2>, z0: Tensor<2>, zk: Tensor<2>, log_det: Tensor<1>, batch: usize) -> Tensor<1> {
    let log_var = h.mul_scalar(0.5);
    let variance = log_var.clone().exp();
    let diff = z0 - mu;
    let log_q0 = (log_var + diff.clone() * diff / variance).sum_dim(1).mul_scalar(-0.5).add_scalar(1e-8);
    let log_pk = zk.powi_scalar(2).sum_dim(1).mul_scalar(-0.5).add_scalar(1e-8);
    let m = log_q0.dims()[0];
    let density = (log_q0 - log_pk).reshape([m]).sum();
    let density = if m == 1 { density.mul_scalar(batch as f64) } else { density };
    let kl = density - log_det.sum();
    kl.div_scalar(batch as f64)
}
