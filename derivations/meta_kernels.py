"""Derivation checks for sft.finite.meta_kernels: the exact dNTK-output correlator of deep linear networks.

Deep linear network (sigma(z) = z), one input with K1 = 1, C_W = 1 in every layer, C_b = 0, widths n_1..n_L,
one output (n_{L+1} = 1). The parameters omega are standard normal, so Gaussian integration by parts
(Stein) gives, with D = d/d omega, g_c = grad f:

    sum_nu D_nu H D_nu f = dH + dH  (one input: dH_aaa twice),
    2 E[dH f] = E[grad H . (f grad f)] = E[H (omega . grad f f - Laplacian(f) f - |grad f|^2)].

f is homogeneous of degree L + 1 in omega (omega . grad f = (L + 1) f) and multilinear (Laplacian f = 0),
|grad f|^2 = H, so

    E[dH f] = ((L + 1) E[H f^2] - E[H^2]) / 2                                              (exact).

The same integration by parts on E[|grad f|^2 f^2] = E[grad f . (f^2 grad f)] gives
E[H f^2] = (L + 1) E[f^4] - 2 E[H f^2], i.e. E[H f^2] = (L + 1) E[f^4] / 3, and f = sqrt(prod_l chi^2_{n_l}/n_l) g
(THEORY.md, :mod:`sft.finite.deep_linear`) gives E[f^4] = 3 prod_l (1 + 2/n_l):

    E[dH f] = ((L + 1)^2 prod_l (1 + 2/n_l) - E[H^2]) / 2,

with E[H^2] the exact law of sft.finite.deep_linear_ntk_second_moment (re-derived below in sympy).
(A first attempt that treated the forward/backward ratios of adjacent layers in E[H f^2] as independent
gave 10 instead of 12 for the 1/n coefficient of E[H f^2] at L = 2: the ratios of adjacent layers share
the overlap of the forward and backward directions; Monte Carlo, n = 64: n E[dH f] = 7.99 +- 0.19, L = 2.) The first-order coefficient n_L E[dH f] as
n -> inf (widths lambda * w, lambda -> inf) is compared with output_meta_kernels(...).dntk_f in
tests/test_meta_kernels.py. Equal widths: n E[dH f] -> L (L + 1) (L + 2) / 3 (asserted below).

Run: python derivations/meta_kernels.py
"""
import sympy as sp


def second_moment_H(n):
    """Exact E[H^2] (K1 = 1), n = (n_1, .., n_L) symbols or numbers (as deep_linear_ntk_second_moment)."""
    nn = (None,) + tuple(n)
    L = len(n)
    total = 0
    for l in range(1, L + 2):
        for lp in range(1, L + 2):
            lo, hi = min(l, lp), max(l, lp)
            t = sp.Integer(1)
            for m in range(1, lo):
                t *= 1 + sp.Integer(2) / nn[m]
            for m in range(hi + 1, L + 2):
                t *= 1 + sp.Integer(2) / nn[m - 1]
            for m in range(lo + 1, hi):
                t *= 1 + sp.Integer(2) / (nn[m] * nn[m - 1])
            total += t
    return total


def H_f2(n):
    """Exact E[H f^2] = (L + 1) E[f^4] / 3 = (L + 1) prod_l (1 + 2/n_l) (K1 = 1), n = (n_1, .., n_L)."""
    return (len(n) + 1) * sp.prod([1 + sp.Integer(2) / m for m in n])


def dH_f_exact(n):
    """Exact E[dH f] of the deep linear network (module docstring)."""
    L = len(n)
    return sp.together(((L + 1) * H_f2(n) - second_moment_H(n)) / 2)


def dH_f_first_order(w):
    """lim_{lambda -> inf} n_L E[dH f] at widths lambda * w (w positive numbers), exact rational."""
    lam = sp.Symbol("lam", positive=True)
    n = [lam * sp.nsimplify(x) for x in w]
    return sp.limit(n[-1] * dH_f_exact(n), lam, sp.oo)


if __name__ == "__main__":
    for L in range(1, 5):
        c = dH_f_first_order([1] * L)
        assert c == sp.Rational(L * (L + 1) * (L + 2), 3), c
        print(f"L = {L}: n E[dH f] -> {c}   (equal widths)")
    print("widths (1, 2, 3):", dH_f_first_order([1, 2, 3]))
