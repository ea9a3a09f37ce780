"""Derivation of the one-layer step of the meta-kernel recursion (sft.finite.meta_kernels.meta_kernel_step).

Layer l + 1 of an MLP (:mod:`sft.conventions`, NTK parameterization): z'_i = b_i + sum_j W_ij sigma(z_j),
W_ij = sqrt(C / n) omega_ij, b_i = sqrt(C_b) beta_i, n = n_l, m = n_{l-1}, r = n / m. The meta-kernels of
layer l + 1 are the correlators (slots 0..3 stand for (neuron i_k, input a_k); D_mu = d/d omega_mu over
the parameters of layers <= l + 1, repeated indices summed)

    dH z:   n E[(D_mu D_nu z'_0)(D_mu z'_1)(D_nu z'_2) z'_3]       = d03 d12 P' + d01 d23 Q'_0123 + d02 d13 Q'_0213
    ddHI:   n E[(D_mu D_nu D_rho z'_0)(D_mu z'_1)(D_nu z'_2)(D_rho z'_3)] = d01 d23 R'_0123 + d02 d13 R'_0231
                                                                          + d03 d12 R'_0312
    ddHII:  n E[(D_mu D_nu z'_0)(D_rho D_nu z'_1)(D_mu z'_2)(D_rho z'_3)] = d01 d23 S' + d02 d13 T' + d03 d12 U'

(leading order in 1/n; the definitions of :mod:`sft.finite.meta_kernels`). This script generates the
right-hand sides term by term, with no formula typed in:

1. Parameter types. Every derivative index is either a parameter of layers <= l ("old"), a new weight
   omega_{i'j} or a new bias beta_{i'}. z' is linear in the new parameters: a slot carries at most one
   new index; a new bias survives only on a slot differentiated by it alone (D_beta z'_i = sqrt(C_b) delta).
2. Chain rule. A slot with old indices I is sum_j W_{i j} D_I sigma(z_j) (plus b_i when I is empty); a slot
   differentiated by a new weight mu = omega_{i'j} is sqrt(C/n) delta_{i i'} D_{I \\ mu} sigma(z_j) (a
   "ghost" of a weight). D_I sigma(z_j) by Faa di Bruno: a sum over the set partitions pi of I
   (sft.symbolic.set_partitions) of sigma^(|pi|)(z_j) prod_{B in pi} D_B z_j.
3. Wick. The new-layer weights are independent of layers <= l: E over them is the sum over perfect
   matchings (sft.symbolic.perfect_matchings) of the W's (and b's) of the slots, each pair giving
   delta_{i i'} delta_{j j'} C / n (b: delta_{i i'} C_b); the two ghosts of one new weight pair the same way
   (the sum over the new weight omega_{i'j}). Every term is a perfect matching of the four slots
   (hence one of the three neuron structures d01 d23, d02 d13, d03 d12), one lower neuron per matched pair.
4. Lower-layer objects. The factors D_B z_{j;a} are linked by their shared old indices; the linked groups
   are exactly the lower-layer NTK H_{jk;ab} (two single-index factors), dNTK dH (a two-index factor and
   its two partners), ddNTK I (a three-index factor and three partners) and ddNTK II (a path of two
   two-index factors), each with its neurons and inputs.
5. Neuron sums. The two lower neurons j, k of the matched pairs are summed: j = k (n terms) and j != k
   (n (n - 1) terms). At leading order in 1/m (layer-l statistics, definitions as in meta_kernels.py and
   ntk_fluctuations_multi; <.> the Gaussian mean at K^(l)):
     * j = k: H_jj -> Theta; a dH or ddH makes the term O(1/n^2) (dropped). The term is a four-factor
       Gaussian mean (the "fresh" term).
     * j != k: exactly one source of correlation between the neurons at O(1/m), all other lower objects at
       their means (H_jj -> Theta; diagonal dH, ddH, or two sources: O(1/m^2), dropped):
         two off-diagonal NTKs:  E[H_{jk;ab} H_{jk;cd} f(z_j) g(z_k)] = B_(ac)(bd) <f> <g> / m,
         one off-diagonal NTK:   E[H_{jk;ab} f(z_j) g(z_k)] = F_(ax)(by) <d_x f> <d_y g> / m  (Stein),
         a dNTK:  E[dH_{jkk;abc} f_j g_k] = P_abcx <d_x f> <g> / m,  E[dH_{jjk;abc} f_j g_k] = Q_abcx <f> <d_x g> / m,
         a ddNTK: E[ddHI_{jjkk;abcd}] = R_abcd / m (jkjk: R_acdb, jkkj: R_adbc),
                  E[ddHII_{jjkk}] = S_abcd / m, E[ddHII_{jkjk}] = T_abcd / m, E[ddHII_{jkkj}] = U_abcd / m.
       A j != k term with no source is O(1) and disconnected; none occurs (asserted).
   The coefficient n (C/n)^2 (count) (1/m)^(0 or 1) is reduced to its limit (sympy): C^2 (fresh) or C^2 r.

The output (:func:`derive`) is, for each of P' .. U', a list of terms (coefficient, factors); factors are
Theta[a, b], the layer-l tensors B, F, P, Q, R, S, T, U, and the Gaussian means M_<kinds>[inputs] =
<prod sigma^(kind)(z_input)> and Y_<kinds>[inputs, x] = <d_x prod ...> (kinds s, d, e, t = sigma ..
sigma'''), with repeated dummies x, y summed. :func:`as_sympy` writes them as sympy expressions (Indexed
objects, Einstein sums); :func:`evaluate` evaluates them on arrays.

Result (tests/test_derivations_meta_step.py; run this script to print the terms). The generated step
equals meta_kernel_step term for term: on random lower-layer tensors with the symmetries of the
definitions and random Gaussian-mean tensors (the means as independent symbols), P' .. U' agree with the
smooth-sigma formulas of sft.finite.meta_kernels (as ``sft.finite.meta_kernels_batched._meta_step``)
to rounding for N = 1, 2, 3 inputs, and with meta_kernel_step on the real Gaussian means of tanh;
removing any one generated term breaks the agreement. The two Q structures (d01 d23 and d02 d13) come
out as the same tensor with permuted labels, and so do the three R structures, as the definitions
require. Counts after collecting equal terms: P' 3, Q' 5, R' 7, S' 5, T' 13, U' 2
(printed by the script). No term of the code is missing here and no generated term is missing in the code:
the derivation confirms meta_kernel_step everywhere and differs nowhere.

What is generated and what is put in: steps 1-4 and the bookkeeping of step 5 (which neurons coincide,
the counting, the orders in 1/n, the index order of each lower-layer tensor) are generated; the
leading-order laws of step 5 (Theta for a diagonal NTK, the B, F, P .. U forms with Gaussian linear
response) are the definitions of the layer-l tensors plus Stein's lemma, stated above and not re-derived
here (they are checked by Monte Carlo through tests/test_meta_kernels.py). Smooth sigma; for kinked sigma
the code takes the same formulas with sigma'', sigma''' as distributions (module docstring of
sft.finite.meta_kernels).

Run: python derivations/meta_kernel_step.py (writes derivations/out/meta_kernel_step.md)
"""
from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np
import sympy as sp

