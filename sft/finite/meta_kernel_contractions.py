"""Meta-kernels of a deep LINEAR-activation MLP for any number of inputs, as sums of pair products, and
their contractions with vectors (dNTK, ddNTK at O(1/n) without forming the N^3 / N^4 tensors).

Conventions and definitions: :mod:`sft.finite.meta_kernels` (dntk_f = n E[dH_abc f_d], ddntk_I, ddntk_II,
one output, n = n_L). For sigma(z) = alpha z (alpha = 1: "linear"; scale-invariant sigma with a+ = a-)
every Gaussian mean in the recursion of :mod:`sft.finite.meta_kernels` and :func:`sft.finite.ntk_step_multi`
is Isserlis in closed form: d = alpha, e = t = 0, <s_a s_b> = alpha^2 K_ab, <d_c (d_a s_b)> = alpha^2 delta_cb,
<d_a s_b d_c s_d> = alpha^4 K_bd, <d_a d_b s_c s_d> = alpha^4 K_cd. With c_l = C_W^(l+1) alpha^2 the recursion
closes on (derivation: substitute these means into the P .. U and B, F recursions; derivations/meta_kernels.py
derives the same closed form symbolically for one input):

    K'  = C_b + c K,                   Theta' = K' + c Theta,
    B'_{abcd} = c^2 [Th_ac Th_bd + r B_abcd],            F'_{abcd} = c^2 [Th_ac K_bd + r F_abcd],
    Q'_{abcd} = c^2 [Th_ac K_bd + r F_abcd + r Q_abcd],  S'_{abcd} = c^2 [Th_ac Th_bd + r B_abcd + r S_abcd],
    T'_{abcd} = c^2 [Th_ab K_cd + r (F_acbd + Q_bdac + Q_acbd + T_abcd)],       P = R = U = 0,

(K, Theta of layer l on the right; r = n_l / n_{l-1}), so each tensor is a sum over layers m of products
X_abcd = sum_m x_m A^(m)_{pattern} B^(m)_{pattern} of two N x N matrices (Theta^(m), K^(m)) with an index
pattern ("ac,bd" or "ab,cd"). At the readout: dntk_f = Q + Q_acbd (P = 0), ddntk_I = 0, ddntk_II = S + T.
Memory O(depth N^2), cost O(depth N^2) per contraction: N = 100 at depth 10 in milliseconds.

Checks (tests/test_meta_kernel_contractions.py): the dense tensors and contractions equal
:func:`sft.finite.output_meta_kernels` with activation "linear" to 1e-10 (relative; N = 3 at depth 1, N = 2
at depth 3 with unequal widths; the residual there is the quadrature error of output_meta_kernels, which
integrates z numerically); one input against the exact deep-linear law n E[dH f] = L (L+1) (L+2) / 3 of
derivations/meta_kernels.py to depth 10 and with unequal widths; N = 100 entries against N = 4 runs on
subsets. output_meta_kernels carries the Monte Carlo tests (tests/test_meta_kernels.py), which this module
inherits through that agreement.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import vertex as fw
from ..kernels.activations import get_activation
from ..conventions import check_array, check_depth, layer_constants, require_x64

__all__ = ["LinearMetaKernels", "linear_meta_kernels", "contract_meta_kernel", "dense_meta_kernel"]

_LETTERS = "abcd"


class LinearMetaKernels(NamedTuple):
    """Readout meta-kernels of a deep linear-activation MLP as pair-product terms (module docstring).

    K, Theta: (depth + 1, N, N), layers 1 .. depth + 1 (readout last). dntk_f, ddntk_I, ddntk_II: tuples of
    terms (coef, pattern, (kind, m), (kind, m)): X_abcd += coef * M1[i, j] * M2[k, l], pattern "ij,kl" over
    the letters abcd, kind "K" or "Theta", m the 0-based layer index into K / Theta. Coefficients of 1/n,
    n = n_L, as :class:`sft.finite.OutputMetaKernels`.
    """

    K: np.ndarray
    Theta: np.ndarray
    dntk_f: tuple
    ddntk_I: tuple
    ddntk_II: tuple


def _add(acc, terms, scale):
    for key, c in terms.items():
        acc[key] = acc.get(key, 0.0) + scale * c
    return acc


def _permute(terms, order):
    """Terms of Y_abcd = X[order] (order: four letters, e.g. "acbd" for X_acbd), canonical keys."""
    out = {}
    for (pattern, m1, m2), c in terms.items():
        new = "".join(order[_LETTERS.index(ch)] if ch != "," else "," for ch in pattern)
        p1, p2 = ("".join(sorted(p)) for p in new.split(","))  # K, Theta symmetric
        key = (f"{p1},{p2}", m1, m2) if (p1, m1) <= (p2, m2) else (f"{p2},{p1}", m2, m1)
        out[key] = out.get(key, 0.0) + c
    return out


def linear_meta_kernels(x, *, depth, C_W, C_b, widths=None, activation="linear") -> LinearMetaKernels:
    """Exact O(1/n) meta-kernels of a deep MLP with sigma(z) = alpha z, any number N of inputs x (N, n_0).

    depth L >= 1 hidden layers; C_W, C_b scalars or per layer (length depth + 1); widths None or
    (n_1, .., n_L); activation: "linear" or any scale-invariant activation with equal slopes (alpha z).
    Returns a :class:`LinearMetaKernels` (terms; use :func:`contract_meta_kernel`, or
    :func:`dense_meta_kernel` for small N). Recursion: module docstring.

    >>> mk = linear_meta_kernels(np.ones((1, 1)), depth=1, C_W=1.0, C_b=0.0)
    >>> round(float(dense_meta_kernel(mk.dntk_f, mk)[0, 0, 0, 0]), 12)  # n E[dH f] = 2 K^2, K = 1
    2.0
    """
    require_x64("sft.finite.linear_meta_kernels")
    act = get_activation(activation)
    if act.slopes is None or act.slopes[0] != act.slopes[1]:
        raise ValueError(f"activation={activation!r} is not allowed: give 'linear' or a scale-invariant "
                         "activation with equal slopes (sigma = alpha z); smooth nonlinear sigma: "
                         "sft.finite.meta_kernels_batched.batched_meta_kernels")
    alpha2 = float(act.slopes[0]) ** 2
    depth = check_depth(depth)
    cw, cb = layer_constants(depth, C_W, C_b)
    r = fw.width_ratios(widths, depth)
    x = check_array("x", x, ndim=2)
    K = [cb[0] + cw[0] * (x @ x.T) / x.shape[1]]
    Th = [K[0]]
    Bt, Ft, Qt, St, Tt = {}, {}, {}, {}, {}
    for m in range(depth):
        c2 = (cw[m + 1] * alpha2) ** 2
        thth, thk = {("ac,bd", ("Theta", m), ("Theta", m)): 1.0}, {("ac,bd", ("Theta", m), ("K", m)): 1.0}
        tk = _permute(thk, "acbd")  # Th_ab K_cd
        Tn = _add(_add(_add(_add(dict(tk), _permute(Ft, "acbd"), r[m]), _permute(Qt, "bdac"), r[m]),
                       _permute(Qt, "acbd"), r[m]), Tt, r[m])
        Qt = _add(_add(dict(thk), Ft, r[m]), Qt, r[m])
        St = _add(_add(dict(thth), Bt, r[m]), St, r[m])
        Bt = _add(dict(thth), Bt, r[m])
        Ft = _add(dict(thk), Ft, r[m])
        Qt, St, Bt, Ft, Tt = ({k: c2 * v for k, v in X.items()} for X in (Qt, St, Bt, Ft, Tn))
        K.append(cb[m + 1] + cw[m + 1] * alpha2 * K[m])
        Th.append(K[m + 1] + cw[m + 1] * alpha2 * Th[m])
    dntk = _add(dict(Qt), _permute(Qt, "acbd"), 1.0)
    ddII = _add(dict(St), Tt, 1.0)
    items = lambda X: tuple((c, p, m1, m2) for (p, m1, m2), c in sorted(X.items()))  # noqa: E731
    return LinearMetaKernels(np.stack(K), np.stack(Th), items(dntk), (), items(ddII))


def contract_meta_kernel(terms, mk, vectors):
    """sum over the contracted slots of X_abcd v_slot ..: X a four-index meta-kernel given as ``terms``
    (a field of :class:`LinearMetaKernels`), ``vectors`` a length-4 sequence of (N,) arrays or None (free slot).

    Returns the tensor over the free slots in their order (shape (N,) * #free; a float if none is free).
    E.g. vectors (None, r, r, None) on dntk_f gives n E[dH_xab f_d] r_a r_b, (N, N).

    >>> mk = linear_meta_kernels(np.eye(3), depth=2, C_W=1.0, C_b=0.1)
    >>> u = np.array([1.0, -1.0, 0.5])
    >>> full = np.einsum("xabd,a,b->xd", dense_meta_kernel(mk.dntk_f, mk), u, u)
    >>> bool(np.allclose(contract_meta_kernel(mk.dntk_f, mk, (None, u, u, None)), full, rtol=1e-13, atol=0))
    True
    """
    if not isinstance(mk, LinearMetaKernels):
        raise ValueError(f"mk={type(mk).__name__} is not allowed: give the LinearMetaKernels of linear_meta_kernels")
    N = mk.K.shape[1]
    if len(vectors) != 4:
        raise ValueError(f"vectors has {len(vectors)} entries: give 4 (one per slot a, b, c, d; None = free)")
    vecs = [None if v is None else check_array(f"vectors[{i}]", v, ndim=1) for i, v in enumerate(vectors)]
    for i, v in enumerate(vecs):
        if v is not None and v.shape != (N,):
            raise ValueError(f"vectors[{i}] has shape {v.shape}: it must be ({N},) (N inputs, from mk.K)")
    free = "".join(ch for ch, v in zip(_LETTERS, vecs) if v is None)
    subs = ",".join(ch for ch, v in zip(_LETTERS, vecs) if v is not None)
    out = np.zeros((N,) * len(free))
    mats = {"K": mk.K, "Theta": mk.Theta}
    for c, pattern, (k1, m1), (k2, m2) in terms:
        args = [mats[k1][m1], mats[k2][m2]] + [v for v in vecs if v is not None]
        out = out + c * np.einsum(f"{pattern}{',' + subs if subs else ''}->{free}", *args, optimize=True)
    return float(out) if not free else out


def dense_meta_kernel(terms, mk):
    """The full (N, N, N, N) tensor of ``terms`` (for small N and tests; N^4 floats)."""
    return contract_meta_kernel(terms, mk, (None,) * 4)
