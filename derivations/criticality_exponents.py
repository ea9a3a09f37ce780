"""Symbolic derivations behind sft.kernels.criticality (sympy; run: ``python derivations/criticality_exponents.py``).

Writes derivations/out/criticality_exponents.json. Derived here (PDLT = Roberts, Yaida & Hanin 2022, ch. 5):

1. Gaussian smoothing series: <f(u)>_K = sum_n f^(2n)(0) K^n / (2^n n!) for u ~ N(0, K) (from
   <u^(2m)>_K = (2m-1)!! K^m). sft.kernels.small_K_expansion evaluates it with jax autodiff.
2. K*=0 class. With sigma(z) = sum_p sigma_p z^p / p! (PDLT's convention: sigma_p = sigma^(p)(0)),
   sigma_0 = 0, C_b = 0, C_W = 1/sigma_1^2, the recursion K' = C_W <sigma^2>_K reads
       K' = K + a1 K^2 + a2 K^3 + O(K^4),   a1 = sigma_3/sigma_1 + (3/4)(sigma_2/sigma_1)^2  (PDLT sec. 5.3.3),
   and chi_perp(K) = 1 + b1 K + O(K^2), b1 = sigma_3/sigma_1 + (sigma_2/sigma_1)^2.
   Iterating, y = 1/K obeys y' - y = -a1 + (a1^2 - a2) K + O(K^2), hence for a1 < 0
       1/K^(l) = (-a1) l + [(a1^2 - a2)/(-a1)] log l + O(1).
3. ReLU two-input correlation at criticality (C_b = 0, C_W = 2): rho' = [sin t + (pi - t) cos t]/pi,
   t = arccos rho. With eps = 1 - rho: eps' = eps - (2 sqrt 2/(3 pi)) eps^(3/2) + O(eps^2), so
   u = eps^(-1/2) grows by sqrt(2)/(3 pi) per layer and 1 - rho^(l) ~ 9 pi^2 / (2 l^2)  (PDLT sec. 5.2).
4. erf susceptibilities from <erf(u)^2>_K = (2/pi) arcsin(2K/(1+2K)) (Williams 1997):
   chi_par = C_W * 4 / (pi (1+2K) sqrt(1+4K)),   chi_perp = C_W * (4/pi) / sqrt(1+4K).
5. GELU sigma(z) = z Phi(z): <sigma sigma''>_K = K (2 + 3K - K^2) / (2 pi (1+K)^2 (1+2K)^(3/2)), so the
   K*>0 critical point (chi_par = chi_perp) sits at K* = (3 + sqrt 17)/2 exactly.
"""
from __future__ import annotations

import json
import pathlib

import sympy as sp

K, z, eps, C_W = sp.symbols("K z epsilon C_W", positive=True)
s = sp.symbols("sigma0:7", real=True)


