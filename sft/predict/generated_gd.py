"""The O(1/n) ensemble mean and covariance after k steps of gradient descent, with their terms generated.

Networks, training and meta-kernels exactly as :mod:`sft.predict.trained_ensemble` (one-output MLPs of any
depth, NTK parameterization, full-batch GD on L = 1/2 sum_a (f(x_a) - y_a)^2 with step eta; N inputs, the
first P of them training inputs; r_t = f_t(X) - y). The only input typed by hand is the effective dynamics
of one GD step (PDLT ch. 11 and ch. oo, Roberts, Yaida & Hanin 2022; Dyer & Gur-Ari 2019; its truncation at
O(1/n) is derived in :mod:`sft.predict.trained_ensemble`), in :data:`RULES`:

    f_{t+1,x}    = f_{t,x} - eta Theta_xa r_a + F_t(x),
    F_t(x)       = - eta H~_xa r_a + (eta^2/2) dH_xab r_a r_b - (eta^3/6) ddHI_xabc r_a r_b r_c,
    H~_{t+1,xy}  = H~_xy - eta (dH_xya + dH_yxa) r_a + (eta^2/2)(ddHI_xyab + ddHI_yxab) r_a r_b
                   + eta^2 ddHII_xyab r_a r_b,                          H~ = H - Theta (fluctuating NTK),
    dH_{t+1,xab} = dH_xab - eta (ddHI_xabc + ddHII_xabc + ddHII_xbac) r_c,        ddH constant,

and the state at step t as its initial value plus its history (A = 1 - eta Theta_XX on the training block,
U = 1 - eta Theta_{., X} on all inputs, G_{t,s} = A^{t-1-s} and P_{t,s} = U^{t-1-s} for s < t):

    H~_t = Theta1 + dTheta + sum_{s<t} (H~ increment)_s,     dH_t = dH + sum_{s<t} (dH increment)_s,
    r_t  = A^t (f0(X) - y) + sum_{s<t} G_{t,s} F_s(X),       f_t = a_t + U^t f0 + phi_t,
    phi_t = sum_{s<t} P_{t,s} F_s                             (a_t the infinite-width mean).

Initial data (eps^2 = 1/n; the meta-kernels are the coefficients of 1/n): f0 Gaussian with E[f0 f0] = K +
eps^2 G1; E[H] = Theta + eps^2 Theta1; dTheta = O(eps) with the cumulants kappa(dTheta, dTheta) = ntk_cov and
kappa(dTheta, f0, f0) = ntk_f2; dH = O(eps^2) with kappa(dH, f0) = dntk_f, kappa(dH, f0, f0, f0) = dntk_f3;
ddHI, ddHII = eps^2 (ddntk_I, ddntk_II). All other cumulants vanish at O(eps^2) (odd ones by the output
sign flip (f, dH) -> -(f, dH), the means of dTheta, dH, f0 by definition; kappa_4(f0) = O(eps^2) never meets
four f0's at this order).

Generator. (1) Starting from F_t (mean) or from (U^t f0 + phi_t)_x (U^t f0 + phi_t)_y (covariance), replace
the state variables by the history lines recursively (each replacement opens a new time label s < t),
dropping every monomial whose least order in eps exceeds 2 (dTheta and phi count 1; dH, Theta1, ddH count
2); this terminates because every history term costs order >= 1. (2) Split r0_s = A^s (f0 - y) = m_s + R_s f0
(m_s = -A^s y the mean residual, R_s = A^s). (3) Average: E[product of the random factors f0, dTheta, dH] =
sum over set partitions (:func:`sft.symbolic.cumulants.set_partitions`, McCullagh 1987 eq. (2.9): Wick's
pairings when every block is a pair) of the products of the block cumulants above; keep the total order eps^2
exactly. (4) Merge terms equal up to renaming of summed labels and the exact index symmetries of the tensors
(:data:`SYMMETRIES`: K, G1, Theta1, A^s symmetric; ntk_cov under a <-> b and (ab) <-> (cd); ntk_f2 in each
pair; dntk_f in its two dNTK slots; dntk_f3 in its dNTK and its f slots; ddntk_I in its last three; ddntk_II
under (x, a) <-> (y, b); the numeric functions check these on their input). Each term is a rational
coefficient x eta^p x one contraction of meta-kernel tensors with the propagators A^s, U^t, G_{t,s}, P_{t,s}
and the mean residual m_s over nested time sums (a :class:`GDTerm`). The mean series is the source of

    c_{t+1}(x) = c_t(x) - eta Theta_xa c_t(x_a) + S_t(x),   c_0 = 0,   E_n[f_t] = a_t + c_t / n + O(1/n^2);

the covariance series is the 1/n coefficient Sigma1_t(x, y) itself (Cov = E[(U^t f0 + phi)(U^t f0 + phi)]
- E phi E phi, the last O(eps^4)): Cov_n(f_t) = U^t K U^t^T + Sigma1_t / n + O(1/n^2).

Generated (:func:`gd_series_latex` prints them, derivations/gd_series.py lists them):
  mean source, 50 terms (57 before the symmetry merging): 2 'ntk' (Theta1 m_t and the NTK variance through
  the linear response of r, eta^2 sum_s G_{t,s} ntk_cov m_s), 5 'dntk' (dntk_f against A^s f0, from the
  eta^2 dH r r step and the H~ drift), 43 'ddntk' (the eta^3 ddHI r^3 step, the H~ drift and the dH drift,
  up to two nested time sums, f0 pairs contracted with K). ntk_f2, dntk_f3 and G1 do not occur in the mean:
  every monomial with dTheta f0 f0, dH f0 f0 f0 or a G1 pair has odd degree in f0 or order above eps^2.
  covariance, 161 terms: 1 'kernel' (U^t G1 U^t^T), 8 'ntk' (Theta1, ntk_cov, ntk_f2), 28 'dntk' (dntk_f,
  dntk_f3), 124 'ddntk'.
Generation takes 0.03 s (mean) and 0.3 s (covariance) on this 2-core machine, once per process (cached).
Evaluation: one ``np.einsum`` per term over time axes of length k + 1 ((k + 1)^2 N^2 propagator arrays),
contraction order by numpy's greedy search, the cheaper of two intermediate-size limits (:func:`_path`).
Measured (2-core CPU, load ~5, N = 6, P = 4, synthetic meta-kernels): mean 0.07 / 0.09 / 0.19 s and
covariance 0.11 / 2.2 / 5.3 s for k = 10 / 100 / 200.

Checks (tests/test_generated_gd.py): the mean equals :func:`sft.predict.gd_mean_correction` (one hidden layer,
the independent neuron-population derivation) to 1e-10 relative to max |c|, part by part, on tanh and erf
cases with P = 2..4, M = 1..2, feature rank 1 and 2, eta = 0.2..0.5, k up to 15; mean and covariance equal
:func:`sft.predict.trained_ensemble_gd` (nested jvp of the same dynamics, no term list) at depth 2 and on
synthetic meta-kernels with every cumulant block nonzero to 1e-10, part by part; dropping any one class, or
any single term, breaks these by orders of magnitude; derivations/gd_series.py unrolls the scalar (N = 1)
dynamics in sympy with an explicit joint law of (f0, dTheta, dH) and gets the same mean and variance to
rounding. Agreement with trained networks (Monte Carlo with error bars) is inherited through
trained_ensemble_gd, checked against :func:`sft.sim.train_ensemble` at depth 2 (tests/test_trained_ensemble.py).
Scope: that of the meta-kernels (smooth activations, any depth); float64 throughout (numpy).
"""
from __future__ import annotations

