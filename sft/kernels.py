"""Infinite-width NNGP and NTK kernels of deep fully-connected networks.

Recursions (conventions in :mod:`sft.conventions`; PDLT eqs. (4.118), (9.5); neural-tangents stax):

    K^(1)_{ab}   = C_b + C_W x_a.x_b / n_0,                       Theta^(1) = K^(1)
    K^(l+1)_{ab} = C_b + C_W <sigma_a sigma_b>_{K^(l)}
    Theta^(l+1)  = K^(l+1) + C_W <sigma'_a sigma'_b>_{K^(l)} Theta^(l),   l = 1 .. depth.

The readout kernel is layer depth + 1. Two input sets x1 (N1, d), x2 (N2, d) are carried as the
diagonal variances of each set plus the (N1, N2) cross block, so the cost is O(N1 N2) per layer.
"""
from __future__ import annotations

import numpy as np

from .activations import get_activation
from .conventions import check_inputs, layer_constants
from .gaussian import diag_expectations, pair_expectations

__all__ = ["nngp", "ntk", "nngp_and_ntk"]


def nngp_and_ntk(x1, x2=None, *, depth, activation, C_W, C_b, all_layers=False, ntk=True):
    """NNGP kernel K and NTK Theta between x1 (N1, d) and x2 (N2, d) (x2=None: x1 with itself).

    Returns ``(K, Theta)``, float64 arrays of shape (N1, N2) for the readout layer, or of shape
    (depth + 1, N1, N2) for layers 1 .. depth+1 when ``all_layers`` (``Theta`` is None if not ``ntk``).
    ``C_W``, ``C_b``: scalars or per-layer sequences of length depth + 1.
    """
    act = get_activation(activation)
    cw, cb = layer_constants(depth, C_W, C_b)
    x1, x2 = check_inputs(x1, x2)
    n0 = x1.shape[1]
    q1 = cb[0] + cw[0] * np.einsum("ad,ad->a", x1, x1) / n0
    q2 = cb[0] + cw[0] * np.einsum("ad,ad->a", x2, x2) / n0
    k = cb[0] + cw[0] * (x1 @ x2.T) / n0
    t1, t2, t = q1, q2, k  # NTK diagonals and cross block
    ks, ts = [k], [t]
    for l in range(1, depth + 1):
        ess, edd = pair_expectations(act, q1, q2, k)
        knew = cb[l] + cw[l] * ess
        if ntk:
            s1, d1 = diag_expectations(act, q1)
            s2, d2 = diag_expectations(act, q2)
            t = knew + cw[l] * edd * t
            t1 = cb[l] + cw[l] * s1 + cw[l] * d1 * t1
            t2 = cb[l] + cw[l] * s2 + cw[l] * d2 * t2
            q1n, q2n = cb[l] + cw[l] * s1, cb[l] + cw[l] * s2
        else:
            q1n = cb[l] + cw[l] * diag_expectations(act, q1)[0]
            q2n = cb[l] + cw[l] * diag_expectations(act, q2)[0]
        q1, q2, k = q1n, q2n, knew
        ks.append(k)
        ts.append(t)
    if all_layers:
        return np.stack(ks), (np.stack(ts) if ntk else None)
    return k, (t if ntk else None)


def nngp(x1, x2=None, *, depth, activation, C_W, C_b, all_layers=False):
    """NNGP kernel of the readout (N1, N2), or all layers (depth+1, N1, N2). See :func:`nngp_and_ntk`.

    >>> import numpy as np
    >>> x = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> np.round(nngp(x, depth=1, activation="relu", C_W=2.0, C_b=0.0), 6)
    array([[1.      , 0.31831 ],
           [0.31831 , 1.      ]])
    """
    return nngp_and_ntk(x1, x2, depth=depth, activation=activation, C_W=C_W, C_b=C_b,
                        all_layers=all_layers, ntk=False)[0]


def ntk(x1, x2=None, *, depth, activation, C_W, C_b, all_layers=False):
    """Neural tangent kernel of the readout (N1, N2), or all layers. See :func:`nngp_and_ntk`."""
    return nngp_and_ntk(x1, x2, depth=depth, activation=activation, C_W=C_W, C_b=C_b,
                        all_layers=all_layers)[1]
