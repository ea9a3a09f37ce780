"""The trained deep ensemble at O(1/n): mean and covariance of the output after gradient descent or flow.

Networks: one-output MLPs of any depth in sft's NTK parameterization (:mod:`sft.conventions`,
:mod:`sft.sim.networks`), every parameter omega_mu standard normal, trained as :func:`sft.sim.train_ensemble`
does: full-batch GD on L = 1/2 sum_a (f(x_a) - y_a)^2 (no 1/P), theta <- theta - eta grad L, or gradient
flow d theta/dt = -grad L. The random initial data enter only through the meta-kernels on the N = P + M
inputs (training inputs first; D_mu = d/domega_mu, PDLT ch. 11, Roberts, Yaida & Hanin 2022):

    H_ab = D_mu f_a D_mu f_b,   dH_xab = D_mu D_nu f_x D_mu f_a D_nu f_b,
    ddHI_xabc = D_mu D_nu D_rho f_x D_mu f_a D_nu f_b D_rho f_c,
    ddHII_xyab = D_mu D_nu f_x D_rho D_nu f_y D_mu f_a D_rho f_b        (sums over repeated indices).

Effective dynamics (this module's derivation; r = f(X) - y the training residual). Taylor-expanding one
GD step d theta = -eta D f_a r_a in the parameters, and truncating where the next meta-kernels are O(1/n^2):

    f'(x)     = f(x) - eta H_xa r_a + (eta^2/2) dH_xab r_a r_b - (eta^3/6) ddHI_xabc r_a r_b r_c,
    H'_xy     = H_xy - eta (dH_xya + dH_yxa) r_a + (eta^2/2)(ddHI_xyab + ddHI_yxab) r_a r_b
                + eta^2 ddHII_xyab r_a r_b,
    dH'_xab   = dH_xab - eta (ddHI_xabc + ddHII_xabc + ddHII_xbac) r_c,      ddH' = ddH.

(dH' from D_rho dH_xab: the three places the extra derivative can land; H' from expanding
D_mu f_x(theta + d theta) to second order; the eta^2 dH, eta^3 ddHI terms are the higher Taylor terms of f.)
Gradient flow keeps the O(eta) terms: df/dt = -H r, dH_xy/dt = -(dH_xya + dH_yxa) r_a,
d dH_xab/dt = -(ddHI + ddHII_xabc + ddHII_xbac) r_c, integrated by classical RK4 (step <= 0.05/lam_max
of Theta_XX: relative error ~ (0.05)^4/120 per unit lam_max t; t = inf is taken at 36/lam_min, where
e^{-lam_min t} < 3e-16).

Averaging. The map Phi(f0, H, dH, ddHI, ddHII) -> (f_0, .., f_k) is deterministic. Its random initial
data have, with eps^2 = 1/n: f0 ~ Gaussian(0, K) + eps^2 (G1, V); H = Theta + eps^2 Theta1 + dTheta with
E[dTheta dTheta] = eps^2 ntk_cov, E[dTheta f f]_c = eps^2 ntk_f2; dH = O(eps^2) with E[dH f] = eps^2
dntk_f, E[dH f f f] = eps^2 (3 dntk_f K + dntk_f3) (E[dH] = E[dH f f] = 0 by the output sign flip); ddH
= eps^2 (ddntk_I, ddntk_II) up to O(eps^3). Phi is linear in f0 at dH = ddH = 0, a polynomial of degree
2 (3) in f0 in the coefficient of dH (ddH), and the O(eps^2) coefficient of E[Phi] is

    mean:  Phi_H[Theta1] + 1/2 sum_k lam_k Phi_HH[v_k, v_k]                       ('ntk')
           + sum_c Phi_{f dH}[e_c, dntk_f[..., c]]                                ('dntk')
           + E_{f ~ N(0,K)} Phi_{ddH}(f)[ddntk_I, ddntk_II]                       ('ddntk')

(ntk_cov = sum_k lam_k v_k v_k^T over the N^2 entries; derivatives at (0, Theta, 0, 0, 0) unless written).
The covariance, with a(H) = Phi(0, H), B the (T, N, N) Jacobian in f0, S(H) = a a^T + B(H) K B(H)^T, and
'+ sym' the transpose in the two input indices:

    cov:   B G1 B^T                                                                 ('kernel')
           + S_H[Theta1] + 1/2 sum_k lam_k S_HH[v_k, v_k] - (mean 'ntk') a^T - a (mean 'ntk')^T
           + sum_{c,d} Phi_{fH}[e_c, ntk_f2[:, :, c, d]] (B e_d)^T + sym           ('ntk')
           + sum_e T_e (B e_e)^T + sym                                              ('dntk')
               T_e = E_f Phi_dH(f)[dntk_f[.., e]] + sum_d Phi_{ff dH}[e_d, K e_e, dntk_f[.., d]]
                     + 1/2 sum_{c,d} Phi_{ff dH}[e_c, e_d, dntk_f3[.., e, d, c]]
           + sum_e E_f Phi_{f ddH}(f)[K e_e] (B e_e)^T + sym                        ('ddntk')

(the dNTK terms are E[f_e dH_alpha g_alpha(f)] for the degree-2 polynomial g, contracted with the cumulants
above; the ddNTK term uses Stein's lemma E[f_e p(f)] = K_ec E[d_c p]). Gaussian averages of the
polynomials of degree <= 3 use the rule E p(f) = p(0) + sum_i [p(L_i) + p(-L_i)]/2 - p(0), K = L L^T
(exact for degree <= 3). All derivatives are nested ``jax.jvp`` of Phi; nothing is fitted.

Orders. dTheta ~ n^{-1/2}, but dH and ddH are O(1/n) as random variables (sums over neurons of
mean-zero terms of size n^{-3/2}, resp. means of size 1/n), so products dH x dH, dH x dTheta and ddH x
dTheta are O(n^{-3/2}) or smaller and do not enter; nor does V (Phi is linear in f0 where only f0 enters).

Checks (tests/test_trained_ensemble.py): one hidden layer (smooth sigma): with single-neuron meta-kernels
on the quadrature of :func:`sft.predict.gd_mean_correction`, the mean equals that independent derivation
to 1e-10, part by part; depth 2, tanh, trained ensembles (:func:`sft.sim.train_ensemble`, n = 32, 64)
fitted as c1 + c2/n: mean, covariance, NTK change and test error within Z_MAX sigma, and dropping the dNTK
or the ddNTK fails; gradient flow = the eta -> 0 limit of GD (Richardson), and at t = inf the training
outputs interpolate (both corrections vanish there). Inputs: the meta-kernels
(:func:`sft.finite.meta_kernels.output_meta_kernels`, or any object with the fields K, G1, Theta, Theta1,
ntk_cov, ntk_f2, dntk_f, dntk_f3, ddntk_I, ddntk_II; dntk_f3 may be None, read as zero: it vanishes at this
order, derivations/meta_kernels.py; any number of inputs: sft.finite.meta_kernels_batched.batched_meta_kernels
with ntk_statistics=True).

Scope: any depth and widths that the meta-kernels cover; smooth activations. For kinked activations (relu)
the ddNTK diverges at coinciding inputs (output_meta_kernels returns inf) and a ValueError says so: the
O(1/n) trained ensemble does not exist there. Cost: nested jvps over batches of O(N^3) directions through
the k-step scan; compile time dominates for small N (schedules are padded with zero steps to multiples of
64, so runs of similar length share a compilation). float64 throughout.
"""
from __future__ import annotations