import functools
import itertools
import string
from fractions import Fraction
from typing import NamedTuple

import numpy as np
import sympy as sp

from ..symbolic.cumulants import set_partitions

__all__ = ["RULES", "SYMMETRIES", "GDTerm", "gd_mean_series", "gd_cov_series", "gd_series_latex",
           "GeneratedGDMean", "generated_gd_mean", "GeneratedGDCov", "generated_gd_cov"]

F_, H_, D_ = "f", "H", "dH"
#: The effective GD dynamics (module docstring): increment -> (its free letters, [(coefficient, power of
#: eta, factors)]); a factor is (name, index letters), letters beyond the free ones are summed. State
#: factors: 'Ht' = H - Theta, 'Dt' = dH, 'r' = residual, all at the increment's step. F excludes -eta Theta r.
RULES = {
    F_: ("x", [(Fraction(-1), 1, (("Ht", "xa"), ("r", "a"))),
               (Fraction(1, 2), 2, (("Dt", "xab"), ("r", "a"), ("r", "b"))),
               (Fraction(-1, 6), 3, (("I", "xabc"), ("r", "a"), ("r", "b"), ("r", "c")))]),
    H_: ("xy", [(Fraction(-1), 1, (("Dt", "xya"), ("r", "a"))),
                (Fraction(-1), 1, (("Dt", "yxa"), ("r", "a"))),
                (Fraction(1, 2), 2, (("I", "xyab"), ("r", "a"), ("r", "b"))),
                (Fraction(1, 2), 2, (("I", "yxab"), ("r", "a"), ("r", "b"))),
                (Fraction(1), 2, (("II", "xyab"), ("r", "a"), ("r", "b")))]),
    D_: ("xab", [(Fraction(-1), 1, (("I", "xabc"), ("r", "c"))),
                 (Fraction(-1), 1, (("II", "xabc"), ("r", "c"))),
                 (Fraction(-1), 1, (("II", "xbac"), ("r", "c")))]),
}
_STATE = ("Ht", "Dt", "r", "phi")
_RANDOM = ("dTheta", "dH", "f0")
#: least order in eps of each factor (the rest are O(1))
_ORDER = {"Ht": 1, "Dt": 2, "phi": 1, "dTheta": 1, "dH": 2, "Theta1": 2, "I": 2, "II": 2}
#: block of random factors (sorted names) -> [(cumulant tensor, its order in eps)]; coupling indices first
_CUMULANTS = {("f0", "f0"): [("K", 0), ("G1", 2)], ("dTheta", "dTheta"): [("ntk_cov", 2)],
              ("dTheta", "f0", "f0"): [("ntk_f2", 2)], ("dH", "f0"): [("dntk_f", 2)],
              ("dH", "f0", "f0", "f0"): [("dntk_f3", 2)]}
