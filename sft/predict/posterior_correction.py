"""First (O(1/n)) correction to the Bayesian posterior mean from the prior's fourth cumulant.

Model: one network output f over N points (training indices ``train``, test indices ``test``),
prior with covariance K and connected four-point function (fourth cumulant) U, higher cumulants
of higher order in 1/n; labels y = f_train + eps, eps ~ N(0, sigma^2 I) (``noise`` = sigma^2).

Derivation (first-order Edgeworth expansion). The characteristic function of z = (y, f_*) is
exp(-t.S.t/2 + U_{ijkl} t_i t_j t_k t_l / 24 + ...) (the Gaussian noise adds nothing to U), so its
density is p(z) = [1 + (1/24) U_{ijkl} d_i d_j d_k d_l] phi_S(z) + O(U^2), with S the covariance of
z (training block K~ = K_train + sigma^2 I). Integrate f_* against p(y, f_*): with
m(y) = k_*^T K~^{-1} y and a = k_*^T K~^{-1} (so d_b m = a_b), terms with all four derivative indices
on training labels give U_{bcde} d_bcde[phi(y) m(y)] = U_{bcde}[m d_bcde phi + 4 a_b d_cde phi];
terms with one index on the test point give, by parts, -4 U_{*cde} d_cde phi; two or more test
indices integrate to zero. Dividing by p(y) = phi(y) [1 + (1/24) U_{bcde} d_bcde phi / phi] and using
d_cde phi(y) / phi(y) = -[y~_c y~_d y~_e - 3 K~^{-1}_{(cd} y~_{e)}] with y~ = K~^{-1} y:

    <f_*> = m(y) + (1/6) [U_{*cde} - a_b U_{bcde}] [y~_c y~_d y~_e - 3 K~^{-1}_{cd} y~_e] + O(U^2).

This is the form of the theory sheet (shared/THEORY.md, "Bayesian posterior, first correction");
cf. Roberts, Yaida & Hanin, *The Principles of Deep Learning Theory* (2022), sec. 6.4, and
Naveh, Ben-David, Sompolinsky & Ringel (2021). Checked in tests against exact Bayes for Gaussian
scale-mixture priors (tests/test_posterior_correction.py).

Covariance (same expansion, in coordinates adapted to the Gaussian conditional). Change variables
(y, f_*) -> (y, w), w = f_* - a y; under phi_S, y ~ N(0, K~) and w ~ N(0, Sigma) are independent,
Sigma = K_** - a k_*. Cumulants are tensors, so the fourth cumulant of (y, w) is U contracted with the
map R = [-a, 1] on each test slot: U^(k) has k slots on w and 4 - k on y, e.g.
U^(1)_{mcde} = U_{mcde} - a_mb U_{bcde}, U^(2)_{mnde} = R_mi R_nj U_{ijde} (i, j over train and test).
The density is phi_K~(y) phi_Sigma(w) + (1/24) sum_k C(4,k) U^(k) (d_w^k phi_Sigma)(d_y^(4-k) phi_K~).
Against h(w), int h d_w^k phi_Sigma dw = (-1)^k <d^k h>_Sigma, so h = 1 keeps k = 0 only (p(y)),
h = w_m keeps k = 1 (the mean above, with U_{*cde} - a_b U_{bcde} = U^(1)) and h = w_m w_n keeps k = 0
(Sigma_mn p(y)) and k = 2 (6/24 x 2 U^(2)_{mnde} d_de phi). With d_de phi(y) / phi(y) = y~_d y~_e - K~^{-1}_de
and Cov(f_* | y) = Cov(w | y) = E[w w | y] - E[w | y] E[w | y] (the last product is O(U^2)):

    Cov(f_*, f_*' | y) = Sigma + (1/2) U^(2)_{mnde} [y~_d y~_e - K~^{-1}_{de}] + O(U^2).

Kernel shift (linear response). For depth >= 2 the prior covariance is K + G1/n (E[G^(L+1)],
:mod:`sft.finite.vertex`); to first order in dK = G1/n the Gaussian posterior moves by

    Delta<f_*> = R_mi dK_{ib} y~_b = (dK_{*b} - a_c dK_{cb}) y~_b,      Delta Sigma = R dK R^T,

(differentiate m = k_*^T K~^{-1} y and Sigma = K_** - k_*^T K~^{-1} k_*). One hidden layer: G1 = 0 exactly
(layer 1 is Gaussian). For one network output at widths (n_1 .. n_L) the total O(1/n) correction is the sum
of the U-terms with U = (1/n_L)[V + V + V] (:func:`quartic_cumulant_from_vertex`) and the G1-terms with
dK = G1^(L+1)/n_L (:func:`network_posterior_correction`): O(1/n^2) is left out (U^2, sixth cumulant,
1/n^2 kernel shift). Checked against exact Bayes for scale mixtures (covariance) and against importance
sampling and Langevin sampling of finite networks' posteriors (tests/test_posterior_correction_network.py,
sims/fig_posterior_correction.py).
"""
import itertools
from typing import NamedTuple

