"""Exact joint cumulants of a one-hidden-layer network's output, any order, any number of inputs.

Network (conventions of :mod:`sft.conventions`, depth 1, width n = n_1, readout layer 2):

    f(x_a) = b + n^(-1/2) sum_{i=1}^{n} v_i sigma(z_{i;a}),    z_{i;a} = b_i + w_i . x_a,
    v_i ~ N(0, C_W^(2)),  b ~ N(0, C_b^(2)),  (z_{i;a})_a ~ N(0, K^(1)),
    K^(1)_{ab} = C_b^(1) + C_W^(1) x_a . x_b / n_0

(the readout weight sqrt(C_W^(2) / n) omega_i = n^(-1/2) v_i, exactly as :mod:`sft.sim.networks`).
f is b plus a sum of n i.i.d. "neurons" Y_{i;a} = v_i sigma(z_{i;a}), and cumulants add over
independent summands, so for every order r and inputs a_1..a_r (exact at any width n):

    kappa_r(f)_{a1..ar} = n^(1 - r/2) kappa_r(Y)_{a1..ar} + C_b^(2) [r = 2],

    kappa_r(Y) = sum_{pi in P(r)} (-1)^(|pi|-1) (|pi|-1)! prod_{B in pi} M_{|B|}(a_B)   (McCullagh (2.9)),
    M_k(a_1..a_k) = E[v^k] <sigma(z_a1) ... sigma(z_ak)>_{K^(1)},  E[v^k] = C_W^(k/2) (k-1)!! (k even), 0 (k odd).

So odd cumulants vanish, kappa_2(f) = K^(2) (:func:`sft.kernels.nngp`, depth 1) and
kappa_4(f) = (1/n)[V_(12)(34) + V_(13)(24) + V_(14)(23)] with V = V^(2) of :func:`sft.finite.multi_input`.

Gaussian moments <prod sigma>: closed forms for the linear activation (Isserlis: the moment tensors of
N(0, K)), for one input of a scale-invariant sigma (<sigma^k> = K^(k/2) (a+^k + (-a-)^k) E|u|^k / 2,
E|u|^k = 2^(k/2) Gamma((k+1)/2) / sqrt(pi)) and for pairs of order 2 (the activation's closed form
<sigma sigma>, when it has one); otherwise the split Gauss-Legendre rule of :mod:`sft.finite.vertex`
on the d distinct inputs of each entry (errors of fourth-order products measured there: < 1e-13 for
d <= 2, < 1e-11 for d = 3, < 1e-8 for d = 4; ReLU's sixth-order tensor on two inputs by quadrature agrees
with the closed forms to 1e-11, tests/test_one_layer_cumulants.py).
Entries with d > 4 distinct inputs (order r >= 5 on N >= 5 inputs) are only
available for the linear activation (ValueError otherwise).
"""
from __future__ import annotations

import itertools
import math
import numbers

import numpy as np

from ..conventions import check_inputs, layer_constants, require_x64
from ..kernels.activations import get_activation
from ..symbolic.cumulants import cumulant_tensors_from_moments, moment_tensors_from_cumulants
from .vertex import _cholesky, _slots, _subset_moments

__all__ = ["one_hidden_layer_cumulant", "one_hidden_layer_cumulants", "neuron_cumulants"]

_MAX_DISTINCT = 4  # largest number of distinct inputs per entry handled by quadrature


def _check_order(order, name="order", minimum=2) -> int:
    if isinstance(order, bool) or not isinstance(order, numbers.Integral) or order < minimum:
        raise ValueError(f"{name}={order!r} is not allowed: {name} must be an integer >= {minimum} "
                         "(kappa_1 = 0 by the symmetry v -> -v)")
    return int(order)


def _check_width(width) -> int:
    if isinstance(width, bool) or not isinstance(width, numbers.Integral) or width < 1:
        raise ValueError(f"width={width!r} is not allowed: the hidden width n must be an integer >= 1")
    return int(width)


def _first_layer_kernel(x, C_W, C_b):
    x, _ = check_inputs(x)
    cw, cb = layer_constants(1, C_W, C_b)
    K = cb[0] + cw[0] * (x @ x.T) / x.shape[1]
    K = 0.5 * (K + K.T)
    return K, cw, cb


def _abs_moment(k):
    """E|u|^k, u ~ N(0, 1): (k-1)!! for even k (exact), else 2^(k/2) Gamma((k+1)/2) / sqrt(pi)."""
    if k % 2 == 0:
        return float(math.prod(range(1, k, 2)))
    return 2.0 ** (k / 2) * math.gamma((k + 1) / 2) / math.sqrt(math.pi)