_PART = {"Theta1": "ntk", "ntk_cov": "ntk", "ntk_f2": "ntk", "dntk_f": "dntk", "dntk_f3": "dntk",
         "I": "ddntk", "II": "ddntk", "G1": "kernel"}
_T, _X, _Y = -1, -2, -3  # the free time label t and the free input indices x, y
ETA = sp.Symbol("eta", positive=True)


class GDTerm(NamedTuple):
    """One generated term of the mean source S_t(x) or of the covariance Sigma1_t(x, y): ``coefficient`` (sympy,
    rational x eta^p) x the contraction of ``factors`` over all labels except t (label -1), x (-2) and y (-3).
    A factor is (name, time labels, index labels); names: meta-kernel fields (K, G1, Theta1, ntk_cov, ntk_f2,
    dntk_f, dntk_f3, I = ddntk_I, II = ddntk_II), 'm' (m_s, mean residual), 'R' (A^s), 'U' (U^t),
    'G' (G_{t,s} = A^{t-1-s}, s < t), 'P' (P_{t,s} = U^{t-1-s}, s < t), 'lt' (the constraint s < t).
    ``part``: 'kernel', 'ntk', 'dntk' or 'ddntk' (the O(1/n) coupling it contains)."""

    coefficient: sp.Expr
    part: str
    factors: tuple


def _instantiate(rule, time, free, fresh):
    """The terms of an increment at step ``time`` with its free letters bound to the labels ``free``."""
    letters, terms = RULES[rule]
    for coef, power, factors in terms:
        lab = dict(zip(letters, free))
        out = []
        for name, idx in factors:
            for c in idx:
                lab.setdefault(c, next(fresh))
            out.append((name, (time,) if name in _STATE else (), tuple(lab[c] for c in idx)))
        yield coef, power, out


def _substitute(factor, fresh):
    """A state factor at step tau as initial value + history (module docstring): [(coef, power, factors)]."""
    name, (tau,), idx = factor
    s = next(fresh)
    if name == "phi":  # phi_t = f_t - U^t f0 - a_t = sum_{s<t} U^{t-1-s} F_s (no initial value)
        w = next(fresh)
        return [(c, p, [("P", (tau, s), (idx[0], w))] + f) for c, p, f in _instantiate(F_, s, (w,), fresh)]
    if name == "r":
        b = next(fresh)
        return [(Fraction(1), 0, [("r0", (tau,), idx)])] + [
            (c, p, [("G", (tau, s), (idx[0], b))] + f) for c, p, f in _instantiate(F_, s, (b,), fresh)]
    init = [("Theta1", (), idx), ("dTheta", (), idx)] if name == "Ht" else [("dH", (), idx)]
    return [(Fraction(1), 0, [f]) for f in init] + [
        (c, p, [("lt", (tau, s), ())] + f) for c, p, f in _instantiate(H_ if name == "Ht" else D_, s, idx, fresh)]