import functools
import math
import numbers
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..conventions import require_x64

__all__ = ["TrainedEnsemblePrediction", "trained_ensemble_gd", "trained_ensemble_flow", "ntk_change_gd",
           "ntk_change_by_layer_gd", "ntk_change_by_layer_flow", "ensemble_test_error"]

_FIELDS = ("K", "G1", "Theta", "Theta1", "ntk_cov", "ntk_f2", "dntk_f", "dntk_f3", "ddntk_I", "ddntk_II")
_FLOW_STEP = 0.05  # RK4 step in units of 1 / lam_max(Theta_XX)
_PAD = 64  # schedules are padded with zero steps to a multiple of this (one compilation per bucket)
_T_INF = 36.0  # t = inf is evaluated at _T_INF / lam_min(Theta_XX)


class TrainedEnsemblePrediction(NamedTuple):
    """Result of :func:`trained_ensemble_gd` / :func:`trained_ensemble_flow` (T recorded times, N inputs,
    training inputs first). E_n[f_t] = mean + mean_correction / n, Cov_n(f_t) = cov + cov_correction / n
    (+ O(1/n^2)).

    times: (T,) step numbers (GD) or flow times. mean (T, N), cov (T, N, N): infinite width.
    mean_correction (T, N), cov_correction (T, N, N): coefficients of 1/n.
    mean_parts: {'ntk', 'dntk', 'ddntk'} -> (T, N); cov_parts: {'kernel', 'ntk', 'dntk', 'ddntk'} ->
    (T, N, N): the terms of the module docstring (they sum to the corrections).
    """

    times: np.ndarray
    mean: np.ndarray
    mean_correction: np.ndarray
    cov: np.ndarray
    cov_correction: np.ndarray
    mean_parts: dict
    cov_parts: dict


# ------------------------------------------------------------------------------ dynamics
def _contract(P, r, D, I, II):
    """Contractions with the residual r: dH_xya r_a, ddHI_xyab r_a r_b, ddHII_xyab r_a r_b and
    (ddHI_xabc + ddHII_xabc + ddHII_xbac) r_c (the NTK and dNTK updates of the module docstring)."""
    DH = jnp.einsum("xya,a->xy", D[:, :, :P], r)
    IH = jnp.einsum("xyab,a,b->xy", I[:, :, :P, :P], r, r)
    IIH = jnp.einsum("xyab,a,b->xy", II[:, :, :P, :P], r, r)
    DD = jnp.einsum("xabc,c->xab", (I + II + jnp.swapaxes(II, 1, 2))[..., :P], r)
    return DH, IH, IIH, DD


def _gd_step(P, y, eta, state, I, II):
    """One GD step of (f, H, dH) (module docstring)."""
    f, H, D = state
    r = f[:P] - y
    DH, IH, IIH, DD = _contract(P, r, D, I, II)
    f_new = (f - eta * H[:, :P] @ r + eta ** 2 / 2 * jnp.einsum("xab,a,b->x", D[:, :P, :P], r, r)
             - eta ** 3 / 6 * jnp.einsum("xabc,a,b,c->x", I[:, :P, :P, :P], r, r, r))
    H_new = H - eta * (DH + DH.T) + eta ** 2 / 2 * (IH + IH.T) + eta ** 2 * IIH
    return f_new, H_new, D - eta * DD


def _flow_field(P, y, state, I, II):
    """d/dt (f, H, dH) under gradient flow."""
    f, H, D = state
    r = f[:P] - y
    DH, _, _, DD = _contract(P, r, D, I, II)
    return -H[:, :P] @ r, -(DH + DH.T), -DD


def _rk4(P, y, h, state, I, II):
    add = lambda s, k, c: tuple(a + c * b for a, b in zip(s, k))
    k1 = _flow_field(P, y, state, I, II)
    k2 = _flow_field(P, y, add(state, k1, h / 2), I, II)
    k3 = _flow_field(P, y, add(state, k2, h / 2), I, II)
    k4 = _flow_field(P, y, add(state, k3, h), I, II)
    return tuple(s + h / 6 * (a + 2 * b + 2 * c + d) for s, a, b, c, d in zip(state, k1, k2, k3, k4))


def _trajectory(static, y, schedule, I0, II0, x):
    """Phi at the point x = (f0 (N,), H (N, N), dH (N, N, N), s) with (ddHI, ddHII) = s (I0, II0):
    f on all N inputs after every step of ``schedule`` (step sizes (S,)); returns (S + 1, N)."""
    mode, P = static[:2]
    f0, H, D, s = x
    I, II = s * I0, s * II0
    step = (lambda st, h: _gd_step(P, y, h, st, I, II)) if mode == "gd" else (
        lambda st, h: _rk4(P, y, h, st, I, II))

    k = 1 if static[2:] == ("ntk",) else 0  # record f (default) or the NTK H

    def body(state, h):
        state = step(state, h)
        return state, state[k]
    _, fs = jax.lax.scan(body, (f0, H, D), schedule)
    return jnp.concatenate([(f0, H)[k][None], fs])


def _points(N, b, f=None, H=None, D=None, s=None):
    """A batch of b points / tangents (f, H, dH, s); absent parts are zero."""
    z = lambda a, shape: jnp.zeros((b, *shape)) if a is None else jnp.broadcast_to(a, (b, *shape))
    return z(f, (N,)), z(H, (N, N)), z(D, (N, N, N)), z(s, ())


def _cat(*batches):
    return tuple(jnp.concatenate(parts) for parts in zip(*batches))


