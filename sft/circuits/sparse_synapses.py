"""Sparse strong synapses on a dense Gaussian background: non-Gaussianity that survives infinite width,
and keep-k / keep-k + Edgeworth / low-density predictors of the next layer.

Model (one layer; d = 1 or 2 inputs a, b). Input units j = 1..n carry x_{j;a} = sigma(g_{j;a}) with
(g_{j;a}, g_{j;b}) i.i.d. over j ~ N(0, K_in) (a previous layer's preactivations, K_in of shape (d, d)).
One output neuron has the preactivation

    z_a = b + sum_j W_j x_{j;a},    W_j = sqrt(C_W / n) G_j + sum_{i=1}^{m} J_i delta_{j, p_i},

b ~ N(0, C_b), G_j ~ N(0, 1) (the dense background of O(1/sqrt n) weights), and m ~ Poisson(lam) strong
synapses of O(1) strengths J_i at positions p_i uniform on {1..n} (with replacement; collisions add).
J = s |J| with P(s = +1) = p_plus and |J| from any continuous law on [0, inf) (:class:`SynapseLaw`;
default log-normal, :func:`lognormal_synapses`). All of b, G, m, p, J, g independent.

Exact cumulants at finite n (d = 1). Poisson splitting: the site counts are i.i.d. Poisson(lam/n), so the
W_j are i.i.d. with cumulants kappa_r(W) = [r = 2] C_W/n + (lam/n) E[J^r], independent of the x_j; hence
z - b is a sum of n i.i.d. terms t_j = W_j x_j with E[t^r] = E[W^r] E[x^r], and

    kappa_r(z) = n kappa_r(t) + [r = 2] C_b        (exact, every n and r).                        (1)

As n -> inf at fixed lam, E[W^r] = kappa_r(W) + O(n^-2), so

    kappa_1 -> lam E[J] E[x],  kappa_2 -> C_b + (C_W + lam E[J^2]) E[x^2],  kappa_r -> lam E[J^r] E[x^r] (r >= 3):  (2)

a Gaussian plus a compound Poisson, non-Gaussian at O(lam^{1 - r/2}) whatever the width. With lam = 0
(dense only) (1) gives kappa_4 = 3 C_W^2 Var(x^2) / n: excess kurtosis 3 Var(x^2) / (n E[x^2]^2), the
1/n vertex (THEORY.md, one layer).

Infinite-width law. At n -> inf (fixed lam) an impurity hits one unit, whose share of the dense
background is O(1/n), so z = z_G + sum_{i<=m} J_i sigma(g^(i)) with z_G ~ N(0, K_bg), K_bg = C_b + C_W E[x x^T],
and g^(i) ~ N(0, K_in) fresh and independent (corrections O(1/n): the vertex and collisions).
Characteristic function, t in R^d:

    Phi(t) = exp(-t.K_bg.t / 2 + lam (psi(t) - 1)),     psi(t) = E_{J, g} exp(i J t.sigma(g)).          (3)

Predictors. "The k strongest": impurities with |J| > J_c(k), the threshold with lam P(|J| > J_c) = k, i.e.
k kept on average (0 <= k <= lam; k = lam keeps all). By Poisson thinning the kept ones and the rest are
independent compound Poissons with rates k and lam - k, so (1_> = 1{|J| > J_c}, 1_< = 1 - 1_>):

 (i)   keep-k: kept ones exact, the rest renormalized into the Gaussian by its first two cumulants,
       mu_< = lam E[J 1_<] E[x] and K_< = lam E[J^2 1_<] E[x x^T] (the variance shift of the background):
           Phi_k(t) = exp(-t.(K_bg + K_<).t / 2 + i t.mu_< + lam psi_>(t) - k),  psi_>(t) = E[e^{i J t.x} 1_>];
 (ii)  keep-k + Edgeworth of order R: Phi_k(t) [1 + sum_{j<=R} c_j(i)], with c_j the Edgeworth
       characteristic-function terms of :func:`sft.symbolic.edgeworth_cf_coefficients` evaluated at
       s = i and lambda_r -> kappa_r^<(t) = lam E[J^r 1_<] E[(t.x)^r], the rest's cumulant tensors
       contracted with t; this is the expansion of exp(sum_{r>=3} kappa_r^<(t) i^r / r!) in powers of
       J_c, i.e. the multivariate Edgeworth series (McCullagh 1987 sec. 5.2) in Fourier space;
 (iii) low density to order M: E[F] = e^{-lam} sum_{m<=M} lam^m / m! E[F | m impurities], i.e.
           Phi_M(t) = exp(-t.K_bg.t / 2) e^{-lam} sum_{m<=M} (lam psi(t))^m / m!,
       error O(lam^{M+1}) (the missing mass P(m > M)).
The exact law (3) is (i) with k = lam, and (iii) with M -> inf.

Numerics (:func:`predicted_densities`). psi by quadrature: a composite Gauss-Legendre rule over g
(n_g^d nodes; Gauss-Hermite converges slowly here, the heavy-tailed J makes e^{i J t.sigma(g)} oscillate)
times Gauss-Legendre (n_u nodes per interval) in v = P(|J| > a), a = |J| = F_bar^{-1}(v) (scipy's isf),
the v-intervals split at every threshold v_c(k) = k/lam and refined geometrically towards v = 0 (the
heavy tail, down to 1e-20) and v = 1. The sum over nodes (sign, |J|, g) of w e^{i J t.x_g} on the FFT
grid of t is a cloud-in-cell deposition of the jumps y = J x_g on a 2x finer periodic z-grid, one FFT,
deconvolved by the CIC transfer function (agrees with the direct sum, kept as a check, to ~5e-6 on the
kernel). Each characteristic function is inverted by one FFT to a density on N^d points centred on the
exact mean, +- n_sd standard deviations (aliasing of the heavy tail is the error beyond); E F = sum F p dz^d.
Why a threshold and not "the top min(k, m)": thinning keeps the kept and the rest independent Poisson
processes, so (i)-(ii) are exact characteristic-function manipulations and k sweeps continuously.

Simulation (:func:`simulate_conditionals`, :func:`simulate_limit`): given x and the impurities, z is
exactly Gaussian, z | (x, J, p) ~ N(D, G_hat) with D = sum_i J_i x_{p_i} and G_hat = C_b + (C_W/n) sum_j x_j x_j^T;
the simulations return (D, G_hat) per sample, and the estimators average the Gaussian conditional
moments / expectations over samples (Rao-Blackwell: no Gaussian sampling noise; unbiased).
The infinite-width limit is the same with G_hat = K_bg and g^(i) fresh. Randomness: JAX keys; m and |J| by
inverse CDF (scipy) of JAX uniforms; m is truncated at a slot count with P(m > slots) < 1e-14.
Derivation: this docstring; checked against simulation and independent quadrature in
tests/test_sparse_synapses.py.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.fft
import scipy.stats
import sympy as sp

from ..conventions import check_array, check_key, check_real

from ..conventions import psd_eigh, require_x64
from ..kernels.activations import get_activation
from ..symbolic.cumulants import check_order, cumulants_from_moments, moments_from_cumulants
from ..symbolic.edgeworth import edgeworth_cf_coefficients, to_numeric
from ..sim.estimators import jackknife

__all__ = ["SynapseLaw", "lognormal_synapses", "SparseLayer", "strength_moments", "input_moments",
           "preactivation_cumulants", "next_layer_cumulants", "predicted_densities", "expectation", "next_kernel",
           "sample_strengths", "simulate_conditionals", "simulate_limit", "mc_cumulants", "mc_excess_kurtosis",
           "mc_expectation",
           "mc_next_kernel"]


# ---------------------------------------------------------------- laws and validation --------------

@dataclasses.dataclass(frozen=True)
class SynapseLaw:
    """Law of a strong synapse J = s |J|: P(s = +1) = ``p_plus``, |J| ~ ``magnitude``, a frozen
    ``scipy.stats`` continuous distribution with support in [0, inf) and finite moments up to order 4
    (checked); Edgeworth order R uses E|J|^{R+2} (by quadrature), which must then be finite too."""

    magnitude: Any
    p_plus: float = 0.5

    def __post_init__(self):
        m = self.magnitude
        if not (hasattr(m, "ppf") and hasattr(m, "moment") and hasattr(m, "support")):
            raise ValueError(f"magnitude={m!r} is not allowed: give a frozen scipy.stats continuous "
                             "distribution, e.g. scipy.stats.lognorm(0.75)")
        lo = float(m.support()[0])
        if not lo >= 0:
            raise ValueError(f"magnitude has support starting at {lo}: |J| must live on [0, inf)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            moments = [float(m.moment(r)) for r in range(1, 5)]
        if not all(np.isfinite(moments)):
            raise ValueError(f"magnitude has moments {moments} (orders 1..4): they must be finite "
                             "(the excess kurtosis needs E|J|^4 < inf)")
        if not (isinstance(self.p_plus, numbers.Real) and 0.0 <= self.p_plus <= 1.0):
            raise ValueError(f"p_plus={self.p_plus!r} is not allowed: a probability in [0, 1]")


def lognormal_synapses(J0=1.0, s=0.5, p_plus=0.5):
    """|J| = J0 exp(s N(0, 1)), random sign with P(+) = p_plus; E|J|^r = J0^r exp(r^2 s^2 / 2).

    >>> law = lognormal_synapses(1.0, 0.5)
    >>> bool(np.isclose(strength_moments(law, 4)[3], np.exp(8 * 0.5 ** 2), rtol=1e-8))   # E J^4
    True
    """
    for name, v in (("J0", J0), ("s", s)):
        if not (isinstance(v, numbers.Real) and np.isfinite(v) and v > 0):
            raise ValueError(f"{name}={v!r} is not allowed: must be finite and > 0")
    return SynapseLaw(scipy.stats.lognorm(s, scale=J0), p_plus)


@dataclasses.dataclass(frozen=True)
class SparseLayer:
    """One layer with sparse strong synapses (module docstring): rate ``lam`` of strong synapses per
    neuron, their ``law``, the ``activation`` (of the inputs x = sigma(g) and of the next layer),
    ``K_in`` (d, d) the covariance of the input preactivations g (d = 1 or 2; a number means d = 1),
    dense-background variance ``C_W`` / n and bias variance ``C_b``."""

    lam: float
    law: SynapseLaw
    activation: Any
    K_in: Any
    C_W: float = 1.0
    C_b: float = 0.0

    def __post_init__(self):
        if not (isinstance(self.lam, numbers.Real) and np.isfinite(self.lam) and self.lam >= 0):
            raise ValueError(f"lam={self.lam!r} is not allowed: the Poisson rate must be finite and >= 0")
        if not isinstance(self.law, SynapseLaw):
            raise ValueError(f"law={self.law!r} is not allowed: give a SynapseLaw (e.g. lognormal_synapses())")
        object.__setattr__(self, "activation", get_activation(self.activation))
        K = np.atleast_2d(np.asarray(self.K_in, dtype=np.float64))
        try:  # positive definite within the psd_eigh tolerance (10 d eps max|lambda|)
            if K.shape not in ((1, 1), (2, 2)):
                raise ValueError(f"shape {K.shape}")
            psd_eigh("K_in", K, definite=True, vectors=False)
        except ValueError as err:
            raise ValueError(f"K_in={self.K_in!r} is not allowed: a finite symmetric positive-definite "
                             f"(1, 1) or (2, 2) covariance (or a positive number) ({err})") from None
        object.__setattr__(self, "K_in", K)
        for name in ("C_W", "C_b"):
            v = getattr(self, name)
            if not (isinstance(v, numbers.Real) and np.isfinite(v) and v >= 0):
                raise ValueError(f"{name}={v!r} is not allowed: a variance, finite and >= 0")
        if self.C_W == 0 and self.C_b == 0:
            raise ValueError("C_W=0 and C_b=0 are not allowed together: the Gaussian background needs a variance")

    @property
    def d(self):
        """Number of inputs (1 or 2)."""
        return self.K_in.shape[0]


def strength_moments(law, r_max):
    """[E J, E J^2, ..., E J^r_max] with E J^r = (p_plus + (-1)^r (1 - p_plus)) E|J|^r (float64), E|J|^r by
    the Gauss-Legendre rule in u of :func:`predicted_densities` (16 nodes per interval)."""
    r_max = check_order(r_max, "r_max", 1)
    a, w, _ = _j_rule(law, 0.0, (), 16)
    p = law.p_plus
    return np.array([(p + (-1) ** r * (1 - p)) * (w @ a ** r) for r in range(1, r_max + 1)])


@functools.lru_cache(maxsize=64)
def _g_rule(K_bytes, d, n_g):
    """Nodes g (G, d) and weights of N(0, K_in): composite Gauss-Legendre, n_g // 8 panels of 8 nodes per
    whitened coordinate on [-9, 9] (0 is a panel edge), tensor product for d = 2, weights < 1e-18 dropped.
    Composite rules, not Gauss-Hermite: psi integrates e^{i J t.sigma(g)} with heavy-tailed J, which
    Gauss-Hermite resolves only slowly."""
    K = np.frombuffer(K_bytes).reshape(d, d)
    x, w = np.polynomial.legendre.leggauss(8)
    e = np.linspace(-9.0, 9.0, 2 * max(1, n_g // 16) + 1)
    u = (0.5 * np.diff(e)[:, None] * (x + 1) + e[:-1, None]).ravel()
    w = (0.5 * np.diff(e)[:, None] * w).ravel() * np.exp(-0.5 * u * u) / np.sqrt(2 * np.pi)
    U = np.stack(np.meshgrid(*[u] * d, indexing="ij"), -1).reshape(-1, d)
    W = np.prod(np.stack(np.meshgrid(*[w] * d, indexing="ij"), -1).reshape(-1, d), axis=1)
    keep = W > 1e-18
    return U[keep] @ np.linalg.cholesky(K).T, W[keep]


def _x_rule(layer, n_g):
    g, w = _g_rule(layer.K_in.tobytes(), layer.d, n_g)
    return np.asarray(layer.activation.fn(jnp.asarray(g)), dtype=np.float64), w


def input_moments(layer, r_max, *, n_g=400):
    """[E x, E x^2, ..., E x^r_max] of one input x = sigma(g), g ~ N(0, K_in[0, 0]) (composite rule, n_g nodes)."""
    require_x64("sft.circuits.input_moments")
    r_max = check_order(r_max, "r_max", 1)
    g, w = _g_rule(layer.K_in[:1, :1].copy().tobytes(), 1, _check_positive_int(n_g, "n_g", 8))
    x = np.asarray(layer.activation.fn(jnp.asarray(g[:, 0])), dtype=np.float64)
    return np.array([w @ x ** r for r in range(1, r_max + 1)])


def _check_n(n):
    if n is None or (isinstance(n, float) and n == np.inf):
        return None
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n={n!r} is not allowed: the width must be an integer >= 1 (or None / inf for n -> inf)")
    return int(n)


def preactivation_cumulants(layer, order, *, n=None, n_g=400):
    """[kappa_1, ..., kappa_order] of z for input a (K_in[0, 0]), exactly at width n by eq. (1) of the
    module docstring, or the n -> inf limit (2) if n is None (float64).

    >>> layer = SparseLayer(2.0, lognormal_synapses(1.0, 0.5), "erf", 1.0)
    >>> k = preactivation_cumulants(layer, 4)
    >>> mx = input_moments(layer, 4)
    >>> bool(np.isclose(k[3], 2.0 * strength_moments(layer.law, 4)[3] * mx[3]))
    True
    """
    order = check_order(order, "order", 1)
    n = _check_n(n)
    mJ = strength_moments(layer.law, order)
    mx = input_moments(layer, order, n_g=_check_positive_int(n_g, "n_g", 8))
    if n is None:
        kap = layer.lam * mJ * mx
        kap[1] += layer.C_W * mx[1]
    else:
        kW = layer.lam / n * mJ
        kW[1] += layer.C_W / n
        kap = n * cumulants_from_moments(moments_from_cumulants(kW) * mx)
    if order >= 2:
        kap[1] += layer.C_b
    return kap


def next_layer_cumulants(layer, lam_next, law_next, order, *, C_W=1.0, C_b=0.0, **grid):
    """[kappa_1..kappa_order] of the next layer's preactivation z'' (input 0) when it too has sparse strong
    synapses (rate ``lam_next``, law ``law_next``) on a dense background (C_W / n_1, C_b), both widths -> inf.

    Its inputs sigma(z_k) are i.i.d. over neurons k (at infinite width different neurons hit different
    units), with the exact law of z from :func:`predicted_densities`; so eq. (2) holds with x -> sigma(z):
    kappa_r = lam' E[J'^r] E[sigma(z)^r] (r >= 3), kappa_2 = C_b + (C_W + lam' E[J'^2]) E[sigma(z)^2],
    kappa_1 = lam' E[J'] E[sigma(z)]: the non-Gaussianity is again O(1) (with lam_next = 0 it is 0).
    ``grid``: keyword arguments of :func:`predicted_densities`.
    """
    require_x64("sft.circuits.next_layer_cumulants")
    order = check_order(order, "order", 1)
    check_real("lam_next", lam_next, minimum=0)
    nxt = SparseLayer(lam_next, law_next, layer.activation, 1.0, C_W=C_W, C_b=C_b)   # validates the inputs
    axes, p = predicted_densities(SparseLayer(layer.lam, layer.law, layer.activation, layer.K_in[:1, :1],
                                              C_W=layer.C_W, C_b=layer.C_b), [("exact",)], **grid)
    sig = np.asarray(layer.activation.fn(jnp.asarray(axes[0])), dtype=np.float64)
    ms = np.array([np.sum(sig ** r * p[0]) * (axes[0][1] - axes[0][0]) for r in range(1, order + 1)])
    kap = nxt.lam * strength_moments(law_next, order) * ms
    if order >= 2:
        kap[1] += C_b + C_W * ms[1]
    return kap


# ---------------------------------------------------------------- predictors (Fourier) -------------

def _v_intervals(lam, ks):
    """Breakpoints in v = P(|J| > a) of the |J|-quadrature: 0, 1, every threshold k/lam, 10^-j (j = 1..30)
    and 1 - 10^-j (j = 1..6)."""
    cuts = [0.0, 1.0] + [10.0 ** -j for j in range(1, 21)] + [1.0 - 10.0 ** -j for j in range(1, 7)]
    if lam > 0:
        cuts += [k / lam for k in ks]
    return np.unique(np.clip(cuts, 0.0, 1.0))


def _j_rule(law, lam, ks, n_u):
    """Magnitude nodes a_i = F_bar^{-1}(v_i) (the inverse survival function), weights w_i (sum 1) and
    v_i of the composite Gauss-Legendre rule in v; the strongest synapses have the smallest v."""
    edges = _v_intervals(lam, ks)
    x, w = np.polynomial.legendre.leggauss(n_u)
    lo, hi = edges[:-1, None], edges[1:, None]
    v = (0.5 * (hi - lo) * (x + 1) + lo).ravel()
    return np.asarray(law.magnitude.isf(v), dtype=np.float64), (0.5 * (hi - lo) * w).ravel(), v


def _check_methods(methods, lam):
    out = []
    for m in methods:
        m = tuple(m) if isinstance(m, (tuple, list)) else (m,)
        kind = m[0] if m else None
        if kind == "exact" and len(m) == 1:
            out.append(m)
        elif kind == "keep" and len(m) == 3:
            k, order = m[1], m[2]
            if not (isinstance(k, numbers.Real) and np.isfinite(k) and 0 <= k <= lam):
                raise ValueError(f"k={k!r} in method {m!r} is not allowed: the mean number kept must satisfy "
                                 f"0 <= k <= lam = {lam}")
            out.append(("keep", float(k), check_order(order, "order")))
        elif kind == "low_density" and len(m) == 2:
            out.append(("low_density", check_order(m[1], "M")))
        else:
            raise ValueError(f"method {m!r} is not allowed: use ('exact',), ('keep', k, order) or "
                             "('low_density', M)")
    return out


@functools.lru_cache(maxsize=8)
def _edgeworth_sum(order):
    """Numeric f(kappa_3..kappa_{order+2}) = sum_{j<=order} c_j(s = i) (complex)."""
    lams = [sp.Symbol(f"lambda{r}", real=True) for r in range(3, order + 3)]
    total = sum(edgeworth_cf_coefficients(order, lams), sp.Integer(0)).subs(sp.Symbol("s"), sp.I)
    return to_numeric(sp.expand(total), *lams)


def _check_positive_int(v, name, minimum):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum:
        raise ValueError(f"{name}={v!r} is not allowed: an integer >= {minimum}")
    return int(v)


def predicted_densities(layer, methods, *, n_grid=None, n_sd=14.0, n_g=None, n_u=12, chunk=4096, _deposit=None):
    """Densities of z (infinite width) predicted by each method, on one common grid.

    ``methods``: a sequence of ('exact',), ('keep', k, order) [order 0: predictor (i); order R >= 1:
    (ii) with Edgeworth terms up to kappa_{R+2}], ('low_density', M) [(iii)] (module docstring).
    Returns (axes, densities): axes a list of d float64 arrays (N,), densities (len(methods), N, ..., N).
    ``n_grid``: points per axis (default: a fast FFT length >= 64 resolving exp(-t.K_bg.t/2) to 1e-16);
    ``n_sd``: half-width of the grid in standard deviations of z; ``n_g``: Gauss-Hermite nodes per input
    (default 96); ``n_u``: Gauss-Legendre nodes per v-interval of |J|; ``chunk``:
    quadrature nodes per matrix product (memory ~ 16 N chunk bytes per input).

    >>> layer = SparseLayer(1.0, lognormal_synapses(1.0, 0.5), "erf", 1.0)
    >>> axes, p = predicted_densities(layer, [("exact",), ("low_density", 30)])
    >>> bool(abs(p[0].sum() * (axes[0][1] - axes[0][0]) - 1) < 1e-10 and np.allclose(p[0], p[1], atol=1e-12))
    True
    """
    if not isinstance(layer, SparseLayer):
        raise ValueError(f"layer={layer!r} is not allowed: give a SparseLayer")
    methods = _check_methods(methods, layer.lam)
    d, lam, law = layer.d, float(layer.lam), layer.law
    n_g = 96 if n_g is None else _check_positive_int(n_g, "n_g", 8)
    n_u = _check_positive_int(n_u, "n_u", 1)
    chunk = _check_positive_int(chunk, "chunk", 1)
    if not (isinstance(n_sd, numbers.Real) and np.isfinite(n_sd) and n_sd > 0):
        raise ValueError(f"n_sd={n_sd!r} is not allowed: a finite number > 0")
    x, wg = _x_rule(layer, n_g)                                # (G, d), (G,)
    Exx = (x * wg[:, None]).T @ x
    Ex = wg @ x
    K_bg = layer.C_b + layer.C_W * Exx
    mJ = strength_moments(law, 2)
    mean = lam * mJ[0] * Ex
    sd = np.sqrt(np.diag(K_bg + lam * mJ[1] * Exx))
    try:  # positive definite within the psd_eigh tolerance (10 d eps max|lambda|)
        kmin = float(psd_eigh("K_bg = C_b + C_W E[x x^T]", K_bg, definite=True, vectors=False)[0])
    except ValueError as err:
        raise ValueError(f"{err}: it must be > 0 (inputs too correlated for the Fourier inversion)") from None
    H = n_sd * sd
    if n_grid is None:
        t_need = np.sqrt(2 * 37.0 / kmin)                     # exp(-K t^2 / 2) < 1e-16
        n_grid = scipy.fft.next_fast_len(int(max(64, np.ceil(np.max(2 * H) * t_need / np.pi))), real=False)
    n_grid = _check_positive_int(n_grid, "n_grid", 8)
    dz = 2 * H / n_grid
    axes = [mean[i] - H[i] + dz[i] * np.arange(n_grid) for i in range(d)]
    t1 = [2 * np.pi * np.fft.fftfreq(n_grid, dz[i]) for i in range(d)]
    T = np.meshgrid(*t1, indexing="ij")                        # d arrays (N,)*d

    ks = sorted({m[1] for m in methods if m[0] == "keep"} | ({lam} if any(m[0] != "keep" for m in methods) else set()))
    R = max([m[2] for m in methods if m[0] == "keep"] + [0]) + 2
    a, wJ, v = _j_rule(law, lam, ks, n_u)
    kept = {k: v < (k / lam if lam > 0 else 0.0) for k in ks}
    asym = 2 * law.p_plus - 1                                 # E[sign]
    rest_mom = {k: np.array([np.sum(wJ[~kept[k]] * (1.0 if r % 2 == 0 else asym) * a[~kept[k]] ** r)
                             for r in range(R + 1)]) for k in ks}          # E[J^r 1_<], r = 0..R
    # E[(t.x)^r] from the mixed moments E[x_a^p x_b^(r-p)]
    M = [np.ones_like(T[0])] + [sum(math.comb(r, p) * T[0] ** p * (T[1] ** (r - p) if d > 1 else 1.0)
                                    * (wg @ (x[:, 0] ** p * (x[:, -1] ** (r - p) if d > 1 else 1.0)))
                                    for p in (range(r + 1) if d > 1 else [r])) for r in range(1, R + 1)]
    # psi_>(t) for each k, cumulative over the groups kept(k_i) minus kept(k_{i-1}): a sum over nodes
    # (sign, |J|, g) of w exp(i J t_a x_a) exp(i J t_b x_b), i.e. one matrix product per group (d = 2)
    bounds = [0.0] + [k / lam if lam > 0 else 0.0 for k in ks]
    deposit = True if _deposit is None else _deposit
    psi, acc = {}, np.zeros(T[0].shape, dtype=complex)
    for k, lo_v, hi_v in zip(ks, bounds[:-1], bounds[1:]):
        g = (v >= lo_v) & (v < hi_v)
        sJ = np.concatenate([a[g], -a[g]])
        w = np.outer(np.concatenate([law.p_plus * wJ[g], (1 - law.p_plus) * wJ[g]]), wg).ravel()
        c = [np.outer(sJ, x[:, i]).ravel() for i in range(d)]
        keep = w > 1e-17                                        # dropped nodes: total weight < 1e-12
        w, c = w[keep], [ci[keep] for ci in c]
        if deposit:
            acc = acc + _deposit_cf(c, w, dz, n_grid)
        else:
            for lo in range(0, w.size, chunk):
                e = [np.exp(1j * np.outer(t1[i], c[i][lo:lo + chunk])) for i in range(d)]
                acc = acc + ((e[0] * w[lo:lo + chunk]) @ e[1].T if d > 1 else e[0] @ w[lo:lo + chunk])
        psi[k] = acc
    gauss = -0.5 * sum(K_bg[i, j] * T[i] * T[j] for i in range(d) for j in range(d))
    cf = np.zeros((len(methods),) + T[0].shape, dtype=complex)
    for im, m in enumerate(methods):
        if m[0] == "exact":
            cf[im] = np.exp(gauss + lam * (psi[lam] - 1))
        elif m[0] == "low_density":
            lp, term = lam * psi[lam], np.ones_like(gauss, dtype=complex)
            cf[im] = term.copy()
            for j in range(1, m[1] + 1):
                term = term * lp / j
                cf[im] += term
            cf[im] *= np.exp(gauss - lam)
        else:
            _, k, order = m
            mom = lam * rest_mom[k]                                # lam E[J^r 1_<]
            base = gauss + 1j * mom[1] * M[1] - 0.5 * mom[2] * M[2] + lam * psi[k] - (lam - mom[0])
            corr = 1.0
            if order > 0:
                corr = 1.0 + _edgeworth_sum(order)(*[mom[r] * M[r] for r in range(3, order + 3)])
            cf[im] = np.exp(base) * corr
    shift = np.exp(-1j * sum(T[i] * axes[i][0] for i in range(d)))
    dens = np.fft.fftn(cf * shift, axes=tuple(range(1, d + 1))).real / np.prod(n_grid * dz)
    if not np.all(np.isfinite(dens)):
        raise ValueError("the predicted density contains NaN/inf: check the layer's parameters")
    return axes, dens


def _deposit_cf(c, w, dz, N, over=2):
    """sum_nodes w e^{i t.y} on the FFT t-grid (N points per axis, spacing dz), y = (c_a, c_b): cloud-in-cell
    deposition of the nodes on a periodic grid ``over`` times finer (over N points, spacing dz / over),
    inverse FFT, the N frequencies of the coarse grid kept and divided by the CIC transfer function
    prod_a sinc^2(t_a dz_a / (2 over)); the aliases left are O((t dz / (2 pi over))^2)."""
    d, Nf = len(c), over * N
    idx, frac = [], []
    for i in range(d):
        f = c[i] * over / dz[i]
        j = np.floor(f)
        idx.append(j.astype(np.int64))
        frac.append(f - j)
    grid = np.zeros(Nf ** d)
    for corner in np.ndindex(*(2,) * d):
        flat, wt = np.zeros(w.size, dtype=np.int64), w.copy()
        for i, b in enumerate(corner):
            flat = flat * Nf + np.mod(idx[i] + b, Nf)
            wt = wt * (frac[i] if b else 1 - frac[i])
        grid += np.bincount(flat, wt, minlength=Nf ** d)
    out = np.fft.ifftn(grid.reshape((Nf,) * d)) * Nf ** d
    k = np.rint(np.fft.fftfreq(N) * N).astype(np.int64)           # coarse frequencies in fine-grid indices
    out = out[np.ix_(*[np.mod(k, Nf)] * d)]
    tr = np.sinc(k / Nf) ** 2                                       # sinc^2(t dz / (2 over))
    for i in range(d):
        out = out / tr.reshape([-1 if a == i else 1 for a in range(d)])
    return out


def expectation(f, axes, density):
    """sum_z f(z) p(z) dz^d on the grid of :func:`predicted_densities`; f takes d arrays (meshgrid, 'ij').

    A Riemann sum: spectrally accurate for smooth f (p decays at the grid edges), O(dz) for a step
    function (smooth it, e.g. a steep logistic, for tail probabilities)."""
    Z = np.meshgrid(*axes, indexing="ij")
    dz = np.prod([ax[1] - ax[0] for ax in axes])
    return float(np.sum(np.asarray(f(*Z), dtype=np.float64) * density) * dz)


def next_kernel(layer, axes, density):
    """(d, d) matrix E[sigma(z_a) sigma(z_b)] of a predicted density (the next layer's kernel is
    C_b' + C_W' times this)."""
    require_x64("sft.circuits.next_kernel")
    sig = lambda z: np.asarray(layer.activation.fn(jnp.asarray(z)), dtype=np.float64)
    d = len(axes)
    if d == 1:
        return np.array([[expectation(lambda z: sig(z) ** 2, axes, density)]])
    dz = [ax[1] - ax[0] for ax in axes]
    pa, pb = density.sum(1) * dz[1], density.sum(0) * dz[0]
    s0, s1 = sig(axes[0]), sig(axes[1])
    kab = expectation(lambda za, zb: sig(za) * sig(zb), axes, density)
    return np.array([[np.sum(s0 ** 2 * pa) * dz[0], kab], [kab, np.sum(s1 ** 2 * pb) * dz[1]]])


# ---------------------------------------------------------------- simulation -----------------------

def sample_strengths(law, key, shape):
    """J = s |J| (float64 numpy, ``shape``) by inverse CDF of JAX uniforms: |J| = F^{-1}(u)."""
    require_x64("sft.circuits.sample_strengths")
    if not isinstance(law, SynapseLaw):
        raise ValueError(f"law={law!r} is not allowed: give a SynapseLaw (e.g. lognormal_synapses())")
    if not isinstance(shape, tuple) or any(isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 0
                                           for k in shape):
        raise ValueError(f"shape={shape!r} is not allowed: give a tuple of integers >= 0")
    k1, k2 = jax.random.split(check_key("key", key))
    u = np.asarray(jax.random.uniform(k1, shape, dtype=jnp.float64))
    sign = np.where(np.asarray(jax.random.uniform(k2, shape, dtype=jnp.float64)) < law.p_plus, 1.0, -1.0)
    return sign * np.asarray(law.magnitude.ppf(u), dtype=np.float64)


def _check_mc(layer, n_samples, batch):
    if not isinstance(layer, SparseLayer):
        raise ValueError(f"layer={layer!r} is not allowed: give a SparseLayer")
    return _check_positive_int(n_samples, "n_samples", 1), _check_positive_int(batch, "batch", 1)


def _slots(lam):
    """Number of impurity slots: P(Poisson(lam) > slots) < 1e-14 (the bias of truncating m)."""
    return int(scipy.stats.poisson.isf(1e-14, lam)) + 1 if lam > 0 else 1


def _counts(key, lam, shape):
    """Poisson(lam) counts by inverse CDF of JAX uniforms (scipy), float64."""
    return scipy.stats.poisson.ppf(np.asarray(jax.random.uniform(key, shape, dtype=jnp.float64)), lam)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _finite_batch(fn, n, key, K_in, C_W, C_b, m, J):
    B, m_max = J.shape
    kg, kp = jax.random.split(key)
    L = jnp.linalg.cholesky(K_in)
    x = fn(jax.random.normal(kg, (B, n, L.shape[0]), dtype=jnp.float64) @ L.T)       # (B, n, d)
    pos = jax.random.randint(kp, (B, m_max), 0, n)
    Jm = jnp.where(jnp.arange(m_max)[None, :] < m[:, None], J, 0.0)
    D = jnp.einsum("bs,bsd->bd", Jm, jnp.take_along_axis(x, pos[:, :, None], axis=1))
    G = C_b + C_W / n * jnp.einsum("bja,bjc->bac", x, x)
    return D, G


def simulate_conditionals(layer, n, key, n_samples, *, batch=1000):
    """Finite-width Monte Carlo (JAX, float64): per network sample the exact conditional law of z given
    the inputs and the impurities, z ~ N(D, G_hat): returns D (S, d) and G_hat (S, d, d)
    (module docstring). Same key -> same result."""
    require_x64("sft.circuits.simulate_conditionals")
    n_samples, batch = _check_mc(layer, n_samples, batch)
    n = _check_n(n)
    if n is None:
        raise ValueError("n=None is not allowed here: use simulate_limit for n -> inf")
    m_max = _slots(layer.lam)
    Ds, Gs = [], []
    batch = min(batch, n_samples)
    for i, lo in enumerate(range(0, n_samples, batch)):   # every batch has the same shape (one compile)
        kb, kJ, km = jax.random.split(jax.random.fold_in(key, i), 3)
        J = jnp.asarray(sample_strengths(layer.law, kJ, (batch, m_max)))
        m = jnp.asarray(_counts(km, layer.lam, (batch,)))
        D, G = _finite_batch(layer.activation.fn, n, kb, jnp.asarray(layer.K_in), layer.C_W, layer.C_b, m, J)
        Ds.append(np.asarray(D))
        Gs.append(np.asarray(G))
    return np.concatenate(Ds)[:n_samples], np.concatenate(Gs)[:n_samples]


def simulate_limit(layer, key, n_samples, *, n_g=400):
    """Infinite-width Monte Carlo: D = sum_{i<=m} J_i sigma(g^(i)) (S, d) with fresh g^(i) ~ N(0, K_in),
    and G_hat = K_bg (S, d, d) (module docstring)."""
    require_x64("sft.circuits.simulate_limit")
    n_samples, _ = _check_mc(layer, n_samples, 1)
    n_g = _check_positive_int(n_g, "n_g", 8)
    m_max = _slots(layer.lam)
    kg, km, kJ = jax.random.split(check_key("key", key), 3)
    J = sample_strengths(layer.law, kJ, (n_samples, m_max))
    m = _counts(km, layer.lam, (n_samples,))
    g = np.asarray(jax.random.normal(kg, (n_samples, m_max, layer.d), dtype=jnp.float64)) @ np.linalg.cholesky(layer.K_in).T
    x = np.asarray(layer.activation.fn(jnp.asarray(g)), dtype=np.float64)
    D = np.einsum("bs,bsd->bd", np.where(np.arange(m_max)[None] < m[:, None], J, 0.0), x)
    xr, wg = _x_rule(layer, n_g)
    K_bg = layer.C_b + layer.C_W * (xr * wg[:, None]).T @ xr
    return D, np.broadcast_to(K_bg, (n_samples,) + K_bg.shape).copy()


def _check_conditionals(D, G):
    D, G = check_array("D", D, min_size=0), check_array("G", G, min_size=0)
    if D.ndim != 2 or G.shape != D.shape + (D.shape[1],) or D.shape[0] < 2:
        raise ValueError(f"D, G have shapes {D.shape}, {G.shape}: need (S, d) and (S, d, d) with S >= 2")
    if not (np.all(np.isfinite(D)) and np.all(np.isfinite(G))):
        raise ValueError("D or G contains NaN or inf: simulation outputs must be finite")
    psd_eigh("G", G, vectors=False)  # ValueError naming G if a conditional covariance is not PSD
    return D, G


def _conditional_moments(D, G, order):
    """E[z^r | D, G] = sum_{k even} C(r, k) D^{r-k} G^{k/2} (k-1)!! for r = 1..order, input 0: (S, order)."""
    d0, g0 = D[:, 0], G[:, 0, 0]
    return np.stack([sum(math.comb(r, k) * d0 ** (r - k) * g0 ** (k // 2) * math.prod(range(1, k, 2))
                         for k in range(0, r + 1, 2)) for r in range(1, order + 1)], axis=1)


def mc_cumulants(D, G, order, *, n_blocks=20):
    """(cumulants [kappa_1..kappa_order], jackknife errors) of z_a (input 0) from conditionals (D, G):
    E[z^r] = mean_s E[z^r | D_s, G_s] (Rao-Blackwell), cumulants from those moments."""
    D, G = _check_conditionals(D, G)
    cond = _conditional_moments(D, G, check_order(order, "order", 1))
    return jackknife(lambda c: cumulants_from_moments(c.mean(0)), cond, n_blocks=n_blocks)


def mc_excess_kurtosis(D, G, *, n_blocks=20):
    """(kappa_4 / kappa_2^2, jackknife error) of z_a from conditionals, as in :func:`mc_cumulants`."""
    D, G = _check_conditionals(D, G)
    cond = _conditional_moments(D, G, 4)
    return jackknife(lambda c: (lambda k: k[3] / k[1] ** 2)(cumulants_from_moments(c.mean(0))), cond,
                     n_blocks=n_blocks)


def _gauss_points(D, G, n_nodes):
    """Gauss-Hermite points z = D_s + chol(G_s) u (S, n_nodes^d, d) and weights (n_nodes^d,)."""
    d = D.shape[1]
    u, w = np.polynomial.hermite_e.hermegauss(_check_positive_int(n_nodes, "n_nodes", 1))
    U = np.stack(np.meshgrid(*[u] * d, indexing="ij"), -1).reshape(-1, d)
    W = np.prod(np.stack(np.meshgrid(*[w / np.sqrt(2 * np.pi)] * d, indexing="ij"), -1).reshape(-1, d), 1)
    Lc = np.linalg.cholesky(G + 1e-14 * np.trace(G, axis1=1, axis2=2)[:, None, None] * np.eye(d))
    return D[:, None, :] + np.matmul(U[None], np.swapaxes(Lc, 1, 2)), W


def mc_expectation(f, D, G, *, n_nodes=16, block=4096):
    """(estimate, error) of E f(z) from conditionals: the mean over samples of the Gaussian expectation
    E_{N(D_s, G_s)} f (Gauss-Hermite, n_nodes per dimension), error = std / sqrt(S) (samples i.i.d.).
    ``f`` maps an array (..., d) of z's to (...)."""
    D, G = _check_conditionals(D, G)
    block = _check_positive_int(block, "block", 1)
    vals = []
    for lo in range(0, len(D), block):
        Z, W = _gauss_points(D[lo:lo + block], G[lo:lo + block], n_nodes)
        vals.append(np.asarray(f(Z), dtype=np.float64) @ W)
    vals = np.concatenate(vals)
    return float(vals.mean()), float(vals.std(ddof=1) / np.sqrt(len(vals)))


def mc_next_kernel(layer, D, G, *, n_nodes=16, block=4096):
    """(K (d, d), errors (d, d)): E[sigma(z_a) sigma(z_b)] as in :func:`mc_expectation`."""
    require_x64("sft.circuits.mc_next_kernel")
    D, G = _check_conditionals(D, G)
    block = _check_positive_int(block, "block", 1)
    d = D.shape[1]
    sig = jax.jit(layer.activation.fn)
    vals = []
    for lo in range(0, len(D), block):
        Z, W = _gauss_points(D[lo:lo + block], G[lo:lo + block], n_nodes)
        S = np.asarray(sig(jnp.asarray(Z)), dtype=np.float64)
        vals.append(np.einsum("sna,snb,n->sab", S, S, W))
    vals = np.concatenate(vals)
    return vals.mean(0), vals.std(0, ddof=1) / np.sqrt(len(vals))
