"""Feynman diagrams of finite-dimensional (zero-dimensional) field theory.

Theory (Euclidean, weight e^{-S}, couplings carry 1/k!):

    S(x) = 1/2 x^T A x + sum_k (1/k!) g^(k)_{i1..ik} x_{i1} ... x_{ik},   x in R^d,
    Z = int d^d x e^{-S(x)},   Z_0 = (2 pi)^{d/2} det(A)^{-1/2},   propagator P = A^{-1},

with A symmetric positive definite and each g^(k) a symmetric tensor of shape (d,)*k. Expanding
e^{-V} and applying Wick's theorem (:mod:`sft.symbolic.wick`) to the Gaussian N(0, P),

    Z <x_{a1} .. x_{an}> / Z_0 = sum_{diagrams G} (1 / S_G) prod_{vertices} (-g^(k)) prod_{edges} P,

summed over multigraphs G (up to isomorphism) with n labelled external legs (degree 1) and
unlabelled internal vertices of degree k, each vertex carrying -g^(k) contracted over its edges.
A diagram arises from prod_k n_k! (k!)^{n_k} / S_G of the Wick contractions of the half-edges, so

    S_G = |Aut_V(G)| * prod_{u<w} m_uw! * prod_v 2^{l_v} l_v!,

with Aut_V the permutations of internal vertices (of equal degree, external legs fixed) preserving
the multigraph, m_uw the edge multiplicities and l_v the self-loops at v. Then (linked-cluster theorem):
``kind="all"``: every diagram (vacuum bubbles included) gives Z <x..x> / Z_0;
``kind="no_vacuum"``: no component without an external leg gives the normalised <x..x>;
``kind="connected"``: connected diagrams give the cumulant <x..x>_c, and for n = 0, log(Z / Z_0);
``kind="1pi"``: connected, at least one vertex, and no bridge among the edges between internal
vertices (external legs amputated): 1PI vertex functions with the external propagators kept.

Sources: Zee, *QFT in a Nutshell*, ch. I.7 (baby problem, symmetry factors); Srednicki, *QFT*, ch. 9;
Cvitanovic, Lautrup & Pearson, Phys. Rev. D 18, 1939 (1978) (counting of zero-dimensional diagrams);
Argyres, van Hameren, Kleiss & Papadopoulos, Eur. Phys. J. C 19, 567 (2001) (zero-dimensional field
theory, Schwinger-Dyson recursions). For phi^4 (S = x^2/2 + lambda x^4/4!) the vacuum diagrams at
order k have sum_G 1/S_G = (4k - 1)!! / ((4!)^k k!).

Method: for each choice of vertex counts, the symmetric adjacency matrices with the prescribed
degrees are enumerated row by row, keeping only labellings that no swap of two internal vertices of
equal degree makes lexicographically larger (checked entry by entry; every class keeps its largest
labelling) and, for connected diagrams, in which every internal vertex is joined to an earlier node
(at lambda^8, 4774 matrices survive for the 1635 connected phi^4 vacuum diagrams). Each survivor is
reduced to a canonical form by colour refinement and individualisation (McKay & Piperno, J. Symb.
Comput. 60, 94 (2014)); the search leaves attaining the canonical key are the automorphisms, so
|Aut_V| comes with it. Connected two-point diagrams are connected vacuum diagrams with one propagator
(u, w), not a bridge, cut into legs 0 at u and 1 at w: one diagram per Aut-orbit of such ordered
pairs, |Aut_V| being the order of the stabiliser (27607 phi^4 diagrams at lambda^8). ``_matrices``
and ``_canonical`` are the earlier, slower route (smallest labelling, relabelling by permutations
within cells of equal local invariants); ``diagram_key`` and the brute-force
``wick_contraction_counts`` (all pairings of half-edges) use ``_canonical`` to check the generator.

Limits (checked up front, ValueError with the estimate): :func:`diagrams` refuses a request whose Wick
weight sum_G 1/S_G = sum (N - 1)!! / prod_k n_k! (k!)^{n_k} exceeds ``MAX_DIAGRAM_WEIGHT`` = 1e5
((4, 8): 5e4, minutes; (4, 9): 3.3e5, ~3e6 diagrams); :func:`wick_contraction_counts` refuses more
than ``MAX_PAIRINGS`` = 1e9 pairings.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import numbers
from collections import Counter
from fractions import Fraction
from functools import lru_cache

import numpy as np
import sympy

from ..conventions import check_array, pd_inverse
from .wick import perfect_matchings

__all__ = ["Diagram", "diagrams", "symbolic_value", "one_component_series", "propagator",
           "evaluate", "correlator", "wick_contraction_counts", "contraction_multiplicity", "draw"]

KINDS = ("all", "no_vacuum", "connected", "1pi")


@dataclasses.dataclass(frozen=True)
class Diagram:
    """One Feynman diagram (an isomorphism class of multigraphs), exported as a graph.

    Nodes 0 .. n_external - 1 are the external legs (degree 1, in the order of the correlator's
    indices); node n_external + v is internal vertex v of degree ``vertex_degrees[v]``.
    ``edges`` lists (u, w), u <= w, once per propagator (repeated for multi-edges; u == w is a
    self-loop). ``symmetry_factor`` is S_G (module docstring); the diagram's weight is 1/S_G.
    """
    n_external: int
    vertex_degrees: tuple[int, ...]
    edges: tuple[tuple[int, int], ...]
    symmetry_factor: int

    @property
    def n_vertices(self) -> int:
        return len(self.vertex_degrees)

    @property
    def vertex_counts(self) -> dict[int, int]:
        """{k: number of vertices of degree k}."""
        return dict(Counter(self.vertex_degrees))

    @property
    def components(self) -> list[set[int]]:
        """Connected components as sets of nodes."""
        parent = list(range(self.n_external + self.n_vertices))

        def find(u):
            while parent[u] != u:
                parent[u] = parent[parent[u]]
                u = parent[u]
            return u
        for u, w in self.edges:
            parent[find(u)] = find(w)
        comps: dict[int, set[int]] = {}
        for u in range(len(parent)):
            comps.setdefault(find(u), set()).add(u)
        return list(comps.values())

    @property
    def connected(self) -> bool:
        """Exactly one component (the empty vacuum diagram, the 1 in Z / Z_0, is not connected)."""
        return len(self.components) == 1

    @property
    def has_vacuum_component(self) -> bool:
        """True when some component has no external leg (a vacuum bubble)."""
        return any(min(c) >= self.n_external for c in self.components)

    @property
    def n_loops(self) -> int:
        """Cycle rank E - N + (number of components), N counting external legs as nodes."""
        return len(self.edges) - (self.n_external + self.n_vertices) + len(self.components)

    @property
    def one_particle_irreducible(self) -> bool:
        """Connected, >= 1 vertex, and no edge between internal vertices is a bridge."""
        if not self.connected or self.n_vertices == 0:
            return False
        inner = [e for e in self.edges if min(e) >= self.n_external]
        for k, (u, w) in enumerate(inner):
            if u == w:
                continue
            rest = inner[:k] + inner[k + 1:]
            reach, stack = {u}, [u]
            while stack:
                a = stack.pop()
                for p, q in rest:
                    for b in ((q,) if p == a else ()) + ((p,) if q == a else ()):
                        if b not in reach:
                            reach.add(b)
                            stack.append(b)
            if w not in reach:
                return False
        return True


def _check_int(name, value, lo):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo:
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be an integer >= {lo}")
    return int(value)


#: Limits (checked up front; ValueError with the estimate). ``diagrams`` refuses requests whose Wick
#: weight W = sum over vertex choices of (N - 1)!! / prod_k n_k! (k!)^{n_k} = sum_G 1/S_G over all
#: diagrams (N half-edges) exceeds MAX_DIAGRAM_WEIGHT: W tracks the enumeration's cost ((4, 6): W = 1.6e3,
#: 10441 connected diagrams in ~6 s; (4, 8): W = 5.0e4, minutes; (4, 9): W = 3.3e5, ~3e6 diagrams).
MAX_DIAGRAM_WEIGHT = 10 ** 5
#: ``wick_contraction_counts`` refuses more than this many pairings (N - 1)!!.
MAX_PAIRINGS = 10 ** 9


def _wick_weight(n_external: int, vertex_degrees) -> int:
    """(N - 1)!! / prod_k n_k! (k!)^{n_k} = sum_G 1/S_G over all diagrams with these vertices (0 if N is odd)."""
    N = n_external + sum(vertex_degrees)
    if N % 2:
        return 0
    counts = Counter(vertex_degrees)
    return Fraction(math.prod(range(N - 1, 0, -2)),
                    math.prod(math.factorial(n) * math.factorial(k) ** n for k, n in counts.items()))


def _check_degrees(degrees) -> tuple[int, ...]:
    try:
        degs = tuple(degrees)
    except TypeError:
        degs = (degrees,)
    if not degs or any(isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1
                       for k in degs):
        raise ValueError(f"degrees={degrees!r} is not allowed: give vertex degrees as integers >= 1 "
                         "(e.g. (3, 4) for cubic and quartic couplings)")
    return tuple(sorted(set(int(k) for k in degs)))


def _matrices(deg: tuple[int, ...], n_ext: int):
    """Symmetric non-negative integer matrices with row sums deg (diagonal entries = loops, counting
    2 towards the degree; no loops at external legs), as dicts {(u, w): m, u <= w}.

    Filled row by row; a completed row i is pruned when swapping vertex i with an earlier internal
    vertex of equal degree makes rows 0..i lexicographically smaller (such a matrix is not the
    minimal representative of its class, and every class keeps its minimal one)."""
    n = len(deg)
    rem = list(deg)
    F = [[0] * n for _ in range(n)]

    def swap_smaller(i):
        for a in range(n_ext, i):  # swaps (a, b), b < i, leave row i as it is: checked before
            if deg[a] != deg[i]:
                continue
            sig = list(range(n))
            sig[a], sig[i] = i, a
            for r in range(i + 1):
                row, srow = F[r], F[sig[r]]
                diff = next(((srow[sig[c]], row[c]) for c in range(r, n) if srow[sig[c]] != row[c]),
                            None)
                if diff is not None:
                    if diff[0] < diff[1]:
                        return True
                    break
        return False

    def fill(i, j):
        if i == n:
            yield {(u, w): F[u][w] for u in range(n) for w in range(u, n) if F[u][w]}
            return
        if j == n:
            if rem[i] == 0 and not (i >= n_ext and swap_smaller(i)):
                yield from fill(i + 1, i + 1)
            return
        if j == i:
            top = rem[i] // 2 if i >= n_ext else 0
            for loops in range(top + 1):
                if sum(rem[i + 1:]) < rem[i] - 2 * loops:
                    continue
                rem[i] -= 2 * loops
                F[i][i] = loops
                yield from fill(i, j + 1)
                F[i][i] = 0
                rem[i] += 2 * loops
            return
        for m in range(min(rem[i], rem[j]) + 1):
            if sum(rem[j + 1:]) < rem[i] - m:
                continue
            rem[i] -= m
            rem[j] -= m
            F[i][j] = F[j][i] = m
            yield from fill(i, j + 1)
            F[i][j] = F[j][i] = 0
            rem[i] += m
            rem[j] += m

    yield from fill(0, 0)


def _canonical(deg: tuple[int, ...], n_ext: int, mat: dict) -> tuple[tuple, int]:
    """(canonical key, |Aut_V|) of a labelled multigraph; internal nodes are permuted within cells of
    equal invariant (degree, loops, links to each external leg, sorted links to internal nodes)."""
    n = len(deg)
    full = [[0] * n for _ in range(n)]
    for (u, w), m in mat.items():
        full[u][w] = full[w][u] = m
    inv = {v: (deg[v], full[v][v], tuple(full[v][:n_ext]),
               tuple(sorted(full[v][w] for w in range(n_ext, n) if w != v)))
           for v in range(n_ext, n)}
    base = sorted(range(n_ext, n), key=inv.__getitem__)
    cells = [list(g) for _, g in itertools.groupby(base, key=inv.__getitem__)]
    best, count = None, 0
    for perms in itertools.product(*(itertools.permutations(c) for c in cells)):
        order = list(range(n_ext)) + [v for p in perms for v in p]
        key = tuple(full[order[a]][order[b]] for a in range(n) for b in range(a, n))
        if best is None or key < best:
            best, count = key, 1
        elif key == best:
            count += 1
    return (tuple(deg), best), count


def _symmetry_factor(aut: int, mat: dict) -> int:
    s = aut
    for (u, w), m in mat.items():
        s *= (2 ** m * math.factorial(m)) if u == w else math.factorial(m)
    return s


def _diagram_from_key(n_ext: int, key, aut: int) -> Diagram:
    deg, upper = key
    n = len(deg)
    pairs = [(a, b) for a in range(n) for b in range(a, n)]
    mat = {p: m for p, m in zip(pairs, upper) if m}
    edges = tuple(p for p, m in sorted(mat.items()) for _ in range(m))
    return Diagram(n_ext, tuple(deg[n_ext:]), edges, _symmetry_factor(aut, mat))


def _refine(adj, colour):
    """Colour refinement (1-dimensional Weisfeiler-Leman) of a multigraph given as adjacency lists
    ``adj[v] = [(w, multiplicity), ...]``: recolour every node by (colour, sorted (neighbour colour,
    multiplicity)) and rank the distinct signatures, until the number of colours is stable. Ranks
    keep the order of the old colours, so the result depends only on the coloured graph."""
    ncol = len(set(colour))
    while True:
        sig = [(colour[v], tuple(sorted([(colour[w], m) for w, m in nbrs])))
               for v, nbrs in enumerate(adj)]
        rank = {s: r for r, s in enumerate(sorted(set(sig)))}
        colour = [rank[s] for s in sig]
        if len(rank) == ncol:
            return colour
        ncol = len(rank)


def _canonical_form(deg: tuple[int, ...], n_ext: int, full) -> tuple[tuple, list, list[list[int]]]:
    """(key, canonical node order, automorphisms) of a multigraph by individualisation-refinement
    (McKay & Piperno, J. Symb. Comput. 60, 94 (2014), without automorphism pruning).

    The colouring (external legs one colour each, internal vertices by degree) is refined; while a
    colour cell has several nodes, branch on each node of the first such cell (give it a colour of
    its own) and refine again. Every automorphism maps this search tree to itself, so the largest
    leaf key (upper triangle of the matrix relabelled by the discrete colouring) is an isomorphism
    invariant that determines the graph, and the leaves attaining it are exactly the best order
    composed with the |Aut_V| automorphisms, returned as node maps (node -> image). Internal
    vertices come out in order of increasing degree."""
    n = len(deg)
    adj = [[(w, m) for w, m in enumerate(row) if m] for row in full]
    leaves: list = [None, []]

    def search(colour):
        colour = _refine(adj, colour)
        if len(set(colour)) == n:
            order = sorted(range(n), key=colour.__getitem__)
            key = tuple(full[order[a]][order[b]] for a in range(n) for b in range(a, n))
            if leaves[0] is None or key > leaves[0]:
                leaves[:] = [key, [order]]
            elif key == leaves[0]:
                leaves[1].append(order)
            return
        counts = Counter(colour)
        cell = min(c for c, k in counts.items() if k > 1)
        for v in range(n):
            if colour[v] == cell:
                search([2 * c + (c > cell or (c == cell and w != v)) for w, c in enumerate(colour)])

    search([v if v < n_ext else n_ext + deg[v] for v in range(n)])
    key, orders = leaves
    best = orders[0]
    auts = []
    for order in orders:
        image = [0] * n
        for a, b in zip(best, order):
            image[a] = b
        auts.append(image)
    return (tuple(sorted(deg[n_ext:])), key), best, auts


def _largest_labelling_matrices(deg: tuple[int, ...], n_ext: int):
    """Adjacency matrices (list of rows, reused: copy before keeping) with row sums ``deg``, as
    ``_matrices``, but keeping the lexicographically largest labelling of each class among
    permutations of internal vertices of equal degree: row i is pruned when swapping vertex i with
    an earlier vertex a of equal degree enlarges rows 0..i (checked entry by entry while the rows
    are filled). Every class keeps its largest labelling, so every class appears at least once.

    Only connected graphs are wanted: with a single internal degree, row i is also pruned when no
    node <= i is joined to node i + 1, since in the largest labelling of a connected graph each
    internal vertex is joined to an earlier node (else swapping it with a later neighbour of the
    first row that reaches beyond i would enlarge that row). Callers still check connectivity."""
    n = len(deg)
    rem = list(deg)
    F = [[0] * n for _ in range(n)]
    bfs = len(set(deg[n_ext:])) == 1
    twins = [[a for a in range(n_ext, j) if deg[a] == deg[j]] for j in range(n)]

    def open_swaps(i):
        """Earlier vertices a of deg[i] whose swap with i is not decided by rows < a; None when one
        of them enlarges the matrix."""
        out = []
        for a in range(n_ext, i):
            if deg[a] != deg[i]:
                continue
            for r in range(a):
                x, y = F[r][i], F[r][a]
                if x != y:
                    if x > y:
                        return None
                    break
            else:
                out.append(a)
        return out

    def rows_larger(i, a):
        """Rows a + 1 .. i after swapping a and i, compared with the originals (row a is equal)."""
        sig = list(range(n))
        sig[a], sig[i] = i, a
        for r in range(a + 1, i + 1):
            row, srow = F[r], F[sig[r]]
            for c in range(r, n):
                x, y = srow[sig[c]], row[c]
                if x != y:
                    return x > y
        return False

    def fill(i, j, pend):
        """Set F[i][j..]; ``pend``: swaps a whose permuted row a equals row a up to column j - 1."""
        if j == n:
            if rem[i] or any(rows_larger(i, a) for a in pend):
                return
            if i + 1 == n:
                yield F
                return
            nxt = open_swaps(i + 1) if i + 1 >= n_ext else []
            if nxt is not None:
                yield from fill(i + 1, i + 1, nxt)
            return
        if j == i:
            rest = sum(rem[i + 1:])
            for loops in range(rem[i] // 2 if i >= n_ext else 0, -1, -1):
                if rest < rem[i] - 2 * loops:
                    break
                # permuted row a starts F[i][i], F[i][a+1..i-1]; the original F[a][a], F[a][a+1..i-1]
                keep, larger = [], False
                for a in pend:
                    cmp = next(((x, y) for x, y in zip([loops] + F[i][a + 1:i], [F[a][a]] + F[a][a + 1:i])
                                if x != y), None)
                    if cmp is None:
                        keep.append(a)
                    elif cmp[0] > cmp[1]:
                        larger = True
                        break
                if larger:
                    continue
                rem[i] -= 2 * loops
                F[i][i] = loops
                yield from fill(i, j + 1, keep)
                F[i][i] = 0
                rem[i] += 2 * loops
            return
        rest = sum(rem[j + 1:])
        for m in range(min(rem[i], rem[j]), -1, -1):
            if rest < rem[i] - m:
                break
            if any(m > F[a][j] for a in pend) or any(
                    m > F[i][a] and all(F[q][a] == F[q][j] for q in range(i))
                    for a in twins[j] if a > i):
                continue  # swapping a and j would enlarge row i, rows above being equal
            if bfs and j == i + 1 and i + 1 >= n_ext and not m and not any(F[r][j] for r in range(i)):
                continue
            rem[i] -= m
            rem[j] -= m
            F[i][j] = F[j][i] = m
            yield from fill(i, j + 1, [a for a in pend if m == F[a][j]])
            F[i][j] = F[j][i] = 0
            rem[i] += m
            rem[j] += m

    if n == 0:
        yield F
        return
    yield from fill(0, 0, [])


def _diagram(n_ext: int, deg, full, order, aut: int) -> Diagram:
    """Diagram of the multigraph ``full`` with nodes relabelled in ``order`` (order[p] -> p)."""
    n = len(order)
    mat = {(a, b): full[order[a]][order[b]] for a in range(n) for b in range(a, n)
           if full[order[a]][order[b]]}
    edges = tuple(p for p, m in sorted(mat.items()) for _ in range(m))
    return Diagram(n_ext, tuple(deg[v] for v in order[n_ext:]), edges, _symmetry_factor(aut, mat))


def _is_connected(full) -> bool:
    n = len(full)
    reach, stack = {0}, [0]
    while stack:
        a = stack.pop()
        for b in range(n):
            if full[a][b] and b not in reach:
                reach.add(b)
                stack.append(b)
    return len(reach) == n


@lru_cache(maxsize=None)
def _connected_classes(n_external: int, vertex_degrees: tuple[int, ...]) -> tuple:
    """Connected diagrams from the matrices, as (Diagram, its adjacency matrix, its automorphisms
    as node maps) per class."""
    deg = (1,) * n_external + vertex_degrees
    if sum(deg) % 2 or not deg:
        return ()
    found: dict = {}
    for F in _largest_labelling_matrices(deg, n_external):
        if _is_connected(F):
            key, order, auts = _canonical_form(deg, n_external, F)
            if key not in found:
                n = len(deg)
                canon = [[F[order[a]][order[b]] for b in range(n)] for a in range(n)]
                rank = {v: p for p, v in enumerate(order)}
                found[key] = (_diagram(n_external, deg, F, order, len(auts)), canon,
                              [[rank[im[v]] for v in order] for im in auts])
    return tuple(found.values())


@lru_cache(maxsize=None)
def _connected_graphs(n_external: int, vertex_degrees: tuple[int, ...]) -> tuple[Diagram, ...]:
    """Connected diagrams, one per class; two-point ones by cutting vacuum diagrams."""
    if n_external == 2 and vertex_degrees:
        return tuple(_cut_vacuum_edges(vertex_degrees))
    return tuple(d for d, _, _ in _connected_classes(n_external, vertex_degrees))


def _cut_vacuum_edges(vertex_degrees: tuple[int, ...]):
    """Connected two-point diagrams from connected vacuum diagrams V by cutting one propagator
    (u, w) into legs 0 at u and 1 at w. Joining the legs inverts the cut, and cuts at (u, w) and
    (u', w') give isomorphic diagrams iff an automorphism of V maps (u, w) to (u', w'); so the
    classes are the Aut(V)-orbits of ordered adjacent pairs whose edge is not a bridge, and
    Aut_V of the cut diagram is the stabiliser of (u, w): |Aut_V| / |orbit|."""
    odd = any(k % 2 for k in vertex_degrees)
    for _, full, auts in _connected_classes(0, vertex_degrees):
        n = len(full)
        seen = set()
        for u in range(n):
            for w in range(n):
                if not full[u][w] or (u, w) in seen:
                    continue
                orbit = {(im[u], im[w]) for im in auts}
                seen |= orbit
                cut = [[0] * (n + 2) for _ in range(n + 2)]
                for a in range(n):
                    cut[a + 2][2:] = full[a]
                cut[u + 2][w + 2] -= 1
                cut[w + 2][u + 2] -= u != w
                cut[0][u + 2] = cut[u + 2][0] = 1
                cut[1][w + 2] = cut[w + 2][1] = 1
                if odd and not _is_connected(cut):  # a bridge needs odd degrees
                    continue
                stab = sum((im[u], im[w]) == (u, w) for im in auts)
                yield _diagram(2, (1, 1) + vertex_degrees, cut, list(range(n + 2)), stab)


def _sub_multisets(vertex_degrees: tuple[int, ...]):
    """All sub-multisets of a sorted tuple, as sorted tuples."""
    counts = Counter(vertex_degrees)
    for ks in itertools.product(*(range(c + 1) for c in counts.values())):
        yield tuple(sorted(k for k, c in zip(counts, ks) for _ in range(c)))


def _minus(vertex_degrees: tuple[int, ...], sub: tuple[int, ...]) -> tuple[int, ...]:
    rest = Counter(vertex_degrees)
    rest.subtract(sub)
    return tuple(sorted(rest.elements()))


@lru_cache(maxsize=None)
def _vacuum_parts(vertex_degrees: tuple[int, ...]) -> tuple:
    """Multisets of connected vacuum diagrams whose vertices make up ``vertex_degrees``, each as a
    tuple of (diagram, multiplicity)."""
    if not vertex_degrees:
        return ((),)
    groups = [(Counter(sub), _connected_graphs(0, sub))
              for sub in sorted(_sub_multisets(vertex_degrees)) if sub]

    def pick(rest: Counter, g0: int, i0: int):
        """Components (group, index), non-decreasing, whose vertices make up ``rest``."""
        if not +rest:
            yield []
            return
        for g in range(g0, len(groups)):
            sub, ds = groups[g]
            if all(rest[k] >= c for k, c in sub.items()):
                left = rest - sub
                for i in range(i0 if g == g0 else 0, len(ds)):
                    for tail in pick(left, g, i):
                        yield [(g, i)] + tail

    return tuple(tuple((groups[g][1][i], c) for (g, i), c in Counter(choice).items())
                 for choice in pick(Counter(vertex_degrees), 0, 0))


def _set_partitions(items: tuple):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in _set_partitions(rest):
        yield [(first,)] + part
        for k in range(len(part)):
            yield part[:k] + [(first,) + part[k]] + part[k + 1:]


def _legged_parts(blocks: list, vertex_degrees: tuple[int, ...]):
    """Lists of connected diagrams, one per block of legs, sharing out ``vertex_degrees``."""
    if not blocks:
        if not vertex_degrees:
            yield []
        return
    for sub in _sub_multisets(vertex_degrees):
        for d in _connected_graphs(len(blocks[0]), sub):
            for tail in _legged_parts(blocks[1:], _minus(vertex_degrees, sub)):
                yield [d] + tail


def _union(n_ext: int, parts: list) -> Diagram:
    """Disjoint union of (legs, diagram, multiplicity) parts, legs[i] being the label of the part's
    leg i; S_G = prod S_c * prod m! (identical vacuum components may be permuted), internal
    vertices sorted by degree."""
    if len(parts) == 1 and parts[0][2] == 1 and parts[0][0] == tuple(range(n_ext)):
        return parts[0][1]
    verts, edges, sym = [], [], 1
    for legs, d, mult in parts:
        for _ in range(mult):
            base = len(verts)
            verts += [(k, base + v) for v, k in enumerate(d.vertex_degrees)]
            label = list(legs) + [None] * d.n_vertices
            for v in range(d.n_vertices):
                label[d.n_external + v] = ("v", base + v)
            edges += [(label[u], label[w]) for u, w in d.edges]
        sym *= d.symmetry_factor ** mult * math.factorial(mult)
    rank = {("v", v): n_ext + p for p, (_, v) in enumerate(sorted(verts))}
    new = [tuple(sorted(rank.get(x, x) for x in e)) for e in edges]
    return Diagram(n_ext, tuple(k for k, _ in sorted(verts)), tuple(sorted(new)), sym)


@lru_cache(maxsize=None)
def _all_diagrams(n_external: int, vertex_degrees: tuple[int, ...], vacuum: bool) -> tuple:
    """Every diagram with these legs and internal vertex degrees (``vacuum``: with or without vacuum
    components; else none), as a disjoint union of connected diagrams: one per block of a set
    partition of the legs, and a multiset of connected vacuum diagrams (linked-cluster theorem)."""
    out = []
    for blocks in _set_partitions(tuple(range(n_external))):
        for sub in (_sub_multisets(vertex_degrees) if vacuum else [vertex_degrees]):
            for vac in _vacuum_parts(_minus(vertex_degrees, sub)):
                for legged in _legged_parts(blocks, sub):
                    out.append(_union(n_external, [(b, d, 1) for b, d in zip(blocks, legged)]
                                      + [((), d, c) for d, c in vac]))
    return tuple(out)


def _diagrams_with_vertices(n_external: int, vertex_degrees: tuple[int, ...], kind: str) -> list:
    if kind in ("connected", "1pi"):
        ds = list(_connected_graphs(n_external, vertex_degrees))
        return ds if kind == "connected" else [d for d in ds if d.one_particle_irreducible]
    return list(_all_diagrams(n_external, vertex_degrees, kind == "all"))


def diagrams(n_external: int, order: int, degrees=(4,), kind: str = "connected") -> list[Diagram]:
    """All diagrams with ``n_external`` external legs and exactly ``order`` internal vertices, each of
    a degree in ``degrees``, filtered by ``kind`` (one of "all", "no_vacuum", "connected", "1pi";
    see the module docstring). ``order`` counts powers of the couplings.

    >>> [d.symmetry_factor for d in diagrams(2, 1)]  # the tadpole, -lambda P^3 / 2
    [2]
    >>> sorted(d.symmetry_factor for d in diagrams(0, 2, kind="connected"))
    [16, 48]
    """
    n_external = _check_int("n_external", n_external, 0)
    order = _check_int("order", order, 0)
    degs = _check_degrees(degrees)
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not allowed: use one of {KINDS}")
    weight = sum(_wick_weight(n_external, c) for c in itertools.combinations_with_replacement(degs, order))
    if weight > MAX_DIAGRAM_WEIGHT:
        raise ValueError(f"diagrams({n_external}, {order}, degrees={degs}) is too large: its Wick weight "
                         f"sum_G 1/S_G = {float(weight):.3g} (a proxy for the number of diagrams and the "
                         f"enumeration time) exceeds MAX_DIAGRAM_WEIGHT = {MAX_DIAGRAM_WEIGHT:.3g} "
                         "(sft.symbolic.feynman; (4, 8) has W = 5e4 and takes minutes); lower the order, or "
                         "use the Schwinger-Dyson recursions (sft.symbolic.schwinger_dyson) for series coefficients")
    out = []
    for combo in itertools.combinations_with_replacement(degs, order):
        out += _diagrams_with_vertices(n_external, tuple(combo), kind)
    return out


def contraction_multiplicity(diagram: Diagram) -> int:
    """Number of Wick contractions of the half-edges that give ``diagram``:
    prod_k n_k! (k!)^{n_k} / S_G (Zee ch. I.7)."""
    num = math.prod(math.factorial(c) * math.factorial(k) ** c for k, c in diagram.vertex_counts.items())
    return num // diagram.symmetry_factor


def wick_contraction_counts(n_external: int, vertex_degrees) -> Counter:
    """Brute force: pair all half-edges in every way ((N - 1)!! pairings for N half-edges) and count
    the pairings giving each diagram, keyed like ``diagram_key``. For checks and benchmarks only."""
    n_external = _check_int("n_external", n_external, 0)
    if not isinstance(vertex_degrees, (list, tuple, np.ndarray)):
        raise ValueError(f"vertex_degrees={vertex_degrees!r} is not allowed: give a sequence of vertex degrees")
    vdeg = tuple(sorted(_check_int("vertex_degrees entry", k, 1) for k in vertex_degrees))
    deg = (1,) * n_external + vdeg
    pairings = math.prod(range(sum(deg) - 1, 0, -2)) if sum(deg) % 2 == 0 else 0
    if pairings > MAX_PAIRINGS:
        raise ValueError(f"wick_contraction_counts({n_external}, {vdeg}) would enumerate (N - 1)!! = "
                         f"{float(pairings):.3g} pairings (N = {sum(deg)} half-edges), above MAX_PAIRINGS = "
                         f"{MAX_PAIRINGS:.3g} (sft.symbolic.feynman)")
    owner = [node for node, k in enumerate(deg) for _ in range(k)]
    counts: Counter = Counter()
    for pairing in perfect_matchings(range(len(owner))):
        mat: dict = {}
        for a, b in pairing:
            u, w = sorted((owner[a], owner[b]))
            mat[(u, w)] = mat.get((u, w), 0) + 1
        counts[_canonical(deg, n_external, mat)[0]] += 1
    return counts


def diagram_key(diagram: Diagram):
    """Canonical key of a diagram (equal keys <=> isomorphic diagrams)."""
    deg = (1,) * diagram.n_external + diagram.vertex_degrees
    mat = Counter(diagram.edges)
    return _canonical(deg, diagram.n_external, dict(mat))[0]


def symbolic_value(diagram: Diagram, propagator=sympy.Symbol("G")):
    """One-component value (1/S_G) prod_v (-g_k) G^E, with g_k = sympy.Symbol("g{k}") and G = 1/A.

    >>> symbolic_value(diagrams(2, 1)[0])
    -G**3*g4/2
    """
    gs = [-sympy.Symbol(f"g{k}") for k in diagram.vertex_degrees]
    return sympy.Rational(1, diagram.symmetry_factor) * sympy.Mul(*gs) * propagator ** len(diagram.edges)


def one_component_series(n_external: int, order: int, degrees=(4,), kind: str = "connected", A=1):
    """Sum of ``symbolic_value`` over diagrams of orders 0 .. ``order`` with propagator G = 1/A:
    the perturbative series of <x^n> ("no_vacuum"), <x^n>_c ("connected"; log(Z/Z_0) for n = 0),
    Z <x^n> / Z_0 ("all"), in the symbols g{k}. ``A`` may be a positive number or a sympy symbol.

    >>> one_component_series(0, 2, kind="connected")  # log(Z / Z_0) of phi^4 to lambda^2
    g4**2/12 - g4/8
    """
    from .cumulants import check_coefficient
    A_ = check_coefficient("A", A)
    if A_.is_positive is False or (A_.is_number and not A_ > 0):
        raise ValueError(f"A={A!r} is not allowed: the quadratic form must be positive")
    G = 1 / A_
    order = _check_int("order", order, 0)
    weight: Counter = Counter()  # sum of 1/S_G over diagrams with the same vertices and propagators
    for o in range(order + 1):
        for d in diagrams(n_external, o, degrees, kind):
            weight[(d.vertex_degrees, len(d.edges))] += Fraction(1, d.symmetry_factor)
    return sympy.expand(sum((sympy.Rational(w.numerator, w.denominator)
                             * sympy.Mul(*(-sympy.Symbol(f"g{k}") for k in vd)) * G ** e
                             for (vd, e), w in weight.items()), sympy.Integer(0)))


def propagator(A) -> np.ndarray:
    """P = A^{-1} for a symmetric positive-definite (d, d) matrix A (a scalar means d = 1).
    Raises ValueError for a non-symmetric, singular or indefinite A (Z would not exist)."""
    a = np.atleast_2d(check_array("A", A, ndim=(0, 2)))
    if a.shape[0] != a.shape[1]:
        raise ValueError(f"A of shape {a.shape} is not allowed: give a finite square (d, d) matrix")
    if not np.allclose(a, a.T, rtol=1e-12, atol=0.0):
        raise ValueError(f"A={A!r} is not allowed: the quadratic form must be symmetric")
    try:  # positive definite within the psd_eigh tolerance; inverse in the eigenbasis
        return pd_inverse("A", a)
    except ValueError as err:
        raise ValueError(f"A={A!r} is not allowed: it is singular or not positive definite, so "
                         f"int exp(-x^T A x / 2) diverges ({err})") from None


def _check_couplings(couplings, d: int) -> dict[int, np.ndarray]:
    if not isinstance(couplings, dict):
        raise ValueError(f"couplings={couplings!r} is not allowed: give a dict {{k: tensor of shape "
                         "(d,)*k}}")
    out = {}
    for k, g in couplings.items():
        k = _check_int("coupling degree", k, 1)
        t = np.asarray(g, dtype=np.float64)
        if t.ndim == 0 and d == 1:
            t = t.reshape((1,) * k)
        if t.shape != (d,) * k or not np.all(np.isfinite(t)):
            raise ValueError(f"couplings[{k}] of shape {t.shape} is not allowed: it must be a finite "
                             f"tensor of shape {(d,) * k}")
        for ax in range(k - 1):
            if not np.allclose(t, np.swapaxes(t, ax, ax + 1), rtol=1e-12, atol=1e-15):
                raise ValueError(f"couplings[{k}] is not allowed: it is not a symmetric tensor "
                                 f"(changes under swapping axes {ax} and {ax + 1})")
        out[k] = t
    return out


def evaluate(diagram: Diagram, A, couplings: dict) -> np.ndarray:
    """Numeric value of one diagram, (1/S_G) contraction of -g^(k) at the vertices with P = A^{-1}
    on the edges, as an array of shape (d,)*n_external (external legs in node order).

    Args:
      A: (d, d) symmetric positive-definite matrix (scalar for d = 1).
      couplings: {k: symmetric tensor of shape (d,)*k} for every vertex degree in the diagram.
    """
    P = propagator(A)
    g = _check_couplings(couplings, P.shape[0])
    missing = set(diagram.vertex_degrees) - set(g)
    if missing:
        raise ValueError(f"couplings={sorted(g)} is not allowed here: the diagram needs degrees "
                         f"{sorted(missing)} as well")
    letters = itertools.count()
    ext = [next(letters) for _ in range(diagram.n_external)]
    ends = {v: [] for v in range(diagram.n_external, diagram.n_external + diagram.n_vertices)}
    ops = []
    for u, w in diagram.edges:
        lab = []
        for node in (u, w):
            if node < diagram.n_external:
                lab.append(ext[node])
            else:
                lab.append(next(letters))
                ends[node].append(lab[-1])
        ops += [P, lab]
    for v, labs in ends.items():
        ops += [-g[diagram.vertex_degrees[v - diagram.n_external]], labs]
    if next(letters) > 52:
        raise ValueError("diagram is too large for numpy.einsum (more than 52 indices)")
    val = np.einsum(*ops, ext, optimize="greedy") if ops else np.array(1.0)
    return val / diagram.symmetry_factor


def correlator(n_external: int, order: int, A, couplings: dict, kind: str = "connected") -> np.ndarray:
    """Sum of ``evaluate`` over all diagrams of orders 0 .. ``order`` whose vertex degrees are the
    keys of ``couplings``: <x_{a1}..x_{an}> ("no_vacuum"), its cumulant ("connected"; for n = 0 this
    is log(Z / Z_0)), or Z <..> / Z_0 ("all"), truncated at ``order`` powers of the couplings."""
    P = propagator(A)
    g = _check_couplings(couplings, P.shape[0])
    total = np.zeros((P.shape[0],) * _check_int("n_external", n_external, 0))
    order = _check_int("order", order, 0) if g else 0
    for o in range(order + 1):
        for d in diagrams(n_external, o, tuple(g) or (1,), kind):
            total = total + evaluate(d, A, g)
    return total


def draw(diagram: Diagram, ax, *, title: bool = True):
    """Draw ``diagram`` on the matplotlib axes ``ax``: internal vertices (black dots) on a circle,
    external legs (open circles, labelled 0..n-1) on an outer circle, multi-edges as arcs of
    different curvature, self-loops as small circles; the title shows 1/S_G."""
    from matplotlib.patches import Circle, FancyArrowPatch

    from ..conventions import check_flag
    title = check_flag("title", title)
    if not isinstance(diagram, Diagram):
        raise ValueError(f"diagram={diagram!r} is not allowed: give a Diagram (from diagrams())")
    nv, ne = diagram.n_vertices, diagram.n_external
    pos = {}
    for v in range(nv):
        t = 2 * np.pi * v / max(nv, 1) + np.pi / 2
        pos[ne + v] = (0.0, 0.0) if nv == 1 else (np.cos(t), np.sin(t))
    for e in range(ne):
        t = np.pi + 2 * np.pi * e / ne if ne else 0.0
        pos[e] = (2.0 * np.cos(t), 2.0 * np.sin(t))
    seen: Counter = Counter()
    mult = Counter(diagram.edges)
    for u, w in diagram.edges:
        k = seen[(u, w)]
        seen[(u, w)] += 1
        (x0, y0), (x1, y1) = pos[u], pos[w]
        if u == w:
            r = np.hypot(x0, y0)
            dx, dy = ((x0 / r, y0 / r) if r > 0 else (np.cos(k * np.pi), np.sin(k * np.pi)))
            rad = 0.35 + 0.15 * k if r > 0 else 0.4
            ax.add_patch(Circle((x0 + rad * dx, y0 + rad * dy), rad, fill=False, lw=1.5))
            continue
        m = mult[(u, w)]
        rad = 0.0 if m == 1 else 0.5 * (k - (m - 1) / 2)
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), connectionstyle=f"arc3,rad={rad}",
                                     arrowstyle="-", lw=1.5))
    for node, (x, y) in pos.items():
        if node < ne:
            ax.plot(x, y, "o", mfc="white", mec="k", ms=8)
            ax.annotate(str(node), (x, y), xytext=(x * 1.15, y * 1.15 + 0.05), ha="center")
        else:
            ax.plot(x, y, "o", color="k", ms=7)
    ax.set_xlim(-2.6, 2.6)
    ax.set_ylim(-2.6, 2.6)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(f"1/{diagram.symmetry_factor}")
    return ax