import numpy as np

from ..kernels.activations import get_activation
from ..conventions import check_depth, check_widths, layer_constants, pd_inverse
from ..finite.vertex import multi_input
from ..kernels.recursion import nngp

__all__ = ["quartic_cumulant_from_vertex", "posterior_mean_correction", "posterior_cov_correction",
           "kernel_shift_correction", "NetworkPosteriorCorrection", "network_posterior_correction",
           "ImportancePosterior", "importance_posterior"]


def _finite(name, a, ndim):
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != ndim:
        raise ValueError(f"{name} has shape {arr.shape}: it must have {ndim} dimensions")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf: it must be finite")
    return arr


def _four_tensor(name, T, N=None):
    T = _finite(name, T, 4)
    if len(set(T.shape)) != 1 or (N is not None and T.shape[0] != N):
        want = f"({N}, {N}, {N}, {N})" if N is not None else "(N, N, N, N)"
        raise ValueError(f"{name} has shape {T.shape}: it must be {want}")
    return T


def quartic_cumulant_from_vertex(V, n) -> np.ndarray:
    """Fourth cumulant of one network output, U_{abcd} = (1/n)[V_(ab)(cd) + V_(ac)(bd) + V_(ad)(bc)].

    V (N, N, N, N): the four-point vertex of the output layer l = L + 1, V[a, b, c, d] = V^(l)_{(ab)(cd)},
    i.e. ``multi_input(...).V[-1]``, normalized so that n Cov(G_ab, G_cd) = V_{(ab)(cd)} with n = n_L the
    width of the last hidden layer (sft.finite.vertex conventions). Since the output is Gaussian given
    G, E[z_a z_b z_c z_d] - (Wick with E[G]) = Cov(G_ab, G_cd) + Cov(G_ac, G_bd) + Cov(G_ad, G_bc)
    (PDLT eq. (4.77) and sec. 4.3). Returns U (N, N, N, N), fully symmetric when V has the pair symmetries.
    """
    V = _four_tensor("V", V)
    n = float(n)
    if not np.isfinite(n) or n <= 0:
        raise ValueError(f"n = {n}: the width must be a finite positive number")
    return (V + np.einsum("acbd->abcd", V) + np.einsum("adbc->abcd", V)) / n


def _indices(name, idx, N):
    arr = np.asarray(idx)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} = {idx!r}: it must be a non-empty 1-D array of integer indices")
    if arr.min() < 0 or arr.max() >= N:
        raise ValueError(f"{name} = {idx!r}: indices must lie in [0, {N})")
    if len(set(arr.tolist())) != arr.size:
        raise ValueError(f"{name} = {idx!r}: indices must be distinct")
    return arr


