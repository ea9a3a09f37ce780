"""Symbolic derivation of the single-input finite-width recursions (sympy).

Run from the repository root: ``python -m derivations.vertex_recursion``; writes
derivations/out/vertex_recursion.md. tests/test_finite_width.py asserts that sft.finite.vertex's
one-layer map equals the recursion derived here (symbolically for polynomial activations, numerically
for ReLU and erf with independent closed forms / mpmath quadrature).

Derivation (PDLT = Roberts, Yaida & Hanin 2022, sec. 4.3, generalized to per-layer widths):

1. Layer law. Given G = G^(l), the n_l neurons of layer l are i.i.d. N(0, G), so for one input
   E[G^(l+1) | G] = C_b + C_W m2(G),   Var(G^(l+1) | G) = (C_W^2 / n_l) (m4(G) - m2(G)^2),
   m_k(G) = <sigma^k>_G. Write G = K + delta with E[delta] = eps g1, E[delta^2] = eps v + O(eps^2),
   E[delta^k] = O(eps^2) for k >= 3, eps = 1/n_{l-1} (this is what "V^(l) = v, G1^(l) = g1" means).
2. Total variance: Var(G^(l+1)) = E[Var(. | G)] + Var(E[. | G]); expand to O(eps) with n_l = r / eps.
3. Gaussian derivatives: d^k <f>_K / dK^k = <f(sqrt(K) u) He_{2k}(u)> / (2K)^k, checked here on a
   polynomial of degree 8 with symbolic coefficients.
4. Criticality: scale-invariant nu = 3 A4/A2^2 - 1; K* = 0 class nu = 2/3 from the large-l recursion.
"""
from __future__ import annotations

import pathlib

import sympy as sp

K, v, g1, eps, r, C_W, C_b, u = sp.symbols("K v g1 epsilon r C_W C_b u", real=True)
delta = sp.Symbol("delta", real=True)
m2, m4 = sp.Function("m2"), sp.Function("m4")

OUT = pathlib.Path(__file__).resolve().parent / "out" / "vertex_recursion.md"


def _expect_delta(expr):
    """E over delta of a polynomial in delta: E[1] = 1, E[delta] = eps g1, E[delta^2] = eps v, rest O(eps^2)."""
    poly = sp.Poly(sp.expand(expr), delta)
    moments = {0: 1, 1: eps * g1, 2: eps * v}
    return sum(c * moments.get(k[0], 0) for k, c in zip(poly.monoms(), poly.coeffs()))


def derive_single_input_step():
    """(K', V', G1') of layer l+1 from (K, V = v, G1 = g1) of layer l, in terms of m2, m4 and derivatives.

    V' = lim n_l Var(G^(l+1)), G1' = lim n_l (E[G^(l+1)] - K'), to first order in eps = 1/n_{l-1},
    with n_l = r / eps (r = n_l / n_{l-1}).
    """
    taylor = lambda f: sum(sp.diff(f(K), K, k) * delta ** k / sp.factorial(k) for k in range(3))  # noqa: E731
    mean_given = C_b + C_W * taylor(m2)
    var_given = C_W ** 2 * eps / r * (taylor(m4) - taylor(m2) ** 2)  # (C_W^2 / n_l)(...)
    mean = _expect_delta(mean_given)
    var = _expect_delta(var_given) + _expect_delta(mean_given ** 2) - mean ** 2
    K_next = C_b + C_W * m2(K)
    V_next = sp.limit(sp.expand(var * r / eps), eps, 0)
    G1_next = sp.limit(sp.expand((mean - K_next) * r / eps), eps, 0)
    return K_next, sp.simplify(V_next), sp.simplify(G1_next)


def check_gaussian_derivative_identity(degree=8):
    """d^k <f>_K/dK^k = <f(sqrt(K) u) He_2k(u)> / (2K)^k for k = 1, 2 and f a generic polynomial."""
    a = sp.symbols(f"a0:{degree + 1}")
    Kp = sp.Symbol("K", positive=True)

    def gauss(expr_in_u):  # E[p(u)], u ~ N(0,1), for a polynomial p
        poly = sp.Poly(sp.expand(expr_in_u), u)
        return sum(c * (sp.factorial2(k[0] - 1) if k[0] % 2 == 0 else 0)
                   for k, c in zip(poly.monoms(), poly.coeffs()))

    f = lambda z: sum(a[k] * z ** k for k in range(degree + 1))  # noqa: E731
    mean = gauss(f(sp.sqrt(Kp) * u))
    he = {1: u ** 2 - 1, 2: u ** 4 - 6 * u ** 2 + 3}
    return all(sp.simplify(sp.diff(mean, Kp, k) - gauss(f(sp.sqrt(Kp) * u) * he[k]) / (2 * Kp) ** k) == 0
               for k in (1, 2))


def polynomial_moments(coeffs):
    """(m2(K), m4(K)) as sympy expressions for sigma(z) = sum_k coeffs[k] z^k (exact Gaussian moments)."""
    Kp = sp.Symbol("K", positive=True)

    def gauss(expr):
        poly = sp.Poly(sp.expand(expr), u)
        return sum(c * (sp.factorial2(k[0] - 1) if k[0] % 2 == 0 else 0)
                   for k, c in zip(poly.monoms(), poly.coeffs()))

    s = sum(c * (sp.sqrt(Kp) * u) ** k for k, c in enumerate(coeffs))
    return gauss(s ** 2).subs(Kp, K), gauss(s ** 4).subs(Kp, K)


