"""Symbolic checks of the single-input NTK-fluctuation recursion of sft.finite.ntk_variance (sympy).

Run from the repository root: ``python -m derivations.ntk_fluctuations``; writes
derivations/out/ntk_fluctuations.md. The recursion itself is derived in the docstring of
:mod:`sft.finite.ntk_variance` (PDLT = Roberts, Yaida & Hanin 2022, ch. 8, in NTK parameterization,
per-layer widths). Here:

1. Wick step. For omega (2 x m) i.i.d. N(0, 1) and a symmetric m x m matrix M, the covariance of
   T = omega M omega^T has the structure Cov(T_{i1i2}, T_{i3i4}) = (d13 d24 + d14 d23) tr(M^2) and
   E[T_ij] = d_ij tr M (checked by exact Gaussian moments for m = 3, symbolic M).
2. Projection step. E[omega M omega^T | y = omega.e] = tr M + (e^T M e)(y^2 - 1) for a unit vector e,
   the source of the F term (checked for m = 3 with e = (1, 0, 0)).
3. Exact deep-linear law. From the representation Theta = K1 sum_l prod_{m<l} F_m prod_{m>l} R_m with
   n_m F_m = g_m^2 + P_m, n_{m-1} R_m = g_m^2 + Q_m (sft.finite.deep_linear_ntk_second_moment),
   E[Theta^2] is computed for L = 1, 2, 3 with symbolic widths from the moments of the independent
   g ~ N(0,1), P ~ chi^2_{n_m - 1}, Q ~ chi^2_{n_{m-1} - 1}; it equals the library's closed form, and
   its O(1/n) part equals the linear-sigma recursion (A + 2B)/(n_L Theta^2) with ratios r_l = n_l/n_{l-1}.
4. Multi-input Wick step (sft.finite.ntk_fluctuations_multi). For two input pairs the
   matrices M^(12), M^(34) (M^(ab)_km = sigma'_ka sigma'_mb Theta_km;ab) are not symmetric; with
   T^(ab) = omega M^(ab) omega^T: Cov(T^(12)_{i1i2}, T^(34)_{i3i4}) = d13 d24 sum_km M^(12)_km M^(34)_km
   + d14 d23 sum_km M^(12)_km M^(34)_mk, the origin of the pairings B_{(a1a3)(a2a4)}, B_{(a1a4)(a2a3)}
   (checked for m = 2 with general symbolic M, M').
5. Multi-input Stein step. E[omega^T M omega g] = tr M E[g] + sum_pq M_pq E[d_p d_q g] for omega ~ N(0, 1)^m
   and g = (u.omega)(v.omega)(w.omega)^2 with symbolic vectors u, v, w (m = 2), the origin of F and of
   the F term of Theta1.
"""
from __future__ import annotations

import itertools
import pathlib

import sympy as sp

OUT = pathlib.Path(__file__).resolve().parent / "out" / "ntk_fluctuations.md"


def _gauss_moment(k):
    return sp.factorial2(k - 1) if k % 2 == 0 else 0


def _expect_normals(expr, xs):
    """E over independent standard normals xs of a polynomial expr."""
    poly = sp.Poly(sp.expand(expr), *xs)
    return sp.expand(sum(c * sp.prod([_gauss_moment(k) for k in mon]) for mon, c in zip(poly.monoms(), poly.coeffs())))


def wick_step(m=3):
    """(cov_ok, mean_ok): the conditional layer law of the NTK (item 1)."""
    om = sp.Matrix(2, m, lambda i, j: sp.Symbol(f"w{i}{j}"))
    M = sp.Matrix(m, m, lambda i, j: sp.Symbol(f"M{min(i, j)}{max(i, j)}"))
    xs = list(om)
    T = om * M * om.T
    trM2 = (M * M).trace()
    ok = all(sp.expand(_expect_normals(T[i, j], xs) - (M.trace() if i == j else 0)) == 0
             for i in range(2) for j in range(2))
    for i1, i2, i3, i4 in itertools.product(range(2), repeat=4):
        cov = _expect_normals(T[i1, i2] * T[i3, i4], xs) - _expect_normals(T[i1, i2], xs) * _expect_normals(T[i3, i4], xs)
        want = ((i1 == i3) * (i2 == i4) + (i1 == i4) * (i2 == i3)) * trM2
        ok &= sp.expand(cov - want) == 0
    return ok


