"""Edgeworth expansions to any order, univariate and multivariate, and the Cornish-Fisher expansion.

Conventions. X_1..X_n iid with mean mu, variance sigma^2 and cumulants kappa_r; the standardized sum

    S_n = (sum_i X_i - n mu) / (sigma sqrt(n))

has cumulants lambda_r n^{1 - r/2} (r >= 3), lambda_r = kappa_r / sigma^r the standardized cumulants.
With eps = n^{-1/2} the characteristic function is, exactly,

    E exp(i t S_n) = exp(-t^2/2) exp( sum_{r>=3} lambda_r eps^{r-2} (it)^r / r! ).

Expanding the second exponential in eps (Blinnikov & Moessner 1998, A&AS 130, 193, eq. (43);
Petrov 1975 ch. VI) gives, for j >= 1,

    c_j(s) = sum over {k_m} with sum_m m k_m = j of
             prod_m (1 / k_m!) (lambda_{m+2} / (m+2)!)^{k_m} s^{j + 2 sum_m k_m}        (s = it),

and term-by-term inverse Fourier transform, (it)^k exp(-t^2/2) <-> (-d/dx)^k phi(x) = He_k(x) phi(x)
(probabilists' Hermite polynomials He_k), gives

    density:  f(x) ~ phi(x) [1 + sum_{j=1}^{order} eps^j p_j(x)],  p_j = c_j with s^k -> He_k(x),
    CDF:      F(x) ~ Phi(x) - phi(x) sum_{j} eps^j c_j(s^k -> He_{k-1}(x)),
    ch. fn.:  E e^{itS} ~ exp(-t^2/2) [1 + sum_j eps^j c_j(it)].

E.g. p_1 = lambda_3 He_3/6, p_2 = lambda_4 He_4/24 + lambda_3^2 He_6/72 (Hall, *The Bootstrap and
Edgeworth Expansion* (1992) sec. 2.2). The truncation at ``order`` leaves an error O(eps^{order+1})
uniformly in x (for a law with a density and enough moments; Hall 1992 Thm 2.1).

A general nearly-Gaussian law Y with cumulants kappa_1 (mean), kappa_2 = sigma^2 and kappa_r that are
O(eps^{r-2}) has the same expansion in x = (y - kappa_1)/sigma with lambda_r = kappa_r / sigma^r and
eps -> 1 (the order counts powers of the small parameter carried by the cumulants):
:func:`nearly_gaussian_density`, :func:`nearly_gaussian_cdf`. The iid sum in its own units is the
case kappa_r -> n kappa_r.

Multivariate (McCullagh, *Tensor Methods in Statistics* (1987) sec. 5.2): mean mu, covariance K and
cumulant tensors kappa_r (r >= 3, kappa_r = O(eps^{r-2})):

    f(x) ~ phi_K(x - mu) [1 + sum_{j=1}^{order} sum_{{k_m}: sum m k_m = j}
                 prod_m (1/k_m!) (1/(m+2)!)^{k_m} < (x)_m kappa_{m+2}^{(x) k_m} , H_R(x - mu; K) >],

the outer (tensor) product over m of k_m copies of kappa_{m+2}, fully contracted with H_R, the tensor
Hermite polynomial of order R = j + 2 sum k_m (:mod:`sft.symbolic.hermite`); the same partitions as above.

Cornish-Fisher (Cornish & Fisher 1937; Hall 1992 sec. 2.5): the p-quantile of S_n is
x_p ~ z + sum_j eps^j h_j(z), z = Phi^{-1}(p), h_1 = lambda_3 He_2(z)/6, derived here by inverting the
Edgeworth CDF order by order in eps.

WARNING: truncated Edgeworth densities are not densities: they integrate to 1 but can go negative
(in the tails; near the centre too when the cumulants are not small) and the truncated CDF can leave
[0, 1] or decrease. Check with :func:`density_minimum` / :func:`is_nonnegative` before using one as
a probability density.

Symbolic results are sympy expressions; :func:`to_numeric` turns them into numpy or JAX functions.

Limits (checked up front, ValueError with the estimate): symbolic expansions need sum_{j<=order} p(j)
partition terms (p the partition numbers), at most ``MAX_PARTITION_TERMS`` = 10^4 (order <= 25;
order 60 would need 6.6e6); the multivariate density's top tensor has d^(3 order) entries per point,
at most ``MAX_TENSOR_ENTRIES`` = 2^28. :func:`edgeworth_density_numeric` has neither limit.
"""
from __future__ import annotations