def step_for(m2_expr, m4_expr):
    """The derived (K', V', G1') with m2, m4 replaced by explicit functions of K."""
    out = derive_single_input_step()
    repl = {}
    for f, e in ((m2, m2_expr), (m4, m4_expr)):
        for k in (2, 1):
            repl[sp.Derivative(f(K), (K, k))] = sp.diff(e, K, k)
        repl[f(K)] = e
    return tuple(sp.simplify(x.subs(repl)) for x in out)


def nu_K0_class():
    """nu for the K* = 0 class: K' = K + c K^2, chi = 1 + 2 c K, fresh = 2 K^2 (+ O(K^3)).

    w = V/K^2 obeys w' = (2 K^2 + chi^2 w K^2) / K'^2 = w + 2 + 2 c K w + ...; with c K = -1/l (K ~ -1/(c l))
    and w = nu l: nu = 2 - 2 nu.
    """
    nu = sp.Symbol("nu")
    c, Ks, w = sp.symbols("c K_s w")
    w_next = (2 * Ks ** 2 + (1 + 2 * c * Ks) ** 2 * w * Ks ** 2) / (Ks + c * Ks ** 2) ** 2
    first = sp.series(w_next - w, Ks, 0, 2).removeO()  # 2 + 2 c K w + O(K)... keep O(K w)
    l = sp.Symbol("l", positive=True)
    increment = sp.expand(first.subs({Ks: -1 / (c * l), w: nu * l}))
    # leading order in l: nu (per layer) = increment's O(1) part
    lead = sp.limit(increment, l, sp.oo)
    return sp.solve(sp.Eq(nu, lead), nu)[0], sp.simplify(first)


def nu_scale_invariant():
    a_p, a_m = sp.symbols("a_+ a_-", real=True)
    A2, A4 = (a_p ** 2 + a_m ** 2) / 2, (a_p ** 4 + a_m ** 4) / 2
    Cw = 1 / A2
    fresh = Cw ** 2 * (3 * A4 * K ** 2 - (A2 * K) ** 2)  # V' - V with chi_par = C_W A2 = 1, K' = K
    return sp.simplify(fresh / K ** 2), A2, A4


def main():
    K_next, V_next, G1_next = derive_single_input_step()
    ident = check_gaussian_derivative_identity()
    _, Vp, Gp = step_for(*polynomial_moments([0, 1, sp.Symbol("s_2"), sp.Symbol("s_3")]))
    nu_k0, w_inc = nu_K0_class()
    nu_si, _, _ = nu_scale_invariant()
    relu_nu = nu_si.subs({sp.Symbol("a_+", real=True): 1, sp.Symbol("a_-", real=True): 0})
    lines = [
        "# Single-input finite-width recursion (derived by derivations/vertex_recursion.py)",
        "",
        "Layer law: given $G=G^{(\\ell)}$, $E[G^{(\\ell+1)}|G]=C_b+C_W m_2(G)$, "
        "$\\mathrm{Var}(G^{(\\ell+1)}|G)=\\frac{C_W^2}{n_\\ell}(m_4-m_2^2)$, $m_k(G)=\\langle\\sigma^k\\rangle_G$.",
        "With $E[\\delta]=G_1^{(\\ell)}/n_{\\ell-1}$, $E[\\delta^2]=V^{(\\ell)}/n_{\\ell-1}$ and "
        "$r_\\ell=n_\\ell/n_{\\ell-1}$:",
        "",
        f"$$K^{{(\\ell+1)}} = {sp.latex(K_next)}$$",
        f"$$V^{{(\\ell+1)}} = {sp.latex(V_next.subs({v: sp.Symbol('V'), r: sp.Symbol('r_ell')}))}$$",
        f"$$G_1^{{(\\ell+1)}} = {sp.latex(G1_next.subs({v: sp.Symbol('V'), g1: sp.Symbol('G_1'), r: sp.Symbol('r_ell')}))}$$",
        "",
        "Identified with $\\chi_\\parallel = C_W m_2'(K)$ and "
        "$d^k\\langle f\\rangle_K/dK^k=\\langle f\\,He_{2k}(u)\\rangle/(2K)^k$ "
        f"(verified for a generic degree-8 polynomial: {ident}).",
        "",
        "Polynomial activation $\\sigma=z+s_2z^2+s_3z^3$:",
        f"$$V' = {sp.latex(sp.expand(Vp))}$$",
        f"$$G_1' = {sp.latex(sp.expand(Gp))}$$",
        "",
        f"Scale-invariant, criticality: $\\nu = V^{{(\\ell+1)}}-V^{{(\\ell)}}$ over $K^2$ $= {sp.latex(nu_si)}$ "
        f"(ReLU: {relu_nu}).",
        f"K*=0 class: $w=V/K^2$ grows per layer by ${sp.latex(w_inc)}$; with $cK=-1/\\ell$, "
        f"$w=\\nu\\ell$: $\\nu = {sp.latex(nu_k0)}$.",
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
