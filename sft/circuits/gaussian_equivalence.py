"""Gaussian-equivalence constants of an activation and the law of a random-feature background given a
circuit's input.

Conventions (z ~ N(0, 1), h = sqrt(q) z a preactivation of variance q, h_k = He_k / sqrt(k!)):

    mu0 = E[sigma(sqrt(q) z)],   mu1 = E[z sigma(sqrt(q) z)] = sqrt(q) E[sigma'(sqrt(q) z)]  (Stein),
    mu*^2 = E[sigma(sqrt(q) z)^2] - mu0^2 - mu1^2,

i.e. mu1 is the coefficient of h_1(z) = z in the Hermite expansion of sigma(sqrt(q) z) and *includes*
sqrt(q) (linear sigma: mu1 = sqrt(q)). Gaussian equivalence replaces sigma(h) by mu0 + mu1 z + mu* xi,
xi ~ N(0, 1) independent (Goldt et al. 2020; Hu & Lu 2022; Mei & Montanari 2019 sec. 2).
Closed forms (derived in the tests): relu mu0 = sqrt(q / 2 pi), mu1 = sqrt(q) / 2,
mu*^2 = q (1/4 - 1/(2 pi)); erf mu0 = 0, mu1 = 2 sqrt(q) / sqrt(pi (1 + 2q)),
E[erf^2] = (2/pi) arcsin(2q / (1 + 2q)); linear mu0 = 0, mu1 = sqrt(q), mu* = 0.

Background model. f(x) = sum_k b_k sigma(u_k . x) + f_bg(x),  f_bg(x) = N^{-1/2} sum_i a_i sigma(w_i . x),
a_i iid with mean a_mean and variance a_var, independent of the w_i. Circuit input s = u . x (|u| = 1).
Tilt toward the circuit (our convention): w_i = beta u + gamma P_perp g_i / sqrt(d), g_i ~ N(0, I_d),
P_perp = I - u u^T, so that given x

    w_i . x = beta s + r_i,   r_i ~ N(0, q_perp) iid,   q_perp = gamma^2 |P_perp x|^2 / d.

Untilted weights w_i ~ N(0, I/d) are the case beta = 0, q_perp = |x|^2 / d (law independent of the
direction of x, so f_bg depends on s only through |x|). Given x, over the background weights
(exact at every N, the sum of N iid terms):

    E[f_bg | x]   = sqrt(N) a_mean E_r[sigma(beta s + r)],
    Var[f_bg | x] = (a_var + a_mean^2) E_r[sigma(beta s + r)^2] - a_mean^2 E_r[sigma(beta s + r)]^2.

With q = beta^2 + q_perp and rho = beta / sqrt(q), beta s + r = sqrt(q) (rho s + sqrt(1 - rho^2) z), so
by Mehler's formula (the Ornstein-Uhlenbeck semigroup acting on Hermite polynomials; O'Donnell,
*Analysis of Boolean Functions* (2014) sec. 11.1) for any g in L^2(N(0,1)):

    E_r[g(beta s + r)] = sum_k c_k[g](q) rho^k h_k(s),   c_k[g](q) = E[g(sqrt(q) z) h_k(z)],

applied to g = sigma (c_0 = mu0, c_1 = mu1) and g = sigma^2. The circuit polarizes the background:
to first order E[sigma | s] = mu0 + mu1 rho s, the Gaussian-equivalence line.

Several circuits. K orthonormal circuit directions U = (u_1 .. u_K) (d, K), circuit inputs s = U^T x (K,),
and a tilt matrix B (N, K), one row per background neuron (neurons may lean toward different circuits):
w_i = U B_i + gamma P_perp g_i / sqrt(d), P_perp = I - U U^T, so w_i . x = B_i . s + r_i, r_i ~ N(0, q_perp),
q_perp = gamma^2 |P_perp x|^2 / d. Over the background weights, given x (exact at every N):

    E[f_bg | x]   = N^{-1/2} a_mean sum_i m1_i,    m_p,i = E_r[sigma(B_i . s + r)^p],
    Var[f_bg | x] = N^{-1} sum_i [(a_var + a_mean^2) m2_i - a_mean^2 m1_i^2].

Multivariate Mehler series (independent of the quadrature): with q_i = |B_i|^2 + q_perp and
rho_i = B_i / sqrt(q_i) (|rho_i| < 1), B_i . s + r = sqrt(q_i) (rho_i . s + sqrt(1 - |rho_i|^2) z); the
1-d Mehler formula in the direction rho_i / |rho_i| and the multinomial expansion of
|rho|^n h_n(rho . s / |rho|) = sum_{|alpha| = n} sqrt(n! / alpha!) rho^alpha h_alpha(s)
(h_alpha(s) = prod_k h_{alpha_k}(s_k), the orthonormal Hermite basis of N(0, I_K)) give

    E_r[g(B_i . s + r)] = sum_alpha c_|alpha|[g](q_i) sqrt(|alpha|! / alpha!) rho_i^alpha h_alpha(s)

(derivation: generating function exp(t.s - |t|^2/2) = sum_alpha t^alpha He_alpha(s) / alpha!, t = lambda rho).
The circuits polarize the background along B^T: to first order E[sigma_i | s] = mu0(q_i) + mu1(q_i) rho_i . s.
Checks (tests/test_gaussian_equivalence.py, figure ``circuit_background``): conditional mean and variance
per bin of s against simulation (|z| <= 2.2); several circuit directions: the exact 1-D quadrature per
neuron (:func:`background_moments_multi`) against the multivariate Mehler series
(:func:`background_moments_hermite_multi`) and the JAX simulator (two-circuit tilts |z| <= 1.83; circuits
swapped: |z| = 78).
"""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special