import functools

import jax.numpy as jnp
import jax.scipy.special as jss
import numpy as np
import scipy.optimize
import sympy as sp
from sympy.utilities.iterables import partitions

from ..conventions import check_array, check_real, require_x64
from .cumulants import check_coefficient, check_order
from .hermite import check_covariance, hermite_he, hermite_tensor

__all__ = ["X", "T", "Z", "EPS", "standardized_cumulants", "edgeworth_cf_coefficients",
           "edgeworth_polynomials", "edgeworth_density", "edgeworth_cdf", "edgeworth_cf",
           "nearly_gaussian_density", "nearly_gaussian_cdf", "cornish_fisher_polynomials",
           "cornish_fisher_quantile", "multivariate_edgeworth_density", "to_numeric",
           "density_minimum", "is_nonnegative", "edgeworth_density_numeric"]

X = sp.Symbol("x", real=True)
T = sp.Symbol("t", real=True)
Z = sp.Symbol("z", real=True)
EPS = sp.Symbol("epsilon", positive=True)
_S = sp.Symbol("s")  # s = i t


def _phi(x):
    return sp.exp(-x ** 2 / 2) / sp.sqrt(2 * sp.pi)


def _Phi(x):
    return (1 + sp.erf(x / sp.sqrt(2))) / 2


def standardized_cumulants(cumulants):
    """[lambda_3, ..., lambda_R] = kappa_r / kappa_2^{r/2} from cumulants [kappa_1, ..., kappa_R].

    Exact for sympy/int input.

    >>> standardized_cumulants([1, 1, 2, 6])   # Exp(1)
    [2, 6]
    """
    if not isinstance(cumulants, (list, tuple, np.ndarray)) or len(cumulants) < 2 \
            or any(np.ndim(c) != 0 for c in cumulants):
        raise ValueError(f"cumulants={cumulants!r} is not allowed: give a 1-D sequence "
                         "[kappa_1, kappa_2, ...] of length >= 2")
    kap = [check_coefficient(f"cumulants[{i}]", k) for i, k in enumerate(cumulants)]
    k2 = kap[1]
    if k2.is_positive is False or (k2.is_number and not k2 > 0):
        raise ValueError(f"cumulants[1]={cumulants[1]!r} is not allowed: the variance must be > 0")
    return [sp.simplify(k / k2 ** sp.Rational(r, 2)) for r, k in enumerate(kap[2:], start=3)]


def _point(name, v):
    """The evaluation variable (x, t, z) or expansion parameter eps: a sympy symbol/expression or a
    finite real number (ValueError otherwise)."""
    return check_coefficient(name, v)


def _lambdas(order, lambdas):
    """Validate [lambda_3, ..., lambda_R] (R - 2 >= order) or make symbols lambda3.. if None."""
    if lambdas is None:
        return [sp.Symbol(f"lambda{r}", real=True) for r in range(3, order + 3)]
    if not isinstance(lambdas, (list, tuple, np.ndarray)) or any(np.ndim(v) != 0 for v in lambdas):
        raise ValueError(f"lambdas={lambdas!r} is not allowed: give a 1-D sequence "
                         "[lambda_3, lambda_4, ...] of standardized cumulants")
    if len(lambdas) < order:
        raise ValueError(f"lambdas has length {len(lambdas)}: order={order} needs "
                         f"[lambda_3, ..., lambda_{order + 2}] (length >= {order})")
    return [check_coefficient(f"lambdas[{i}]", v) for i, v in enumerate(lambdas[:order])]