def projection_step(m=3):
    """E[omega M omega^T | omega_0 = y] = tr M + M_00 (y^2 - 1) for one row omega (item 2)."""
    y = sp.Symbol("y")
    w = [y] + [sp.Symbol(f"w{j}") for j in range(1, m)]
    M = sp.Matrix(m, m, lambda i, j: sp.Symbol(f"M{min(i, j)}{max(i, j)}"))
    q = sp.expand((sp.Matrix([w]) * M * sp.Matrix(w))[0, 0])
    cond = _expect_normals(q, w[1:]) if m > 1 else q
    return sp.expand(cond - (M.trace() + M[0, 0] * (y ** 2 - 1))) == 0


def wick_step_multi(m=2):
    """Item 4: the covariance of omega M omega^T and omega M' omega^T for general (non-symmetric) M, M'."""
    om = sp.Matrix(2, m, lambda i, j: sp.Symbol(f"w{i}{j}"))
    M = sp.Matrix(m, m, lambda i, j: sp.Symbol(f"M{i}{j}"))
    N = sp.Matrix(m, m, lambda i, j: sp.Symbol(f"N{i}{j}"))
    xs = list(om)
    T, U = om * M * om.T, om * N * om.T
    same = sum(M[k, q] * N[k, q] for k in range(m) for q in range(m))
    swap = sum(M[k, q] * N[q, k] for k in range(m) for q in range(m))
    ok = True
    for i1, i2, i3, i4 in itertools.product(range(2), repeat=4):
        cov = _expect_normals(T[i1, i2] * U[i3, i4], xs) - _expect_normals(T[i1, i2], xs) * _expect_normals(U[i3, i4], xs)
        want = (i1 == i3) * (i2 == i4) * same + (i1 == i4) * (i2 == i3) * swap
        ok &= sp.expand(cov - want) == 0
    return ok


def stein_step_multi(m=2):
    """Item 5: E[omega^T M omega g(omega)] = tr M E[g] + sum_pq M_pq E[d_p d_q g] (M general)."""
    w = sp.symbols(f"w0:{m}")
    M = sp.Matrix(m, m, lambda i, j: sp.Symbol(f"M{i}{j}"))
    u, v, x = (sp.symbols(f"{c}0:{m}") for c in "uvx")
    dot = lambda a: sum(ai * wi for ai, wi in zip(a, w))  # noqa: E731
    g = dot(u) * dot(v) * dot(x) ** 2
    q = sum(w[p] * M[p, r] * w[r] for p in range(m) for r in range(m))
    lhs = _expect_normals(q * g, w)
    rhs = M.trace() * _expect_normals(g, w) + sum(M[p, r] * _expect_normals(sp.diff(g, w[p], w[r]), w)
                                                  for p in range(m) for r in range(m))
    return sp.expand(lhs - rhs) == 0


def _chi2_moments(dof):
    """E[X], E[X^2] of chi^2 with dof degrees of freedom."""
    return dof, dof * (dof + 2)


def deep_linear_second_moment(L):
    """E[Theta^2]/K1^2 and E[Theta]/K1 for a deep linear net of depth L, symbolic widths n_1..n_L."""
    n = [None] + list(sp.symbols(f"n1:{L + 1}", positive=True))
    g = {m: sp.Symbol(f"g{m}") for m in range(2, L + 1)}
    P = {m: sp.Symbol(f"P{m}") for m in range(1, L + 1)}   # forward chi-squares (P1 ~ chi2_{n1})
    Q = {m: sp.Symbol(f"Q{m}") for m in range(2, L + 2)}   # backward chi-squares (Q_{L+1} ~ chi2_{nL})
    F = {1: P[1] / n[1], **{m: (g[m] ** 2 + P[m]) / n[m] for m in range(2, L + 1)}}
    R = {L + 1: Q[L + 1] / n[L], **{m: (g[m] ** 2 + Q[m]) / n[m - 1] for m in range(2, L + 1)}}
    theta = sum(sp.prod([F[m] for m in range(1, l)]) * sp.prod([R[m] for m in range(l + 1, L + 2)])
                for l in range(1, L + 2))
    dof = {P[1]: n[1], Q[L + 1]: n[L], **{P[m]: n[m] - 1 for m in range(2, L + 1)},
           **{Q[m]: n[m - 1] - 1 for m in range(2, L + 1)}}

    def expect(expr):
        expr = sp.expand(expr)
        poly = sp.Poly(expr, *dof.keys(), *g.values())
        total = 0
        for mon, c in zip(poly.monoms(), poly.coeffs()):
            term = c
            for (sym, k) in zip(list(dof.keys()) + list(g.values()), mon):
                if sym in dof:
                    term *= (1, *_chi2_moments(dof[sym]))[k]
                else:
                    term *= _gauss_moment(k)
            total += term
        return sp.simplify(total)
    return expect(theta ** 2), expect(theta), n[1:]