from ..kernels.activations import get_activation
from ..gaussian.expectations import gaussian_expectation
from ..conventions import check_array, check_int, check_key, check_real, require_x64

__all__ = ["equivalence_constants", "hermite_coefficients_1d", "background_conditional_moments",
           "background_moments_hermite", "background_moments_multi", "background_moments_hermite_multi",
           "simulate_background"]

_NODES = 1600  # quadrature nodes per half line of sft.gaussian.gaussian_expectation
_KINK_NODES = 512  # Gauss-Legendre nodes on each side of the shifted kink in _shifted_moments
_CUT = 14.0  # |z| cut of _shifted_moments: the N(0, 1) tail beyond it is ~1e-44


def _check_q(q, name="q"):
    q = check_array(name, q)
    if np.any(q < 0):
        raise ValueError(f"{name}={q!r} is not allowed: variances must be finite and >= 0")
    return q


def _broadcast(s, q_perp):
    try:
        return np.broadcast_arrays(s, q_perp)
    except ValueError:
        raise ValueError(f"s has shape {s.shape} and q_perp {q_perp.shape}: they must broadcast together") from None


def _normalized_hermite(k, z):
    """h_k(z) = He_k(z) / sqrt(k!) (orthonormal under N(0, 1))."""
    return scipy.special.eval_hermitenorm(k, z) / np.sqrt(scipy.special.factorial(k))


def equivalence_constants(activation, *, q=1.0):
    """(mu0, mu1, mu_star) of ``activation`` at preactivation variance ``q`` (scalar or array).

    mu0 = E[sigma(sqrt q z)], mu1 = E[z sigma(sqrt q z)] (includes sqrt q), mu_star = sqrt(E[sigma^2]
    - mu0^2 - mu1^2) (module docstring). ``activation``: a name, an Activation or a JAX callable.
    Quadrature: :func:`sft.gaussian.gaussian_expectation`.

    >>> mu0, mu1, mus = equivalence_constants("linear", q=4.0)
    >>> round(float(mu1), 12), round(float(mus), 6)
    (2.0, 0.0)
    """
    act = get_activation(activation)
    q = _check_q(q)
    sq = np.sqrt(np.where(q > 0, q, 1.0))
    f = lambda t: np.asarray(act(t), dtype=np.float64)
    mu0 = gaussian_expectation(f, q, _NODES)
    mu1 = np.where(q > 0, gaussian_expectation(lambda t: (t / sq[..., None]) * f(t), q, _NODES), 0.0)
    ess = gaussian_expectation(lambda t: f(t) ** 2, q, _NODES)
    return mu0, mu1, np.sqrt(np.maximum(ess - mu0 ** 2 - mu1 ** 2, 0.0))