#: Most partition terms sum_{j<=order} p(j) a symbolic Edgeworth/Cornish-Fisher expansion may need
#: (order 25: 9295 terms, minutes of sympy; order 14: 507 terms, ~7 s on 2 cores). Beyond it a
#: ValueError states the count; :func:`edgeworth_density_numeric` has no such limit (O(order^3)).
MAX_PARTITION_TERMS = 10_000
#: Most entries d^(3 order) of the largest tensor in :func:`multivariate_edgeworth_density` (2 GiB).
MAX_TENSOR_ENTRIES = 2 ** 28


def _check_symbolic_cost(order, what):
    """ValueError if the expansion to ``order`` needs more than MAX_PARTITION_TERMS partition terms."""
    p = [1] + [0] * order                      # partition numbers p(0..order), Euler's DP
    for k in range(1, order + 1):
        for m in range(k, order + 1):
            p[m] += p[m - k]
    terms = sum(p[1:])
    if terms > MAX_PARTITION_TERMS:
        raise ValueError(f"order={order} is too large for {what}: it needs {terms:.3g} partition terms "
                         f"(sum of p(j), j <= order), above the limit {MAX_PARTITION_TERMS} "
                         "(sft.symbolic.edgeworth.MAX_PARTITION_TERMS, order <= 25, ~15 ms of sympy per term "
                         "and growing); use edgeworth_density_numeric for high orders")


def _partition_terms(j):
    """(prod_m 1/k_m! (1/(m+2)!)^{k_m}, {m: k_m}, power R = j + 2 sum k_m) for integer partitions of j."""
    for part in partitions(j):
        weight = sp.Integer(1)
        for m, k in part.items():
            weight /= sp.factorial(k) * sp.factorial(m + 2) ** k
        yield weight, dict(part), j + 2 * sum(part.values())


def edgeworth_cf_coefficients(order, lambdas=None):
    """[c_1(s), ..., c_order(s)]: polynomials in s = it with E e^{itS} ~ e^{-t^2/2}(1 + sum eps^j c_j(it)).

    Blinnikov & Moessner (1998) eq. (43). ``lambdas`` = [lambda_3, ..., lambda_{order+2}] (numbers or
    sympy; None -> symbols lambda3, lambda4, ...).

    >>> edgeworth_cf_coefficients(2)
    [lambda3*s**3/6, lambda3**2*s**6/72 + lambda4*s**4/24]
    """
    order = check_order(order)
    _check_symbolic_cost(order, "the symbolic Edgeworth coefficients")
    lam = _lambdas(order, lambdas)
    out = []
    for j in range(1, order + 1):
        c = sp.Integer(0)
        for weight, part, R in _partition_terms(j):
            c += weight * sp.Mul(*[lam[m - 1] ** k for m, k in part.items()]) * _S ** R
        out.append(sp.expand(c))
    return out


def _map_powers(poly, fn):
    """Replace s^k by fn(k) in a polynomial in s."""
    return sp.expand(sum((coef * fn(k) for (k,), coef in sp.Poly(poly, _S).terms() if coef != 0),
                         sp.Integer(0)))


def edgeworth_polynomials(order, lambdas=None, *, x=X):
    """[p_1(x), ..., p_order(x)] with density of S_n ~ phi(x)[1 + sum_j n^{-j/2} p_j(x)].

    p_j = c_j with s^k -> He_k(x) (module docstring).

    >>> edgeworth_polynomials(1)
    [lambda3*x**3/6 - lambda3*x/2]
    """
    return [_map_powers(c, lambda k: hermite_he(k, x)) for c in edgeworth_cf_coefficients(order, lambdas)]


def edgeworth_density(order, lambdas=None, *, x=X, eps=EPS):
    """Edgeworth density phi(x)[1 + sum_{j=1}^{order} eps^j p_j(x)] of S_n (eps = n^{-1/2}).

    sympy expression in x and eps (give eps=1/sp.sqrt(n) for the iid sum, or a number).
    May be negative in places: see :func:`density_minimum`.
    """
    x, eps = _point("x", x), _point("eps", eps)
    ps = edgeworth_polynomials(order, lambdas, x=x)
    return _phi(x) * (1 + sum(eps ** j * p for j, p in enumerate(ps, start=1)))