@functools.partial(jax.jit, static_argnums=0)
def _compute(static, y, schedule, mk):
    """All terms of the module docstring from two batched directional derivatives of Phi.

    Phi is linear in f0 at dH = ddH = 0 and quadratic in f0 in the coefficient of dH, so the derivatives
    in f0 are exact finite differences: Phi_{fH}[e, v] = Phi_H(e)[v] - Phi_H(0)[v], Phi_{ff dH}[u, w, .] =
    g(u + w) - g(u) - g(w) + g(0), Phi_{f dH}[e, .] = (g(e) - g(-e)) / 2 with g = Phi_dH(f)[.].
    """
    N = mk["K"].shape[0]
    phi = functools.partial(_trajectory, static, y, schedule, mk["ddntk_I"], mk["ddntk_II"])
    j1 = lambda x, u: jax.jvp(phi, (x,), (u,))[1]
    j2 = lambda x, u, v: jax.jvp(lambda z: j1(z, u), (x,), (v,))[1]
    d1, d2 = jax.vmap(j1), jax.vmap(j2)
    E = jnp.eye(N)
    Theta, K = mk["Theta"], mk["K"]
    lamK, VK = jnp.linalg.eigh(K)
    L = (VK * jnp.sqrt(jnp.clip(lamK, 0.0))).T  # rows L_i, sum_i L_i L_i^T = K (PSD checked before)
    rule_f = jnp.concatenate([jnp.zeros((1, N)), L, -L])  # nodes of the degree-3 rule
    rule_w = jnp.concatenate([jnp.array([1.0 - N]), jnp.full(2 * N, 0.5)])
    nR = 2 * N + 1
    lam, vecs = jnp.linalg.eigh(mk["ntk_cov"].reshape(N * N, N * N))
    V = vecs.T.reshape(N * N, N, N)  # ntk_cov = sum_k lam_k V_k (x) V_k
    PD = jnp.moveaxis(mk["dntk_f"], 3, 0)  # (c, N, N, N): E[dH f_c] / (1/n)
    F2 = jnp.moveaxis(mk["ntk_f2"], (2, 3), (0, 1)).reshape(N * N, N, N)  # [(c, d)]
    Q3 = None if mk["dntk_f3"] is None else \
        jnp.moveaxis(mk["dntk_f3"], (3, 4, 5), (0, 1, 2)).reshape(N ** 3, N, N, N)  # [(e, d, c)]
    rep = lambda a, r: jnp.repeat(a, r, axis=0)
    til = lambda a, r: jnp.tile(a, (r,) + (1,) * (a.ndim - 1))
    pts = lambda f, H=Theta: _points(N, f.shape[0], f=f, H=H)
    a = phi(tuple(v[0] for v in _points(N, 1, H=Theta)))
    # f0 points: 0, e_j, +-e_c, e_c + e_d (c, d), e_d + K e_e (e, d), K e_e
    Kf = K  # rows K e_e (K symmetric)
    ec_ed = (E[:, None, :] + E[None, :, :]).reshape(N * N, N)  # [(c, d)]
    ed_Ke = (E[None, :, :] + Kf[:, None, :]).reshape(N * N, N)  # [(e, d)]

    # ---------------- first derivatives: (points, tangents) blocks
    blocks = [
        ("a_th1", pts(jnp.zeros((1, N))), _points(N, 1, H=mk["Theta1"])),
        ("B_th1", pts(E), _points(N, N, H=mk["Theta1"])),            # Phi_H(e_j)[Theta1]
        ("B", pts(jnp.zeros((N, N))), _points(N, N, f=E)),          # B e_j
        ("a_v", pts(jnp.zeros((N * N, N))), _points(N, N * N, H=V)),
        ("B_v", pts(til(E, N * N)), _points(N, N ** 3, H=rep(V, N))),  # Phi_H(e_j)[V_k], (k, j)
        ("f2", pts(rep(E, N)), _points(N, N * N, H=F2)),            # Phi_H(e_c)[F2_cd], (c, d)
        ("f2_0", pts(jnp.zeros((N * N, N))), _points(N, N * N, H=F2)),
        ("dm_p", pts(E), _points(N, N, D=PD)),                      # g_c(e_c)
        ("dm_m", pts(-E), _points(N, N, D=PD)),                     # g_c(-e_c)
        ("T1", pts(til(rule_f, N)), _points(N, N * nR, D=rep(PD, nR))),  # g_e on the rule, (e, r)
        ("T2_ab", pts(ed_Ke), _points(N, N * N, D=til(PD, N))),     # g_d(e_d + K e_e), (e, d)
        ("T2_a", pts(til(E, N)), _points(N, N * N, D=til(PD, N))),   # g_d(e_d)
        ("T2_b", pts(rep(Kf, N)), _points(N, N * N, D=til(PD, N))),  # g_d(K e_e)
        ("T2_0", pts(jnp.zeros((N * N, N))), _points(N, N * N, D=til(PD, N))),
        ("m_dd", pts(rule_f), _points(N, nR, s=jnp.ones(nR))),      # Phi_ddH on the rule
    ]
    if Q3 is not None:  # None: dntk_f3 = 0 (it vanishes at this order), its N^3 directions skipped
        blocks += [
            ("T3_ab", pts(til(ec_ed, N)), _points(N, N ** 3, D=Q3)),    # (e, d, c): f = e_d + e_c
            ("T3_a", pts(til(rep(E, N), N)), _points(N, N ** 3, D=Q3)),  # f = e_d
            ("T3_b", pts(til(E, N * N)), _points(N, N ** 3, D=Q3)),      # f = e_c
            ("T3_0", pts(jnp.zeros((N ** 3, N))), _points(N, N ** 3, D=Q3))]
    out = _run_blocks(d1, blocks)
    # ---------------- second derivatives
    blocks2 = [
        ("a_vv", pts(jnp.zeros((N * N, N))), _points(N, N * N, H=V), _points(N, N * N, H=V)),
        ("B_vv", pts(til(E, N * N)), _points(N, N ** 3, H=rep(V, N)), _points(N, N ** 3, H=rep(V, N))),
        ("U", pts(til(rule_f, N)), _points(N, N * nR, f=rep(Kf, nR)), _points(N, N * nR, s=jnp.ones(N * nR))),
    ]
    out.update(_run_blocks(d2, blocks2))

    sym = lambda X: X + jnp.swapaxes(X, 1, 2)
    B = jnp.moveaxis(out["B"], 0, -1)  # (T, N, N_f)
    BK = jnp.einsum("txi,ij->txj", B, K)
    rule = lambda vals, reps: jnp.einsum("r,qr...->q...", rule_w, vals.reshape(reps, nR, *vals.shape[1:]))
    # mean
    m_ntk = out["a_th1"][0] + 0.5 * jnp.einsum("k,ktx->tx", lam, out["a_vv"])
    m_dntk = ((out["dm_p"] - out["dm_m"]) / 2).sum(0)
    m_ddntk = rule(out["m_dd"], 1)[0]
    # covariance: B' and B'' from Phi linear in f0
    Bth1 = jnp.moveaxis(out["B_th1"] - out["a_th1"], 0, -1)
    Bv = jnp.moveaxis((out["B_v"].reshape(N * N, N, *a.shape) - out["a_v"][:, None]), 1, -1)   # (k,T,N,N_f)
    Bvv = jnp.moveaxis((out["B_vv"].reshape(N * N, N, *a.shape) - out["a_vv"][:, None]), 1, -1)
    X2 = (out["f2"] - out["f2_0"]).reshape(N, N, *a.shape).sum(0)  # (d, T, N)
    c_ntk = (sym(jnp.einsum("txi,tyi->txy", Bth1, BK))
             + jnp.einsum("k,ktx,kty->txy", lam, out["a_v"], out["a_v"])
             + jnp.einsum("k,ktxi,ij,ktyj->txy", lam, Bv, K, Bv)
             + 0.5 * sym(jnp.einsum("k,ktxi,tyi->txy", lam, Bvv, BK))
             + sym(jnp.einsum("dtx,tyd->txy", X2, B)))
    T1 = rule(out["T1"], N)  # (e, T, N)
    T2 = (out["T2_ab"] - out["T2_a"] - out["T2_b"] + out["T2_0"]).reshape(N, N, *a.shape).sum(1)
    T3 = 0.0 if Q3 is None else \
        0.5 * (out["T3_ab"] - out["T3_a"] - out["T3_b"] + out["T3_0"]).reshape(N, N * N, *a.shape).sum(1)
    c_dntk = sym(jnp.einsum("etx,tye->txy", T1 + T2 + T3, B))
    c_ddntk = sym(jnp.einsum("etx,tye->txy", rule(out["U"], N), B))
    c_kernel = jnp.einsum("txi,ij,tyj->txy", B, mk["G1"], B)
    cov = jnp.einsum("txi,tyi->txy", BK, B)
    means = dict(ntk=m_ntk, dntk=m_dntk, ddntk=m_ddntk)
    covs = dict(kernel=c_kernel, ntk=c_ntk, dntk=c_dntk, ddntk=c_ddntk)
    return a, cov, means, covs