def _setup(K, y, train, test, noise):
    """Checked (K, train, test, Kinv = K~^{-1}, y~ = K~^{-1} y, R (M, N) = E_test - a E_train)."""
    K = _finite("K", K, 2)
    if K.shape[0] != K.shape[1]:
        raise ValueError(f"K has shape {K.shape}: it must be square (N, N)")
    if np.max(np.abs(K - K.T), initial=0.0) > 1e-12 * np.max(np.abs(K), initial=0.0):
        raise ValueError("K is not symmetric: a covariance matrix must be")
    N = K.shape[0]
    train, test = _indices("train", train, N), _indices("test", test, N)
    y = _finite("y", y, 1)
    if y.shape != train.shape:
        raise ValueError(f"y has shape {y.shape}: it must be ({train.size},), one label per training index")
    noise = float(noise)
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise = {noise}: it must be a finite variance >= 0")
    # Cholesky inverse; ValueError if singular within 10 P eps lam_max (sft.conventions.psd_eigh)
    Kinv = pd_inverse(f"K_train + noise I (noise = {noise:g})", K[np.ix_(train, train)] + noise * np.eye(train.size))
    R = np.zeros((test.size, N))
    R[np.arange(test.size), test] = 1.0
    R[:, train] -= K[np.ix_(test, train)] @ Kinv                                # a = k_*^T K~^{-1}
    return K, train, test, Kinv, Kinv @ y, R


def posterior_mean_correction(K, U, y, *, train, test, noise) -> np.ndarray:
    """First-order shift of the posterior mean at the test points from the prior's fourth cumulant.

        Delta<f_*> = (1/6) [U_{*cde} - (k_*^T K~^{-1})_b U_{bcde}] [y~_c y~_d y~_e - 3 K~^{-1}_{cd} y~_e],

    K~ = K_train + noise I, y~ = K~^{-1} y, indices b..e over training points (derivation: module
    docstring). Add to the Gaussian mean k_*^T K~^{-1} y (:func:`sft.predict.gp_posterior`).

    K (N, N) prior covariance over all points; U (N, N, N, N) fourth cumulant (e.g. from
    :func:`quartic_cumulant_from_vertex`); y (P,) labels; train (P,), test (M,) integer indices into
    the N points; noise = sigma^2 >= 0. Returns (M,). Linear in U.
    """
    K, train, test, Kinv, yt, R = _setup(K, y, train, test, noise)
    U = _four_tensor("U", U, K.shape[0])
    return _mean_from_block(U[:, :, train][:, :, :, train], train, Kinv, yt, R)


def _mean_from_block(Ub, train, Kinv, yt, R):
    """(1/6) R_mi U_{icde} W_cde from the block Ub = U[:, :, train, train] (N, N, P, P)."""
    W = (np.einsum("c,d,e->cde", yt, yt, yt) - np.einsum("cd,e->cde", Kinv, yt)
         - np.einsum("ce,d->cde", Kinv, yt) - np.einsum("de,c->cde", Kinv, yt))  # symmetric in c,d,e
    return R @ np.einsum("icde,cde->i", Ub[:, train], W) / 6.0


def _cov_from_block(Ub, Kinv, yt, R):
    """(1/2) R_mi R_nj U_{ijde} [y~_d y~_e - K~^{-1}_de] from Ub = U[:, :, train, train]."""
    out = 0.5 * R @ np.einsum("ijde,de->ij", Ub, np.outer(yt, yt) - Kinv) @ R.T
    return 0.5 * (out + out.T)