from sft.symbolic import perfect_matchings, set_partitions

KINDS = "sdet"  # sigma, sigma', sigma'', sigma'''
# the derivative indices of the four slots of each correlator
CORRELATORS = {
    "dH_z": (("mu", "nu"), ("mu",), ("nu",), ()),
    "ddHI": (("mu", "nu", "rho"), ("mu",), ("nu",), ("rho",)),
    "ddHII": (("mu", "nu"), ("rho", "nu"), ("mu",), ("rho",)),
}
# neuron structure (pairs of slots) -> (name of the output tensor, its labels in terms of slots 0..3)
STRUCTURES = {
    "dH_z": {((0, 3), (1, 2)): ("P", (0, 1, 2, 3)), ((0, 1), (2, 3)): ("Q", (0, 1, 2, 3)),
             ((0, 2), (1, 3)): ("Q", (0, 2, 1, 3))},
    "ddHI": {((0, 1), (2, 3)): ("R", (0, 1, 2, 3)), ((0, 2), (1, 3)): ("R", (0, 2, 3, 1)),
             ((0, 3), (1, 2)): ("R", (0, 3, 1, 2))},
    "ddHII": {((0, 1), (2, 3)): ("S", (0, 1, 2, 3)), ((0, 2), (1, 3)): ("T", (0, 1, 2, 3)),
              ((0, 3), (1, 2)): ("U", (0, 1, 2, 3))},
}
C, Cb, n, r = sp.symbols("C C_b n r", positive=True)


# ------------------------------------------------------------------ steps 1-3: chain rule and Wick
def _faa_di_bruno(indices):
    """[(kind, blocks)]: D_I sigma(z) = sum over set partitions of I of sigma^(#blocks) prod_B D_B z."""
    if not indices:
        return [("s", ())]
    out = []
    for part in set_partitions(len(indices)):
        out.append((KINDS[len(part)], tuple(frozenset(indices[i] for i in b) for b in part)))
    return out