def _least_order(factors):
    return sum(_ORDER.get(f[0], 0) for f in factors)


def _expand(initial, fresh, order=2):
    """Step (1): every state factor replaced by its history, monomials of least order <= ``order``."""
    work = [(c, p, tuple(f)) for c, p, f in initial]
    done = []
    while work:
        c, p, factors = work.pop()
        i = next((j for j, f in enumerate(factors) if f[0] in _STATE), None)
        if i is None:
            done.append((c, p, factors))
            continue
        for c2, p2, new in _substitute(factors[i], fresh):
            fs = factors[:i] + tuple(new) + factors[i + 1:]
            if _least_order(fs) <= order:
                work.append((c * c2, p + p2, fs))
    return done


def _average(c, p, factors, fresh, order=2):
    """Steps (2)-(3): split r0 = m + R f0 and sum over set partitions of the random factors into cumulants."""
    r0 = [f for f in factors if f[0] == "r0"]
    rest = [f for f in factors if f[0] != "r0"]
    for choice in itertools.product((0, 1), repeat=len(r0)):
        fs = list(rest)
        for pick, (_, t, (a,)) in zip(choice, r0):
            if pick:
                b = next(fresh)
                fs += [("R", t, (a, b)), ("f0", (), (b,))]
            else:
                fs.append(("m", t, (a,)))
        rnd = [f for f in fs if f[0] in _RANDOM]
        det = [f for f in fs if f[0] not in _RANDOM]
        parts = set_partitions(len(rnd)) if rnd else [[]]
        for partition in parts:
            options = []
            for block in partition:
                fb = sorted((rnd[i] for i in block), key=lambda f: _RANDOM.index(f[0]))
                key = tuple(sorted(f[0] for f in fb))
                idx = sum((f[2] for f in fb), ())
                options.append([((name, (), idx), o) for name, o in _CUMULANTS.get(key, [])])
            for combo in itertools.product(*options):
                if _least_order(det) + sum(o for _, o in combo) == order:
                    yield c, p, tuple(det) + tuple(f for f, _ in combo)


def _group(generators, rank):
    """All index permutations generated by ``generators`` (closure under composition)."""
    group, todo = {tuple(range(rank))}, [tuple(range(rank))]
    while todo:
        g = todo.pop()
        for h in generators:
            gh = tuple(g[i] for i in h)
            if gh not in group:
                group.add(gh)
                todo.append(gh)
    return sorted(group)


#: exact index symmetries of the tensors (meta-kernel definitions; A^s is symmetric with Theta_XX)
SYMMETRIES = {name: _group(gens, rank) for name, (gens, rank) in {
    "K": ([(1, 0)], 2), "G1": ([(1, 0)], 2), "Theta1": ([(1, 0)], 2), "R": ([(1, 0)], 2), "G": ([(1, 0)], 2),
    "ntk_cov": ([(1, 0, 2, 3), (2, 3, 0, 1)], 4), "ntk_f2": ([(1, 0, 2, 3), (0, 1, 3, 2)], 4),
    "dntk_f": ([(0, 2, 1, 3)], 4), "dntk_f3": ([(0, 2, 1, 3, 4, 5), (0, 1, 2, 4, 3, 5), (0, 1, 2, 3, 5, 4)], 6),
    "I": ([(0, 2, 1, 3), (0, 1, 3, 2)], 4), "II": ([(1, 0, 3, 2)], 4)}.items()}