def posterior_cov_correction(K, U, y, *, train, test, noise) -> np.ndarray:
    """First-order shift of the posterior covariance of the test outputs from the prior's fourth cumulant.

        Delta Cov(f_m, f_n | y) = (1/2) R_mi R_nj U_{ijde} [y~_d y~_e - K~^{-1}_{de}],   R = [-a, 1],

    i.e. R_mi U_{i...} = U_{m...} - a_mb U_{b...} on each test slot (a = k_*^T K~^{-1}, K~ = K_train + noise I,
    y~ = K~^{-1} y; d, e over training points; derivation: module docstring). Add to the Gaussian
    covariance K_** - k_*^T K~^{-1} k_* (:func:`sft.predict.gp_posterior`). Arguments as
    :func:`posterior_mean_correction`; returns (M, M), symmetric, linear in U. Vanishes for a test point
    equal to a training point when noise = 0 (R then kills it).

    >>> K = np.array([[1.0, 0.5], [0.5, 1.0]])
    >>> U = 0.1 * (np.einsum("ab,cd->abcd", K, K) + np.einsum("ac,bd->abcd", K, K) + np.einsum("ad,bc->abcd", K, K))
    >>> posterior_cov_correction(K, U, np.array([2.0]), train=[0], test=[1], noise=0.5).round(6)  # 5/108
    array([[0.046296]])
    """
    K, train, test, Kinv, yt, R = _setup(K, y, train, test, noise)
    U = _four_tensor("U", U, K.shape[0])
    return _cov_from_block(U[:, :, train][:, :, :, train], Kinv, yt, R)


def kernel_shift_correction(K, dK, y, *, train, test, noise):
    """Linear response of the Gaussian posterior to a shift of the prior covariance K -> K + dK.

        Delta<f_*> = (dK_{*b} - a_c dK_{cb}) y~_b = (R dK)_{*b} y~_b,      Delta Cov = R dK R^T,

    a = k_*^T K~^{-1}, R = [-a, 1] (the test rows of the identity minus a on the training columns).
    For a network's output dK = G1^(L+1) / n_L (:func:`sft.finite.multi_input`). K, dK (N, N);
    other arguments as :func:`posterior_mean_correction`. Returns (mean shift (M,), covariance shift (M, M)).

    >>> K, dK = np.array([[1.0, 0.5], [0.5, 1.0]]), np.array([[0.1, 0.0], [0.0, 0.0]])
    >>> dm, dc = kernel_shift_correction(K, dK, np.array([1.0]), train=[0], test=[1], noise=0.0)
    >>> dm.round(6), dc.round(6)   # m = 0.5 y / (1 + 0.1), Sigma = 1 - 0.25 / 1.1, to first order
    (array([-0.05]), array([[0.025]]))
    """
    K, train, test, Kinv, yt, R = _setup(K, y, train, test, noise)
    dK = _finite("dK", dK, 2)
    if dK.shape != K.shape or np.max(np.abs(dK - dK.T), initial=0.0) > 1e-12 * np.max(np.abs(dK), initial=0.0):
        raise ValueError(f"dK has shape {dK.shape}: it must be a symmetric {K.shape} matrix like K")
    cov = R @ dK @ R.T
    return R @ dK[:, train] @ yt, 0.5 * (cov + cov.T)


# ------------------------------------------------------------------------------- networks
_GH_NODES = {1: 200, 2: 200, 3: 60}  # Gauss-Hermite nodes per dimension of a rank-r first layer