def linear_recursion_first_order(L, n):
    """(A + 2B)^(L+1) / (n_L Theta^2) from the linear-sigma recursion (C_W = 1, C_b = 0, K = 1)."""
    K = 1
    V = A = B = D = 0
    Theta = sp.Integer(1)
    r = [1] + [n[l] / n[l - 1] for l in range(1, L)]
    for l in range(L):
        # linear sigma: <d^2> = <d^4> = 1, Var(s^2) = 2K^2, Cov(s^2, d^2) = 0, chi_par = chi_perp = p = 1
        A, B, D, V = (2 * K ** 2 + r[l] * (V + 2 * D + A), Theta ** 2 + r[l] * B,
                      2 * K ** 2 + r[l] * (V + D), 2 * K ** 2 + r[l] * V)
        Theta = K + Theta
    return sp.simplify((A + 2 * B) / (n[L - 1] * Theta ** 2))


def check_deep_linear(L):
    """(exact relative variance, first order agrees, library closed form agrees at sample widths)."""
    from sft.finite import deep_linear_ntk_second_moment
    m2, m1, n = deep_linear_second_moment(L)
    rel = sp.simplify(m2 / m1 ** 2 - 1)
    eps = sp.Symbol("epsilon", positive=True)
    scaled = {ni: ni / eps for ni in n}
    first = sp.limit(sp.simplify(rel.subs(scaled) / eps), eps, 0)
    want = sp.limit(sp.simplify(linear_recursion_first_order(L, n).subs(scaled) / eps), eps, 0)
    first_ok = sp.simplify(first - want) == 0
    sample = {ni: v for ni, v in zip(n, (3, 7, 5))}
    lib_ok = abs(float(m2.subs(sample)) - deep_linear_ntk_second_moment(tuple(sample[ni] for ni in n))) < 1e-12
    return rel, m1, first_ok and sp.simplify(m1 - (L + 1)) == 0, lib_ok


def main():
    lines = ["# NTK fluctuations, one input; multi-input Wick and Stein steps (checked by derivations/ntk_fluctuations.py)", "",
             "Recursion and conventions: docstring of `sft/ntk_fluctuations.py`.", "",
             f"- Wick step (Cov(T_i1i2, T_i3i4) = (d13 d24 + d14 d23) tr M^2, E T = d tr M): {wick_step()}",
             f"- Projection step (E[w M w^T | w.e = y] = tr M + (e^T M e)(y^2 - 1)): {projection_step()}",
             f"- Multi-input Wick step (pairings d13 d24 M.M', d14 d23 M.M'^T): {wick_step_multi()}",
             f"- Multi-input Stein step (E[w^T M w g] = tr M E g + M_pq E d_p d_q g): {stein_step_multi()}", ""]
    for L in (1, 2, 3):
        rel, m1, first_ok, lib_ok = check_deep_linear(L)
        lines += [f"## Deep linear, L = {L}", "",
                  f"E[Theta]/K1 = {m1}; Var(Theta)/E[Theta]^2 = ${sp.latex(sp.factor(rel))}$", "",
                  f"- O(1/n) part equals the linear recursion (A + 2B)/(n_L Theta^2), E[Theta] = (L+1) K1: {first_ok}",
                  f"- equals sft.finite.deep_linear_ntk_second_moment at widths (3, 7, 5)[:L]: {lib_ok}", ""]
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    return lines


if __name__ == "__main__":
    print("\n".join(main()))