def _canonical(factors):
    """Step (4): the lexicographically smallest relabelling of the summed labels over all orderings of the
    factors and all index symmetries of each tensor (:data:`SYMMETRIES`), by a greedy search that branches
    only on ties and prunes prefixes above the best found (free labels t, x, y stay fixed)."""
    variants = [[(n, ts, tuple(ix[i] for i in g)) for g in SYMMETRIES.get(n, [tuple(range(len(ix)))])]
                for n, ts, ix in factors]
    best = [None]

    def relabel(f, lab):
        lab = dict(lab)
        n, ts, ix = f
        return (n, tuple(lab.setdefault(t, len(lab)) for t in ts),
                tuple(lab.setdefault(i, len(lab)) for i in ix)), lab

    def search(prefix, lab, remaining):
        if not remaining:
            best[0] = prefix if best[0] is None or prefix < best[0] else best[0]
            return
        cands = [(*relabel(v, lab), j) for j in remaining for v in variants[j]]
        low = min(c[0] for c in cands)
        if best[0] is not None and prefix + (low,) > best[0][:len(prefix) + 1]:
            return
        seen = set()
        for form, lab2, j in cands:
            key = (j, tuple(sorted(lab2.items())))
            if form == low and key not in seen:
                seen.add(key)
                search(prefix + (form,), lab2, remaining - {j})

    search((), {_T: _T, _X: _X, _Y: _Y}, frozenset(range(len(factors))))
    return best[0]


def _series(initial, fresh):
    """Steps (1)-(4) from the initial monomials: the merged terms, sorted by class."""
    merged = {}
    for c, p, factors in _expand(initial, fresh):
        for c2, p2, fs in _average(c, p, factors, fresh):
            key = (p2, _canonical(fs))
            merged[key] = merged.get(key, 0) + c2
    terms = []
    for (p, fs), c in merged.items():
        if c != 0:
            part = next(_PART[f[0]] for f in fs if f[0] in _PART)
            terms.append(GDTerm(sp.Rational(c.numerator, c.denominator) * ETA ** p, part, fs))
    order = ("kernel", "ntk", "dntk", "ddntk")
    return tuple(sorted(terms, key=lambda t: (order.index(t.part), len(t.factors), str(t.factors))))


@functools.lru_cache(maxsize=None)
def gd_mean_series() -> tuple:
    """The generated source of the O(1/n) mean after GD: a tuple of :class:`GDTerm` (module docstring).

    S_t(x) = sum over the terms of coefficient x contraction; the 1/n mean correction follows from
    c_{t+1} = c_t - eta Theta_{x, X} c_t(X) + S_t, c_0 = 0 (:func:`generated_gd_mean`).

    >>> terms = gd_mean_series()
    >>> len(terms), sorted({t.part for t in terms})
    (50, ['ddntk', 'dntk', 'ntk'])
    >>> [t for t in terms if t.part == "ntk"][0].coefficient
    -eta
    """
    fresh = itertools.count(1)
    return _series(_instantiate(F_, _T, (_X,), fresh), fresh)


@functools.lru_cache(maxsize=None)
def gd_cov_series() -> tuple:
    """The generated O(1/n) covariance after t GD steps: a tuple of :class:`GDTerm` with free labels t, x, y.

    f_t = a_t + U^t f0 + phi_t (U = 1 - eta Theta_{., X} on all N inputs, phi_t = sum_{s<t} U^{t-1-s} F_s),
    so Cov(f_t(x), f_t(y)) = E[(U^t f0 + phi_t)_x (U^t f0 + phi_t)_y] + O(eps^4) (E phi = O(eps^2)); the 1/n
    coefficient is the sum of the terms (module docstring: the same expansion, averaging and merging; the
    extra factors are 'U' (U^t) and 'P' (U^{t-1-s}, s < t)).

    >>> terms = gd_cov_series()
    >>> sorted({t.part for t in terms}), [t.coefficient for t in terms if t.part == "kernel"]
    (['ddntk', 'dntk', 'kernel', 'ntk'], [1])
    """
    fresh = itertools.count(1)
    z, w = next(fresh), next(fresh)
    lin = lambda x, z: [("U", (_T,), (x, z)), ("f0", (), (z,))]  # noqa: E731
    phi = lambda x: [("phi", (_T,), (x,))]  # noqa: E731
    initial = [(Fraction(1), 0, a + b) for a in (lin(_X, z), phi(_X)) for b in (lin(_Y, w), phi(_Y))]
    return _series(initial, fresh)