def _run_blocks(fn, blocks):
    """Evaluate fn on all blocks in one batch; returns {name: (b, ...)}."""
    names = [b[0] for b in blocks]
    sizes = [b[1][0].shape[0] for b in blocks]
    args = [_cat(*[b[i] for b in blocks]) for i in range(1, len(blocks[0]))]
    res = fn(*args)
    return dict(zip(names, jnp.split(res, np.cumsum(sizes)[:-1])))


@functools.partial(jax.jit, static_argnums=0)
def _ntk_change(static, y, schedule, mk):
    """1/n coefficient of E[H_t - H_0] (T, N, N): linear in dH and ddH, a polynomial in f0 (module docstring).

    E[Psi_dH(f)[dH]] = sum_c (Psi_dH(e_c) - Psi_dH(-e_c))[dntk_f[.., c]] / 2 (Psi_dH is quadratic in f0 and
    E[dH] = E[dH f f] = 0), plus E_f Psi_ddH(f)[ddntk] by the degree-3 rule; Psi the NTK trajectory.
    """
    N = mk["K"].shape[0]
    psi = functools.partial(_trajectory, static + ("ntk",), y, schedule, mk["ddntk_I"], mk["ddntk_II"])
    d1 = jax.vmap(lambda x, u: jax.jvp(psi, (x,), (u,))[1])
    E, Theta = jnp.eye(N), mk["Theta"]
    lamK, VK = jnp.linalg.eigh(mk["K"])
    L = (VK * jnp.sqrt(jnp.clip(lamK, 0.0))).T
    rule_f = jnp.concatenate([jnp.zeros((1, N)), L, -L])
    rule_w = jnp.concatenate([jnp.array([1.0 - N]), jnp.full(2 * N, 0.5)])
    PD = jnp.moveaxis(mk["dntk_f"], 3, 0)
    pts = lambda f: _points(N, f.shape[0], f=f, H=Theta)
    out = _run_blocks(d1, [("p", pts(E), _points(N, N, D=PD)), ("m", pts(-E), _points(N, N, D=PD)),
                           ("dd", pts(rule_f), _points(N, 2 * N + 1, s=jnp.ones(2 * N + 1)))])
    dntk = ((out["p"] - out["m"]) / 2).sum(0)
    ddntk = jnp.einsum("r,r...->...", rule_w, out["dd"])
    return dntk, ddntk


def ntk_change_gd(meta_kernels, y_train, *, n_train, learning_rate, n_steps, record_every=1):
    """Representation learning: the 1/n coefficient of the mean NTK change E[H_k - H_0] after k GD steps.

    E_n[H_k - H_0] = Delta_k / n + O(1/n^2): at infinite width the NTK is frozen; at O(1/n) it moves by the
    dNTK (correlated with f0 through the residual) and the ddNTKs (the H' equation of the module
    docstring). Arguments as :func:`trained_ensemble_gd`. Returns (steps (T,), Delta (T, N, N),
    parts {'dntk', 'ddntk'} -> (T, N, N)).

    >>> from sft.predict.trained_ensemble import _toy_meta_kernels
    >>> steps, delta, parts = ntk_change_gd(_toy_meta_kernels(3, seed=0), np.array([0.5, -0.3]), n_train=2,
    ...                                     learning_rate=0.2, n_steps=4)
    >>> delta.shape, float(abs(delta[0]).max())
    ((5, 3, 3), 0.0)
    """
    require_x64("sft.predict.ntk_change_gd")
    from ..sim.training import _check_schedule  # noqa: PLC0415
    lr, k, every = _check_schedule(learning_rate, n_steps, record_every)
    mk, y, lt = _meta(meta_kernels, n_train, y_train)
    _warn_unstable(lr, lt)
    dntk, ddntk = (np.asarray(a)[:k + 1:every] for a in _ntk_change(("gd", n_train), jnp.asarray(y),
                                                                      _padded([float(lr)] * k), mk))
    return np.arange(0, k + 1, every), dntk + ddntk, dict(dntk=dntk, ddntk=ddntk)


