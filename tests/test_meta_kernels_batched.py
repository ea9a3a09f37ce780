"""batched_meta_kernels(ntk_statistics=True): every field of output_meta_kernels for any number of inputs, so
that the trained ensemble (sft.predict.trained_ensemble_gd / _flow) runs for N > 4 (issue 13, item 2).

(a) N <= 4: equal to sft.finite.output_meta_kernels (ntk_fluctuations_multi + meta_kernel_step) to 1e-10,
    all fields, on the same quadrature rules (ntk_nodes).
(b) N = 5 > 4, one hidden layer: every meta-kernel is a single-neuron average (h = c a tanh(v_x . q), the
    derivatives in closed form), estimated by Monte Carlo over the preactivations z = V q (float64, 2^17
    samples, numpy seed 0; the readout weight a integrated exactly by Gauss-Hermite) with error bars; projections on random vectors and on single entries with four distinct inputs (which
    exist only for N >= 4), |z| < Z_MAX.
"""
import math

import numpy as np

from sft.conventions import Z_MAX
from sft.finite.meta_kernels import output_meta_kernels
from sft.finite.meta_kernels_batched import batched_meta_kernels

FIELDS = ("K", "G1", "V", "Theta", "Theta1", "ntk_cov", "ntk_f2", "dntk_f", "dntk_f3", "ddntk_I", "ddntk_II")


def _rel(a, b):
    scale = np.abs(b).max()
    return np.abs(a - b).max() / (scale if scale > 0 else 1.0)


def test_all_fields_equal_output_meta_kernels():
    """(a) N = 2, depth 2, unequal widths, per-layer C_W; the NTK-part rules of ntk_fluctuations_multi."""
    x = np.array([[1.0, -0.4, 0.3], [0.2, 0.9, -0.5]])
    net = dict(depth=2, activation="tanh", C_W=[1.2, 1.5, 1.1], C_b=0.1, widths=(3, 5))
    ref = output_meta_kernels(x, **net)
    out = batched_meta_kernels(x, ntk_nodes={1: 48, 2: 32}, ntk_statistics=True, **net)
    for f in FIELDS:
        assert _rel(getattr(out, f), getattr(ref, f)) < 1e-10, (f, _rel(getattr(out, f), getattr(ref, f)))
    assert np.abs(ref.Theta1).max() > 1e-2 and np.abs(ref.G1).max() > 1e-2  # depth 2: nonzero, tested
    assert out.widths == ref.widths == (3, 5)


# ---------------------------------------------------------------- (b) one hidden layer, N = 5, Monte Carlo
N, N0 = 5, 6
# well-conditioned: every 4-input block of K1 has eigenvalues >= 0.2 (the nested rule of gaussian_rule with
# reduced nodes loses accuracy on near-singular blocks: with 3 features, a block with eigenvalue 2e-4 gave
# an entry of ntk_cov 11% below its value at the default nodes)
X5 = 0.7 * np.random.default_rng(3).normal(size=(N, N0))
CW, CB = (1.6, 1.3), (0.2, 0.1)
C = math.sqrt(CW[1])
VX = np.concatenate([np.full((N, 1), math.sqrt(CB[0])), math.sqrt(CW[0] / N0) * X5], 1)  # z_x = v_x . q
K1 = VX @ VX.T