_TEX = {"K": "K", "G1": r"G^{\{1\}}", "Theta1": r"\Theta^{\{1\}}", "ntk_cov": r"\Sigma^{\Theta\Theta}",
        "ntk_f2": r"\Sigma^{\Theta ff}", "dntk_f": r"P^{\mathrm{d}H f}", "dntk_f3": r"P^{\mathrm{d}H fff}",
        "I": r"\mathrm{dd_I}H", "II": r"\mathrm{dd_{II}}H"}


def _term_latex(term):
    times, idx = {_T: "t"}, {_X: "x", _Y: "y"}
    tl, il = iter("suvwpq"), iter("abcdeghijklnorz")
    name_t = lambda s: times[s] if s in times else times.setdefault(s, next(tl))  # noqa: E731
    name_i = lambda s: "".join(idx[i] if i in idx else idx.setdefault(i, next(il)) for i in s)  # noqa: E731
    sums, body = [], []
    for name, ts, ix in sorted(term.factors, key=lambda f: f[1][0] != _T if f[0] in ("lt", "G", "P") else True):
        if name in ("lt", "G", "P"):
            sums.append(rf"\sum_{{{name_t(ts[1])}<{name_t(ts[0])}}}")
    for name, ts, ix in term.factors:
        if name in ("G", "P"):
            body.append(rf"({dict(G='A', P='U')[name]}^{{{name_t(ts[0])}-1-{name_t(ts[1])}}})_{{{name_i(ix)}}}")
        elif name in ("R", "U"):
            body.append(rf"({name.replace('R', 'A')}^{{{name_t(ts[0])}}})_{{{name_i(ix)}}}")
        elif name == "m":
            body.append(rf"m^{{({name_t(ts[0])})}}_{{{name_i(ix)}}}")
        elif name != "lt":
            body.append(rf"{_TEX[name]}_{{{name_i(ix)}}}")
    c = {"1": "+", "-1": "-"}.get(sp.latex(term.coefficient), sp.latex(term.coefficient))
    c = c if c[0] in "+-" else "+" + c
    return c + " " + " ".join(sums + body)


def gd_series_latex(kind="mean") -> str:
    r"""LaTeX of a generated series, one line per term class: ``kind`` 'mean' (the source S_t(x) of the mean
    recursion) or 'cov' (the 1/n covariance Sigma1_t(x, y)). A = 1 - \eta\Theta_{XX} on the training block,
    U = 1 - \eta\Theta_{\cdot X} on all inputs; summed indices run over the inputs (A and m vanish off the
    training block).

    >>> print(gd_series_latex("mean").splitlines()[0])
    S^{\mathrm{ntk}}_t(x) = - \eta \Theta^{\{1\}}_{xa} m^{(t)}_{a} +\eta^{2} \sum_{s<t} (A^{t-1-s})_{ab} m^{(s)}_{c} \Sigma^{\Theta\Theta}_{xabc}
    >>> print(gd_series_latex("cov").splitlines()[0])
    \Sigma^{\mathrm{kernel}}_t(x, y) = G^{\{1\}}_{ab} (U^{t})_{ya} (U^{t})_{xb}
    """
    if kind not in ("mean", "cov"):
        raise ValueError(f"kind={kind!r} is not allowed: give 'mean' or 'cov'")
    terms = gd_mean_series() if kind == "mean" else gd_cov_series()
    head = (lambda p: rf"S^{{\mathrm{{{p}}}}}_t(x) = ") if kind == "mean" else (
        lambda p: rf"\Sigma^{{\mathrm{{{p}}}}}_t(x, y) = ")
    lines = []
    for part in ("kernel", "ntk", "dntk", "ddntk"):
        body = " ".join(_term_latex(t) for t in terms if t.part == part)
        if body:
            lines.append(head(part) + body.replace("+-", "-").lstrip("+").lstrip())
    return "\n".join(lines)


class GeneratedGDMean(NamedTuple):
    """Result of :func:`generated_gd_mean`: steps (T,); mean (T, N) the infinite-width mean m_t; correction
    (T, N) the coefficient c_t of 1/n; parts {'ntk', 'dntk', 'ddntk'} -> (T, N), summing to correction."""

    steps: np.ndarray
    mean: np.ndarray
    correction: np.ndarray
    parts: dict