@functools.partial(jax.jit, static_argnums=0)
def _layer_change(static, y, schedule, Theta, K, PD, I, IInu, IImu):
    """1/n coefficients (dntk part, ddntk part) of E[H^(m)_t - H^(m)_0], (S + 1, N, N), for ONE layer m.

    At O(1/n) the change is linear in the restricted meta-kernels, with coefficients from the
    infinite-width residual r_t (f' = f - eta Theta_{.X} r): per step, with D the restricted dNTK,
        H^(m)' = H^(m) - eta (D_xya + D_yxa) r_a + (eta^2/2)(I_xyab + I_yxab) r_a r_b + eta^2 IInu_xyab r_a r_b,
        D'_xab = D_xab - eta (I_xabc + IInu_xabc + IImu_xbac) r_c
    (the H' and dH' equations of the module docstring with the NTK index restricted to layer m).
    static = (P, "gd") or (P, "flow"); flow keeps the O(eta) terms (df/dt = -Theta_{.X} r,
    dH^(m)/dt = -(D_xya + D_yxa) r_a, dD/dt = -(I + IInu + IImu^T) r), one RK4 step per schedule entry."""
    P, mode = static
    N = K.shape[0]
    J = I + IInu + jnp.swapaxes(IImu, 1, 2)

    def traj(f0, D0, s):
        def gd(state, h):
            f, Hs, D = state
            r = f[:P] - y
            DH = jnp.einsum("xya,a->xy", D[:, :, :P], r)
            IH = s * jnp.einsum("xyab,a,b->xy", I[:, :, :P, :P], r, r)
            IIH = s * jnp.einsum("xyab,a,b->xy", IInu[:, :, :P, :P], r, r)
            Hs = Hs - h * (DH + DH.T) + h ** 2 / 2 * (IH + IH.T) + h ** 2 * IIH
            D = D - h * s * jnp.einsum("xabc,c->xab", J[..., :P], r)
            return f - h * Theta[:, :P] @ r, Hs, D

        def field(state):
            f, _, D = state
            r = f[:P] - y
            DH = jnp.einsum("xya,a->xy", D[:, :, :P], r)
            return -Theta[:, :P] @ r, -(DH + DH.T), -s * jnp.einsum("xabc,c->xab", J[..., :P], r)

        def rk4(state, h):
            add = lambda st, k, c: tuple(a + c * b for a, b in zip(st, k))  # noqa: E731
            k1 = field(state)
            k2 = field(add(state, k1, h / 2))
            k3 = field(add(state, k2, h / 2))
            k4 = field(add(state, k3, h))
            return tuple(st + h / 6 * (a + 2 * b + 2 * c + d) for st, a, b, c, d in zip(state, k1, k2, k3, k4))

        def body(state, h):
            state = (gd if mode == "gd" else rk4)(state, h)
            return state, state[1]
        _, Hs = jax.lax.scan(body, (f0, jnp.zeros((N, N)), D0), schedule)
        return jnp.concatenate([jnp.zeros((1, N, N)), Hs])

    E = jnp.eye(N)
    lamK, VK = jnp.linalg.eigh(K)
    L = (VK * jnp.sqrt(jnp.clip(lamK, 0.0))).T
    rule_f = jnp.concatenate([jnp.zeros((1, N)), L, -L])
    rule_w = jnp.concatenate([jnp.array([1.0 - N]), jnp.full(2 * N, 0.5)])
    PDc = jnp.moveaxis(PD, 3, 0)
    tv = jax.vmap(traj, in_axes=(0, 0, None))
    dntk = ((tv(E, PDc, 0.0) - tv(-E, PDc, 0.0)) / 2).sum(0)
    ddntk = jnp.einsum("r,r...->...", rule_w, tv(rule_f, jnp.zeros((2 * N + 1, N, N, N)), 1.0))
    return dntk, ddntk


def ntk_change_by_layer_gd(meta_kernels, layer_meta_kernels, y_train, *, n_train, learning_rate, n_steps,
                           record_every=1):
    """Representation learning layer by layer: the 1/n coefficient of E[H^(m)_k - H^(m)_0] for every layer m.

    The NTK is a sum over layers, H = sum_m H^(m) with H^(m)_ab = sum_{mu in layer m} D_mu f_a D_mu f_b
    (layers m = 1 .. L + 1, readout last). E_n[H^(m)_k - H^(m)_0] = Delta^(m)_k / n + O(1/n^2), from
    the same effective dynamics as :func:`ntk_change_gd` with the NTK index restricted to layer m
    (equations in ``_layer_change``): the dNTK and ddNTKs restricted in that index
    (:func:`sft.finite.layer_meta_kernels`) move H^(m), driven by the infinite-width residual. Summed
    over m it is :func:`ntk_change_gd` (tested to 1e-10).

    meta_kernels: :func:`sft.finite.meta_kernels.output_meta_kernels` on the N inputs (training first);
    layer_meta_kernels: :func:`sft.finite.layer_meta_kernels` on the same inputs; other arguments as
    :func:`ntk_change_gd`. Returns (steps (T,), Delta (L + 1, T, N, N), parts {'dntk', 'ddntk'} ->
    (L + 1, T, N, N)). Smooth activations only (as :func:`ntk_change_gd`). float64.

    >>> from sft.finite import layer_meta_kernels, output_meta_kernels
    >>> x = np.array([[1.0, 0.2, 0.0], [-0.5, 0.7, 0.3], [0.3, -1.0, 0.5]])
    >>> net = dict(depth=2, activation="tanh", C_W=1.0, C_b=0.0)
    >>> mk, lm = output_meta_kernels(x, **net), layer_meta_kernels(x, **net)
    >>> steps, delta, parts = ntk_change_by_layer_gd(mk, lm, np.array([0.5, -0.3]), n_train=2,
    ...                                              learning_rate=0.5, n_steps=4)
    >>> _, total, _ = ntk_change_gd(mk, np.array([0.5, -0.3]), n_train=2, learning_rate=0.5, n_steps=4)
    >>> delta.shape, bool(np.abs(delta.sum(0) - total).max() < 1e-10 * np.abs(total).max())
    ((3, 5, 3, 3), True)
    """
    require_x64("sft.predict.ntk_change_by_layer_gd")
    from ..sim.training import _check_schedule  # noqa: PLC0415
    lr, k, every = _check_schedule(learning_rate, n_steps, record_every)
    mk, y, lt = _meta(meta_kernels, n_train, y_train)
    _warn_unstable(lr, lt)
    lmk = _layer_meta(mk, layer_meta_kernels)
    sched = _padded([float(lr)] * k)
    f = jax.vmap(_layer_change, in_axes=(None, None, None, None, None, 0, 0, 0, 0))
    dntk, ddntk = (np.asarray(a)[:, :k + 1:every] for a in f(
        (n_train, "gd"), jnp.asarray(y), sched, mk["Theta"], mk["K"], lmk["dntk_f"], lmk["ddntk_I"],
        lmk["ddntk_II_nu"], lmk["ddntk_II_mu"]))
    return np.arange(0, k + 1, every), dntk + ddntk, dict(dntk=dntk, ddntk=ddntk)