def hermite_coefficients_1d(g, q, order):
    """c_k = E[g(sqrt(q) z) h_k(z)], k = 0 .. order-1, shape q.shape + (order,); q > 0, g elementwise."""
    if not callable(g):
        raise ValueError(f"g={g!r} is not allowed: give an elementwise function")
    q = _check_q(q)
    if np.any(q <= 0):
        raise ValueError(f"q={q!r} is not allowed: need q > 0 for the Hermite expansion")
    order = check_int("order", order, 1)
    sq = np.sqrt(q)[..., None]
    return np.stack([gaussian_expectation(lambda t: g(t) * _normalized_hermite(k, t / sq), q, _NODES)
                     for k in range(int(order))], axis=-1)


def _check_model(beta, a_var, width, a_mean=0.0):
    check_real("beta", beta)
    check_real("a_var", a_var, minimum=0)
    check_real("a_mean", a_mean)
    check_int("width", width, 1)


def _shifted_moments(act, shift, v, n_nodes):
    """(E[sigma(shift + r)], E[sigma(shift + r)^2]) for r ~ N(0, v), elementwise over shift, v (same shape).

    With r = sqrt(v) z the integrand sigma(shift + sqrt(v) z) phi(z) has its kink (relu family: at
    argument 0) at z0 = -shift / sqrt(v), different for every element; a rule split only at z = 0 (as in
    sft.gaussian.gaussian_expectation) converges slowly across it (~1e-5 for relu). Here [-CUT, z0] and
    [z0, CUT] (z0 clipped to [-CUT, CUT]; CUT = 14) each get n_nodes // 16 equal panels of 16-point
    Gauss-Legendre, so each piece is smooth: exact to rounding (~1e-14) for piecewise-smooth activations
    with their kink at 0 and for smooth ones. v = 0 gives sigma(shift).
    """
    x, w = scipy.special.roots_legendre(16)
    panels = max(int(n_nodes) // 16, 2)
    t = ((np.arange(panels)[:, None] + (x + 1) / 2) / panels).ravel()   # nodes on [0, 1]
    wt = np.tile(w / 2, panels) / panels
    sd = np.sqrt(v)[..., None]
    z0 = np.clip(np.divide(-shift, np.sqrt(v), out=np.zeros(np.shape(shift)), where=np.sqrt(v) > 0),
                 -_CUT, _CUT)[..., None]
    z = np.concatenate([-_CUT + (z0 + _CUT) * t, z0 + (_CUT - z0) * t], axis=-1)
    wz = np.concatenate([(z0 + _CUT) * wt, (_CUT - z0) * wt], axis=-1) * np.exp(-z * z / 2) / np.sqrt(2 * np.pi)
    vals = np.asarray(act(np.asarray(shift)[..., None] + sd * z), dtype=np.float64)
    return np.sum(vals * wz, -1), np.sum(vals ** 2 * wz, -1)


def background_conditional_moments(activation, s, *, beta, q_perp, a_mean=0.0, a_var=1.0, width=1):
    """Exact (E[f_bg | x], Var[f_bg | x]) over the background weights, given the circuit input s and
    the orthogonal variance q_perp (arrays broadcast together); formulas in the module docstring.

    One-dimensional quadrature over r ~ N(0, q_perp), split at the shifted kink r = -beta s
    (:func:`_shifted_moments`): relative error ~1e-14 for relu-like activations (kink at 0) and smooth ones.

    >>> m, v = background_conditional_moments("relu", 1.0, beta=0.5, q_perp=1.0, a_mean=1.0, a_var=0.0)
    >>> from scipy.stats import norm   # E[relu(0.5 + r)] = 0.5 Phi(0.5) + phi(0.5), r ~ N(0, 1)
    >>> bool(abs(float(m) - (0.5 * norm.cdf(0.5) + norm.pdf(0.5))) < 1e-14)
    True
    """
    act = get_activation(activation)
    _check_model(beta, a_var, width, a_mean)
    s, q_perp = _broadcast(check_array("s", s, min_size=0), _check_q(q_perp, "q_perp"))
    m1, m2 = _shifted_moments(act, beta * s, q_perp, _KINK_NODES)
    return np.sqrt(width) * a_mean * m1, (a_var + a_mean ** 2) * m2 - a_mean ** 2 * m1 ** 2


def background_moments_hermite(activation, s, *, beta, q_perp, order, a_mean=0.0, a_var=1.0, width=1):
    """The same moments from the Mehler series truncated at ``order`` terms (module docstring):
    E_r[g(beta s + r)] = sum_{k < order} c_k[g](q) rho^k h_k(s), q = beta^2 + q_perp, rho = beta / sqrt q;
    scalar q_perp, s any shape. order = 2 for g = sigma is the Gaussian-equivalence line mu0 + mu1 rho s.
    """
    act = get_activation(activation)
    _check_model(beta, a_var, width, a_mean)
    order = check_int("order", order, 1)
    s = check_array("s", s, min_size=0)
    q = beta ** 2 + check_real("q_perp", q_perp, minimum=0)
    rho = beta / np.sqrt(q)
    s = np.asarray(s, dtype=np.float64)
    basis = np.stack([rho ** k * _normalized_hermite(k, s) for k in range(int(order))], axis=-1)
    sig = lambda t: np.asarray(act(t), dtype=np.float64)
    m1 = basis @ hermite_coefficients_1d(sig, q, order)
    m2 = basis @ hermite_coefficients_1d(lambda t: sig(t) ** 2, q, order)
    return np.sqrt(width) * a_mean * m1, (a_var + a_mean ** 2) * m2 - a_mean ** 2 * m1 ** 2


def _check_multi(s, tilt, a_var, a_mean=0.0):
    B = check_array("tilt", tilt, min_size=0)
    if B.ndim != 2 or B.shape[0] < 1 or B.shape[1] < 1:
        raise ValueError(f"tilt={tilt!r} is not allowed: give a finite (N, K) tilt matrix, one row per "
                         "background neuron, one column per circuit")
    s = check_array("s", s, min_size=0)
    if s.ndim < 1 or s.shape[-1] != B.shape[1]:
        raise ValueError(f"s has shape {s.shape}: its last axis must hold the K = {B.shape[1]} circuit inputs")
    check_real("a_var", a_var, minimum=0)
    check_real("a_mean", a_mean)
    return s, B


def _combine(m1, m2, counts, N, a_mean, a_var):
    """N^{-1/2} a_mean sum_i m1_i and N^{-1} sum_i [(a_var + a_mean^2) m2_i - a_mean^2 m1_i^2] (rows with counts)."""
    mean = a_mean * (m1 @ counts) / np.sqrt(N)
    var = ((a_var + a_mean ** 2) * m2 - a_mean ** 2 * m1 ** 2) @ counts / N
    return mean, var


def background_moments_multi(activation, s, *, tilt, q_perp, a_mean=0.0, a_var=1.0, n_nodes=400):
    """Exact (E[f_bg | x], Var[f_bg | x]) for K circuits and a tilt matrix (module docstring, "Several circuits").

    s: (..., K) circuit inputs U^T x; tilt: (N, K) matrix B (row i: neuron i's tilt; width N = number of
    rows; untilted neurons: a zero row with q_perp = |x|^2 / d); q_perp: scalar or shape s.shape[:-1].
    One 1-d quadrature per distinct row, split at the shifted kink (:func:`_shifted_moments`, ``n_nodes``
    on each side of it).
    Returns two arrays of shape s.shape[:-1], float64.

    >>> m, v = background_moments_multi("linear", [[1.0, 2.0]], tilt=[[0.5, 0.0], [0.0, 0.5]], q_perp=0.3,
    ...                                  a_mean=1.0, a_var=0.0)
    >>> round(float(m[0]), 12), round(float(v[0]), 12)   # (0.5 + 1.0) / sqrt 2, Var = (0.3 + 0.3) / 2
    (1.06066017178, 0.3)
    """
    act = get_activation(activation)
    s, B = _check_multi(s, tilt, a_var, a_mean)
    n_nodes = check_int("n_nodes", n_nodes, 1)
    rows, counts = np.unique(B, axis=0, return_counts=True)
    q_perp = _check_q(q_perp, "q_perp")
    try:
        q_perp = np.broadcast_to(q_perp, s.shape[:-1])
    except ValueError:
        raise ValueError(f"q_perp has shape {q_perp.shape}: it must broadcast to s.shape[:-1] = {s.shape[:-1]}") from None
    shift = s @ rows.T                                                # (..., R)
    m1, m2 = _shifted_moments(act, shift, np.broadcast_to(q_perp[..., None], shift.shape), n_nodes)
    return _combine(m1, m2, counts.astype(np.float64), B.shape[0], a_mean, a_var)


def _multi_indices(K, order):
    """All alpha in N^K with |alpha| < order, shape (M, K)."""
    return np.array([a for n in range(order) for a in itertools.product(range(n + 1), repeat=K) if sum(a) == n],
                    dtype=int).reshape(-1, K)


def background_moments_hermite_multi(activation, s, *, tilt, q_perp, order, a_mean=0.0, a_var=1.0):
    """The same moments as :func:`background_moments_multi` from the multivariate Mehler series truncated at
    total degree |alpha| < ``order`` (module docstring); scalar q_perp, needs |rho_i| < 1 (q_perp > 0).

    Coefficients c_n[g](q) = E[g(sqrt q z) h_n(z)] by 1-d quadrature (:func:`hermite_coefficients_1d`);
    the s-dependence only through the product Hermite basis h_alpha(s). M = C(order - 1 + K, K) terms.

    >>> m, _ = background_moments_hermite_multi("linear", [[1.0, 2.0]], tilt=[[0.5, 0.0], [0.0, 0.5]],
    ...                                         q_perp=0.3, order=3, a_mean=1.0)
    >>> round(float(m[0]), 12)
    1.06066017178
    """
    act = get_activation(activation)
    s, B = _check_multi(s, tilt, a_var, a_mean)
    order = check_int("order", order, 1)
    q_perp = check_real("q_perp", q_perp, minimum=0)
    if q_perp <= 0:
        raise ValueError(f"q_perp={q_perp!r} is not allowed: the Mehler series needs q_perp > 0 (|rho| < 1)")
    order, K = int(order), B.shape[1]
    rows, counts = np.unique(B, axis=0, return_counts=True)
    alpha = _multi_indices(K, order)                                  # (M, K)
    n = alpha.sum(1)
    H = np.stack([_normalized_hermite(j, s) for j in range(order)], axis=-1)     # (..., K, order)
    basis = np.prod(np.stack([H[..., k, alpha[:, k]] for k in range(K)], axis=0), axis=0)   # (..., M)
    multinom = np.exp(0.5 * (scipy.special.gammaln(n + 1) - scipy.special.gammaln(alpha + 1).sum(1)))
    sig = lambda t: np.asarray(act(t), dtype=np.float64)
    m1, m2 = [], []
    for beta in rows:
        q = beta @ beta + q_perp
        rho = beta / np.sqrt(q)
        w = multinom * np.prod(rho[None, :] ** alpha, axis=1)          # (M,)
        c1 = hermite_coefficients_1d(sig, q, order)[n]
        c2 = hermite_coefficients_1d(lambda t: sig(t) ** 2, q, order)[n]
        m1.append(basis @ (w * c1))
        m2.append(basis @ (w * c2))
    return _combine(np.stack(m1, -1), np.stack(m2, -1), counts.astype(np.float64), B.shape[0], a_mean, a_var)


def simulate_background(key, activation, x, *, circuits, tilt=None, width=None, gamma=1.0, a_mean=0.0,
                        a_var=1.0, n_replicas=1, batch_size=4096):
    """JAX simulation of f_bg(x) = N^{-1/2} sum_i a_i sigma(w_i . x) with FRESH background weights for every
    input and replica (the law over background weights given x), float64, jitted and vectorized over inputs (in batches).

    x: (P, d) inputs; circuits: (d, K) orthonormal columns U; tilt: (N, K) matrix B, w_i = U B_i + gamma
    P_perp g_i / sqrt(d), g_i ~ N(0, I_d); tilt=None: untilted w_i = g_i / sqrt(d) (then give ``width``).
    a_i = a_mean + sqrt(a_var) xi_i, xi_i ~ N(0, 1). Returns f_bg, shape (n_replicas, P) (row r: replica r).
    Batches of ``batch_size`` inputs use keys fold_in(key, batch index): same (key, batch_size) -> same draws.
    """
    require_x64("sft.circuits.simulate_background")
    act = get_activation(activation)
    x = jnp.asarray(check_array("x", x, min_size=0))
    U = jnp.asarray(check_array("circuits", circuits, min_size=0))
    if x.ndim != 2 or U.ndim != 2 or U.shape[0] != x.shape[1] or 0 in x.shape or 0 in U.shape:
        raise ValueError(f"x has shape {x.shape} and circuits {U.shape}: need x (P, d) and circuits (d, K), "
                         "P, d, K >= 1")
    if not np.allclose(np.asarray(U.T @ U), np.eye(U.shape[1]), atol=1e-10):
        raise ValueError("circuits is not allowed: its columns must be orthonormal (U^T U = 1)")
    if tilt is None:
        B, N = None, check_int("width", width, 1)
    else:
        _, B = _check_multi(np.zeros(U.shape[1]), tilt, a_var)
        N = B.shape[0]
        if width is not None and width != N:
            raise ValueError(f"width={width!r} is not allowed: it must equal tilt.shape[0] = {N} (or be None)")
        B = jnp.asarray(B)
    n_replicas, batch_size = check_int("n_replicas", n_replicas, 1), check_int("batch_size", batch_size, 1)
    gamma, a_mean, a_var = check_real("gamma", gamma), check_real("a_mean", a_mean), check_real("a_var", a_var, minimum=0)
    key = check_key("key", key)
    P, d = x.shape
    total = n_replicas * P
    n_b = min(total, int(batch_size))

    @jax.jit
    def run(k, xs):                                                   # xs (n_b, d)
        kg, ka = jax.random.split(k)
        g = jax.random.normal(kg, (n_b, N, d), dtype=jnp.float64) / np.sqrt(d)
        gx = jnp.einsum("pnd,pd->pn", g, xs)
        if B is None:
            h = gx
        else:
            xu = xs @ U                                               # (n_b, K)
            h = xu @ B.T + gamma * (gx - jnp.einsum("pnk,pk->pn", g @ U, xu))   # g . P_perp x
        a = a_mean + np.sqrt(a_var) * jax.random.normal(ka, (n_b, N), dtype=jnp.float64)
        return jnp.sum(a * act(h), axis=1) / np.sqrt(N)

    xs = jnp.tile(x, (n_replicas, 1))
    pad = (-total) % n_b                         # fixed batch shape: one compilation
    xs = jnp.concatenate([xs, xs[:pad]]) if pad else xs
    out = np.concatenate([np.asarray(run(jax.random.fold_in(key, i), xs[i * n_b:(i + 1) * n_b]))
                          for i in range(len(xs) // n_b)])
    return out[:total].reshape(n_replicas, P)
