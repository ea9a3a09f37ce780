"""Symbolic derivation of the multi-input O(1/n^2) recursion (tensor form), for P = 2 pair variables (sympy).

Run from the repository root: ``python -m derivations.second_order_multi`` (about 4 minutes on 2 cores);
writes derivations/out/second_order_multi.json. tests/test_second_order_multi.py evaluates
sft.finite.second_order_multi.second_order_multi_step on the symbols of :func:`library_arguments` and
asserts it equals the stored result exactly.

Derivation (the steps of derivations/second_order_recursion.py with tensor indices; Brillinger 1969):

1. delta = G - K over P pair variables with cumulant tensors kappa_1 = eps g1 + eps^2 g2,
   kappa_2 = eps V + eps^2 V1, kappa_3 = eps^2 U, kappa_4 = O(eps^3) (generic symmetric symbols); moment
   tensors from them by sft.symbolic.moment_tensors_from_cumulants, truncated at eps^2.
2. Conditional cumulants of G' given G, as Taylor polynomials in delta with generic coefficient tensors
   (symmetric in the derivative indices): k1 = sum_{j<=4} c_j delta^j / j! (c = a, B, C, D, E),
   k2 = (eps/r)(F2 + F2' delta + F2'' delta delta / 2), k3 = (eps/r)^2 F3 (n_l = r / eps).
3. Conditional moment tensors mu_1 = k1, mu_2 = k2 + k1 k1, mu_3 = k3 + 3 sym(k2 k1) + k1 k1 k1;
   E over delta (monomials -> moment tensors), truncated at eps^2; cumulant tensors of G' by
   sft.symbolic.cumulant_tensors_from_moments.
4. Read off K' = [eps^0] kappa_1, G1' = r [eps] kappa_1, G2' = r^2 [eps^2] kappa_1, V' = r [eps] kappa_2,
   V1' = r^2 [eps^2] kappa_2, U' = r^2 [eps^2] kappa_3, and check [eps^0] kappa_2 = 0, [eps^0, eps^1] kappa_3 = 0.

P = 2 keeps every index pattern of the general case that involves two distinct pair variables; the
library's einsum expressions are index-generic, so equality at P = 2 (no symmetry assumed beyond the
tensors' own) checks each contraction's index placement.
"""
from __future__ import annotations

import itertools
import json
import pathlib

import numpy as np
import sympy as sp

from sft.symbolic.cumulants import cumulant_tensors_from_moments, moment_tensors_from_cumulants

P = 2
eps, r = sp.symbols("eps r", positive=True)
theta = sp.symbols(f"theta0:{P}")
OUT = pathlib.Path(__file__).resolve().parent / "out" / "second_order_multi.json"
NAMES = ("K", "G1", "G2", "V", "V1", "U")


def _tensor(name, lead, rank):
    """Symbols name_<sorted lead indices>_<sorted other indices>: symmetric within each group."""
    T = np.empty((P,) * (lead + rank), dtype=object)
    for idx in itertools.product(range(P), repeat=lead + rank):
        T[idx] = sp.Symbol(f"{name}_{''.join(map(str, sorted(idx[:lead])))}_{''.join(map(str, sorted(idx[lead:])))}")
    return T


def library_arguments():
    """(state, tensors, r) on generic symbols, in the layout of second_order_multi_step (C_b = 0)."""
    state = (np.zeros(P, dtype=object), _tensor("g1", 0, 1), _tensor("g2", 0, 1), _tensor("V", 0, 2),
             _tensor("V1", 0, 2), _tensor("U", 0, 3))
    k1 = [_tensor(n, 1, j) for j, n in enumerate("aBCDE")]
    tensors = (k1, _tensor("F2", 2, 0), _tensor("F2p", 2, 1), _tensor("F2pp", 2, 2), _tensor("F3", 0, 3))
    return state, tensors, r