def _depth1_cumulant_block_low_rank(K1, act, cw2, train):
    """n U_{ijde} (N, N, P, P) of a one-hidden-layer output, d, e in ``train``, when K^(1) has rank r <= 3.

    z = F u (K^(1) = F F^T, u ~ N(0, I_r)), tensor Gauss-Hermite rule in u; with the moments
    M2_ij = <s_i s_j>, M4_ijde = <s_i s_j s_d s_e> (fully symmetric), V_(ij)(de) = C_W^2 (M4 - M2 M2) gives
    n U_{ijde} = C_W^2 [3 M4_ijde - M2_ij M2_de - M2_id M2_je - M2_ie M2_jd]. Used because multi_input needs
    positive-definite 4 x 4 blocks of K^(1), which inputs (x, 1) in d = 2 never give. Node counts
    (_GH_NODES) from convergence: erf/tanh, C_W = 1.5, C_b = 0.1, |x| <= 2.5 in (x, 1): relative change
    < 1e-7 from 200 to 300 nodes (r = 2; 60 nodes are off by 3e-3); r = 3 (60 nodes) agrees with
    multi_input to 1e-9 (erf; tanh 2e-8). Kinked activations converge algebraically: relu, r = 2,
    changes by 2e-4 (100 -> 300 nodes) and 5e-5 (200 -> 300), relative. Returns None when r > 3.
    """
    lam, vec = np.linalg.eigh(K1)
    keep = lam > 1e-12 * lam.max()
    r = int(keep.sum())
    if r > 3:
        return None
    F = vec[:, keep] * np.sqrt(lam[keep])
    t, w = np.polynomial.hermite_e.hermegauss(_GH_NODES[r])
    w = w / np.sqrt(2 * np.pi)
    u = np.stack(np.meshgrid(*[t] * r, indexing="ij"), axis=-1).reshape(-1, r)
    wq = np.prod(np.meshgrid(*[w] * r, indexing="ij"), axis=0).ravel()
    u, wq = u[wq > 1e-18 * wq.max()], wq[wq > 1e-18 * wq.max()]            # drop negligible nodes
    N, P = K1.shape[0], len(train)
    m4, m2 = np.zeros((N, N, P, P)), np.zeros((N, N))
    for i in range(0, u.shape[0], 8192):
        s = np.asarray(act.fn(F @ u[i:i + 8192].T), dtype=np.float64)           # (N, Q)
        sw = s * wq[i:i + 8192]
        m2 += sw @ s.T
        for d, e in itertools.combinations_with_replacement(range(P), 2):
            m4[:, :, d, e] += (sw * (s[train[d]] * s[train[e]])) @ s.T
            m4[:, :, e, d] = m4[:, :, d, e]
    m2t = m2[:, train]
    return cw2 * (3 * m4 - np.einsum("ij,de->ijde", m2, m2[np.ix_(train, train)])
                  - np.einsum("id,je->ijde", m2t, m2t) - np.einsum("ie,jd->ijde", m2t, m2t))


def _inputs(name, x, n0=None):
    arr = _finite(name, x, 2)
    if arr.shape[0] < 1 or (n0 is not None and arr.shape[1] != n0):
        want = f"(M, {n0})" if n0 is not None else "(P, n_0) with P >= 1"
        raise ValueError(f"{name} has shape {arr.shape}: it must be {want}")
    return arr


class NetworkPosteriorCorrection(NamedTuple):
    """Infinite-width posterior (mean (M,), cov (M, M)) and its O(1/n) corrections (totals, vertex plus
    kernel shift), with the kernel-shift parts alone (zero for one hidden layer)."""

    mean: np.ndarray
    cov: np.ndarray
    mean_correction: np.ndarray
    cov_correction: np.ndarray
    shift_mean: np.ndarray
    shift_cov: np.ndarray