def _layer_meta(mk, layer_meta_kernels):
    """Checked arrays of a LayerMetaKernels on the inputs of mk (Theta summing to mk's Theta)."""
    N = mk["K"].shape[0]
    fields = ("Theta", "dntk_f", "ddntk_I", "ddntk_II_nu", "ddntk_II_mu")
    missing = [f for f in fields if not hasattr(layer_meta_kernels, f)]
    if missing:
        raise ValueError(f"layer_meta_kernels lacks the fields {missing}: pass the LayerMetaKernels of "
                         "sft.finite.layer_meta_kernels")
    lmk = {f: np.asarray(getattr(layer_meta_kernels, f), dtype=np.float64) for f in fields}
    n_layers = lmk["Theta"].shape[0] if lmk["Theta"].ndim == 3 else -1
    for f, nd in zip(fields, (2, 4, 4, 4, 4)):
        if lmk[f].shape != (n_layers,) + (N,) * nd or n_layers < 2:
            raise ValueError(f"layer_meta_kernels.{f} has shape {lmk[f].shape}: it must be "
                             f"(L + 1,) + {(N,) * nd} with L + 1 >= 2 layers and N = {N} inputs (from "
                             "meta_kernels.K)")
        if not np.all(np.isfinite(lmk[f])):
            raise ValueError(f"layer_meta_kernels.{f} contains NaN or inf: it must be finite")
    scale = np.abs(mk["Theta"]).max()
    err = np.abs(lmk["Theta"].sum(0) - mk["Theta"]).max()
    if err > 1e-8 * scale:
        raise ValueError(f"layer_meta_kernels.Theta sums to a kernel that differs from meta_kernels.Theta by "
                         f"{err:.3g} (> 1e-8 x max|Theta| = {1e-8 * scale:.3g}): both must be computed on the "
                         "same inputs and network")
    return lmk


def ntk_change_by_layer_flow(meta_kernels, layer_meta_kernels, y_train, *, n_train, times):
    """:func:`ntk_change_by_layer_gd` under gradient flow: the 1/n coefficient of E[H^(m)_t - H^(m)_0] for
    every layer m at the flow times ``times`` (the eta -> 0 limit at k eta = t; RK4 as
    :func:`trained_ensemble_flow`, step <= 0.05 / lam_max(Theta_XX); the last time may be np.inf).

    Equations: the flow keeps the O(eta) terms of the restricted dynamics (``_layer_change``),
    dH^(m)_xy/dt = -(D^(m)_xya + D^(m)_yxa) r_a, dD^(m)_xab/dt = -(I^(m)_xabc + IInu^(m)_xabc
    + IImu^(m)_xbac) r_c, r the infinite-width residual. Checks (tests/test_ntk_change_flow.py): equal to the
    Richardson limit 2 Delta_GD(eta/2, 2k) - Delta_GD(eta, k) up to O(eta^2); the layers' sum depends only
    on the summed meta-kernels. Arguments as :func:`ntk_change_by_layer_gd` and
    :func:`trained_ensemble_flow`. Returns (times (T,), Delta (L + 1, T, N, N), parts {'dntk', 'ddntk'}).

    >>> from sft.predict.trained_ensemble import _toy_layer_meta_kernels, _toy_meta_kernels
    >>> mk = _toy_meta_kernels(3, seed=0)
    >>> t, delta, parts = ntk_change_by_layer_flow(mk, _toy_layer_meta_kernels(mk, 2, seed=1),
    ...                                            np.array([0.5, -0.3]), n_train=2, times=[0.0, 1.0])
    >>> delta.shape, float(abs(delta[:, 0]).max())
    ((2, 2, 3, 3), 0.0)
    """
    require_x64("sft.predict.ntk_change_by_layer_flow")
    mk, y, lt = _meta(meta_kernels, n_train, y_train)
    lmk = _layer_meta(mk, layer_meta_kernels)
    t, steps, marks = _flow_steps(times, lt)
    f = jax.vmap(_layer_change, in_axes=(None, None, None, None, None, 0, 0, 0, 0))
    dntk, ddntk = (np.asarray(a)[:, marks] for a in f(
        (n_train, "flow"), jnp.asarray(y), _padded(steps), mk["Theta"], mk["K"], lmk["dntk_f"], lmk["ddntk_I"],
        lmk["ddntk_II_nu"], lmk["ddntk_II_mu"]))
    return t, dntk + ddntk, dict(dntk=dntk, ddntk=ddntk)


def ensemble_test_error(prediction, y_test, *, n_train):
    """Expected squared test error of one trained network, bias^2 + variance at O(1/n).

    E_n[(f_t(x*) - y*)^2] averaged over the M test inputs (indices >= ``n_train`` of ``prediction``)
    = e0 + e1 / n + O(1/n^2), with (m, c, Sigma, Sigma1 the fields of a :class:`TrainedEnsemblePrediction`)

        e0 = mean_x [(m(x) - y(x))^2 + Sigma_xx],    e1 = mean_x [2 (m(x) - y(x)) c(x) + Sigma1_xx]

    (the square of E f = m + c/n expanded to O(1/n)). y_test (M,). Returns (e0 (T,), e1 (T,)).

    >>> from sft.predict.trained_ensemble import _toy_meta_kernels
    >>> mk = _toy_meta_kernels(3, seed=0)
    >>> r = trained_ensemble_gd(mk, np.array([0.5, -0.3]), n_train=2, learning_rate=0.2, n_steps=2)
    >>> e0, e1 = ensemble_test_error(r, np.array([0.1]), n_train=2)
    >>> e0.shape, bool(abs(e0[0] - (0.1 ** 2 + mk.K[2, 2])) < 1e-12)   # step 0: y*^2 + K(x*, x*)
    ((3,), True)
    """
    if not isinstance(prediction, TrainedEnsemblePrediction):
        raise ValueError(f"prediction={type(prediction).__name__} is not allowed: give the "
                         "TrainedEnsemblePrediction of trained_ensemble_gd or trained_ensemble_flow")
    N = prediction.mean.shape[1]
    if isinstance(n_train, bool) or not isinstance(n_train, numbers.Integral) or not 1 <= n_train < N:
        raise ValueError(f"n_train={n_train!r} is not allowed: it must be an integer in [1, N - 1 = {N - 1}] "
                         "(at least one test input)")
    y = np.asarray(y_test, dtype=np.float64)
    if y.shape != (N - n_train,) or not np.all(np.isfinite(y)):
        raise ValueError(f"y_test has shape {y.shape}: it must be finite with shape ({N - n_train},)")
    m, c = prediction.mean[:, n_train:], prediction.mean_correction[:, n_train:]
    var = np.diagonal(prediction.cov, axis1=1, axis2=2)[:, n_train:]
    var1 = np.diagonal(prediction.cov_correction, axis1=1, axis2=2)[:, n_train:]
    return np.mean((m - y) ** 2 + var, 1), np.mean(2 * (m - y) * c + var1, 1)


