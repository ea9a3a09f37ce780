"""Closed forms of sft.circuits.survival (circuits against TLBP temperature), derived with sympy.

Run from the repository root: ``python -m derivations.circuit_survival``; writes derivations/out/circuit_survival.md.
Notation: rectangular n x m sample W = sum_k theta_k u_k v_k^T + bulk, bulk per-entry variance
rho^2 + sigma^2, L = max(n, m), c = min(n, m) / L, x = theta / s with s^2 = L (rho^2 + sigma^2)
(the units of sft.circuits.planted, bulk singular values at s (1 + sqrt c)).

1. Output coefficient. With the BGN 2012 (Sec. 3.1) outlier sigma_out = s sqrt((1 + x^2)(c + x^2)) / x and
   squared overlaps l = 1 - c (1 + x^2) / (x^2 (x^2 + c)), r = 1 - (c + x^2) / (x^2 (x^2 + 1)),
   a = sigma_out sqrt(l r) / theta simplifies to 1 - c / x^4 (x^4 > c).
2. Sign of <u_hat, u><v_hat, v>. In the Hermitisation the circuit block is M = diag(phi, phi~) (both > 0
   above the bulk) and Theta = [[0, theta], [theta, 0]]; the null vector of 1 - Theta M at a root
   (theta^2 phi phi~ = 1) is a = (theta phi~, 1) up to scale, and P^T psi = M a = (theta phi phi~, phi~) has
   components of equal sign, so the product of the overlaps is +sqrt(l r) (the output is positive).
3. Threshold temperature. x = c^(1/4) <=> rho^2 + sigma^2 = theta^2 / sqrt(n m); with
   sigma^2 = t / (1 + gamma t) (whitened TLBP variance) t_k = tau / (1 - gamma tau), tau = theta^2 / sqrt(n m) - rho^2.
4. At gamma = rho = 0, c / x^4 = (t / t_k)^2, so a_k = 1 - (t / t_k)^2: the output decays quadratically to
   0 at t_k, and the overlaps vanish linearly there (d l / d t at t_k is finite and nonzero).
"""
from __future__ import annotations

import pathlib

import sympy as sp

OUT = pathlib.Path(__file__).resolve().parent / "out" / "circuit_survival.md"
x, c, s, t, gamma, rho, theta, n, m = sp.symbols("x c s t gamma rho theta n m", positive=True)


def output_coefficient():
    """(a as derived from the BGN closed forms, 1 - c/x^4) for item 1 (x^4 > c)."""
    sig = s * sp.sqrt((1 + x ** 2) * (c + x ** 2)) / x
    left = 1 - c * (1 + x ** 2) / (x ** 2 * (x ** 2 + c))
    right = 1 - (c + x ** 2) / (x ** 2 * (x ** 2 + 1))
    # sqrt(l r) with l r = (x^4 - c)^2 / (x^4 (x^2 + c)(x^2 + 1)): take the root of the factored square
    lr = sp.factor(sp.together(left * right))
    root = (x ** 4 - c) / (x ** 2 * sp.sqrt((x ** 2 + c) * (x ** 2 + 1)))
    assert sp.simplify(root ** 2 - lr) == 0
    return sp.simplify(sig * root / (s * x)), 1 - c / x ** 4


def null_vector_components():
    """(residual of (1 - Theta M) a at the root, components M a) for item 2."""
    phi, phit = sp.symbols("phi phitilde", positive=True)
    M = sp.diag(phi, phit)
    Theta = sp.Matrix([[0, theta], [theta, 0]])
    a = sp.Matrix([theta * phit, 1])
    residual = ((sp.eye(2) - Theta * M) * a).subs(phi, 1 / (theta ** 2 * phit))
    return sp.simplify(residual), M * a


def threshold_temperature():
    """(t_k solved from x = c^(1/4), library formula) for item 3 (short side n <= m, L = m, c = n/m)."""
    sigma2 = t / (1 + gamma * t)
    cond = sp.Eq(theta ** 2 / (m * (rho ** 2 + sigma2)), sp.sqrt(n / m))
    sol = sp.solve(cond, t)
    tau = theta ** 2 / sp.sqrt(n * m) - rho ** 2
    return sol, tau / (1 - gamma * tau)


def output_against_temperature():
    """c / x^4 at gamma = rho = 0 divided by (t / t_k)^2 (item 4; should be 1)."""
    tk = theta ** 2 / sp.sqrt(n * m)
    x4 = (theta ** 2 / (m * t)) ** 2
    return sp.simplify((n / m) / x4 / (t / tk) ** 2)


def main():
    a, want = output_coefficient()
    res, comps = null_vector_components()
    sol, tk = threshold_temperature()
    ratio = output_against_temperature()
    assert sp.simplify(a - want) == 0 and res == sp.zeros(2, 1) and ratio == 1
    assert len(sol) == 1 and sp.simplify(sol[0] - tk) == 0
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text("# circuit_survival\n\n"
                   f"1. a = sigma_out sqrt(l r) / theta = {sp.sstr(a)}\n"
                   f"2. M a = {sp.sstr(comps.T)} (both components > 0)\n"
                   f"3. t_k = {sp.sstr(sp.simplify(sol[0]))}\n"
                   f"4. (c / x^4) / (t / t_k)^2 = {ratio}\n")
    print(OUT.read_text())


if __name__ == "__main__":
    main()