def _slot_options(I, types):
    """Alternatives for one slot: (mode, tag, kind, blocks); mode W (sum_j W_ij ...), bvar (b_i), ghost
    (new weight tag), bghost (new bias tag). None if the slot vanishes."""
    new = [p for p in I if types[p] != "old"]
    if len(new) > 1:
        return None
    if new:
        p = new[0]
        if types[p] == "b":
            return [("bghost", p, None, ())] if len(I) == 1 else None
        rest = tuple(q for q in I if q != p)
        return [("ghost", p, k, bl) for k, bl in _faa_di_bruno(rest)]
    opts = [("W", None, k, bl) for k, bl in _faa_di_bruno(I)]
    if not I:
        opts.append(("bvar", None, None, ()))
    return opts


def _contractions(slots):
    """Yield (pairs, kinds, blocks, bias_pairs): the Wick-contracted terms of the product of the four slots."""
    params = sorted({p for I in slots for p in I})
    for types in itertools.product(("old", "w", "b"), repeat=len(params)):
        types = dict(zip(params, types))
        opts = [_slot_options(I, types) for I in slots]
        if any(o is None for o in opts):
            continue
        for choice in itertools.product(*opts):
            pairs = []
            for mode in ("ghost", "bghost"):
                tags = defaultdict(list)
                for s, c in enumerate(choice):
                    if c[0] == mode:
                        tags[c[1]].append(s)
                pairs += [(tuple(v), mode == "bghost") for v in tags.values()]
            w_free = [s for s, c in enumerate(choice) if c[0] == "W"]
            b_free = [s for s, c in enumerate(choice) if c[0] == "bvar"]
            for wm in perfect_matchings(w_free):
                for bm in perfect_matchings(b_free):
                    all_pairs = pairs + [(p, False) for p in wm] + [(p, True) for p in bm]
                    yield all_pairs, [c[2] for c in choice], [c[3] for c in choice]


# ------------------------------------------------------------------ step 4: lower-layer objects
def _objects(blocks):
    """Group the factors D_B z (slot, B) into lower-layer objects: [(type, slots in canonical order)]."""
    factors = [(s, B) for s, bl in enumerate(blocks) for B in bl]
    where = defaultdict(list)
    for f, (s, B) in enumerate(factors):
        for p in B:
            where[p].append(f)
    assert all(len(v) == 2 for v in where.values())
    parent = list(range(len(factors)))

    def find(a):
        while parent[a] != a:
            a = parent[a]
        return a
    for a, b in where.values():
        parent[find(a)] = find(b)
    comps = defaultdict(list)
    for f in range(len(factors)):
        comps[find(f)].append(f)
    objs = []
    for fs in comps.values():
        sizes = sorted(len(factors[f][1]) for f in fs)
        partner = lambda f, p: next(g for g in where[p] if g != f)  # noqa: E731
        slot = lambda f: factors[f][0]  # noqa: E731
        if sizes == [1, 1]:
            objs.append(("H", tuple(slot(f) for f in fs)))
        elif sizes == [1, 1, 2]:
            c = next(f for f in fs if len(factors[f][1]) == 2)
            objs.append(("dH", (slot(c),) + tuple(sorted(slot(partner(c, p)) for p in factors[c][1]))))
        elif sizes == [1, 1, 1, 3]:
            c = next(f for f in fs if len(factors[f][1]) == 3)
            objs.append(("ddHI", (slot(c),) + tuple(sorted(slot(partner(c, p)) for p in factors[c][1]))))
        elif sizes == [1, 1, 2, 2]:
            c0, c1 = [f for f in fs if len(factors[f][1]) == 2]
            (nu,) = factors[c0][1] & factors[c1][1]
            (mu,) = factors[c0][1] - {nu}
            (rho,) = factors[c1][1] - {nu}
            objs.append(("ddHII", (slot(c0), slot(c1), slot(partner(c0, mu)), slot(partner(c1, rho)))))
        else:
            raise AssertionError(f"unexpected lower-layer object with factor sizes {sizes}")
    return objs


# ------------------------------------------------------------------ step 5: neuron sums at leading order
_DH_RULE = {(0, 1, 1): ("P", "center"), (0, 0, 1): ("Q", "abc"), (0, 1, 0): ("Q", "acb")}
_DDH_RULE = {"ddHI": {(0, 0, 1, 1): ("R", (0, 1, 2, 3)), (0, 1, 0, 1): ("R", (0, 2, 3, 1)),
                      (0, 1, 1, 0): ("R", (0, 3, 1, 2))},
             "ddHII": {(0, 0, 1, 1): ("S", (0, 1, 2, 3)), (0, 1, 0, 1): ("T", (0, 1, 2, 3)),
                       (0, 1, 1, 0): ("U", (0, 1, 2, 3))}}