def network_posterior_correction(x_train, y_train, x_test, *, depth, activation, C_W, C_b, noise,
                                 widths=None) -> NetworkPosteriorCorrection:
    """Bayesian posterior of one network output at the test inputs: NNGP (GP) limit and its O(1/n) correction.

    Prior: a depth-``depth`` MLP (:mod:`sft.conventions`), observation noise variance ``noise`` = sigma^2;
    labels y_train. With N = P + M points (train first), K = K^(L+1) (:func:`sft.kernels.nngp`),
    V = V^(L+1), G1 = G1^(L+1) (:func:`sft.finite.multi_input`), n = n_L:

        mean_correction = posterior_mean_correction(K, U) + R G1 y~ / n,
        cov_correction  = posterior_cov_correction(K, U) + R G1 R^T / n,    U = [V + V + V] / n

    (module docstring; :func:`quartic_cumulant_from_vertex`, :func:`kernel_shift_correction`).
    ``widths``: (n_1, .., n_depth), the corrections are then those of these widths; None: equal widths,
    and the corrections are the coefficients of 1/n (divide by n). One hidden layer: G1 = 0, and V^(2)
    comes from a Gauss-Hermite rule in the r <= 3 dimensions of K^(1) when its rank is <= 3 (e.g. inputs
    (x, 1); relative accuracy ~1e-8 for smooth activations, ~1e-4 for relu); otherwise multi_input, which needs every 4 x 4 block of K^(1) positive definite (inputs in
    general position; n_0 >= 4, or n_0 = 3 with C_b > 0) and costs ~ C(N, 4) x 15 ms per layer.

    x_train (P, n_0), y_train (P,), x_test (M, n_0); noise >= 0 (K_train + noise I positive definite).
    Returns :class:`NetworkPosteriorCorrection`.

    >>> x = np.array([[-1.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
    >>> c = network_posterior_correction(x[:2], np.array([-0.8, 0.8]), x[2:], depth=1, activation="erf",
    ...                                  C_W=1.5, C_b=0.1, noise=0.2)
    >>> c.mean.round(10), c.shift_mean
    (array([0.]), array([0.]))
    """
    x_train = _inputs("x_train", x_train)
    x_test = _inputs("x_test", x_test, x_train.shape[1])
    y = _finite("y_train", y_train, 1)
    if y.shape != (x_train.shape[0],):
        raise ValueError(f"y_train has shape {y.shape}: it must be ({x_train.shape[0]},), one label per "
                         "row of x_train")
    depth = check_depth(depth)
    act = get_activation(activation)
    cw, cb = layer_constants(depth, C_W, C_b)
    if widths is None:
        n_last = 1.0
    else:
        widths = check_widths(widths)
        if len(widths) != depth:
            raise ValueError(f"widths={widths!r} is not allowed: give {depth} hidden widths (depth={depth})")
        n_last = float(widths[-1])
    P, M = x_train.shape[0], x_test.shape[0]
    x = np.concatenate([x_train, x_test])
    train, test = np.arange(P), np.arange(P, P + M)
    Ub = None
    if depth == 1:
        K = nngp(x, depth=1, activation=act, C_W=cw, C_b=cb, all_layers=True)
        Ub, G1 = _depth1_cumulant_block_low_rank(K[0], act, cw[1] ** 2, train), np.zeros((P + M,) * 2)
        K = K[-1]
    if Ub is None:
        mi = multi_input(x, depth=depth, activation=act, C_W=cw, C_b=cb, widths=widths)
        K, G1 = mi.K[-1], mi.G1[-1]
        Ub = n_last * quartic_cumulant_from_vertex(mi.V[-1], n_last)[:, :, train][:, :, :, train]
    K, _, _, Kinv, yt, R = _setup(K, y, train, test, noise)
    dm, dc = kernel_shift_correction(K, G1 / n_last, y, train=train, test=test, noise=noise)
    cov = K[np.ix_(test, test)] - K[np.ix_(test, train)] @ Kinv @ K[np.ix_(train, test)]
    return NetworkPosteriorCorrection(
        K[np.ix_(test, train)] @ yt, 0.5 * (cov + cov.T),
        _mean_from_block(Ub / n_last, train, Kinv, yt, R) + dm, _cov_from_block(Ub / n_last, Kinv, yt, R) + dc,
        dm, dc)


class ImportancePosterior(NamedTuple):
    """Posterior mean (M,), cov (M, M), their jackknife errors, and the Kish effective sample size."""

    mean: np.ndarray
    cov: np.ndarray
    mean_err: np.ndarray
    cov_err: np.ndarray
    ess: float