def edgeworth_cdf(order, lambdas=None, *, x=X, eps=EPS):
    """Edgeworth CDF Phi(x) - phi(x) sum_j eps^j c_j(s^k -> He_{k-1}(x)) of S_n (eps = n^{-1/2}).

    Term by term, int_{-inf}^x He_k phi = -He_{k-1}(x) phi(x) for k >= 1.
    """
    x, eps = _point("x", x), _point("eps", eps)
    cs = edgeworth_cf_coefficients(order, lambdas)
    qs = [_map_powers(c, lambda k: hermite_he(k - 1, x)) for c in cs]
    return _Phi(x) - _phi(x) * sum((eps ** j * q for j, q in enumerate(qs, start=1)), sp.Integer(0))


def edgeworth_cf(order, lambdas=None, *, t=T, eps=EPS):
    """Truncated characteristic function exp(-t^2/2)[1 + sum_j eps^j c_j(it)] of S_n."""
    t, eps = _point("t", t), _point("eps", eps)
    cs = edgeworth_cf_coefficients(order, lambdas)
    return sp.exp(-t ** 2 / 2) * (1 + sum(eps ** j * sp.expand(c.subs(_S, sp.I * t))
                                          for j, c in enumerate(cs, start=1)))


def _location_scale(cumulants, order):
    if not isinstance(cumulants, (list, tuple, np.ndarray)) or len(cumulants) < order + 2:
        raise ValueError(f"cumulants={cumulants!r} is not allowed: order={order} needs a 1-D sequence "
                         f"[kappa_1, ..., kappa_{order + 2}] (length >= {order + 2})")
    lam = standardized_cumulants(list(cumulants[:order + 2]))
    return check_coefficient("cumulants[0]", cumulants[0]), sp.sqrt(sp.sympify(cumulants[1])), lam


def nearly_gaussian_density(order, cumulants, *, y=X):
    """Edgeworth density of a nearly-Gaussian Y with cumulants [kappa_1, ..., kappa_{order+2}],
    kappa_r = O(eps^{r-2}) for a small parameter eps carried by the cumulants themselves:

        f(y) ~ (1/sigma) phi(x)[1 + sum_{j<=order} p_j(x; lambda_r = kappa_r/sigma^r)],
        x = (y - kappa_1)/sigma, sigma = sqrt(kappa_2),

    the j-th term being O(eps^j). For the sum of n iid X's pass n * kappa_r(X).

    >>> nearly_gaussian_density(0, [0, 1]) == sp.exp(-X**2/2)/sp.sqrt(2*sp.pi)
    True
    """
    order = check_order(order)
    mu, sigma, lam = _location_scale(cumulants, order)
    return edgeworth_density(order, lam, x=(y - mu) / sigma, eps=1) / sigma


def nearly_gaussian_cdf(order, cumulants, *, y=X):
    """Edgeworth CDF of the nearly-Gaussian Y of :func:`nearly_gaussian_density`."""
    order = check_order(order)
    mu, sigma, lam = _location_scale(cumulants, order)
    return edgeworth_cdf(order, lam, x=(y - mu) / sigma, eps=1)


def _series_mul(a, b):
    """Product of two truncated power series given as coefficient lists of equal length."""
    return [sp.expand(sum(a[i] * b[k - i] for i in range(k + 1))) for k in range(len(a))]


def _series_power_sum(coeffs, delta):
    """sum_k coeffs[k] delta^k as a truncated series (delta a coefficient list with delta[0] = 0)."""
    out, power = [sp.Integer(0)] * len(delta), [sp.Integer(1)] + [sp.Integer(0)] * (len(delta) - 1)
    for c in coeffs:
        out = [o + c * p for o, p in zip(out, power)]
        power = _series_mul(power, delta)
    return out