def _projected(a, z, w1, w2, w3, w4):
    """Per-neuron scalars of h_x = c a tanh(z_x) (parameters p = (a, q), z = V q, J = grad_p h), each field's
    single-neuron integrand contracted with w1..w4 in its slots, in closed form (Hess_x = c [sigma'_x
    (e_a v_x^T + v_x e_a^T) + a sigma''_x v_x v_x^T], d^3 likewise; v_x . v_y = K1_xy):
    K: h.w1 h.w2; Theta: J_w1 . J_w2; dntk_f: Hess_w1(J_w2, J_w3) h.w4; ddntk_I: d^3 h_w1(J_w2, J_w3, J_w4);
    ddntk_II: (Hess_w1 J_w3).(Hess_w2 J_w4); and the pairs whose covariances are V, ntk_cov, ntk_f2."""
    s = np.tanh(z)
    d = 1 - s ** 2
    e, t = -2 * s * d, (6 * s ** 2 - 2) * d
    a = a[:, None]
    dot = lambda u, w: u @ w  # noqa: E731
    Kd = lambda w: (d * w) @ K1  # noqa: E731  (sum_b K_xb sigma'_b w_b)
    th = lambda u, w: C ** 2 * (dot(s, u) * dot(s, w) + a[:, 0] ** 2 * np.sum((d * u) @ K1 * (d * w), 1))  # noqa: E731
    ss = lambda u, w: C ** 2 * dot(s, u) * dot(s, w)  # noqa: E731
    K2, K3, K4 = Kd(w2), Kd(w3), Kd(w4)
    hjj = C ** 3 * (a * w1 * d * (dot(s, w2)[:, None] * K3 + dot(s, w3)[:, None] * K2)
                    + a ** 3 * w1 * e * K2 * K3).sum(1)
    d3 = C ** 4 * (a ** 2 * w1 * e * (dot(s, w2)[:, None] * K3 * K4 + dot(s, w3)[:, None] * K2 * K4
                                      + dot(s, w4)[:, None] * K2 * K3) + a ** 4 * w1 * t * K2 * K3 * K4).sum(1)
    G3 = d * dot(s, w3)[:, None] + a ** 2 * e * K3
    G4 = d * dot(s, w4)[:, None] + a ** 2 * e * K4
    hh = C ** 4 * (a[:, 0] ** 2 * np.sum(w1 * d * K3, 1) * np.sum(w2 * d * K4, 1)
                   + np.sum((w1 * G3) @ K1 * (w2 * G4), 1))
    h = C * a * s
    return {"K": (dot(h, w1) * dot(h, w2),), "Theta": (th(w1, w2),), "V": (ss(w1, w2), ss(w3, w4)),
            "ntk_cov": (th(w1, w2), th(w3, w4)), "ntk_f2": (th(w1, w2), dot(h, w3) * dot(h, w4)),
            "dntk_f": (hjj * dot(h, w4),), "ddntk_I": (d3,), "ddntk_II": (hh,)}


def test_one_hidden_layer_five_inputs_against_single_neuron_monte_carlo():
    """(b): 3 projections x 8 fields, |z| < Z_MAX; Theta1 = G1 = 0 for one hidden layer; a wrong slot order
    of ntk_cov (Cov(H_ac, H_bd)) is detected. (The closed forms of _projected were checked once against
    jax autodiff of h on 16 random parameter points: equal to 1e-15, relative.)"""
    mk = batched_meta_kernels(X5, depth=1, activation="tanh", C_W=list(CW), C_b=list(CB),
                              n_nodes={1: 48, 2: 32, 3: 16, 4: 10}, ntk_statistics=True)
    assert np.abs(mk.Theta1).max() < 1e-12 * np.abs(mk.Theta).max() and np.abs(mk.G1).max() == 0.0
    rng = np.random.default_rng(0)
    E = np.eye(N)
    projections = [tuple(rng.normal(size=(4, N))), (E[1], E[3], E[4], E[0]), (E[4], E[2], E[0], E[3])]
    M = 2 ** 17
    z = rng.normal(size=(M, VX.shape[1])) @ VX.T
    # the readout weight a ~ N(0, 1) integrated exactly (5-node Gauss-Hermite: the integrands are polynomials
    # of degree <= 8 in a): per z sample, the conditional mean (variance reduction)
    an, aw = np.polynomial.hermite_e.hermegauss(5)
    aw = aw / aw.sum()
    zs = {}
    for j, w in enumerate(projections):
        vals = [_projected(np.full(M, a_k), z, *w) for a_k in an]
        for f in vals[0]:
            T = getattr(mk, f)
            if T.ndim == 2:  # K, Theta: C_b of the readout plus the neuron average
                theory = w[0] @ (T - CB[1]) @ w[1]
            else:
                theory = np.einsum("abcd,a,b,c,d->", T, *w)
            v = [np.stack([vk[f][i] for vk in vals]) for i in range(len(vals[0][f]))]  # (5, M) each
            if len(v) == 1:
                x = aw @ v[0]
            else:  # covariance: E_a[(X - mu_X)(Y - mu_Y)] per z
                mx, my = aw @ v[0].mean(1), aw @ v[1].mean(1)
                x = aw @ ((v[0] - mx) * (v[1] - my))
            zs[(f, j)] = (theory - x.mean()) / (x.std() / math.sqrt(M))
            if (f, j) == ("ntk_cov", 0):  # power: slots 1 and 2 exchanged, Cov(H_ac, H_bd)
                wrong = np.einsum("acbd,a,b,c,d->", T, *w)
                assert abs(wrong - x.mean()) / (x.std() / math.sqrt(M)) > Z_MAX
    assert len(zs) == 24 and max(abs(v) for v in zs.values()) < Z_MAX, zs
