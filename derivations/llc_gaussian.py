"""Exact tempered-posterior LLCs of sft.sim.learning_coefficients, derived with sympy.

Run from the repository root: ``python -m derivations.llc_gaussian``; writes derivations/out/llc_gaussian.md.
Throughout lambda_hat = a (E[L] - L(w*)) under p(w) ∝ exp(-a L(w) - (gamma/2)|w - w*|^2), a = nbeta,
and lambda_hat = -a d/da log Z(a) (differentiate Z = integral exp(-a L - gamma |d|^2/2)).

1. Gaussian (quadratic L = g d + h d^2/2 in one eigendirection of the Hessian; the isotropic gamma
   keeps the eigendirections independent, so D dimensions are a sum): -a d/da log Z equals
   a h/(2A) - (a g)^2 (a h/2 + gamma)/A^2, A = a h + gamma   (sft.sim.quadratic_llc).
2. NTK push-through: for a Jacobian J (P x D) and H = J^T J / n, a tr(H (a H + gamma)^-1) =
   tr(b Theta (b Theta + gamma)^-1) with Theta = J J^T (P x P) and b = a / n (checked for an exact
   rational 2 x 3 J with symbolic a, gamma, n), so lambda_hat = (1/2) sum_k b mu_k / (b mu_k + gamma)
   over the NTK eigenvalues mu_k (sft.sim.ntk_llc).
3. Full-batch SGLD on the quadratic: d' = (1 - eps A/2) d - eps a g/2 + sqrt(eps) xi is AR(1); its
   stationary mean is -a g/A (the exact mean) and its variance v solves v = (1 - eps A/2)^2 v + eps:
   v = 1 / (A (1 - eps A/4))   (sft.sim.quadratic_llc with step_size).
4. Power potential L = w^(2k), gamma = 0: Z(a) = Gamma(1/(2k)) / (k a^(1/(2k))), so lambda_hat = 1/(2k)
   exactly, for k = 1, 2, 3 (sft.sim.power_llc).
5. Normal crossing L = s (w1 w2)^2: integrating w2 (Gaussian) gives
   Z = integral dw1 sqrt(pi / (a s w1^2 + gamma/2)) exp(-gamma w1^2/2); the substitution
   w1 = e sinh(t), e^2 = gamma / (2 a s), and K_0(q) = integral_0^inf exp(-q cosh u) du (DLMF 10.32.9)
   give Z = sqrt(pi / (a s)) e^q K_0(q), q = gamma^2 / (8 a s). Then -a d/da log Z =
   1/2 + q (1 - K_1(q)/K_0(q)) (sympy, with K_0' = -K_1)  (sft.sim.normal_crossing_llc). The
   substitution step is checked here at its integrand level: d w1 / sqrt(w1^2 + e^2) = dt and
   gamma w1^2 / 2 = q (cosh 2t - 1).
"""
from __future__ import annotations

import pathlib

import sympy as sp

OUT = pathlib.Path(__file__).resolve().parent / "out" / "llc_gaussian.md"
a, gamma, n, eps = sp.symbols("a gamma n epsilon", positive=True)
h = sp.Symbol("h", positive=True)
g = sp.Symbol("g", real=True)


def gaussian_one_direction():
    """(derived, library formula) for item 1, as sympy expressions in a, gamma, h, g."""
    w = sp.Symbol("w", real=True)
    A = a * h + gamma
    Z = sp.integrate(sp.exp(-a * (g * w + h * w ** 2 / 2) - gamma * w ** 2 / 2), (w, -sp.oo, sp.oo),
                     conds="none")
    derived = sp.simplify(-a * sp.diff(sp.log(Z), a))
    formula = a * h / (2 * A) - (a * g) ** 2 * (a * h / 2 + gamma) / A ** 2
    return derived, formula


def ntk_push_through():
    """(parameter-space trace, NTK-space trace) of item 2 for an exact rational 2 x 3 Jacobian."""
    J = sp.Matrix([[1, 2, -1], [sp.Rational(1, 2), 0, 3]])
    H = J.T * J / n
    left = (a * H * (a * H + gamma * sp.eye(3)).inv()).trace()
    b = a / n
    theta = J * J.T
    right = (b * theta * (b * theta + gamma * sp.eye(2)).inv()).trace()
    return sp.simplify(left), sp.simplify(right)


def sgld_stationary():
    """(mean, variance) of the AR(1) SGLD chain of item 3."""
    A = a * h + gamma
    m, v = sp.symbols("m v")
    mean = sp.solve(sp.Eq(m, (1 - eps * A / 2) * m - eps * a * g / 2), m)[0]
    var = sp.solve(sp.Eq(v, (1 - eps * A / 2) ** 2 * v + eps), v)[0]
    return sp.simplify(mean), sp.simplify(var)


def power_potential(k):
    """lambda_hat for L = w^(2k) at gamma = 0 (item 4)."""
    w = sp.Symbol("w", positive=True)
    Z = 2 * sp.integrate(sp.exp(-a * w ** (2 * k)), (w, 0, sp.oo))
    return sp.simplify(-a * sp.diff(sp.log(Z), a))


def normal_crossing():
    """(derived lambda_hat, library formula, substitution residuals) for item 5."""
    s = sp.Symbol("s", positive=True)
    q = gamma ** 2 / (8 * a * s)
    Z = sp.sqrt(sp.pi / (a * s)) * sp.exp(q) * sp.besselk(0, q)
    derived = -a * sp.diff(sp.log(Z), a)
    derived = derived.subs(sp.besselk(-1, q), sp.besselk(1, q))
    formula = sp.Rational(1, 2) + q * (1 - sp.besselk(1, q) / sp.besselk(0, q))
    t = sp.Symbol("t", real=True)
    e = sp.sqrt(gamma / (2 * a * s))
    w1 = e * sp.sinh(t)
    jacobian = sp.simplify(sp.diff(w1, t) / sp.sqrt(w1 ** 2 + e ** 2) - 1)
    exponent = sp.simplify((gamma * w1 ** 2 / 2 - q * (sp.cosh(2 * t) - 1)).rewrite(sp.exp))
    return sp.simplify(derived - formula), jacobian, exponent


def main():
    d1, f1 = gaussian_one_direction()
    l2, r2 = ntk_push_through()
    m3, v3 = sgld_stationary()
    lines = ["# Exact tempered-posterior LLCs (derivations/llc_gaussian.py)", "",
             f"1. Gaussian, one direction: derived - library = {sp.simplify(d1 - f1)}",
             f"2. NTK push-through: parameter trace - NTK trace = {sp.simplify(l2 - r2)}",
             f"3. SGLD AR(1): mean = {m3}, variance = {v3}",
             "4. Power potential at gamma = 0: "
             + ", ".join(f"k={k}: {power_potential(k)}" for k in (1, 2, 3)),
             "5. Normal crossing: derived - library, substitution residuals = "
             f"{normal_crossing()}"]
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
