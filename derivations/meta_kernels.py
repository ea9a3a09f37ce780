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

The recursion of sft.finite.meta_kernels specialized to linear sigma is solved in closed form below
(:func:`linear_recursion_closed_form`): n E[dH f] = L (L + 1) (L + 2) / 3, the exact law above, and
n E[ddHII] = L (L + 1)^2 (L + 2) / 6 (2, 12, 40 at L = 1, 2, 3; Monte Carlo, two widths: 12.07 +- 0.2 at
L = 2, 39.95 +- 0.3 at L = 3). ddHI vanishes at O(1/n) for linear sigma (third derivatives across three
layers survive per network, but n E[ddHI] = 0.19, 0.09 at n = 32, 64, L = 2: O(1/n^2)).

Why E[dH f f f] has no connected part at O(1/n) (the dntk_f3 field is zero): given the last hidden layer,
dH is a sum over hidden neurons of terms with one or three readout weights W_j ~ N(0, C/n). A connected
contraction with three more f = b + sum_j W_j s_j needs the readout weights of dH and of the three f on
ONE neuron j: (C/n)^3 x n = O(1/n^2) (fresh part), and correlations carried from deeper layers add the
covariance of a neuron average O(1/n) with the metric (O(1/sqrt n)), O(1/n^2) again. Monte Carlo (two
widths, erf depth 2 and tanh depth 3): |z| < 1.7 against zero (tests/test_meta_kernels.py).

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


# ----------------------------------------------------------------------------- the recursion for linear sigma
def linear_recursion_closed_form():
    """The recursion of sft.finite.meta_kernels for sigma(z) = z, one input, K1 = 1, C_W = 1, C_b = 0, equal
    widths, solved in closed form (sigma'' = sigma''' = 0, so P = R = U = 0; <d..> = 1, <z z> = K = 1,
    <d_c psi> = <d_c z> = 1):

        Theta^(l) = l,   F^(l+1) = Theta^(l) + F^(l),   B^(l+1) = Theta^(l)^2 + B^(l),
        Q^(l+1) = Theta^(l) K + F^(l) + Q^(l),   S^(l+1) = Theta^(l)^2 + B^(l) + S^(l),
        T^(l+1) = Theta^(l) K + F^(l) + 2 Q^(l) + T^(l),

    all zero at l = 1; readout l = L + 1: n E[dH f] = 2 Q, n E[ddHII] = S + T. Returns (dH f, ddHII) as
    sympy expressions in L."""
    L, l, m, k = sp.symbols("L l m k", integer=True, positive=True)
    F = sp.summation(m, (m, 1, l - 1))                       # F^(l)
    B = sp.summation(m ** 2, (m, 1, l - 1))                  # B^(l)
    Q = sp.summation((l + F).subs(l, k), (k, 1, l - 1))      # Q^(l)
    S = sp.summation((l ** 2 + B).subs(l, k), (k, 1, l - 1))
    T = sp.summation((l + F + 2 * Q).subs(l, k), (k, 1, l - 1))
    return sp.factor(2 * Q.subs(l, L + 1)), sp.factor((S + T).subs(l, L + 1))


if __name__ == "__main__":
    for L in range(1, 5):
        c = dH_f_first_order([1] * L)
        assert c == sp.Rational(L * (L + 1) * (L + 2), 3), c
        print(f"L = {L}: n E[dH f] -> {c}   (equal widths)")
    print("widths (1, 2, 3):", dH_f_first_order([1, 2, 3]))
    dhf, ddii = linear_recursion_closed_form()
    Ls = sp.Symbol("L", integer=True, positive=True)
    assert sp.simplify(dhf - Ls * (Ls + 1) * (Ls + 2) / 3) == 0
    print("recursion, linear sigma: n E[dH f] =", dhf, "(= the exact law);  n E[ddHII] =", ddii)