def cornish_fisher_polynomials(order, lambdas=None, *, z=Z):
    """[h_1(z), ..., h_order(z)]: the p-quantile of S_n is x_p ~ z + sum_j n^{-j/2} h_j(z), z = Phi^{-1}(p).

    Derived by solving F(z + delta) = Phi(z) order by order in eps, with F = Phi + phi sum_j eps^j q_j
    the Edgeworth CDF and delta = sum_j eps^j h_j, using the exact Taylor series
    Phi(z+d) - Phi(z) = phi(z) sum_{k>=1} (-1)^{k-1} He_{k-1}(z) d^k/k! and
    phi(z+d) = phi(z) sum_k (-1)^k He_k(z) d^k/k!; at order eps^j the unknown h_j enters only through
    the k = 1 term, so h_j = -[eps^j](equation with h_j = 0). (Hall 1992 sec. 2.5; Cornish & Fisher 1937.)

    >>> cornish_fisher_polynomials(1)
    [lambda3*z**2/6 - lambda3/6]
    """
    order = check_order(order)
    cs = edgeworth_cf_coefficients(order, lambdas)
    qs = [-_map_powers(c, lambda k: hermite_he(k - 1, z)) for c in cs]  # F = Phi + phi sum eps^j q_j
    delta = [sp.Integer(0)] * (order + 1)
    fact = [sp.factorial(k) for k in range(order + 1)]
    for j in range(1, order + 1):
        lhs = _series_power_sum([0] + [(-1) ** (k - 1) * hermite_he(k - 1, z) / fact[k]
                                       for k in range(1, j + 1)], delta)
        ratio = _series_power_sum([(-1) ** k * hermite_he(k, z) / fact[k] for k in range(j)], delta)
        shifted = [sp.Integer(0)] * (order + 1)
        for i, q in enumerate(qs[:j], start=1):  # eps^i q_i(z + delta), Taylor in delta
            qi = _series_power_sum([sp.diff(q, z, m) / fact[m] for m in range(j - i + 1)], delta)
            shifted = [s + (qi[k - i] if k >= i else 0) for k, s in enumerate(shifted)]
        total = sp.expand(lhs[j] + _series_mul(ratio, shifted)[j])
        delta[j] = -total
    return delta[1:]


def cornish_fisher_quantile(order, lambdas=None, *, z=Z, eps=EPS):
    """Cornish-Fisher quantile z + sum_{j<=order} eps^j h_j(z) (eps = n^{-1/2}, z = Phi^{-1}(p))."""
    z, eps = _point("z", z), _point("eps", eps)
    return z + sum((eps ** j * h for j, h in enumerate(cornish_fisher_polynomials(order, lambdas, z=z),
                                                        start=1)), sp.Integer(0))