def importance_posterior(G, y, *, train, test, noise, n_blocks=20) -> ImportancePosterior:
    """Exact Bayesian posterior of a finite network's output by importance sampling from its prior.

    G (S, N, N): the readout metrics G^(L+1) of S independent prior networks
    (``sft.sim.layer_kernels(...)[:, -1]``). Given the last hidden layer, the output is exactly
    N(0, G), so the posterior is a mixture over networks (Rao-Blackwellized self-normalized importance
    sampling): with A_s = G_s,train + noise I, weight w_s = N(y; 0, A_s), m_s = G_s,*train A_s^{-1} y,
    C_s = G_s,** - G_s,*train A_s^{-1} G_s,train*,

        <f_*> = sum_s w_s m_s / sum_s w_s,   Cov = sum_s w_s (C_s + m_s m_s^T) / sum_s w_s - <f_*><f_*>^T.

    Errors: delete-a-block jackknife over ``n_blocks`` contiguous blocks of networks. ess = (sum w)^2 /
    sum w^2. train, test: integer indices into the N points; y (P,); noise > 0.
    """
    G = _finite("G", G, 3)
    S, N = G.shape[0], G.shape[1]
    if G.shape[2] != N:
        raise ValueError(f"G has shape {G.shape}: it must be (S, N, N)")
    train, test = _indices("train", train, N), _indices("test", test, N)
    y = _finite("y", y, 1)
    if y.shape != train.shape:
        raise ValueError(f"y has shape {y.shape}: it must be ({train.size},)")
    noise = float(noise)
    if not (np.isfinite(noise) and noise > 0):
        raise ValueError(f"noise = {noise}: it must be a finite variance > 0")
    if not (isinstance(n_blocks, (int, np.integer)) and 2 <= n_blocks <= S):
        raise ValueError(f"n_blocks={n_blocks!r} is not allowed: an integer with 2 <= n_blocks <= S = {S}")

    def block_sums(g):
        """(max log w, sum w, sum w m, sum w (C + m m^T), sum w^2) of one block, w relative to its max."""
        L = np.linalg.cholesky(g[:, train][:, :, train] + noise * np.eye(train.size))
        Li_y = np.linalg.solve(L, np.broadcast_to(y, (g.shape[0], train.size))[..., None])[..., 0]  # (s, P)
        Li_x = np.linalg.solve(L, np.swapaxes(g[:, test][:, :, train], 1, 2))                 # (s, P, M)
        logw = -0.5 * np.sum(Li_y ** 2, 1) - np.log(np.diagonal(L, axis1=1, axis2=2)).sum(1)
        w = np.exp(logw - logw.max())
        m = np.einsum("spm,sp->sm", Li_x, Li_y)
        second = (np.einsum("s,smk->mk", w, g[:, test][:, :, test]) - np.einsum("s,spm,spk->mk", w, Li_x, Li_x)
                  + np.einsum("s,sm,sk->mk", w, m, m))
        return logw.max(), w.sum(), w @ m, second, w @ w

    edges = np.linspace(0, S, n_blocks + 1).astype(int)
    parts = [block_sums(G[a:b]) for a, b in zip(edges[:-1], edges[1:])]
    shift = max(p[0] for p in parts)
    sums = [tuple(np.exp(p[0] - shift) * q for q in p[1:4]) for p in parts]
    w2 = sum(np.exp(2 * (p[0] - shift)) * p[4] for p in parts)
    tot = [sum(s[i] for s in sums) for i in range(3)]

    def moments(W, Wm, W2):
        mean = Wm / W
        return mean, W2 / W - np.outer(mean, mean)

    mean, cov = moments(*tot)
    jk = [moments(*(t - s for t, s in zip(tot, blk))) for blk in sums]
    B = n_blocks
    err = [np.sqrt((B - 1) / B * np.sum((np.stack(v) - np.mean(v, 0)) ** 2, 0)) for v in zip(*jk)]
    return ImportancePosterior(mean, 0.5 * (cov + cov.T), err[0], err[1], float(tot[0] ** 2 / w2))
