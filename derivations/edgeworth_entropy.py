"""Negentropy of a nearly-Gaussian law from its Edgeworth expansion, and what it means for the mutual
information of a finite-width network's representation (used by sft.predict.information and the
Edgeworth plug-in of sft.sim.information_estimators).

Run from the repository root: ``python -m derivations.edgeworth_entropy``; writes
derivations/out/edgeworth_entropy.md.

1. Univariate. Standardized law with cumulants lambda_r eps^(r-2) and Edgeworth density
   f = phi (1 + r), r = sum_j eps^j p_j (sft.symbolic.edgeworth_polynomials). The negentropy is
   J = h(phi) - h(f) = int f log(f/phi) = E_phi[(1 + r) log(1 + r)] (the variance is matched, so
   the cross term int (f - phi) log phi vanishes), expanded in powers of r and then of eps with the
   Gaussian moments E_phi[x^(2m)] = (2m - 1)!!. Result to eps^4:
       J = eps^2 lambda3^2 / 12 + eps^4 (lambda4^2/48 - lambda3^2 lambda4/8 + 7 lambda3^4/48) + O(eps^5)
   (the eps^4 coefficient is computed here, not typed; lambda5 drops out at this order). With the
   symmetry z -> -z of a network (lambda3 = 0) the first term is lambda4^2 eps^4 / 48.
2. Multivariate. The same expansion in the whitened coordinates, with tensor Hermite polynomials whose
   Gaussian inner products are E[H_I H_J] = sum over the r! index permutations of deltas, gives
   J = (1/12) sum_ijk kappa~_ijk^2 + (1/48) sum_ijkl kappa~_ijkl^2 + ... (kappa~ the cumulant tensors
   in whitened coordinates; Comon 1994, Signal Processing 36, 287, eq. (3.4) and its multivariate form).
   Checked here for the univariate coefficients; the tensor form follows from the orthogonality above.
3. Consequence for networks. One neuron of layer l over the parameter ensemble has covariance
   K + G1/n + O(1/n^2) and fourth cumulant O(1/n) (vertex V), odd cumulants zero. So
   h = h_Gauss(K + G1/n + sigma^2 I) - O(1/n^2): the first correction to
   I(z; z + sigma eps) = 1/2 log det(I + K/sigma^2) is the kernel shift,
       dI = (1/(2n)) tr[(K + sigma^2 I)^(-1) G1]      (first order of the log-determinant),
   and the vertex enters only at O(1/n^2), through -lambda4^2/48 (item 1, lambda4 = O(1/n)).
4. Between consecutive layers. Layer l-1 acts on a neuron of layer l only through G = G^(l), so
   I(layer l-1; Y) = I(G; Y) = h(Y) - h(Y | G) = I_l - E[(1/2) log det(I + G/sigma^2)]. With G = Gbar + dG,
   log det(M + dG) = log det M + tr(M^-1 dG) - (1/2) tr(M^-1 dG M^-1 dG) + O(dG^3) (the series of
   log(1 + x) = x - x^2/2 + ..., checked below by :func:`logdet_second_order`), E dG = 0, E[dG dG] = V/n,
   and I_l = (1/2) log det(I + Gbar/sigma^2) + O(1/n^2) (item 3):
       I(G; Y) = (1/4) E tr(M^-1 dG M^-1 dG) = (1/(4n)) sum_abcd M^-1_ab V_(bc)(da) M^-1_cd + O(1/n^2).
"""
from __future__ import annotations

import pathlib

import sympy as sp

from sft.symbolic import edgeworth_polynomials

OUT = pathlib.Path(__file__).resolve().parent / "out" / "edgeworth_entropy.md"
x, eps = sp.symbols("x epsilon")
lam3, lam4, lam5, lam6 = sp.symbols("lambda3 lambda4 lambda5 lambda6")


def _gauss_mean(poly):
    """E_phi[poly(x)] for a polynomial in x (odd moments 0, E x^(2m) = (2m-1)!!)."""
    p = sp.Poly(sp.expand(poly), x)
    return sp.expand(sum(c * (sp.factorial2(k - 1) if k % 2 == 0 else 0)
                         for (k,), c in p.terms()))


def _truncated_product(a, b, order):
    """Product of two series {eps power: polynomial in x} truncated above eps^order."""
    out = {}
    for i, pa in a.items():
        for j, pb in b.items():
            if i + j <= order:
                out[i + j] = out.get(i + j, 0) + pa * pb
    return out


def negentropy_series(order=4):
    """J = E_phi[(1 + r) log(1 + r)] to eps^order (a sympy polynomial in eps and the lambdas).

    (1 + r) log(1 + r) = r + sum_{m>=2} (-1)^m r^m / (m (m - 1)); r = O(eps), so m <= order suffices.
    The powers of r are truncated series in eps with sp.Poly coefficients in x (fast).
    """
    ps = edgeworth_polynomials(order, [lam3, lam4, lam5, lam6][:order], x=x)
    r = {j: sp.Poly(p, x) for j, p in enumerate(ps, start=1)}
    total, power = dict(r), dict(r)
    for m in range(2, order + 1):
        power = _truncated_product(power, r, order)
        for j, p in power.items():
            total[j] = total.get(j, 0) + p * sp.Rational((-1) ** m, m * (m - 1))
    return sp.expand(sum(_gauss_mean(p.as_expr()) * eps ** j for j, p in total.items()))


def coefficients():
    """{'k3^2': coeff of eps^2 lambda3^2, 'k4^2': coeff of eps^4 lambda4^2} from negentropy_series."""
    J = negentropy_series(4)
    return {"k3^2": J.coeff(eps, 2).coeff(lam3, 2), "k4^2": J.coeff(eps, 4).coeff(lam4, 2).subs(lam3, 0)}


def logdet_second_order():
    """Second-order coefficient of log det(M + t D) in t for a symbolic symmetric 2 x 2 M and D, minus
    -(1/2) tr(M^-1 D M^-1 D): simplifies to 0 (item 4)."""
    t = sp.Symbol("t")
    m11, m12, m22, d11, d12, d22 = sp.symbols("m11 m12 m22 d11 d12 d22")
    M, D = sp.Matrix([[m11, m12], [m12, m22]]), sp.Matrix([[d11, d12], [d12, d22]])
    series = sp.series(sp.log((M + t * D).det()), t, 0, 3).removeO()
    Minv = M.inv()
    return sp.simplify(series.coeff(t, 2) + sp.Rational(1, 2) * (Minv * D * Minv * D).trace())


def main():
    J = negentropy_series(4)
    c = coefficients()
    text = ("# Negentropy of a nearly-Gaussian law (Edgeworth)\n\n"
            f"J = {sp.sstr(sp.collect(J, eps))}\n\n"
            f"coefficient of lambda3^2 eps^2: {c['k3^2']}; of lambda4^2 eps^4: {c['k4^2']}\n\n"
            f"second-order log-det term minus -(1/2) tr(M^-1 D M^-1 D): {logdet_second_order()}\n")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