def _truncate(e, order=2):
    e = sp.expand(e)
    return sum(e.coeff(eps, k) * eps ** k for k in range(order + 1))


def _on_entries(f, T):
    return np.vectorize(f, otypes=[object])(np.asarray(T, dtype=object))


def _taylor(coeffs, lead):
    """sum_j coeffs[j] . theta^j / j! with ``lead`` free indices first."""
    out = np.empty((P,) * lead, dtype=object)
    for head in itertools.product(range(P), repeat=lead):
        out[head] = sp.expand(sum(c[head + d] * sp.prod([theta[i] for i in d]) / sp.factorial(j)
                                  for j, c in enumerate(coeffs) for d in itertools.product(range(P), repeat=j)))
    return out


def derive():
    """dict name -> object array of the derived (K', G1', G2', V', V1', U') (module docstring)."""
    (_, g1, g2, V, V1, U), (k1c, F2, F2p, F2pp, F3), _ = library_arguments()
    kap = [g1 * eps + g2 * eps ** 2, V * eps + V1 * eps ** 2, U * eps ** 2, np.zeros((P,) * 4, dtype=object)]
    mom = [_on_entries(_truncate, m) for m in moment_tensors_from_cumulants([_on_entries(sp.sympify, k) for k in kap])]

    def expect(e):
        poly = sp.Poly(sp.expand(e), *theta)
        total = 0
        for m, c in zip(poly.monoms(), poly.coeffs()):
            idx = tuple(i for i, k in enumerate(m) for _ in range(k))
            total += c if not idx else (c * mom[len(idx) - 1][idx] if len(idx) <= 4 else 0)
        return _truncate(total)
    k1 = _taylor(k1c, 1)
    k2 = _taylor([F2, F2p, F2pp], 2) * eps / r
    k3 = F3 * eps ** 2 / r ** 2
    mu1 = _on_entries(expect, k1)
    mu2, mu3 = np.empty((P, P), dtype=object), np.empty((P,) * 3, dtype=object)
    for p, q in itertools.product(range(P), repeat=2):
        mu2[p, q] = expect(k2[p, q] + k1[p] * k1[q])
    for p, q, s in itertools.product(range(P), repeat=3):
        mu3[p, q, s] = expect(k3[p, q, s] + k2[p, q] * k1[s] + k2[p, s] * k1[q] + k2[q, s] * k1[p]
                              + k1[p] * k1[q] * k1[s])
    cum = [_on_entries(_truncate, c) for c in cumulant_tensors_from_moments([mu1, mu2, mu3])]
    coeff = lambda T, k, f: _on_entries(lambda e: sp.expand(f * sp.expand(e).coeff(eps, k)), T)  # noqa: E731
    assert all(e == 0 for e in coeff(cum[1], 0, 1).ravel()), "Var(G') must be O(eps)"
    assert all(e == 0 for k in (0, 1) for e in coeff(cum[2], k, 1).ravel()), "kappa_3(G') must be O(eps^2)"
    vals = (coeff(cum[0], 0, 1), coeff(cum[0], 1, r), coeff(cum[0], 2, r ** 2), coeff(cum[1], 1, r),
            coeff(cum[1], 2, r ** 2), coeff(cum[2], 2, r ** 2))
    return dict(zip(NAMES, vals))


def load():
    """The stored derivation: dict name -> object array of sympy expressions."""
    data = json.loads(OUT.read_text())
    parse = lambda e: sp.sympify(e, locals={"r": r, "eps": eps})  # noqa: E731
    return {k: np.array([parse(e) for e in v["entries"]], dtype=object).reshape(v["shape"]) for k, v in data.items()}


def main():
    out = derive()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({k: {"shape": list(v.shape), "entries": [str(e) for e in v.ravel()]}
                               for k, v in out.items()}, indent=1) + "\n")
    print(f"wrote {OUT} ({', '.join(f'{k} {v.shape}' for k, v in out.items())})")


if __name__ == "__main__":
    main()