class GeneratedGDCov(NamedTuple):
    """Result of :func:`generated_gd_cov`: steps (T,); cov (T, N, N) the infinite-width covariance
    U^t K U^t^T; correction (T, N, N) the coefficient of 1/n; parts {'kernel', 'ntk', 'dntk', 'ddntk'} ->
    (T, N, N), summing to correction."""

    steps: np.ndarray
    cov: np.ndarray
    correction: np.ndarray
    parts: dict


def _einsum(term, tensors, eta, free):
    """coefficient x contraction of one term, output axes ``free`` (labels)."""
    letters, specs, ops = {}, [], []
    name = lambda s: letters.setdefault(s, string.ascii_letters[len(letters)])  # noqa: E731
    for f, ts, ix in term.factors:
        specs.append("".join(name(s) for s in (*ts, *ix)))
        ops.append(tensors[f])
    expr = ",".join(specs) + "->" + "".join(name(s) for s in free)
    return float(term.coefficient.subs(ETA, eta)) * np.einsum(expr, *ops, optimize=_path(expr, ops))


def _path(expr, ops):
    """The cheaper of numpy's greedy contraction orders with the default intermediate-size limit (the largest
    operand) and with 10^6 elements: the nested time sums need intermediates larger than any operand (for
    k = 100 steps the mean runs ~100x faster with them), some covariance terms are faster without."""
    best = None
    for limit in (None, 1e6):
        path, report = np.einsum_path(expr, *ops, optimize="greedy" if limit is None else ("greedy", limit))
        flops = float(report.split("Optimized FLOP count:")[1].split()[0])
        best = (flops, path) if best is None or flops < best[0] else best
    return best[1]


_FIELD = {"I": "ddntk_I", "II": "ddntk_II", "Theta": "Theta"}


def _check_symmetries(mk):
    """ValueError unless every meta-kernel has the index symmetries the term merging uses (:data:`SYMMETRIES`)."""
    for name, group in [*SYMMETRIES.items(), ("Theta", [(1, 0)])]:
        field = _FIELD.get(name, name)
        if field not in mk:
            continue
        T = mk[field]
        scale = np.max(np.abs(T), initial=0.0)
        for g in group:
            dev = np.max(np.abs(T - np.transpose(T, g)), initial=0.0)
            if dev > 1e-10 * scale:
                raise ValueError(f"meta_kernels.{field} is not symmetric under the axes permutation {g}: max "
                                 f"deviation {dev:.3g} > 1e-10 x max |{field}| = {1e-10 * scale:.3g}; the "
                                 "meta-kernels have this symmetry by definition (sft.finite.meta_kernels)")


def _setup(meta_kernels, y_train, n_train, learning_rate, n_steps, record_every):
    """Validated input and the tensors of the terms over the times 0..k (module docstring; U = 1 - eta
    Theta_{., X}, R_s = A^s = the training block of U^s, G_{t,s} = A^{t-1-s}, P_{t,s} = U^{t-1-s})."""
    from ..sim.training import _check_schedule  # noqa: PLC0415
    from .trained_ensemble import _meta, _warn_unstable  # noqa: PLC0415
    eta, k, every = _check_schedule(learning_rate, n_steps, record_every)
    mk, y, lt = _meta(meta_kernels, n_train, y_train)
    _check_symmetries(mk)
    _warn_unstable(eta, lt)
    N, P = mk["K"].shape[0], n_train
    ThX = np.zeros((N, N))
    ThX[:, :P] = mk["Theta"][:, :P]  # Theta with the training columns only
    U = np.eye(N) - eta * ThX
    Upow = np.stack([np.linalg.matrix_power(U, s) for s in range(k + 1)])
    train = np.zeros((N, N))
    train[:P, :P] = 1.0
    t = np.arange(k + 1)
    lower = (t[None, :] < t[:, None]).astype(float)  # lt[tau, s] = [s < tau]
    back = np.clip(t[:, None] - 1 - t[None, :], 0, None)
    y_pad = np.zeros(N)
    y_pad[:P] = y
    tensors = dict(mk, I=mk["ddntk_I"], II=mk["ddntk_II"], lt=lower, R=Upow * train, U=Upow,
                   G=lower[:, :, None, None] * (Upow * train)[back], P=lower[:, :, None, None] * Upow[back],
                   m=-(Upow * train) @ y_pad)
    return tensors, eta, k, every, ThX, y_pad


