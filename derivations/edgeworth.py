"""Edgeworth density of a standardized iid sum to order n^{-2}, derived from the characteristic function.

Run from the repository root: ``python -m derivations.edgeworth``; writes derivations/out/edgeworth.md.
tests/test_derivations_symbolic.py asserts that :func:`sft.symbolic.edgeworth_polynomials` equals
the p_j(x) derived here (exact sympy equality, j = 1..4).

Derivation (Hall, *The Bootstrap and Edgeworth Expansion* (1992) sec. 2.2; Petrov 1975 ch. VI), done
with sympy series and derivatives, without the partition formula or the Hermite tables the library
uses:

1. One standardized summand Y = (X - mu)/sigma has log E e^{sY} = s^2/2 + sum_{r>=3} lambda_r s^r/r!
   (lambda_r = kappa_r/sigma^r). S_n = sum_i Y_i / sqrt(n) has log E e^{sS_n} = n log E e^{sY/sqrt(n)};
   with eps = n^{-1/2} this is s^2/2 + L(s, eps), L = sum_r lambda_r eps^{r-2} s^r / r! (sympy
   substitution n = eps^{-2}, checked below).
2. E e^{itS_n} = e^{-t^2/2} exp(L(it, eps)); sympy expands exp(L) in eps to eps^4:
   exp(L) = 1 + sum_j eps^j c_j(s) + O(eps^5).
3. Inversion: (it)^k e^{-itx} = (-d/dx)^k e^{-itx}, so (1/2 pi) int e^{-itx} (it)^k e^{-t^2/2} dt
   = (-d/dx)^k phi(x), phi(x) = (1/2 pi) int e^{-itx} e^{-t^2/2} dt (computed by sympy). Hence the
   density is phi(x)[1 + sum_j eps^j p_j(x)] with p_j(x) = [c_j(-d/dx) phi](x) / phi(x) (sympy diff).
4. Check: the moments int x^m phi (1 + sum_j eps^j p_j) dx equal the moments of S_n computed from its
   cumulants, to O(eps^5), for m = 1..8.
"""
from __future__ import annotations

import pathlib

import sympy as sp

ORDER = 4  # powers of eps = n^{-1/2}: n^{-2}
x, t = sp.symbols("x t", real=True)
s, n = sp.Symbol("s"), sp.Symbol("n", positive=True)
eps = sp.Symbol("epsilon", positive=True)
LAMBDAS = [sp.Symbol(f"lambda{r}", real=True) for r in range(3, ORDER + 3)]

OUT = pathlib.Path(__file__).resolve().parent / "out" / "edgeworth.md"


def log_cf_of_standardized_sum(order=ORDER):
    """(log E e^{s S_n} - s^2/2) as a polynomial in s and eps, from n log E e^{sY/sqrt(n)}, n = eps^-2."""
    K_Y = lambda u: u ** 2 / 2 + sum(lam * u ** r / sp.factorial(r)  # noqa: E731
                                      for r, lam in zip(range(3, order + 3), LAMBDAS))
    K_S = sp.expand(n * K_Y(s / sp.sqrt(n)))
    return sp.expand(K_S.subs(n, eps ** -2) - s ** 2 / 2)


def cf_coefficients(order=ORDER):
    """[c_1(s), .., c_order(s)] with exp(L(s, eps)) = 1 + sum_j eps^j c_j(s) + O(eps^{order+1})."""
    series = sp.series(sp.exp(log_cf_of_standardized_sum(order)), eps, 0, order + 1).removeO()
    series = sp.expand(series)
    return [series.coeff(eps, j) for j in range(1, order + 1)]


def standard_normal_density():
    """phi(x) = (1/2 pi) int e^{-itx} e^{-t^2/2} dt, by sympy integration."""
    return sp.simplify(sp.integrate(sp.exp(-sp.I * t * x - t ** 2 / 2), (t, -sp.oo, sp.oo)) / (2 * sp.pi))


def invert(c, phi):
    """p(x) = [c(-d/dx) phi](x) / phi(x) for a polynomial c(s) (step 3)."""
    poly = sp.Poly(c, s)
    total = sum(coef * (-1) ** k * sp.diff(phi, x, k) for (k,), coef in zip(poly.monoms(), poly.coeffs()))
    return sp.expand(sp.simplify(total / phi))


