"""Mutual information across the layers of a network, made finite by a precision scale sigma.

A deterministic map makes I(X; f(X)) infinite (continuous X) or trivial; it becomes a number only once a
precision scale is chosen: Gaussian noise of standard deviation sigma on the output (Y = f + sigma eps,
eps ~ N(0, I) independent of everything else; Saxe et al. 2018, Goldfeld et al. 2019). Units: nats.

Which random variables (be explicit; the answer depends on it):

(P) Over the parameter ensemble at fixed inputs (the default here). Fix N inputs x_1..x_N. For ONE
    neuron i of layer l, Z = (z^(l)_i(x_1), .., z^(l)_i(x_N)) in R^N is random through the parameters
    (drawn from the prior of :mod:`sft.conventions`, or from the TLBP, below); Y = Z + sigma eps.
    I_l(sigma) = I(Z; Y) is the number of nats of the layer-l function on the inputs that survive
    precision sigma: I(Z; Y) = h(Y) - h(sigma eps). At infinite width Z ~ N(0, K^(l)) (NNGP) and

        I_l = (1/2) log det(I + K^(l) / sigma^2)                                      (exact for Gaussian Z).

    Finite width (:func:`layer_information`): given layer l-1 the neuron is exactly N(0, G^(l)), so Y is
    a Gaussian scale mixture with covariance E[G^(l)] + sigma^2 I = K + G1/n_{l-1} + sigma^2 I and fourth
    cumulant O(1/n) (the vertex V), odd cumulants zero. With h(Y) = h_Gauss(Cov Y) - J(Y) and the
    Edgeworth negentropy J = (1/48) sum kappa~4^2 + O(1/n^3) (derivations/edgeworth_entropy.py: the
    coefficients 1/12 of kappa3^2 and 1/48 of kappa4^2 are computed there from sft.symbolic):

        I_l = (1/2) log det(I + K/sigma^2) + (1/(2 n_{l-1})) tr[(K + sigma^2 I)^{-1} G1]     O(1/n)
              - (1/48) sum_{abcd} kappa~_{abcd}^2 + (G2 terms)                            O(1/n^2)

    kappa_{abcd} = (V_(ab)(cd) + V_(ac)(bd) + V_(ad)(bc)) / n_{l-1}, kappa~ whitened by Cov Y. So the
    first correction is the kernel shift alone (zero for one input of a scale-invariant activation);
    the four-point vertex changes the information only at O(1/n^2) (we return its term; the n^-2 kernel
    shift G2 is NOT included, so the O(1/n^2) total is not given). Layer 1 is exactly Gaussian.
    This is the information of ONE neuron. The n_l neurons of a layer are not independent at finite
    width (they share G^(l)), so the information of the whole layer is NOT n_l times this: it carries an
    extra O(1) term I(G; Y_layer) (a layer reveals its metric); not implemented here.
    Two layers l < l' (in the same ensemble): at infinite width z^(l) and z^(l') are uncorrelated (the
    last weights are independent and zero-mean), so the Gaussian closed form gives I = 0 between single
    neurons of different layers; their dependence runs through the metric and is O(1/n). Consecutive
    layers, exactly: the whole layer l-1 acts on a neuron of layer l only through G^(l) (Markov), so
    I(layer l-1; Y_l) = I(G^(l); Y_l) = I_l - E[(1/2) log det(I + G^(l)/sigma^2)]. Expanding the log-det to
    second order in dG = G - E G (Cov dG = V/n_{l-1}) and using I_l = (1/2) log det(I + E G/sigma^2) + O(1/n^2):

        I(layer l-1; Y_l) = (1/(4 n_{l-1})) sum_{abcd} M^{-1}_{ab} V^(l)_{(bc)(da)} M^{-1}_{cd} + O(1/n^2),
        M = K^(l) + sigma^2 I

    (field ``metric``; one input: V / (4 n (K + sigma^2)^2), the Fisher information of one Gaussian sample
    about its variance times the prior variance V/n, halved). The four-point vertex sets the information
    between layers at O(1/n); Monte Carlo: :func:`sft.sim.metric_information`.

(T) Over the TLBP p_t(w) ∝ exp(-nbeta L_n(w) - (gamma/2)|w - w*|^2) (:func:`sft.sim.sample_tlbp`) for a
    wide network, linearized at w* (f = f* + J (w - w*)); L_n = (1/(2n)) sum |f - y|^2. The output
    field on inputs x is Gaussian with covariance (:func:`tlbp_output_covariance`, beta = nbeta/n)

        C = J_x (beta J_T^T J_T + gamma I)^{-1} J_x^T
          = (1/gamma) [Theta_xx - Theta_xT (Theta_TT + (gamma/beta) I)^{-1} Theta_Tx]       (Woodbury),

    Theta the (empirical, or at infinite width the analytic) NTK; then I = (1/2) log det(I + C/sigma^2).
    The temperature t = 1/nbeta and gamma are the precision dial: large t or small gamma spread the
    field and raise the information at fixed sigma.

(X) Over input draws for one fixed map: X ~ N(0, Sigma_x), Y = f(X) + sigma eps. Linear f = A x:
    I = (1/2) log det(I + A Sigma_x A^T / sigma^2) (:func:`gaussian_channel_information` with
    K = A Sigma_x A^T). Scalar nonlinear f, X ~ N(0, 1): exact by quadrature,
    :func:`scalar_channel_information`. As sigma -> 0, I -> h(f(X)) - (1/2) log(2 pi e sigma^2)
    (diverges like log(1/sigma)) for an invertible f: a deterministic map has no finite information.

Two jointly Gaussian blocks A, B with covariance [[C_AA, C_AB], [C_BA, C_BB]]
(:func:`gaussian_mutual_information`): I(A; B) = (1/2)[log det C_AA - log det(C_AA - C_AB C_BB^{-1} C_BA)]
(the Schur complement is the conditional covariance of A given B). All log-determinants by Cholesky
of positive-definite matrices (checked by :func:`sft.conventions.psd_eigh`). float64 throughout.
Estimators on samples: :mod:`sft.sim.information_estimators`. Checks: tests/test_information.py.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import scipy.linalg
import scipy.signal

from ..conventions import check_array, check_int, check_real, check_widths, psd_eigh

__all__ = ["gaussian_entropy", "gaussian_channel_information", "gaussian_mutual_information",
           "negentropy_from_cumulants", "LayerInformation", "layer_information",
           "scalar_channel_information", "tlbp_output_covariance"]

#: Edgeworth negentropy coefficients of sum kappa~3^2 and sum kappa~4^2 (derivations/edgeworth_entropy.py).
NEGENTROPY_K3, NEGENTROPY_K4 = 1.0 / 12.0, 1.0 / 48.0


def _logdet_pd(name, C):
    """log det of a positive-definite matrix (or stack), checked by psd_eigh, by Cholesky."""
    psd_eigh(name, C, definite=True, vectors=False)
    L = np.linalg.cholesky(0.5 * (C + np.swapaxes(C, -1, -2)))
    return 2.0 * np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(-1)


def _covariance(name, C):
    C = check_array(name, C, ndim=(0, 1, 2))
    if C.ndim == 1:
        raise ValueError(f"{name} has shape {C.shape}: give a scalar variance or an (N, N) covariance")
    return np.atleast_2d(C)


def _sigma(sigma):
    s = check_array("sigma", sigma, ndim=(0, 1))
    if np.any(s <= 0):
        raise ValueError(f"sigma={sigma!r} is not allowed: the precision scale must be > 0 (sigma -> 0 "
                         "is the deterministic limit, where the information diverges)")
    return s


def gaussian_entropy(C) -> float:
    """Differential entropy (1/2) log det(2 pi e C) of N(mu, C) in nats; C (N, N) positive definite.

    >>> bool(round(gaussian_entropy([[1.0]]), 12) == round(0.5 * np.log(2 * np.pi * np.e), 12))
    True
    """
    C = _covariance("C", C)
    return float(0.5 * (_logdet_pd("C", C) + C.shape[0] * math.log(2 * math.pi * math.e)))


def gaussian_channel_information(K, sigma):
    """I(Z; Z + sigma eps) = (1/2) log det(I + K / sigma^2) for Z ~ N(0, K), eps ~ N(0, I), in nats.

    K: (N, N) positive semi-definite (or a scalar variance); sigma > 0, scalar or 1-D array (then the
    result has sigma's shape). Computed as (1/2)[log det(K + sigma^2 I) - N log sigma^2] by Cholesky.

    >>> bool(round(float(gaussian_channel_information(3.0, 1.0)), 12) == round(0.5 * np.log(4.0), 12))
    True
    """
    K = _covariance("K", K)
    psd_eigh("K", K, vectors=False)
    s = _sigma(sigma)
    N = K.shape[0]
    s2 = (s ** 2)[..., None, None]
    return 0.5 * (_logdet_pd("K + sigma^2 I", K + s2 * np.eye(N)) - N * np.log(s ** 2))


def gaussian_mutual_information(C, n_first: int) -> float:
    """I(A; B) of jointly Gaussian blocks: A = the first ``n_first`` coordinates, B = the rest.

    C: (N, N) positive-definite joint covariance, 1 <= n_first < N.
    I = (1/2)[log det C_AA - log det(C_AA - C_AB C_BB^{-1} C_BA)] (Schur complement = Cov(A | B)),
    equal to (1/2)[log det C_AA + log det C_BB - log det C].

    >>> rho = 0.6
    >>> bool(round(gaussian_mutual_information([[1.0, rho], [rho, 1.0]], 1), 12) == round(-0.5 * np.log(1 - rho**2), 12))
    True
    """
    C = _covariance("C", C)
    N = C.shape[0]
    m = check_int("n_first", n_first, 1)
    if m >= N:
        raise ValueError(f"n_first={n_first!r} is not allowed: it must be < N = {N} (both blocks non-empty)")
    psd_eigh("C", C, definite=True, vectors=False)
    A, B, D = C[:m, :m], C[:m, m:], C[m:, m:]
    schur = A - B @ scipy.linalg.cho_solve(scipy.linalg.cho_factor(D, lower=True), B.T)
    return float(0.5 * (_logdet_pd("C_AA", A) - _logdet_pd("Cov(A | B)", schur)))


def negentropy_from_cumulants(cov, kappa4, kappa3=None) -> float:
    """Edgeworth negentropy J = (1/12) sum kappa~3^2 + (1/48) sum kappa~4^2 (leading terms; module
    docstring), kappa~ the cumulant tensors in whitened coordinates w = L^{-1} (y - mean), cov = L L^T.

    cov (N, N) positive definite; kappa4 (N, N, N, N) and optional kappa3 (N, N, N) symmetric tensors.
    Valid when the cumulants are small (kappa4 = O(1/n): J = O(1/n^2)); the omitted terms are
    -kappa3^2 kappa4 / 8 and 7 kappa3^4 / 48 (univariate, derivations/edgeworth_entropy.py) and higher.

    >>> bool(round(negentropy_from_cumulants([[1.0]], [[[[0.3]]]]), 12) == round(0.09 / 48, 12))
    True
    """
    cov = _covariance("cov", cov)
    N = cov.shape[0]
    psd_eigh("cov", cov, definite=True, vectors=False)
    W = scipy.linalg.solve_triangular(np.linalg.cholesky(cov), np.eye(N), lower=True)
    k4 = check_array("kappa4", kappa4, ndim=4)
    if k4.shape != (N,) * 4:
        raise ValueError(f"kappa4 has shape {k4.shape}: it must be {(N,) * 4} to match cov")
    J = NEGENTROPY_K4 * float(np.sum(np.einsum("ia,jb,kc,ld,abcd->ijkl", W, W, W, W, k4) ** 2))
    if kappa3 is not None:
        k3 = check_array("kappa3", kappa3, ndim=3)
        if k3.shape != (N,) * 3:
            raise ValueError(f"kappa3 has shape {k3.shape}: it must be {(N,) * 3} to match cov")
        J += NEGENTROPY_K3 * float(np.sum(np.einsum("ia,jb,kc,abc->ijk", W, W, W, k3) ** 2))
    return J


class LayerInformation(NamedTuple):
    """Per-neuron information I(Z; Z + sigma eps) of layers l = 1 .. depth+1 (module docstring, (P)).

    infinite (S, depth+1): (1/2) log det(I + K^(l)/sigma^2), S = number of sigmas;
    first_order (S, depth+1): infinite + shift / n_{l-1} (the O(1/n) theory);
    shift (S, depth+1): (1/2) tr[(K + sigma^2)^{-1} G1] (coefficient of 1/n_{l-1}; 0 at l = 1);
    vertex_term (S, depth+1): -(1/48) sum kappa~4^2 at width n_{l-1}, the vertex's O(1/n^2) part
    (the O(1/n^2) kernel shift G2 is not included); metric (S, depth+1): I(layer l-1; Z + sigma eps) at
    O(1/n), set by the vertex (module docstring); sigma (S,); K (depth+1, N, N); G1; V; widths.
    """

    infinite: np.ndarray
    first_order: np.ndarray
    shift: np.ndarray
    vertex_term: np.ndarray
    metric: np.ndarray
    sigma: np.ndarray
    K: np.ndarray
    G1: np.ndarray
    V: np.ndarray
    widths: tuple


def layer_information(x, *, depth, activation, C_W, C_b, sigma, widths) -> LayerInformation:
    """Information of one neuron of each layer about itself at precision sigma, over the parameter
    ensemble at the fixed inputs x (N, n_0): infinite width, O(1/n) and the vertex's O(1/n^2) term.

    Formulas: module docstring (P). K, V, G1 from :func:`sft.finite.multi_input` (widths: an int for
    equal hidden widths, or (n_1, .., n_depth); n_{l-1} is the width feeding layer l). sigma > 0,
    scalar or 1-D. Cost: that of multi_input (N <= 8 in seconds).

    >>> import numpy as np
    >>> out = layer_information(np.array([[1.0, 0.0], [0.6, 0.8]]), depth=2, activation="tanh",
    ...                         C_W=1.0, C_b=0.0, sigma=0.5, widths=64)
    >>> out.infinite.shape, bool(np.all(out.shift[0, :2] == 0.0)), bool(out.shift[0, 2] < 0)  # tanh: G1 < 0
    ((1, 3), True, True)
    """
    from ..finite.vertex import multi_input  # noqa: PLC0415  (heavy: JAX quadrature)

    depth_ = check_int("depth", depth, 1)
    ws = check_widths([widths] * depth_ if isinstance(widths, (int, np.integer)) else widths)
    if len(ws) != depth_:
        raise ValueError(f"widths={widths!r} has {len(ws)} entries: give one per hidden layer "
                         f"({depth_}) or one int")
    s = np.atleast_1d(_sigma(sigma))
    mi = multi_input(x, depth=depth_, activation=activation, C_W=C_W, C_b=C_b, widths=ws)
    N = mi.K.shape[-1]
    n_prev = np.array([np.inf] + [float(w) for w in ws])          # width feeding layer l (layer 1: exact)
    infinite = np.stack([gaussian_channel_information(K, s) for K in mi.K], axis=-1)
    shift = np.zeros((s.size, depth_ + 1))
    vertex = np.zeros((s.size, depth_ + 1))
    metric = np.zeros((s.size, depth_ + 1))
    for l in range(1, depth_ + 1):
        V = mi.V[l]
        k4 = (V + np.einsum("acbd->abcd", V) + np.einsum("adbc->abcd", V)) / n_prev[l]
        for j, sj in enumerate(s):
            Sy = mi.K[l] + sj ** 2 * np.eye(N)
            Minv = scipy.linalg.cho_solve(scipy.linalg.cho_factor(Sy), np.eye(N))
            shift[j, l] = 0.5 * np.sum(Minv * mi.G1[l])
            metric[j, l] = np.einsum("ab,bcda,cd->", Minv, V, Minv) / (4.0 * n_prev[l])
            vertex[j, l] = -negentropy_from_cumulants(Sy + mi.G1[l] / n_prev[l], k4)
    return LayerInformation(infinite, infinite + shift / n_prev, shift, vertex, metric, s, mi.K, mi.G1, mi.V, ws)


def scalar_channel_information(f, sigma, *, x_cut=10.0, per_sigma=10, max_points=5 * 10 ** 7) -> float:
    """I(X; f(X) + sigma eps) for X ~ N(0, 1), eps ~ N(0, 1), f a vectorized scalar map, by quadrature.

    I = h(Y) - (1/2) log(2 pi e sigma^2) with p_Y = p_U * N(0, sigma^2), U = f(X). Numerics: X on a uniform
    grid on [-x_cut, x_cut] (weights phi(x) dx, fine enough that the step in U is <= h/2 with h the
    Y-grid spacing sigma/per_sigma, from the largest slope on a 4097-point pre-grid); the weights are
    deposited on the U-grid by linear (cloud-in-cell) assignment, whose smoothing has variance h^2/6,
    so the Gaussian kernel (FFT convolution) gets variance sigma^2 - h^2/6; h(Y) = -sum P log(P/h).
    Measured: within 2e-6 nats of the exact (1/2) log(1 + a^2/sigma^2) for f = a x (tests). Features of f
    narrower than the pre-grid spacing (x_cut/2048) are not resolved. The grid sizes grow like 1/sigma;
    more than ``max_points`` nodes -> ValueError (raise sigma or max_points).

    >>> I = scalar_channel_information(lambda x: 2.0 * x, 0.5)
    >>> bool(abs(I - 0.5 * np.log(1 + 4.0 / 0.25)) < 1e-5)
    True
    """
    if not callable(f):
        raise ValueError(f"f={f!r} is not allowed: give a vectorized function of a numpy array")
    sigma = check_real("sigma", sigma, minimum=0, strict=True)
    x_cut = check_real("x_cut", x_cut, minimum=0, strict=True)
    per_sigma = check_int("per_sigma", per_sigma, 4)
    xc = np.linspace(-x_cut, x_cut, 4097)
    uc = np.asarray(f(xc), dtype=np.float64)
    if uc.shape != xc.shape or not np.all(np.isfinite(uc)):
        raise ValueError("f must map a 1-D float array to finite values of the same shape")
    h = sigma / per_sigma
    slope = np.max(np.abs(np.diff(uc))) / (xc[1] - xc[0])
    n_x = max(4097, int(math.ceil(2 * x_cut * slope / (h / 2))) + 1)
    pad = int(math.ceil(12 * sigma / h))
    n_u = int(math.ceil((uc.max() - uc.min()) / h)) + 2 * pad + 4
    if n_x > max_points or n_u > max_points:
        raise ValueError(f"sigma={sigma!r} needs {n_x} x-nodes and {n_u} y-nodes, above max_points="
                         f"{max_points}: raise sigma (the cost grows like 1/sigma) or max_points")
    x = np.linspace(-x_cut, x_cut, n_x)
    w = np.exp(-0.5 * x * x)
    w[[0, -1]] *= 0.5
    w /= w.sum()
    u = np.asarray(f(x), dtype=np.float64)
    if not np.all(np.isfinite(u)):
        raise ValueError("f returned NaN or inf on the quadrature grid")
    pos = (u - (u.min() - (pad + 1) * h)) / h
    i = np.floor(pos).astype(np.int64)
    frac = pos - i
    mass = np.bincount(i, w * (1 - frac), n_u) + np.bincount(i + 1, w * frac, n_u)
    t = np.arange(-pad, pad + 1) * h
    g = np.exp(-0.5 * t * t / (sigma ** 2 - h ** 2 / 6))
    P = np.clip(scipy.signal.fftconvolve(mass, g / g.sum()), 0.0, None)   # FFT rounding ~1e-17 -> 0
    P = P[P > 0]
    return float(-np.sum(P * np.log(P / h)) - 0.5 * math.log(2 * math.pi * math.e * sigma ** 2))


def tlbp_output_covariance(theta_xx, theta_xt, theta_tt, *, beta, gamma) -> np.ndarray:
    """Covariance of the linearized network's outputs on inputs x over the TLBP (module docstring (T)).

    C = (1/gamma) [Theta_xx - Theta_xT (Theta_TT + (gamma/beta) I)^{-1} Theta_Tx], beta = nbeta / n
    (n training samples), gamma > 0 (gamma = 0 leaves the null directions of J_T unbounded).
    theta_xx (P, P), theta_xt (P, T), theta_tt (T, T): NTK blocks (rows: (input, output) pairs).
    The linear solve is a Cholesky of Theta_TT + (gamma/beta) I (positive definite).

    >>> C = tlbp_output_covariance([[2.0]], [[1.0]], [[1.0]], beta=1.0, gamma=1.0)
    >>> float(C[0, 0])      # 2 - 1 * (1 + 1)^-1 * 1
    1.5
    """
    beta = check_real("beta", beta, minimum=0, strict=True)
    gamma = check_real("gamma", gamma, minimum=0, strict=True)
    Txx, Txt, Ttt = (check_array(n, v, ndim=2) for n, v in
                     (("theta_xx", theta_xx), ("theta_xt", theta_xt), ("theta_tt", theta_tt)))
    P, T = Txt.shape
    if Txx.shape != (P, P) or Ttt.shape != (T, T):
        raise ValueError(f"theta_xx {Txx.shape}, theta_xt {Txt.shape}, theta_tt {Ttt.shape}: need (P, P), "
                         "(P, T), (T, T)")
    psd_eigh("theta_tt", Ttt, vectors=False)
    A = Ttt + (gamma / beta) * np.eye(T)
    C = (Txx - Txt @ scipy.linalg.cho_solve(scipy.linalg.cho_factor(0.5 * (A + A.T)), Txt.T)) / gamma
    return 0.5 * (C + C.T)