def _sum_terms(terms, default, tensors, eta, free, parts):
    out = {p: 0.0 for p in parts}
    allowed = set(default)
    for term in default if terms is None else terms:
        if term not in allowed:
            raise ValueError(f"terms contains {term!r}: give entries of gd_mean_series() for the mean, of "
                             "gd_cov_series() for the covariance")
        out[term.part] = out[term.part] + _einsum(term, tensors, eta, free)
    return out


def generated_gd_mean(meta_kernels, y_train, *, n_train, learning_rate, n_steps, record_every=1,
                      terms=None) -> GeneratedGDMean:
    """E_n[f_t] = m_t + c_t / n + O(1/n^2) after t GD steps, c_t from the generated series (module docstring).

    Arguments as :func:`sft.predict.trained_ensemble_gd`: ``meta_kernels`` on N inputs (the first
    ``n_train`` = P the training inputs; :func:`sft.finite.output_meta_kernels` or any object with its
    fields), y_train (P,), learning_rate eta > 0, n_steps k >= 0, recorded every ``record_every`` steps.
    ``terms``: the :class:`GDTerm` s to sum (default: all of :func:`gd_mean_series`; a subset shows what one
    term or class contributes). Returns a :class:`GeneratedGDMean` over t = 0, r, .., k and all N inputs.

    >>> from sft.predict.trained_ensemble import _toy_meta_kernels
    >>> r = generated_gd_mean(_toy_meta_kernels(3, seed=0), np.array([0.5, -0.3]), n_train=2,
    ...                       learning_rate=0.2, n_steps=4)
    >>> r.correction.shape, float(abs(r.correction[0]).max()), sorted(r.parts)
    ((5, 3), 0.0, ['ddntk', 'dntk', 'ntk'])
    """
    tensors, eta, k, every, ThX, y_pad = _setup(meta_kernels, y_train, n_train, learning_rate, n_steps,
                                                record_every)
    sources = _sum_terms(terms, gd_mean_series(), tensors, eta, (_T, _X), ("ntk", "dntk", "ddntk"))
    N = len(y_pad)
    parts = {}
    for p, S in sources.items():
        c = np.zeros((k + 1, N))
        for s in range(k):
            c[s + 1] = c[s] - eta * ThX @ c[s] + (S[s] if np.ndim(S) else 0.0)
        parts[p] = c[::every]
    m = np.zeros((k + 1, N))
    for s in range(k):
        m[s + 1] = m[s] - eta * ThX @ (m[s] - y_pad)
    return GeneratedGDMean(np.arange(0, k + 1, every), m[::every], sum(parts.values()), parts)


def generated_gd_cov(meta_kernels, y_train, *, n_train, learning_rate, n_steps, record_every=1,
                     terms=None) -> GeneratedGDCov:
    """Cov_n(f_t) = Sigma_t + Sigma1_t / n + O(1/n^2) after t GD steps, Sigma1 from :func:`gd_cov_series`.

    Arguments as :func:`generated_gd_mean` (``terms`` from :func:`gd_cov_series`). Returns a
    :class:`GeneratedGDCov` over t = 0, r, .., k and all N x N input pairs.

    >>> from sft.predict.trained_ensemble import _toy_meta_kernels
    >>> mk = _toy_meta_kernels(3, seed=0)
    >>> r = generated_gd_cov(mk, np.array([0.5, -0.3]), n_train=2, learning_rate=0.2, n_steps=4)
    >>> r.correction.shape, bool(np.allclose(r.correction[0], mk.G1, rtol=1e-13, atol=0))   # t = 0: G1
    ((5, 3, 3), True)
    """
    tensors, eta, k, every, _, _ = _setup(meta_kernels, y_train, n_train, learning_rate, n_steps, record_every)
    parts = _sum_terms(terms, gd_cov_series(), tensors, eta, (_T, _X, _Y), ("kernel", "ntk", "dntk", "ddntk"))
    N = tensors["K"].shape[0]
    parts = {p: np.broadcast_to(v, (k + 1, N, N))[::every] for p, v in parts.items()}
    U = tensors["U"]
    cov = np.einsum("txa,ab,tyb->txy", U, tensors["K"], U)[::every]
    return GeneratedGDCov(np.arange(0, k + 1, every), cov, sum(parts.values()), parts)