def density_polynomials(order=ORDER):
    """[p_1(x), .., p_order(x)]: density of S_n ~ phi(x)[1 + sum_j n^{-j/2} p_j(x)] (derived)."""
    phi = standard_normal_density()
    return [invert(c, phi) for c in cf_coefficients(order)]


def _gauss_moment(expr):
    """E[expr(Z)], Z ~ N(0, 1), for a polynomial in x: E Z^m = (m-1)!! for even m, 0 for odd."""
    poly = sp.Poly(sp.expand(expr), x)
    return sum(c * (sp.factorial2(m - 1) if m % 2 == 0 else 0) for (m,), c in zip(poly.monoms(), poly.coeffs()))


def moment_check(ps, order=ORDER, max_moment=8):
    """True if int x^m phi(1 + sum eps^j p_j) equals E S_n^m (from the cumulants) to O(eps^{order+1})."""
    L = log_cf_of_standardized_sum(order)
    mgf = sp.series(sp.exp(s ** 2 / 2 + L), s, 0, max_moment + 1).removeO()
    ok = True
    for m in range(1, max_moment + 1):
        exact = sp.expand(mgf.coeff(s, m) * sp.factorial(m))
        approx = _gauss_moment(x ** m * (1 + sum(eps ** j * p for j, p in enumerate(ps, 1))))
        diff = sp.expand(exact - approx)
        ok &= all(diff.coeff(eps, j) == 0 for j in range(order + 1))
    return ok


def in_hermite_basis(p, max_degree):
    """{k: coefficient} with p = sum_k coefficient He_k(x), He_k from the Rodrigues formula."""
    phi = sp.exp(-x ** 2 / 2)
    he = [sp.expand(sp.simplify((-1) ** k * sp.diff(phi, x, k) / phi)) for k in range(max_degree + 1)]
    out, rest = {}, sp.expand(p)
    for k in range(max_degree, -1, -1):  # He_k is monic: peel off the top degree
        c = sp.expand(rest).coeff(x, k)
        if c != 0:
            out[k] = sp.factor(c)
            rest = sp.expand(rest - c * he[k])
    assert rest == 0
    return dict(sorted(out.items()))


def main():
    L = log_cf_of_standardized_sum()
    cs = cf_coefficients()
    ps = density_polynomials()
    phi = standard_normal_density()
    check = moment_check(ps)
    lines = ["# Edgeworth expansion of a standardized iid sum to order $n^{-2}$ "
             "(derived by derivations/edgeworth.py)", "",
             "$S_n=\\sum_i (X_i-\\mu)/(\\sigma\\sqrt n)$, $\\lambda_r=\\kappa_r/\\sigma^r$, "
             "$\\epsilon=n^{-1/2}$, $s=it$.", "",
             f"$$\\log E e^{{sS_n}} - s^2/2 = {sp.latex(L)}$$",
             f"$$\\phi(x) = \\frac{{1}}{{2\\pi}}\\int e^{{-itx-t^2/2}}dt = {sp.latex(phi)}$$", "",
             "Density: $f(x) = \\phi(x)\\,[1+\\sum_{j=1}^{4}\\epsilon^j p_j(x)] + O(\\epsilon^5)$, "
             "$e^{L}=1+\\sum_j\\epsilon^j c_j(s)$, $p_j = c_j(-d/dx)\\phi/\\phi$.", ""]
    for j, (c, p) in enumerate(zip(cs, ps), 1):
        he = in_hermite_basis(p, 3 * j)
        he_tex = " + ".join(f"\\left({sp.latex(v)}\\right) He_{{{k}}}(x)" for k, v in he.items())
        lines += [f"## $j={j}$ ($n^{{-{sp.latex(sp.Rational(j, 2))}}}$)", "",
                  f"$$c_{j}(s) = {sp.latex(c)}$$",
                  f"$$p_{j}(x) = {he_tex}$$",
                  f"$$p_{j}(x) = {sp.latex(sp.collect(p, x))}$$", ""]
    lines += [f"Moment check ($\\int x^m f$ vs. $E S_n^m$ from the cumulants, $m=1..8$, to "
              f"$O(\\epsilon^5)$): {check}."]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