def _sigma_moment_tensors(act, K, orders):
    """{r: T_r} with T_r[a1..ar] = <sigma(z_a1) .. sigma(z_ar)>_K (N,)*r, float64, exactly symmetric.

    Module docstring for the methods; one batched quadrature call per number d of distinct inputs.
    """
    N = K.shape[0]
    if act.name == "linear":  # Isserlis: the moment tensors of N(0, K)
        R = max(orders)
        kap = [np.zeros(N), K] + [np.zeros((N,) * k) for k in range(3, R + 1)]
        mom = moment_tensors_from_cumulants(kap)
        return {r: _symmetrized(mom[r - 1]) for r in orders}
    d_max = min(N, max(orders))
    if d_max > _MAX_DISTINCT:
        raise ValueError(f"order={max(orders)} on N={N} inputs needs Gaussian moments of {d_max} distinct "
                         f"inputs: quadrature is available for at most {_MAX_DISTINCT} distinct inputs per "
                         "entry (any number for activation='linear'); use order <= 4 or N <= 4")
    T = {r: np.empty((N,) * r) for r in orders}
    for d in range(1, d_max + 1):
        subsets = np.array(list(itertools.combinations(range(N), d)))
        _cholesky(K[subsets[:, :, None], subsets[:, None, :]])  # ValueError unless positive definite
        powers = tuple(p for r in orders for p in itertools.product(range(1, r + 1), repeat=d) if sum(p) == r)
        if not powers:
            continue
        if d == 1 and act.slopes is not None:
            ap, am = act.slopes
            q = np.diag(K)[subsets[:, 0]]
            vals = np.stack([q ** (p[0] / 2) * 0.5 * (ap ** p[0] + (-am) ** p[0]) * _abs_moment(p[0])
                             for p in powers], axis=1)
        else:
            vals = _subset_moments(act, K, subsets, powers)
        if d == 2 and act.gauss_ss is not None and (1, 1) in powers:  # closed form <sigma_a sigma_b>
            a, b = subsets[:, 0], subsets[:, 1]
            vals[:, powers.index((1, 1))] = act.gauss_ss(K[a, a], K[b, b], K[a, b])
        for m, p in enumerate(powers):
            for perm in set(itertools.permutations(_slots(p))):
                T[sum(p)][tuple(subsets[:, list(perm)].T)] = vals[:, m]
    return T


def _symmetrized(T):
    """T[i] := T[sorted(i)]: a tensor that is exactly (bitwise) symmetric under index permutations."""
    r, N = T.ndim, T.shape[0]
    idx = np.sort(np.indices(T.shape).reshape(r, -1), axis=0)
    return T[tuple(idx)].reshape(T.shape)


def _neuron_cumulants(act, K, cw2, max_order):
    """[kappa_1(Y) .. kappa_R(Y)] of one neuron Y_a = v sigma(z_a), v ~ N(0, cw2), z ~ N(0, K)."""
    N = K.shape[0]
    even = tuple(range(2, max_order + 1, 2))
    T = _sigma_moment_tensors(act, K, even)
    moments = [cw2 ** (k // 2) * _abs_moment(k) * T[k] if k % 2 == 0 else np.zeros((N,) * k)
               for k in range(1, max_order + 1)]
    return [_symmetrized(c) for c in cumulant_tensors_from_moments(moments)]


def neuron_cumulants(x, max_order, *, activation, C_W, C_b):
    """Joint cumulant tensors [kappa_1(Y), .., kappa_R(Y)] of one hidden neuron's readout term Y_a = v sigma(z_a).

    x: (N, n_0) inputs; max_order R >= 2; C_W, C_b scalars or (layer 1, readout). kappa_r(Y) has shape
    (N,)*r (float64, fully symmetric, zero for odd r); it does not depend on the width. The output's
    cumulants are n^(1 - r/2) kappa_r(Y) (+ C_b^(2) at r = 2), module docstring.

    >>> k = neuron_cumulants([[1.0]], 4, activation="linear", C_W=1.0, C_b=0.0)
    >>> float(k[1][0, 0]), float(k[3][0, 0, 0, 0])   # Var(v z) = 1, kappa_4(v z) = E[v^4]E[z^4] - 3 = 6
    (1.0, 6.0)
    """
    require_x64("sft.finite.neuron_cumulants")
    act = get_activation(activation)
    R = _check_order(max_order, "max_order")
    K, cw, _ = _first_layer_kernel(x, C_W, C_b)
    return _neuron_cumulants(act, K, cw[1], R)


def one_hidden_layer_cumulants(x, max_order, *, width, activation, C_W, C_b):
    """[kappa_1(f), .., kappa_R(f)]: the output's joint cumulant tensors on N inputs, exact at width n.

    kappa_r(f) = n^(1 - r/2) kappa_r(Y) + C_b^(2) [r = 2], shape (N,)*r, float64 (module docstring).
    x: (N, n_0); max_order R >= 2; width n >= 1; C_W, C_b scalars or (layer 1, readout).
    """
    require_x64("sft.finite.one_hidden_layer_cumulants")
    n = _check_width(width)
    act = get_activation(activation)
    R = _check_order(max_order, "max_order")
    K, cw, cb = _first_layer_kernel(x, C_W, C_b)
    kap = _neuron_cumulants(act, K, cw[1], R)
    out = [n ** (1.0 - r / 2.0) * k for r, k in enumerate(kap, start=1)]
    out[1] = out[1] + cb[1]
    return out


def one_hidden_layer_cumulant(x, order, *, width, activation, C_W, C_b):
    """kappa_order(f)_{a1..ar} (N,)*order of a one-hidden-layer network's output, exact at width n.

    See :func:`one_hidden_layer_cumulants` and the module docstring (equation, conventions, quadrature).

    >>> x = np.array([[1.0, 0.0]])                       # one input, K^(1) = C_W |x|^2 / n_0 = 1
    >>> k6 = one_hidden_layer_cumulant(x, 6, width=10, activation="relu", C_W=2.0, C_b=0.0)
    >>> k6.shape, round(float(k6[0, 0, 0, 0, 0, 0]), 10)   # (m6 - 15 m4 m2 + 30 m2^3)/n^2 = (900 - 270 + 30)/100
    ((1, 1, 1, 1, 1, 1), 6.6)
    """
    r = _check_order(order)
    return one_hidden_layer_cumulants(x, r, width=width, activation=activation, C_W=C_W, C_b=C_b)[r - 1]