def _mean(kinds, slots, weight=None):
    """A Gaussian mean factor: ("M_ddes", labels) with the factors sorted by kind (or Y_.. with a weight)."""
    fac = sorted((k, s) for k, s in zip(kinds, slots) if k is not None)
    name = ("Y_" if weight is not None else "M_") + "".join(k for k, _ in fac)
    return (name, tuple(f"a{s}" for _, s in fac) + ((weight,) if weight is not None else ()))


def _leading(objs, kinds, label, same):
    """[(order in 1/m: 0 or 1, factors)] of E[objects x sigma-factors] at leading order, for neuron
    labels label[slot] (0 or 1) when the two lower neurons are equal (same) or distinct."""
    th = lambda sl: ("Theta", tuple(f"a{s}" for s in sl))  # noqa: E731
    slots = range(4)
    if same:
        if any(t != "H" for t, _ in objs):
            return []  # a dNTK or ddNTK at one neuron: O(1/m) more
        return [(0, [th(sl) for _, sl in objs] + [_mean(kinds, slots)])]
    cls = [[s for s in slots if label[s] == c] for c in (0, 1)]
    mixed = [(t, sl) for t, sl in objs if len({label[s] for s in sl}) == 2]
    diag = [(t, sl) for t, sl in objs if len({label[s] for s in sl}) == 1]
    if any(t != "H" for t, _ in diag):
        if not mixed:
            raise AssertionError("a diagonal dNTK/ddNTK with no other source (not expected at this order)")
        return []
    thetas = [th(sl) for _, sl in diag]
    M = lambda c, w=None: _mean([kinds[s] for s in cls[c]], cls[c], w)  # noqa: E731
    if not mixed:
        return [("disconnected", [])]
    types = sorted(t for t, _ in mixed)
    if types == ["H", "H"]:
        (_, (a, b)), (_, (c, d)) = mixed
        if label[a] != 0:
            a, b = b, a
        if label[c] != 0:
            c, d = d, c
        # E[H_{jk;ab} H_{jk;cd}] = B_(ac)(bd) / m
        return [(1, thetas + [("B", (f"a{a}", f"a{c}", f"a{b}", f"a{d}")), M(0), M(1)])]
    if len(mixed) > 1:
        return []  # two sources: O(1/m^2)
    (t, sl), = mixed
    if t == "H":
        a, b = sl if label[sl[0]] == 0 else sl[::-1]
        return [(1, thetas + [("F", (f"a{a}", "x", f"a{b}", "y")), M(0, "x"), M(1, "y")])]
    lab = tuple(label[s] for s in sl)
    flip = lab[0] == 1  # relabel so that the first slot's neuron is class 0
    lab0 = tuple(1 - v for v in lab) if flip else lab
    c0, c1 = (1, 0) if flip else (0, 1)
    if t == "dH":
        name, how = _DH_RULE[lab0]
        a, b, c = sl
        if how == "center":    # P: linear response at the center's neuron
            return [(1, thetas + [("P", (f"a{a}", f"a{b}", f"a{c}", "x")), M(c0, "x"), M(c1)])]
        if how == "acb":
            b, c = c, b
        return [(1, thetas + [("Q", (f"a{a}", f"a{b}", f"a{c}", "x")), M(c0), M(c1, "x")])]
    name, perm = _DDH_RULE[t][lab0]
    return [(1, thetas + [(name, tuple(f"a{sl[p]}" for p in perm)), M(c0), M(c1)])]


def _canonical(factors):
    """Sort the factors and rename the dummies x, y in order of appearance (to collect equal terms)."""
    def key(f):
        return (f[0], tuple(s if s.startswith("a") else "~" for s in f[1]))
    fs = sorted(factors, key=key)
    ren = {}
    for _, labs in fs:
        for s in labs:
            if not s.startswith("a") and s not in ren:
                ren[s] = "xy"[len(ren)]
    return tuple(sorted(((nm, tuple(ren.get(s, s) for s in labs)) for nm, labs in fs), key=key))