# ------------------------------------------------------------------------------ validation
def _meta(meta_kernels, n_train, y_train):
    missing = [k for k in _FIELDS if not hasattr(meta_kernels, k)]
    if missing:
        raise ValueError(f"meta_kernels lacks the fields {missing}: pass the OutputMetaKernels of "
                         "sft.finite.meta_kernels.output_meta_kernels (fields " + ", ".join(_FIELDS) + ")")
    unset = [k for k in _FIELDS if k != "dntk_f3" and getattr(meta_kernels, k) is None]
    if unset:
        raise ValueError(f"meta_kernels.{unset[0]} is None: the trained ensemble needs every field {unset} "
                         "(sft.finite.meta_kernels_batched.batched_meta_kernels computes them with "
                         "ntk_statistics=True)")
    # dntk_f3 = None: zero (it vanishes at this order; batched_meta_kernels for N > 4 returns None)
    mk = {k: None if k == "dntk_f3" and meta_kernels.dntk_f3 is None else
          np.asarray(getattr(meta_kernels, k), dtype=np.float64) for k in _FIELDS}
    N = mk["K"].shape[0] if mk["K"].ndim == 2 else -1
    ranks = dict(K=2, G1=2, Theta=2, Theta1=2, ntk_cov=4, ntk_f2=4, dntk_f=4, dntk_f3=6, ddntk_I=4,
                 ddntk_II=4)
    for k, nd in ((k, nd) for k, nd in ranks.items() if mk[k] is not None):
        if mk[k].shape != (N,) * nd:
            raise ValueError(f"meta_kernels.{k} has shape {mk[k].shape}: it must be {(N,) * nd} "
                             f"(N = {N} inputs, from meta_kernels.K)")
        if not np.all(np.isfinite(mk[k])):
            raise ValueError(f"meta_kernels.{k} contains NaN or inf: it must be finite (for kinked activations "
                             "such as relu, output_meta_kernels returns inf for the ddNTK entries with "
                             "coinciding inputs, which diverge: the O(1/n) trained ensemble does not exist "
                             "there; the leading NTK change is O(n^-1/2), from neurons crossing the kink: "
                             "sft.predict.kink_ntk_change, one hidden layer)")
    if isinstance(n_train, bool) or not isinstance(n_train, numbers.Integral) or not 1 <= n_train <= N:
        raise ValueError(f"n_train={n_train!r} is not allowed: it must be an integer in [1, N = {N}] "
                         "(the first n_train inputs of the meta-kernels are the training inputs)")
    y = np.asarray(y_train, dtype=np.float64)
    if y.shape != (n_train,) or not np.all(np.isfinite(y)):
        raise ValueError(f"y_train has shape {y.shape}: it must be finite with shape ({n_train},)")
    for k in ("K", "Theta"):
        scale = np.max(np.abs(mk[k]))
        lam = np.linalg.eigvalsh(mk[k])
        if lam[0] < -1e-10 * scale:
            raise ValueError(f"meta_kernels.{k} has eigenvalue {lam[0]:.3g} < 0 (tolerance 1e-10 x max|{k}| "
                             f"= {1e-10 * scale:.3g}): it must be positive semi-definite")
    lt = np.linalg.eigvalsh(mk["Theta"][:n_train, :n_train])
    return mk, y, lt


def trained_ensemble_gd(meta_kernels, y_train, *, n_train, learning_rate, n_steps,
                        record_every=1) -> TrainedEnsemblePrediction:
    """Mean and covariance at O(1/n) of the outputs after k full-batch GD steps (module docstring).

    ``meta_kernels``: the output meta-kernels on N inputs, the first ``n_train`` of them the training
    inputs (:func:`sft.finite.meta_kernels.output_meta_kernels`); y_train (n_train,); learning_rate eta,
    n_steps k, recorded every ``record_every`` steps. Networks and updates as :func:`sft.sim.train_ensemble`.
    A learning rate at or above 2 / lam_max(Theta_XX) (:func:`sft.predict.gd_stability_limit`) warns
    with the limit. Returns a :class:`TrainedEnsemblePrediction` over the recorded steps.

    >>> from sft.predict.trained_ensemble import _toy_meta_kernels
    >>> mk = _toy_meta_kernels(3, seed=0)
    >>> r = trained_ensemble_gd(mk, np.array([0.5, -0.3]), n_train=2, learning_rate=0.2, n_steps=4)
    >>> r.mean_correction.shape, r.cov_correction.shape, float(abs(r.mean_correction[0]).max())
    ((5, 3), (5, 3, 3), 0.0)
    """
    require_x64("sft.predict.trained_ensemble_gd")
    from ..sim.training import _check_schedule  # noqa: PLC0415
    lr, k, every = _check_schedule(learning_rate, n_steps, record_every)
    mk, y, lt = _meta(meta_kernels, n_train, y_train)
    _warn_unstable(lr, lt)
    a, cov, means, covs = _compute(("gd", n_train), jnp.asarray(y), _padded([float(lr)] * k), mk)
    rec = slice(None, k + 1, every)
    return _result(np.arange(0, k + 1, every), a, cov, means, covs, rec)