def _check_tensors(cumulants, d, order):
    if not isinstance(cumulants, (list, tuple)) or len(cumulants) < order:
        got = len(cumulants) if isinstance(cumulants, (list, tuple)) else type(cumulants).__name__
        raise ValueError(f"cumulants is not allowed: order={order} needs a list [kappa_3, ..., "
                         f"kappa_{order + 2}] of {order} tensors (got {got})")
    out = []
    for r, k in enumerate(cumulants[:order], start=3):
        a = np.asarray(k, dtype=np.float64)
        if a.shape != (d,) * r:
            raise ValueError(f"cumulants[{r - 3}] has shape {a.shape}: kappa_{r} must have shape {(d,) * r}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"cumulants[{r - 3}] contains NaN or inf: values must be finite")
        out.append(a)
    return out


def multivariate_edgeworth_density(order, x, mean, cov, cumulants):
    """Multivariate Edgeworth density at points x (N, d) (float64, shape (N,)).

    f(x) ~ phi_K(x - mu)[1 + sum_{j<=order} sum_{{k_m}} prod_m (1/k_m!)(1/(m+2)!)^{k_m}
                          <(x)_m kappa_{m+2}^{(x)k_m}, H_R(x - mu; K)>]   (McCullagh 1987 sec. 5.2),

    mean: (d,), cov: K (d, d) positive definite, cumulants: [kappa_3 (d,d,d), ..., kappa_{order+2}];
    kappa_r = O(eps^{r-2}), the j-th term O(eps^j). Cost ~ N d^(3 order) at the top order.

    >>> pts = np.array([[0.0, 0.0], [1.0, -0.5]])
    >>> bool(np.allclose(multivariate_edgeworth_density(0, pts, [0, 0], np.eye(2), []),
    ...                  np.exp(-0.5 * (pts ** 2).sum(1)) / (2 * np.pi)))
    True
    """
    order = check_order(order)
    _check_symbolic_cost(order, "the multivariate Edgeworth density")
    K, Kinv = check_covariance(check_array("cov", cov, min_size=0), "cov")
    d = K.shape[0]
    if d ** (3 * order) > MAX_TENSOR_ENTRIES:
        raise ValueError(f"order={order} in d={d} dimensions is too large: the top-order Hermite tensor has "
                         f"d^(3 order) = {float(d) ** (3 * order):.3g} entries per point, above the limit "
                         f"{MAX_TENSOR_ENTRIES} (sft.symbolic.edgeworth.MAX_TENSOR_ENTRIES, 2 GiB)")
    mu = check_array("mean", mean, min_size=0)
    if mu.shape != (d,):
        raise ValueError(f"mean has shape {mu.shape}: must be (d,) = ({d},) to match cov")
    kap = _check_tensors(cumulants, d, order)
    x = check_array("x", x, min_size=0)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] != d:
        raise ValueError(f"x has shape {x.shape}: points must have shape (N, {d})")
    u = x - mu
    _, logdet = np.linalg.slogdet(K)
    gauss = np.exp(-0.5 * np.einsum("ni,ij,nj->n", u, Kinv, u) - 0.5 * logdet - 0.5 * d * np.log(2 * np.pi))
    series = np.ones(len(u))
    for j in range(1, order + 1):
        for weight, part, R in _partition_terms(j):
            tensor = np.ones(())
            for m, k in part.items():
                for _ in range(k):
                    tensor = np.multiply.outer(tensor, kap[m - 1])
            flat = tensor.reshape(-1) * float(weight)
            for lo in range(0, len(u), max(1, 2 ** 22 // d ** R)):  # chunks of <= 4M entries
                H = hermite_tensor(u[lo:lo + max(1, 2 ** 22 // d ** R)], K, R)
                series[lo:lo + len(H)] += H.reshape(len(H), -1) @ flat
    return gauss * series


_JAX_MODULES = [{"erf": jss.erf, "erfc": jss.erfc}, jnp]


def to_numeric(expr, *symbols, backend="numpy"):
    """Fast numeric function of ``symbols`` from a sympy expression (sympy.lambdify).

    backend: "numpy" (scipy for erf) or "jax" (jax.numpy, jax.scipy.special.erf; jit/grad-able).

    >>> f = to_numeric(edgeworth_density(1, [2]), X, EPS)
    >>> round(float(f(0.0, 0.1)), 12) == round(float(np.exp(0) / np.sqrt(2 * np.pi)), 12)
    True
    """
    if backend == "numpy":
        return sp.lambdify(symbols, expr, modules=["scipy", "numpy"])
    if backend == "jax":  # float64 checked now and at every call (the flag may change in between)
        name = "sft.symbolic.to_numeric(backend='jax')"
        require_x64(name)
        f = sp.lambdify(symbols, expr, modules=_JAX_MODULES)

        @functools.wraps(f)
        def checked(*args):
            require_x64(name)
            return f(*args)
        return checked
    raise ValueError(f"backend={backend!r} is not allowed: use 'numpy' or 'jax'")


def density_minimum(density, lo, hi, *, num=2001):
    """(x_min, f_min): minimum of a 1-D density function on [lo, hi], from a grid of ``num`` points
    refined by bounded Brent minimization around the best grid point. Truncated Edgeworth densities
    can be negative: f_min < 0 says so.
    """
    num = check_order(num, "num", 3)
    if not callable(density):
        raise ValueError(f"density={density!r} is not allowed: give a callable x -> f(x)")
    lo, hi = check_real("lo", lo), check_real("hi", hi)
    if not lo < hi:
        raise ValueError(f"lo={lo!r}, hi={hi!r} are not allowed: need finite lo < hi")
    grid = np.linspace(lo, hi, num)
    vals = np.asarray(density(grid), dtype=np.float64) * np.ones_like(grid)
    i = int(np.argmin(vals))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, num - 1)]
    res = scipy.optimize.minimize_scalar(lambda t: float(density(t)), bounds=(a, b), method="bounded",
                                         options={"xatol": 1e-12 * max(1.0, abs(grid[i]))})
    return (float(res.x), float(res.fun)) if res.fun < vals[i] else (float(grid[i]), float(vals[i]))


def is_nonnegative(density, lo, hi, *, num=2001):
    """True if the 1-D ``density`` is >= 0 everywhere on [lo, hi] (grid + refinement, see
    :func:`density_minimum`)."""
    return density_minimum(density, lo, hi, num=num)[1] >= 0.0


def edgeworth_density_numeric(x, order, lambdas, *, eps):
    """Edgeworth density phi(x) [1 + sum_{j=1}^{order} eps^j p_j(x)] evaluated in float64 numpy, without sympy.

    The same truncation as :func:`edgeworth_density` (module docstring). The coefficients c_j(s) of
    exp(sum_{m>=1} eps^m g_m(s)), g_m = lambda_{m+2} s^{m+2} / (m+2)!, come from the power-series
    recursion j c_j = sum_{m=1}^{j} m g_m c_{j-m}, c_0 = 1 (polynomials in s as coefficient arrays);
    s^k -> He_k(x) is then summed by Clenshaw's recurrence (numpy.polynomial.hermite_e.hermeval).
    O(order^3) to set up, O(order) per point.

    x: array of any shape (finite); order >= 0; lambdas: [lambda_3, ..., lambda_{order+2}] standardized
    cumulants (finite; extra entries ignored); eps = n^{-1/2} for the standardized sum of n iid variables
    (eps = 1 for a nearly-Gaussian law whose cumulants carry the small parameter). Returns float64, x.shape.
    Like every truncated Edgeworth density it can be negative in places.

    >>> f = edgeworth_density_numeric(np.array([0.0, 1.0]), 2, [2.0, 6.0], eps=0.1)   # Exp(1), n = 100
    >>> g = to_numeric(edgeworth_density(2, [2, 6]), X, EPS)
    >>> bool(np.allclose(f, g(np.array([0.0, 1.0]), 0.1), rtol=1e-14, atol=0))
    True
    """
    order = check_order(order)
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"x contains {float(x[~np.isfinite(x)].ravel()[0])!r}: the density needs finite points")
    lam = np.asarray(lambdas, dtype=np.float64) if isinstance(lambdas, (list, tuple, np.ndarray)) else None
    if lam is None or lam.ndim != 1 or lam.size < order or not np.all(np.isfinite(lam[:order])):
        raise ValueError(f"lambdas={lambdas!r} is not allowed: order={order} needs a 1-D sequence of finite "
                         f"standardized cumulants [lambda_3, ..., lambda_{order + 2}] (length >= {order})")
    if isinstance(eps, bool) or not (np.ndim(eps) == 0 and np.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps={eps!r} is not allowed: give a finite number >= 0 (n^(-1/2) for a sum of n terms)")
    deg = 3 * order + 1
    g = [None] + [np.zeros(deg) for _ in range(order)]   # g[m][k]: coefficient of s^k in g_m(s)
    for m in range(1, order + 1):
        g[m][m + 2] = lam[m - 1] / np.prod(np.arange(1.0, m + 3))
    c = [np.eye(1, deg)[0]]                                # c_0 = 1
    total = c[0].copy()
    for j in range(1, order + 1):
        cj = sum(m * np.convolve(g[m], c[j - m])[:deg] for m in range(1, j + 1)) / j
        c.append(cj)
        total += float(eps) ** j * cj
    return np.exp(-x ** 2 / 2) / np.sqrt(2 * np.pi) * np.polynomial.hermite_e.hermeval(x, total)