def derive():
    """{tensor name: {neuron structure: {factors: coefficient}}} for the three correlators, leading order.

    Returns {"P": terms, "Q": terms, "Q_0213": terms, "R": .., "R_0231", "R_0312", "S", "T", "U"} where
    terms maps a canonical factor tuple (in the labels a0..a3 of the output tensor X[a0, a1, a2, a3]) to
    its sympy coefficient (C^2 or C^2 r)."""
    m = n / r
    out = {}
    for corr, slots in CORRELATORS.items():
        acc = {st: defaultdict(lambda: sp.Integer(0)) for st in STRUCTURES[corr]}
        for pairs, kinds, blocks in _contractions(slots):
            structure = tuple(sorted(tuple(sorted(p)) for p, _ in pairs))
            neuron_pairs = [p for p, bias in pairs if not bias]
            coef = (C / n) ** len(neuron_pairs) * Cb ** (len(pairs) - len(neuron_pairs))
            objs = _objects(blocks)
            label = {}
            for c, p in enumerate(neuron_pairs):
                for s in p:
                    label[s] = c
            if len(neuron_pairs) != 2:
                raise AssertionError("a bias pair at this order (not expected)")
            for same in (True, False):
                count = n if same else n * (n - 1)
                lab = {s: 0 for s in label} if same else label
                for order, factors in _leading(objs, kinds, lab, same):
                    if order == "disconnected":
                        raise AssertionError(f"disconnected O(1) term in {corr}: {pairs} {kinds} {objs}")
                    val = sp.limit(n * coef * count * (1 / m) ** order, n, sp.oo)
                    if val == sp.oo:
                        raise AssertionError(f"term of {corr} not O(1/n): {factors}")
                    acc[structure][_canonical(factors)] += val
        for st, (name, perm) in STRUCTURES[corr].items():
            # the structure's tensor is X[a_perm]; relabel so that the terms are in X's own labels
            ren = {f"a{p}": f"a{i}" for i, p in enumerate(perm)}
            key = name if perm == (0, 1, 2, 3) else f"{name}_{''.join(map(str, perm))}"
            terms = {}
            for fac, c in acc[st].items():
                c = sp.simplify(c)
                if c != 0:
                    cf = _canonical([(nm, tuple(ren.get(s, s) for s in labs)) for nm, labs in fac])
                    terms[cf] = terms.get(cf, 0) + c
            out[key] = terms
    return out


# ------------------------------------------------------------------ output: sympy and arrays
def as_sympy(terms):
    """The terms as one sympy expression: Indexed factors, repeated dummies x, y summed (Einstein)."""
    a = sp.symbols("a0:4")
    x, y = sp.symbols("x y")
    sym = {f"a{i}": a[i] for i in range(4)} | {"x": x, "y": y}
    expr = 0
    for fac, c in terms.items():
        t = c
        for name, labs in fac:
            t = t * sp.IndexedBase(name)[tuple(sym[s] for s in labs)]
        expr += t
    return expr


def evaluate(terms, tensors, means, *, C_W, r_val):
    """X[a0, a1, a2, a3] (N,)*4 from the terms, with tensors {"Theta", "B", .., "U"} and means(name) ->
    array (a Gaussian-mean tensor M_<kinds> over its slot inputs, Y_<kinds> with the weight last)."""
    letters = {"a0": "a", "a1": "b", "a2": "c", "a3": "d", "x": "x", "y": "y"}
    total = 0.0
    for fac, c in terms.items():
        ops, subs = [], []
        for name, labs in fac:
            ops.append(tensors[name] if name in tensors else means(name))
            subs.append("".join(letters[s] for s in labs))
        val = float(c.subs({C: C_W, r: r_val}))
        used = set("".join(subs))
        if not {"a", "b", "c", "d"} <= used:
            raise AssertionError(f"term {fac} does not carry all four labels")
        total = total + val * np.einsum(",".join(subs) + "->abcd", *ops, optimize=True)
    return total


def formulas():
    """{name: sympy expression} of the generated step."""
    return {k: as_sympy(v) for k, v in derive().items()}


if __name__ == "__main__":
    import pathlib
    lines = ["# The one-layer meta-kernel step, generated by derivations/meta_kernel_step.py", "",
             "Repeated dummies x, y summed; M_<kinds> / Y_<kinds>: Gaussian means at K^(l) (Y: times (K^-1 z)_x).", ""]
    for name, terms in derive().items():
        lines.append(f"## {name}' ({len(terms)} terms)")
        lines += ["    " + str(c) + "  " + " ".join(f"{nm}[{','.join(labs)}]" for nm, labs in fac)
                  for fac, c in terms.items()]
        lines.append("")
    text = "\n".join(lines)
    (pathlib.Path(__file__).parent / "out" / "meta_kernel_step.md").write_text(text + "\n")
    print(text)