def gauss_mean_poly(expr, u):
    """<expr(u)>_K for a polynomial in u, u ~ N(0, K), from <u^(2m)> = (2m-1)!! K^m."""
    poly = sp.Poly(sp.expand(expr), u)
    return sp.expand(sum(c * (sp.factorial2(m - 1) * K ** (m // 2) if m % 2 == 0 else 0)
                         for (m,), c in poly.terms()))


def smoothing_series_check(order=4):
    """Item 1: <f>_K = sum_n f^(2n)(0) K^n/(2^n n!) for a generic polynomial f of degree 2*order."""
    c = sp.symbols(f"c0:{2 * order + 1}")
    f = sum(ci * z ** i for i, ci in enumerate(c))
    lhs = gauss_mean_poly(f, z)
    rhs = sum(sp.diff(f, z, 2 * n).subs(z, 0) * K ** n / (2 ** n * sp.factorial(n)) for n in range(order + 1))
    assert sp.simplify(lhs - sp.expand(rhs)) == 0
    return True


def k0_class():
    """Item 2: coefficients a1, a2, b1 of the K*=0 expansion in PDLT's sigma_p convention."""
    sigma = sum(s[p] * z ** p / sp.factorial(p) for p in range(1, 6))  # sigma_0 = 0
    dsigma = sp.diff(sigma, z)
    cw = 1 / s[1] ** 2
    kmap = sp.expand(cw * gauss_mean_poly(sp.expand(sigma ** 2), z))
    chi_perp = sp.expand(cw * gauss_mean_poly(sp.expand(dsigma ** 2), z))
    a1 = sp.simplify(kmap.coeff(K, 2))
    a2 = sp.simplify(kmap.coeff(K, 3))
    b1 = sp.simplify(chi_perp.coeff(K, 1))
    assert sp.simplify(kmap.coeff(K, 1) - 1) == 0 and sp.simplify(chi_perp.coeff(K, 0) - 1) == 0
    assert sp.simplify(a1 - (s[3] / s[1] + sp.Rational(3, 4) * (s[2] / s[1]) ** 2)) == 0
    assert sp.simplify(b1 - (s[3] / s[1] + (s[2] / s[1]) ** 2)) == 0
    # y = 1/K: y' - y = -a1 + (a1^2 - a2) K + O(K^2)
    A1, A2 = sp.symbols("a1 a2", real=True)
    x = sp.symbols("x", positive=True)
    dy = sp.series(1 / (x + A1 * x ** 2 + A2 * x ** 3) - 1 / x, x, 0, 2).removeO()
    assert sp.simplify(dy - (-A1 + (A1 ** 2 - A2) * x)) == 0
    log_coeff = (A1 ** 2 - A2) / (-A1)
    return {"a1": sp.sstr(a1), "a2": sp.sstr(a2), "b1": sp.sstr(b1),
            "inverse_kernel_asymptotic": f"1/K^(l) = (-a1) l + ({sp.sstr(log_coeff)}) log l + O(1)"}


def relu_correlation():
    """Item 3: eps' = eps - c eps^(3/2) + ..., and the coefficient of 1 - rho ~ C / l^2."""
    t = sp.acos(1 - eps)
    rho_next = (sp.sin(t) + (sp.pi - t) * sp.cos(t)) / sp.pi
    e = sp.symbols("e", positive=True)  # e = sqrt(eps)
    eps_next = sp.series(sp.simplify((1 - rho_next).subs(eps, e ** 2)), e, 0, 5).removeO()
    c3 = sp.simplify(eps_next.coeff(e, 3))
    assert sp.simplify(eps_next.coeff(e, 2) - 1) == 0 and sp.simplify(c3 + 2 * sp.sqrt(2) / (3 * sp.pi)) == 0
    u_rate = sp.simplify(-c3 / 2)  # d(eps^-1/2)/dl = -(1/2) eps^-3/2 d eps/dl = (c/2)
    coeff = sp.simplify(1 / u_rate ** 2)
    assert sp.simplify(coeff - 9 * sp.pi ** 2 / 2) == 0
    return {"eps_next": sp.sstr(eps_next) + " (e = sqrt(1 - rho))", "inverse_sqrt_rate": sp.sstr(u_rate),
            "one_minus_rho_coefficient": sp.sstr(coeff)}


def erf_susceptibilities():
    """Item 4: chi_par and chi_perp of erf in closed form."""
    g = 2 / sp.pi * sp.asin(2 * K / (1 + 2 * K))
    chi_par = sp.simplify(C_W * sp.diff(g, K))
    target = C_W * 4 / (sp.pi * (1 + 2 * K) * sp.sqrt(1 + 4 * K))
    assert sp.simplify(chi_par - target) == 0
    chi_perp = C_W * (4 / sp.pi) / sp.sqrt((1 + 2 * K) ** 2 - 4 * K ** 2)
    assert sp.simplify(chi_perp - C_W * (4 / sp.pi) / sp.sqrt(1 + 4 * K)) == 0
    return {"chi_parallel": sp.sstr(target), "chi_perp": sp.sstr(sp.simplify(chi_perp))}


def gelu_nontrivial_fixed_point():
    """Item 5: <sigma sigma''>_K for GELU in closed form and its positive root."""
    u = sp.symbols("u", real=True)
    sigma = u * (1 + sp.erf(u / sp.sqrt(2))) / 2
    dens = sp.exp(-u ** 2 / (2 * K)) / sp.sqrt(2 * sp.pi * K)
    h = sp.simplify(sp.integrate(sp.expand(sigma * sp.diff(sigma, u, 2) * dens), (u, -sp.oo, sp.oo)))
    assert sp.simplify(h - K * (2 + 3 * K - K ** 2) / (2 * sp.pi * (1 + K) ** 2 * (1 + 2 * K) ** sp.Rational(3, 2))) == 0
    roots = sp.solve(sp.Eq(h, 0), K)
    assert roots == [sp.Rational(3, 2) + sp.sqrt(17) / 2]
    return {"sigma_sigma2_mean": sp.sstr(h), "K_star": sp.sstr(roots[0]), "K_star_float": float(roots[0])}


def main():
    out = {"gaussian_smoothing_series": smoothing_series_check(), "k0_class": k0_class(),
           "relu_correlation": relu_correlation(), "erf": erf_susceptibilities(),
           "gelu": gelu_nontrivial_fixed_point()}
    path = pathlib.Path(__file__).parent / "out" / "criticality_exponents.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