def trained_ensemble_flow(meta_kernels, y_train, *, n_train, times) -> TrainedEnsemblePrediction:
    """Mean and covariance at O(1/n) of the outputs under gradient flow d theta/dt = -grad L at ``times``.

    ``times``: increasing flow times >= 0; the last may be np.inf (convergence; needs Theta_XX positive
    definite). RK4 on the effective dynamics (module docstring), step <= 0.05 / lam_max(Theta_XX).
    Other arguments as :func:`trained_ensemble_gd`.

    >>> from sft.predict.trained_ensemble import _toy_meta_kernels
    >>> mk = _toy_meta_kernels(3, seed=1)
    >>> mk = mk._replace(Theta=mk.Theta + np.eye(3))
    >>> r = trained_ensemble_flow(mk, np.array([0.5, -0.3]), n_train=2, times=[1.0, np.inf])
    >>> r.times.tolist(), bool(np.abs(r.mean[-1, :2] - [0.5, -0.3]).max() < 1e-9)  # interpolates at t = inf
    ([1.0, inf], True)
    """
    require_x64("sft.predict.trained_ensemble_flow")
    mk, y, lt = _meta(meta_kernels, n_train, y_train)
    t, steps, marks = _flow_steps(times, lt)
    a, cov, means, covs = _compute(("flow", n_train), jnp.asarray(y), _padded(steps), mk)
    return _result(t, a, cov, means, covs, marks)


def _flow_steps(times, lt):
    """(times, RK4 step sizes, index of each time in the trajectory) for flow times ``times``; lt the
    eigenvalues of Theta_XX (t = inf at _T_INF / lam_min, steps <= _FLOW_STEP / lam_max)."""
    t = np.asarray(times, dtype=np.float64)
    if t.ndim != 1 or len(t) < 1 or np.isnan(t).any() or t[0] < 0 or np.any(np.diff(t) <= 0) \
            or np.isinf(t[:-1]).any():
        raise ValueError(f"times={times!r} is not allowed: give increasing times >= 0 (only the last may "
                         "be inf)")
    if lt[-1] <= 0:
        raise ValueError("meta_kernels.Theta vanishes on the training inputs: no dynamics")
    t_end = t.copy()
    if np.isinf(t[-1]):
        if lt[0] <= 1e-10 * lt[-1]:
            raise ValueError(f"times contains inf but Theta_XX has lambda_min = {lt[0]:.3g} <= 1e-10 "
                             f"lambda_max: the flow does not converge; use finite times")
        t_end[-1] = max(_T_INF / lt[0], t[-2] if len(t) > 1 else 0.0)
    h_max = _FLOW_STEP / lt[-1]
    steps, marks = [], [0]
    for t0, t1 in zip(np.concatenate([[0.0], t_end[:-1]]), t_end):
        n = int(math.ceil((t1 - t0) / h_max)) if t1 > t0 else 0
        steps += [(t1 - t0) / max(n, 1)] * n
        marks.append(marks[-1] + n)
    return t, steps, np.asarray(marks[1:])


def _padded(steps):
    """Step sizes padded with zero steps (the identity, for GD and RK4) to a multiple of _PAD, so that
    runs of similar length share one compilation."""
    n = max(_PAD, -(-len(steps) // _PAD) * _PAD)
    return jnp.asarray(list(steps) + [0.0] * (n - len(steps)), dtype=jnp.float64)


def _warn_unstable(lr, lt):
    if lt[-1] > 0 and lr >= 2.0 / lt[-1]:
        warnings.warn(f"learning_rate={lr!r} is at or above the stability limit 2/lambda_max(Theta_XX) = "
                      f"{2.0 / lt[-1]:.6g} of the infinite-width dynamics: the expansion in 1/n describes "
                      "a diverging trajectory", RuntimeWarning, stacklevel=3)


def _result(times, a, cov, means, covs, rec):
    means = {k: np.asarray(v)[rec] for k, v in means.items()}
    covs = {k: np.asarray(v)[rec] for k, v in covs.items()}
    return TrainedEnsemblePrediction(np.asarray(times), np.asarray(a)[rec], sum(means.values()),
                                     np.asarray(cov)[rec], sum(covs.values()), means, covs)


class _Toy(NamedTuple):
    K: np.ndarray
    G1: np.ndarray
    Theta: np.ndarray
    Theta1: np.ndarray
    ntk_cov: np.ndarray
    ntk_f2: np.ndarray
    dntk_f: np.ndarray
    dntk_f3: np.ndarray
    ddntk_I: np.ndarray
    ddntk_II: np.ndarray


def _toy_meta_kernels(N, seed):
    """Synthetic meta-kernels with the symmetries of the real ones (for examples and unit tests only)."""
    rng = np.random.default_rng(seed)
    psd = lambda: (lambda A: A @ A.T / N + 0.1 * np.eye(N))(rng.normal(size=(N, N)))
    sym2 = lambda T: (T + np.swapaxes(T, 0, 1)) / 2
    g = rng.normal(size=(N, N, N))
    ntk_cov = np.einsum("kab,kcd->abcd", g + np.swapaxes(g, 1, 2), g + np.swapaxes(g, 1, 2)) / N ** 2
    f2 = rng.normal(size=(N,) * 4) * 0.1
    f2 = sym2(f2)
    f2 = (f2 + np.swapaxes(f2, 2, 3)) / 2
    d = rng.normal(size=(N,) * 4) * 0.1
    d = (d + np.swapaxes(d, 1, 2)) / 2
    i = rng.normal(size=(N,) * 4) * 0.1
    i = sum(np.transpose(i, (0, *p)) for p in ((1, 2, 3), (1, 3, 2), (2, 1, 3), (2, 3, 1), (3, 1, 2), (3, 2, 1))) / 6
    ii = rng.normal(size=(N,) * 4) * 0.1
    ii = (ii + np.transpose(ii, (1, 0, 3, 2))) / 2
    return _Toy(psd(), 0.1 * psd(), psd(), 0.1 * psd(), ntk_cov, f2, d, np.zeros((N,) * 6), i, ii)


class _ToyLayers(NamedTuple):
    Theta: np.ndarray
    dntk_f: np.ndarray
    ddntk_I: np.ndarray
    ddntk_II_nu: np.ndarray
    ddntk_II_mu: np.ndarray


def _toy_layer_meta_kernels(mk, n_layers, seed):
    """A random split of a toy's meta-kernels into n_layers restricted ones that sum to them (the sum rule of
    :class:`sft.finite.LayerMetaKernels`; for examples and unit tests only)."""
    rng = np.random.default_rng(seed)

    def split(X):
        parts = [rng.normal(size=X.shape) * 0.5 * np.abs(X).max() for _ in range(n_layers - 1)]
        return np.stack(parts + [X - sum(parts)])
    sym = lambda T: (T + np.swapaxes(T, -1, -2)) / 2  # noqa: E731
    return _ToyLayers(sym(split(mk.Theta)), split(mk.dntk_f), split(mk.ddntk_I), split(mk.ddntk_II),
                      split(mk.ddntk_II))
