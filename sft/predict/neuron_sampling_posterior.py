"""O(1/n) and O(1/n^2) Bayesian posterior of a finite-width network at hundreds of inputs, without cumulant tensors.

Why sampling (issue 12, item 2). The generated O(1/n) terms (:func:`sft.predict.posterior_series`) contract
the output's fourth cumulant U = (1/n)[V + V + V] with y~ = K~^{-1} y, K~^{-1} and the projector R. The
output is exactly N(0, G) given the readout metric G = G^(L+1), so U is the sum over the 3 pairings of its
legs of V = n Cov(G, G). One hidden layer: G = C_b + (C_W / n) sum_i s_i s_i^T with i.i.d. neuron features
s = sigma(z), z ~ N(0, K^(1)) in R^N, so V = E[X (x) X], X = C_W (s s^T - <s s^T>). A contraction such as
sum V_(ab)(cd) A_ab C_cd = C_W^2 Cov(s^T A s, s^T C s) is a genuinely N-dimensional Gaussian expectation of a
non-polynomial function: exact only for polynomial sigma (Wick); in a Hermite expansion of sigma its terms
are tensor networks on the complete graph K4 (treewidth 3), O(N^4) each, and the series must be truncated.
So each generated graph is evaluated as an unbiased average over sampled neurons: every X factor is a sum
of low-rank sampled atoms sum_k w_k U_ik V_ik^T and fixed N x N matrices, and a graph with its vertex legs
paired into X factors is one ``np.einsum`` per pairing class and atom kind, O(B K N P) for B neurons of
K atoms. Error bars: standard error over ``n_batches`` independent batches.

Two hidden layers (n_1 = n_2 = n, r = 1). From the recursion of :mod:`sft.finite.vertex` (PDLT sec. 4.3):
V^(3) = C_W^2 [<t t t t> - <t t><t t>]_{K^(2)} + r B V^(2) B^T, t = sigma(z), z ~ N(0, K^(2)), where B, the
linear response of E[G^(3) | G^(2)] / C_W to G^(2), is pair-local:

    B(X)_ab = <q_a q_b> X_ab + dk_ab/dK_aa X_aa + dk_ab/dK_bb X_bb  (a != b),   B(X)_aa = dk_aa/dK_aa X_aa,

k_ab = <s_a s_b>_{K^(2)}, q = sigma'(z). So V^(3) = E[X_a (x) X_a] + r E[X_b (x) X_b], X_a = C_W (t t^T - <t t^T>)
and X_b = C_W^2 [B(s s^T) - B(<s s^T>)] with s = sigma(z^(1)), two independent sampled components.
B(s s^T) is itself sampled without N x N x N work (:func:`_response_factors`): <q_a q_b> = E[q q^T] and, by
rescaling z_a, dk_ab/dK_aa = (<z_a q_a t_b> - K_ab <q_a q_b>) / (2 K_aa), with fresh z, zeta ~ N(0, K^(2)) for
each of the two X factors (so E[X_b (x) X_b] is unbiased); B(<s s^T>) is exact, from the pair derivatives of
``sft.finite.vertex._pair_derivatives``. The kernel shift is exact (no sampling): G1^(3)_ab = (r C_W / 8)
sum_{slots of (a, b)} <d^4 (s_a s_b)> V^(2)_{(ij)(kl)} needs V^(2) only on the pairs inside {a, b}
(2-d moments), O(N^2) integrals like the kernel; it equals multi_input's G1 to ~1e-16 (same quadrature).

O(1/n^2), one hidden layer (``order=2``, depth 1). Given the hidden layer the output is N(0, G), G = K +
(1/n) sum_i X_i with X_i = C_W (s_i s_i^T - <s s^T>) i.i.d. and centred, so log E[e^{t.f}] = t K t / 2 +
n log E[exp(t X t / 2n)] = t K t / 2 + E[(t X t)^2] / 8n + E[(t X t)^3] / 48 n^2 + O(1/n^3): the kernel has no 1/n
shift, kappa_4 = (1/n) sum_3 E[X (x) X] has no 1/n^2 part, kappa_6 = (1/n^2) sum_15 E[X (x) X (x) X] (sums over the
pairings of the legs), in agreement with the exact cumulants n^(1 - r/2) kappa_r(neuron) of
:mod:`sft.finite.one_layer_cumulants`. Of the generated eps^2 graphs only those with one kappa_6 vertex S (3 for the
mean, 3 for the covariance) or two kappa_4 vertices (7 and 9) survive. Both are estimated from rows of four
independent neurons s_1..s_4 (X_k = C_W s_k s_k^T, uncentred): E[(X_1 - X_2) (x) (X_1 - X_3) (x) (X_1 - X_4)] is the
centred third moment (every other product of the expansion has a lone independent centred factor), averaged over
which neuron is the centre (P = M = 100: half the error of one centre at 4x the cost of this cheap part) and each
kappa_4 vertex of a two-vertex graph is (1/2) (X_1 - X_2) (x) (X_1 - X_2) on its own pair of sets (1, 2 and 3, 4),
the two vertices averaged separately (a product of averages over blocks of 64 rows, so unbiased; P = M = 100,
tanh, 4 batches of 1024 rows: error of the two-vertex class 153 / 316 (mean / covariance, Frobenius) with
blocks of 64 against 149 / 292 with blocks of 256, at a quarter of the cost). A vertex whose factors are
sampled rank-1 atoms is a set of rows, each with a few vectors s_p: the graph is evaluated on the row
features y~ . s_p, R s_p, s_p K~^{-1} s_q (:class:`_Rows`) summed over the pairings of the legs into the factors
and the atoms (:func:`_row_program`), the lines between two vertices through the rows x rows matrix
prod_lines s_p K~^{-1} s'_q (BLAS, O(b^2 p^2e M) per block of b rows) or, with few points, through the averaged
vertex with its lines open; one line factorizes (:func:`_row_graph_value`).
Memory O(N^2 + B p N + b^2 p^e) for B rows per batch. A linear sigma is exact (Isserlis): sum_15 E[X X X] =
8 C_W^3 sum_15 M M M (the 8 cycles through the three pairs), sum_3 E[X X] = 2 C_W^2 sum_3 M M, no sampling.
Depth 2 at O(1/n^2) needs the 1/n corrections of V and G1 and the depth-2 six-point vertex at large N (not here).

Accuracy, measured (tests/test_large_posterior.py; sims/benchmarks/bench_large_posterior.py). Small N
(P = 3, M = 2): the O(1/n) mean and covariance agree with the full-tensor route
(:func:`sft.predict.perturbative_posterior` with multi_input's V, G1) within |z| < 4 of the error bars; the
einsum compilation of the generated graphs is exact (1e-12, fixed atoms). For a linear sigma the route is
exact (Isserlis: V summed over pairings = 2 C_W^2 x (M M summed over pairings), and B = 1; no sampling) and
equals the explicit-tensor result to 1e-12. 1e-8 agreement is NOT reachable for a nonlinear sigma by this
route: the U part is a Monte Carlo integral whose error falls as samples^-1/2. At
P = M = 100 the variance is large: the sampled projections y~ . s weight the small-eigenvalue directions of
K~, which are dominated by the nonlinear residual of sigma, so a Gaussian-equivalent (linearized) control
variate removed < 10 % of the variance (tried, not kept). One hidden layer, tanh, d = 50, noise 1.0:
8192 neurons give relative errors 0.20 (mean) / 0.13 (covariance) of the correction; with noise 0.1 (|y~|
~ 20) 4096 neurons give ~0.9 / 0.5.

O(1/n^2) at depth 1 (tests/test_large_posterior_order2.py): linear sigma equal to
:func:`sft.predict.perturbative_posterior` with the kappa_4, kappa_6 of
:func:`sft.finite.one_hidden_layer_cumulants` to 1e-10 (measured ~1e-14); the row evaluation with a fixed pool
(both vertices on the same rows, so the graphs of the empirical tensors) equal to the full-tensor route to 1e-12.
tanh and ReLU at P = M = 2 (N = 4: exact kappa_6 needs Gaussian integrals over up to 4 inputs), 10000 rows,
20 batches, seed 0: mean[2], cov[2] within |z| < 1.8 (tanh) / 1.2 (ReLU) of the exact full-tensor route; leaving out
the kappa_6 graphs gives max |z| = 37 (tanh) / 17 (ReLU), leaving out the kappa_4^2 graphs 104 / 19. The two classes
partly cancel (ReLU: each ~5-10x their sum), so the relative error of the sum is larger than that of either class.
P = M = 100 (d = 50, two classes, noise 1.0, seed 0, 8192 rows of four neurons in 8 batches, float64;
bench_large_posterior.py --part order2 on this 2-core machine at load 3-5): tanh 36 s wall (24 s CPU), peak
64 MiB traced, relative Monte Carlo errors (Frobenius) 0.36 (mean[2]) / 0.20 (cov[2]); ReLU 24 s (16 s CPU), 60 MiB,
0.76 / 0.18 (there the kappa_6 and kappa_4^2 parts of the mean largely cancel). A 10 % error would take ~1e5 (tanh) /
4.7e5 (ReLU) rows; the full-tensor route's kappa_6 alone would be 466 TiB at N = 200.
"""
from __future__ import annotations

import functools
import itertools
import math
import numbers
import string
from typing import NamedTuple

import numpy as np

from ..conventions import check_depth, check_int, layer_constants, psd_eigh, require_x64
from ..finite.vertex import _pair_derivatives, _subset_moments
from ..kernels.activations import get_activation
from ..kernels.recursion import nngp
from ..symbolic.wick import perfect_matchings
from .nearly_gaussian_posterior import posterior_series
from .posterior_correction import _finite, _inputs, _setup

__all__ = ["LargePosterior", "large_posterior"]


class LargePosterior(NamedTuple):
    """Posterior of the test outputs: ``mean[j]`` (M,), ``cov[j]`` (M, M) the O(n^-j) parts (j = 0 .. order) and
    their Monte Carlo standard errors ``mean_err``, ``cov_err`` (zero at j = 0, and for a linear sigma); the
    kernel-shift parts ``shift_mean``, ``shift_cov`` (exact, included in mean[1], cov[1]); samples (neurons per
    component at O(1/n); rows of four neurons at O(1/n^2)), seed."""

    mean: np.ndarray
    cov: np.ndarray
    mean_err: np.ndarray
    cov_err: np.ndarray
    shift_mean: np.ndarray
    shift_cov: np.ndarray
    samples: int
    seed: int


# ---------------------------------------------------------------------------------- atoms
# An X factor is a list of atoms (coef, A, U, V): a fixed matrix coef * A (U = V = None), or, with A = None, the
# sampled low-rank matrix X_i = sum_k coef_k U_ik V_ik^T for each sampled row i (coef (K,), U, V (B, K, N)).

def _gaussian_factor(name, K):
    """F (N, r) with F F^T = K (eigh, eigenvalues below psd_eigh's tolerance dropped)."""
    lam, vec = psd_eigh(name, K)
    keep = lam > 10 * K.shape[0] * np.finfo(float).eps * lam.max()
    return vec[:, keep] * np.sqrt(lam[keep])


def _sample(act, F, rng, B):
    """z = F xi (B, N), xi ~ N(0, I): rows i.i.d. N(0, F F^T); and sigma(z), float64."""
    z = rng.standard_normal((B, F.shape[1])) @ F.T
    return z, np.asarray(act.fn(z), dtype=np.float64)


def _neuron_factors(act, F, Mexp, cw, rng, B):
    """Both X factors of V = E[X (x) X], X = cw (s s^T - <s s^T>), s = sigma(F xi): one neuron, exactly centred."""
    s = _sample(act, F, rng, B)[1][:, None, :]
    atoms = [(np.array([cw]), None, s, s), (-cw, Mexp, None, None)]
    return [atoms, atoms]


def _response_factors(act, F1, F2, k2, BM, c, rng, B):
    """The two X factors of r E[X_b (x) X_b], X_b = c [B(s s^T) - B(<s s^T>)], s = sigma(F1 xi) shared, each
    factor with its own independent z, zeta ~ N(0, K^(2)) (F2 F2^T) for an unbiased B(s s^T) (module docstring):

        B(s s^T) = E_{z, zeta}[(s q)(s q)^T + (w p) t^T + t (w p)^T - (w zeta q)(zeta q)^T - (zeta q)(w zeta q)^T],

    q = sigma'(z), p = z sigma'(z), t = sigma(z), w = s^2 / (2 K^(2)_aa) (Price: dk_ab/dK_ab = <q_a q_b>,
    dk_ab/dK_aa = (<p_a t_b> - K_ab <q_a q_b>) / (2 K_aa) by rescaling z_a; E[zeta zeta^T] = K^(2))."""
    s = _sample(act, F1, rng, B)[1]
    w = s * s / (2 * k2)
    factors = []
    for _ in range(2):
        z, t = _sample(act, F2, rng, B)
        zeta = _sample(act, F2, rng, B)[0]
        q = np.asarray(act.derivative(z), dtype=np.float64)
        p, zq = z * q, zeta * q
        U = np.stack([s * q, w * p, t, w * zq, zq], 1)
        V = np.stack([s * q, t, w * p, zq, w * zq], 1)
        factors.append([(c * np.array([1.0, 1.0, 1.0, -1.0, -1.0]), None, U, V), (-c, BM, None, None)])
    return factors


# ---------------------------------------------------------------------------------- graphs -> einsum
def _leg_types(vertex, edge_legs):
    """Leg labels of one vertex: 'x' (test), 'y', ('s', k) for self pair k, ('e', id) for an edge leg."""
    name, n_x, n_y, n_self = vertex
    return ["x"] * n_x + ["y"] * n_y + [("s", k) for k in range(n_self) for _ in range(2)] + edge_legs


@functools.lru_cache(maxsize=None)
def _unique_pairings(types):
    """{canonical pairing: multiplicity} of the legs (indices into ``types``); equal-type legs interchangeable."""
    out = {}
    for matching in perfect_matchings(tuple(range(len(types)))):
        key = tuple(sorted(tuple(sorted((repr(types[a]), repr(types[b])))) for a, b in matching))
        if key not in out:
            out[key] = [tuple(matching), 0]
        out[key][1] += 1
    return [tuple(v) for v in out.values()]


_PATHS = {}


def _einsum(spec, *ops):
    """np.einsum with its greedy contraction order, planned once per spec and shapes."""
    key = (spec,) + tuple(o.shape for o in ops)
    if key not in _PATHS:
        _PATHS[key] = np.einsum_path(spec, *ops, optimize="greedy")[0]
    return np.einsum(spec, *ops, optimize=_PATHS[key])


def _graph_value(g, vertex_atoms, yt, Kinv, R):
    """Mean over the sampled neurons (rows of the batch arrays) of one graph (free test axes in order),
    summed over the pairings of the vertex legs into X factors and over the atoms of each factor.

    vertex_atoms[i]: list of components (weight, [atoms of X factor 1, atoms of X factor 2, ..]) for vertex i
    (rank 2: one factor, rank 4: two); the factors of one component are evaluated on the same sampled rows,
    different vertices must be given independent samples.
    """
    edge_legs = [[] for _ in g.vertices]
    for e, (i, j, c) in enumerate(g.edges):
        for k in range(c):
            edge_legs[i].append(("e", e, k))
            edge_legs[j].append(("e", e, k))
    per_vertex = []  # for each vertex: list of (coef, [(spec_piece, operand)], leg letters) alternatives
    for i, v in enumerate(g.vertices):
        types = _leg_types(v, edge_legs[i])
        alts = []
        for weight, factors in vertex_atoms[i]:
            for matching, mult in _unique_pairings(tuple(types)):
                for atoms in itertools.product(*factors[:len(matching)]):
                    coef = weight * mult * math.prod(a[0] for a in atoms if a[1] is not None)
                    alts.append((coef, matching, atoms))
        per_vertex.append((types, alts))
    total = 0.0
    rows = "iZYX"[:len(g.vertices)]  # the sampled-row letter of each vertex
    for choice in itertools.product(*[alts for _, alts in per_vertex]):
        letters = iter(string.ascii_letters.replace("i", "")[:-3])
        specs, ops, out, coef = [], [], [], 1.0
        edge_letter = {}
        for row, (types, _), (c, matching, atoms) in zip(rows, per_vertex, choice):
            coef *= c
            leg = [next(letters) for _ in types]
            self_seen = {}
            for k, t in enumerate(types):
                if t == "x":
                    o = next(letters)
                    specs.append(o + leg[k]), ops.append(R), out.append(o)
                elif t == "y":
                    specs.append(leg[k]), ops.append(yt)
                elif t[0] == "s":
                    if t in self_seen:
                        specs.append(self_seen[t] + leg[k]), ops.append(Kinv)
                    else:
                        self_seen[t] = leg[k]
                else:  # edge leg: Kinv between the two vertices' letters
                    if t in edge_letter:
                        specs.append(edge_letter[t] + leg[k]), ops.append(Kinv)
                    else:
                        edge_letter[t] = leg[k]
            for (a, b), (w, A, U, V) in zip(matching, atoms):
                if A is not None:
                    specs.append(leg[a] + leg[b]), ops.append(A)
                else:  # sum_k w_k U_ik V_ik^T, k a fresh letter
                    k = next(letters)
                    specs += [k, row + k + leg[a], row + k + leg[b]]
                    ops += [w, U, V]
        for row in rows:  # mean over each vertex's sampled rows
            coef /= next((o.shape[0] for sp, o in zip(specs, ops) if row in sp), 1)
        total = total + coef * _einsum(",".join(specs) + "->" + "".join(out), *ops)
    return total


class _Rows(NamedTuple):
    """A pool of sampled neuron vectors s (B, p, N) and its contractions with the Gaussian pieces:
    Kinv s (B, p, N), y~ . s (B, p), R s (B, p, M), s_p Kinv s_q (B, p, p)."""

    pool: np.ndarray
    KP: np.ndarray
    Y: np.ndarray
    X: np.ndarray
    Q: np.ndarray

    def take(self, rows, vecs):
        """The same pool restricted to some rows and pool vectors (``rows``, ``vecs``: index arrays or slices)."""
        return _Rows(self.pool[rows][:, vecs], self.KP[rows][:, vecs], self.Y[rows][:, vecs], self.X[rows][:, vecs],
                     self.Q[rows][:, vecs][:, :, vecs])


def _rows(pool, yt, Kinv, R):
    """:class:`_Rows` of ``pool`` (B, p, N): O(B p N (N + M))."""
    KP = pool @ Kinv
    return _Rows(pool, KP, pool @ yt, pool @ R.T, np.einsum("ipn,iqn->ipq", KP, pool))


@functools.lru_cache(maxsize=None)
def _row_program(types, factors, p):
    """One vertex as a program over its alternatives (pairings of the legs into the factors, ``_unique_pairings``,
    times the atoms (sign, pool index) of each factor): coefficients (A,), pool indices of the y~ legs (A, n_y),
    of the two legs of each self pair (A, n_self, 2), and the 0/1 map (A, p^e p^x) of each alternative to the
    pool indices of its edge legs, then test legs (row-major)."""
    coefs, ys, selfs, slots = [], [], [], []
    free = [leg for leg, t in enumerate(types) if t[0] == "e"] + [leg for leg, t in enumerate(types) if t == "x"]
    for matching, mult in _unique_pairings(types):
        for atoms in itertools.product(*factors[:len(matching)]):
            q = [0] * len(types)
            for (a, b), (_, k) in zip(matching, atoms):
                q[a] = q[b] = k
            coefs.append(mult * math.prod(sign for sign, _ in atoms))
            ys.append([q[leg] for leg, t in enumerate(types) if t == "y"])
            pairs = {}
            for leg, t in enumerate(types):
                if t[0] == "s":
                    pairs.setdefault(t, []).append(q[leg])
            selfs.append(list(pairs.values()))
            slots.append(np.ravel_multi_index([q[leg] for leg in free], (p,) * len(free)) if free else 0)
    A = len(coefs)
    onehot = np.zeros((A, p ** len(free)))
    onehot[np.arange(A), slots] = 1.0
    return (np.array(coefs, dtype=float), np.array(ys, dtype=int).reshape(A, -1),
            np.array(selfs, dtype=int).reshape(A, -1, 2), onehot)


def _row_weights(types, weight, factors, rows):
    """c (B, p, .., p): the row weights of one vertex on the pool indices of its edge legs, then its test legs,
    summed over its alternatives (:func:`_row_program`), with the y~ legs and self pairs contracted."""
    Y, Q = rows.Y, rows.Q
    B, p = Y.shape
    coefs, ys, selfs, onehot = _row_program(tuple(types), factors, p)
    c = weight * coefs * np.prod(Y[:, ys], axis=2) * np.prod(Q[:, selfs[..., 0], selfs[..., 1]], axis=2)  # (B, A)
    n_free = sum(1 for t in types if t[0] == "e" or t == "x")
    return (c @ onehot).reshape((B,) + (p,) * n_free)


def _with_tests(c, X, n_x):
    """Contract the last n_x pool axes of c (B, .., p, .., p) with R s: (B, .., M, .., M)."""
    for _ in range(n_x):  # the first remaining pool axis of a test leg -> a test axis at the end (batched matmul)
        c = np.moveaxis(c, c.ndim - n_x, -1)
        c = (c.reshape(c.shape[0], -1, c.shape[-1]) @ X).reshape(c.shape[:-1] + X.shape[2:])
    return c


def _row_sum(c, X, n_x):
    """sum over the rows of c (B, .., p, .., p) with its last n_x pool axes contracted with R s: (.., M, .., M);
    the last test leg is summed with the rows as one matrix product (no (B, M, .., M) intermediate)."""
    if n_x == 0:
        return c.sum(0)
    c = np.moveaxis(_with_tests(c, X, n_x - 1), c.ndim - n_x, 1)  # (B, p, .., M^(n_x - 1))
    rest = c.shape[2:]
    out = X.reshape(-1, X.shape[2]).T @ c.reshape(c.shape[0] * c.shape[1], -1)
    return np.moveaxis(out.reshape((X.shape[2],) + rest), 0, -1)


def _row_graph_value(g, verts, gram=None):
    """Mean over the sampled rows of each vertex (a product of averages for two vertices) of one graph, free
    test axes in order (vertex 0's, then vertex 1's), for vertices whose factors are sums of sampled rank-1
    atoms sign x s_p s_p^T, s_p the vectors of a row of a pool.

    verts[v] = (weight, rows (:class:`_Rows` of a pool (B_v, p, N)), factors): factors[f] = ((sign, pool index),
    ..) the atoms of the f-th X factor (the pairs of the vertex legs fill the factors in order). Two vertices
    joined by e lines: the vertex with fewer test legs (A, at most one) is reduced to L[i, p_1..p_e, o] and
    carried to the other one's rows either through the B_A x B_B products prod_e s_{i p_e} Kinv s'_{j q_e} (one
    p_1..p_e at a time, as a matrix product: O(B_A B_B p^(2e) M), memory O(B_A B_B p^e)) or, when cheaper (few
    points), through its average with the e lines open (O((B_A + B_B) p^e N^e M)); one line factorizes,
    O((B_A + B_B) p N M), or goes through the rows x rows matrix when that is cheaper. ``gram`` (B_0, p, B_1, q):
    s_{ip} Kinv s'_{jq} of vertex 0's and vertex 1's rows, if already computed (shared by the graphs of two pools).
    """
    edge_legs = [[] for _ in g.vertices]
    for e, (i, j, c) in enumerate(g.edges):
        for k in range(c):
            edge_legs[i].append(("e", e, k))
            edge_legs[j].append(("e", e, k))
    cs = [_row_weights(_leg_types(v, legs), w, factors, rows) for v, legs, (w, rows, factors)
          in zip(g.vertices, edge_legs, verts)]
    feats = [rows for _, rows, _ in verts]
    n_x = [v[1] for v in g.vertices]
    if len(g.vertices) == 1:
        return _row_sum(cs[0], feats[0].X, n_x[0]) / cs[0].shape[0]
    if len(g.vertices) != 2:
        raise ValueError(f"graph with {len(g.vertices)} vertices: the row evaluation handles one or two")
    a, b = (0, 1) if n_x[0] <= n_x[1] else (1, 0)
    KP, pool = feats[a].KP, feats[b].pool
    e, p, q = len(edge_legs[0]), KP.shape[1], pool.shape[1]
    L = _with_tests(cs[a], feats[a].X, n_x[a]).reshape(cs[a].shape[0], p ** e, -1)  # (B_A, p^e, M^x_A)
    BA, BB, N, mx = L.shape[0], pool.shape[0], pool.shape[2], L.shape[2]
    if gram is not None:
        gram = gram if a == 0 else gram.transpose(2, 3, 0, 1)
    if e == 1 and (gram is None or BA * p * BB * q > (BA * p + BB * q) * N):  # sum_i L[i, p] Kinv s_ip, . s'_jq
        W = ((pool.reshape(-1, N) @ (KP.reshape(-1, N).T @ L.reshape(-1, mx))).T
             .reshape(mx, BB, q))
    elif e == 1:
        W = (L.reshape(-1, mx).T @ gram.reshape(BA * p, BB * q)).reshape(mx, BB, q)
    elif (BA * p ** e + BB * q ** e) * N ** e * mx < BA * BB * (p * q * N * (gram is None) + (p * q) ** e * mx):
        # few points: the averaged vertex A with its e lines open, T[n_1..n_e, o], then vertex B's rows
        Pl, Ql, Nl = "abcd"[:e], "ABCD"[:e], "klmn"[:e]
        T = np.einsum(f"i{Pl}o," + ",".join(f"i{u}{k}" for u, k in zip(Pl, Nl)) + f"->{Nl}o",
                      L.reshape((BA,) + (p,) * e + (mx,)), *[KP] * e, optimize="greedy")
        W = np.einsum(f"{Nl}o," + ",".join(f"j{u}{k}" for u, k in zip(Ql, Nl)) + f"->oj{Ql}", T, *[pool] * e,
                      optimize="greedy")
        W = W.reshape(mx, BB, q ** e)
    else:
        G = (KP.reshape(-1, N) @ pool.reshape(-1, N).T).reshape(BA, p, BB, q) if gram is None else gram
        W = 0.0
        for k, ps in enumerate(itertools.product(range(p), repeat=e)):
            H = 1.0
            for t, pe in enumerate(ps):  # H[i, j, q_1..q_e] = prod_t G[i, p_t, j, q_t]
                H = H * G[:, pe].reshape((G.shape[0], G.shape[2]) + (1,) * t + (q,) + (1,) * (e - 1 - t))
            W = W + np.tensordot(L[:, k], H, axes=(0, 0))  # (M^x_A, B_B, q, .., q)
        W = W.reshape(L.shape[2], pool.shape[0], q ** e)
    # contract with vertex B: its rows, edge pool indices, then its test legs
    cb = cs[b].reshape((cs[b].shape[0], q ** e) + (q,) * n_x[b])
    out = _row_sum(np.einsum("ojq,jq...->jo...", W, cb), feats[b].X, n_x[b])
    out = out / (L.shape[0] * pool.shape[0])
    out = out.reshape((feats[0].X.shape[2],) * (n_x[a] + n_x[b]))
    return out if a == 0 else np.moveaxis(out, list(range(n_x[a])), list(range(n_x[b], n_x[a] + n_x[b])))


def _symmetrize(T):
    m = T.ndim
    return sum(np.transpose(T, p) for p in itertools.permutations(range(m))) / math.factorial(m)


# ---------------------------------------------------------------------------------- exact kernel shift
def _pair_moments(act, K):
    """Fourth and second moments of s = sigma(z), z ~ N(0, K), on the pairs: m4[a, b, p] = <s_a^p s_b^(4-p)>
    (p = 0..4), m2[a, b, p] = <s_a^p s_b^(2-p)>, each from the 2-d (or 1-d) rule of sft.finite.vertex."""
    N = K.shape[0]
    m4, m2 = np.zeros((N, N, 5)), np.zeros((N, N, 3))
    d1 = _subset_moments(act, K, np.arange(N)[:, None], ((4,), (2,)))
    m4[:], m2[:] = d1[:, None, :1], d1[:, None, 1:]  # diagonal a = b: every power pattern is <s_a^4>, <s_a^2>
    pairs = np.array(list(itertools.combinations(range(N), 2)))
    d2 = _subset_moments(act, K, pairs, ((1, 3), (2, 2), (3, 1), (1, 1)))
    a, b = pairs[:, 0], pairs[:, 1]
    for p in (1, 2, 3):  # column p - 1 is <s_a^p s_b^(4-p)>
        m4[a, b, p] = m4[b, a, 4 - p] = d2[:, p - 1]
    m4[a, b, 0] = m4[b, a, 4] = d1[b, 0]
    m4[a, b, 4] = m4[b, a, 0] = d1[a, 0]
    m2[a, b, 1] = m2[b, a, 1] = d2[:, 3]
    m2[a, b, 0] = m2[b, a, 2] = d1[b, 1]
    m2[a, b, 2] = m2[b, a, 0] = d1[a, 1]
    return m4, m2


def _kernel_shift_depth2(act, K1, K2, cw1, cw2, M4, r=1.0):
    """G1^(3) (N, N): (r cw2 / 8) sum over slots of M4[a, b] V^(2) restricted to the pair {a, b} (exact)."""
    m4, m2 = _pair_moments(act, K1)
    N = K1.shape[0]
    # V2 on slots: V[a, b, i, j, k, l] = cw1^2 (<s_i s_j s_k s_l> - <s_i s_j><s_k s_l>), slots 0 -> a, 1 -> b
    V = np.zeros((N, N) + (2,) * 4)
    for sl in itertools.product((0, 1), repeat=4):
        p = sl.count(0)
        pij, pkl = (sl[0] == 0) + (sl[1] == 0), (sl[2] == 0) + (sl[3] == 0)
        V[(slice(None), slice(None)) + sl] = cw1 ** 2 * (m4[:, :, p] - m2[:, :, pij] * m2[:, :, pkl])
    return r * cw2 / 8 * np.einsum("abijkl,abijkl->ab", M4, V)


# ---------------------------------------------------------------------------------- O(1/n^2), depth 1
_BLOCK = 64  # rows per block of the two-vertex (kappa_4^2) product of averages


def _second_order_terms(m):
    """The generated eps^2 terms of c_m that survive at depth 1 (one kappa_6 vertex S or two U1 vertices;
    dK1 = dK2 = U2 = 0 there, module docstring)."""
    return [t for t in posterior_series(2)[(2, m)] if {v[0] for v in t.graphs[0].vertices} <= {"S", "U1"}]


def _second_order_exact(Mexp, cw, n, yt, Kinv, R):
    """Linear sigma, s = z ~ N(0, Mexp): sum_3 E[X (x) X] = 2 cw^2 sum_3 Mexp Mexp and sum_15 E[X (x) X (x) X]
    = 8 cw^3 sum_15 Mexp Mexp Mexp (Isserlis: the 8 cycles through the three pairs), as fixed-matrix atoms."""
    fixed = [(1.0, Mexp, None, None)]
    atoms = {"S": [(8 * cw ** 3 / n ** 2, [fixed] * 3)], "U1": [(2 * cw ** 2 / n, [fixed] * 2)]}
    return {m: math.factorial(m) * _symmetrize(np.asarray(sum(
        float(t.coefficient) * _graph_value(t.graphs[0], [atoms[v[0]] for v in t.graphs[0].vertices], yt, Kinv, R)
        for t in _second_order_terms(m)))) for m in (1, 2)}


def _second_order_classes(rows, cw, n):
    """Unbiased estimates {(m, "S" or "UU"): O(1/n^2) part of c_m from that class of graphs} from the
    :class:`_Rows` of four independent neuron sets s (B, 4, N):

    kappa_6 = (1/n^2) sum_15 E[X (x) X (x) X], X = cw (s s^T - <s s^T>), estimated by (X_c - X_k) (x) (X_c - X_l) (x)
    (X_c - X_m) with X_k = cw s_k s_k^T (every other product of the expansion has a lone independent centred
    factor), averaged over the centre c = 1..4 ({k, l, m} the other three), and each kappa_4 vertex of the
    two-vertex graphs by (1/2n) (X_1 - X_2) (x) (X_1 - X_2) on its own pair of sets (1, 2 and 3, 4), the two
    vertices averaged separately (a product of averages over blocks of ``_BLOCK`` rows)."""
    def diff(k):
        return ((1, 0), (-1, k))
    S = [(cw ** 3 / (4 * n ** 2), rows, tuple(((1, c), (-1, k)) for k in range(4) if k != c)) for c in range(4)]
    B = rows.pool.shape[0]
    blocks = np.array_split(np.arange(B), -(-B // _BLOCK))
    U = [[(0.5 * cw ** 2 / n, rows.take(b, vecs), (diff(1),) * 2) for vecs in (slice(0, 2), slice(2, 4))]
         for b in blocks]
    N = rows.pool.shape[2]
    grams = [(u.KP.reshape(-1, N) @ v.pool.reshape(-1, N).T).reshape(u.KP.shape[:2] + v.pool.shape[:2])
             for (_, u, _), (_, v, _) in U]
    out = {}
    for m in (1, 2):
        for cls in ("S", "UU"):
            tot = 0.0
            for t in _second_order_terms(m):
                g = t.graphs[0]
                if (len(g.vertices) == 1) == (cls == "S"):
                    val = (sum(_row_graph_value(g, [centre]) for centre in S) if cls == "S" else
                           sum(_row_graph_value(g, pair, G) for pair, G in zip(U, grams)) / len(U))
                    tot = tot + float(t.coefficient) * val
            out[(m, cls)] = math.factorial(m) * _symmetrize(np.asarray(tot))
    return out


# ---------------------------------------------------------------------------------- public
def large_posterior(x_train, y_train, x_test, *, depth, activation, C_W, C_b, noise, n=1.0, order=1,
                    samples=4096, n_batches=16, seed=0) -> LargePosterior:
    """GP posterior and its O(1/n) (depth 1, 2) and O(1/n^2) (depth 1) corrections, O(N^2) memory.

    Prior: the MLP of :mod:`sft.conventions` with all hidden widths n; labels y = f(x_train) + noise.
    With N = P + M points (train first), K = K^(L+1), R = [-k_*^T K~^{-1}, 1], y~ = K~^{-1} y, the generated
    O(1/n) terms of :func:`sft.predict.posterior_series` (mean: -1/2 U[x y K~^{-1}] + 1/6 U[x y y y] +
    dK[x y]; covariance 2! Sym[-1/4 U[x x K~^{-1}] + 1/4 U[x x y y] + 1/2 dK[x x]]) are evaluated with
    U = (1/n) sum_pairings V, V = E[X (x) X] over sampled neurons (module docstring), dK = G1^(3)/n exact
    (zero at depth 1). ``samples`` neurons per component, split into ``n_batches`` independent batches
    for the standard errors; float64 throughout; same seed -> same result. Cost: O(samples N P) for the
    sampling plus, at depth 2, O(N^2) 2-d integrals (the pair derivatives: ~40 s at N = 200 on 2 loaded
    cores); memory O(N^2 + (samples / n_batches) N). The error bars are honest but large at P ~ 100 (module
    docstring): check ``mean_err``, ``cov_err`` against ``mean[1]``, ``cov[1]`` before using the correction.

    order = 2 (depth 1 only): also mean[2], cov[2], the O(1/n^2) parts, from the generated eps^2 graphs with one
    kappa_6 vertex or two kappa_4 vertices (module docstring), ``samples`` rows of four fresh neurons in
    ``n_batches`` batches from a random stream of their own, so mean[:2], cov[:2] are bitwise those of order = 1.
    Cost O(samples N (N + M)) plus O(samples b M) for the two-vertex graphs (b = 64 rows per block); memory
    O(N^2 + (samples / n_batches) N). A linear sigma is exact (no sampling).

    x_train (P, d), y_train (P,), x_test (M, d); noise = sigma^2 >= 0; n > 0 (n = 1: the coefficients of
    1/n^order); order 1 or 2 (2 at depth 2: ValueError).

    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((6, 4))
    >>> p = large_posterior(x[:4], np.array([1.0, -1.0, 0.5, 0.0]), x[4:], depth=1, activation="tanh",
    ...                     C_W=1.5, C_b=0.1, noise=0.1, samples=2000, n_batches=4)
    >>> p.mean.shape, p.cov.shape, bool(np.all(p.mean_err[1] > 0))
    ((2, 2), (2, 2, 2), True)
    >>> q = large_posterior(x[:4], np.array([1.0, -1.0, 0.5, 0.0]), x[4:], depth=1, activation="tanh",
    ...                     C_W=1.5, C_b=0.1, noise=0.1, samples=2000, n_batches=4, order=2)
    >>> q.mean.shape, bool(np.array_equal(q.mean[:2], p.mean)), bool(np.all(q.cov_err[2] > 0))
    ((3, 2), True, True)
    """
    require_x64("sft.predict.large_posterior")
    x_train = _inputs("x_train", x_train)
    x_test = _inputs("x_test", x_test, x_train.shape[1])
    y = _finite("y_train", y_train, 1)
    if y.shape != (x_train.shape[0],):
        raise ValueError(f"y_train has shape {y.shape}: it must be ({x_train.shape[0]},), one per row of x_train")
    depth = check_depth(depth)
    if depth > 2:
        raise ValueError(f"depth={depth} is not allowed: large_posterior handles depth 1 and 2 (the O(N^2) "
                         "response map is implemented for one propagation step)")
    if isinstance(order, bool) or not isinstance(order, numbers.Integral) or order not in (1, 2):
        raise ValueError(f"order={order!r} is not allowed: order = 1 (O(1/n)) or 2 (O(1/n^2), depth 1 only)")
    if order == 2 and depth == 2:
        raise ValueError("order=2 with depth=2 is not allowed: O(1/n^2) at depth 2 needs the 1/n corrections of V "
                         "and G1 and the depth-2 six-point vertex at large N, not implemented; use depth=1, or "
                         "sft.predict.perturbative_posterior with full tensors at small N")
    n = float(n)
    if not np.isfinite(n) or n <= 0:
        raise ValueError(f"n = {n}: the width must be a finite positive number")
    samples, n_batches = check_int("samples", samples, 2), check_int("n_batches", n_batches, 2)
    if samples < n_batches:
        raise ValueError(f"samples={samples} is not allowed: it must be >= n_batches = {n_batches}")
    seed = check_int("seed", seed, 0)
    act = get_activation(activation)
    cw, cb = layer_constants(depth, C_W, C_b)
    P, M = x_train.shape[0], x_test.shape[0]
    x = np.concatenate([x_train, x_test])
    train, test = np.arange(P), np.arange(P, P + M)
    Ks = nngp(x, depth=depth, activation=act, C_W=cw, C_b=cb, all_layers=True)
    K, _, _, Kinv_t, yt_t, R = _setup(Ks[-1], y, train, test, noise)
    N = P + M
    yt, Kinv = np.zeros(N), np.zeros((N, N))
    yt[train], Kinv[np.ix_(train, train)] = yt_t, Kinv_t

    # sampled vertex components: sampler(rng, B) -> atoms of one X factor
    F1, Ms = _gaussian_factor("K^(1)", Ks[0]), (Ks[1] - cb[1]) / cw[1]
    Fn, Mn = (F1, Ms) if depth == 1 else (_gaussian_factor("K^(2)", Ks[1]), (Ks[2] - cb[2]) / cw[2])
    comps = [lambda rng, B: _neuron_factors(act, Fn, Mn, cw[depth], rng, B)]
    G1 = np.zeros((N, N))
    if depth == 2:
        M2, M4 = _pair_derivatives(act, Ks[1])
        # exact B(<s s^T>) from the pair derivatives: B(X)_ab = (1/2) sum_slots M2[a, b, i, j] X_ij
        d = np.diag(Ms)
        BM = 0.5 * ((M2[..., 0, 1] + M2[..., 1, 0]) * Ms + M2[..., 0, 0] * d[:, None] + M2[..., 1, 1] * d[None, :])
        np.fill_diagonal(BM, 0.5 * np.diagonal(M2[..., 0, 0]) * d)
        k2 = np.diagonal(Ks[1]).copy()
        comps.append(lambda rng, B: _response_factors(act, F1, Fn, k2, BM, cw[1] * cw[2], rng, B))
        G1 = _kernel_shift_depth2(act, Ks[0], Ks[1], cw[1], cw[2], M4)
    G1 = 0.5 * (G1 + G1.T) / n

    mean = np.zeros((order + 1, M))
    mean[0] = K[np.ix_(test, train)] @ yt_t
    sig = K[np.ix_(test, test)] - K[np.ix_(test, train)] @ Kinv_t @ K[np.ix_(train, test)]
    cov = np.zeros((order + 1, M, M))
    cov[0] = 0.5 * (sig + sig.T)
    shift = [(1.0, [[(1.0, G1, None, None)]])]
    rng = np.random.default_rng(seed)
    B = samples // n_batches
    series = posterior_series(1)

    def u_part(m, atoms):
        """The U graphs of the O(1/n) part of c_m with the U1 vertex given by ``atoms`` (components)."""
        tot = sum(float(t.coefficient) * _graph_value(t.graphs[0], [atoms], yt, Kinv, R)
                  for t in series[(1, m)] if t.graphs[0].vertices[0][0] == "U1")
        return math.factorial(m) * _symmetrize(np.asarray(tot))

    if act.slopes == (1.0, 1.0):
        # linear sigma, s = z ~ N(0, M): Cov(s_a s_b, s_c s_d) = M_ac M_bd + M_ad M_bc (Isserlis), so V summed
        # over the 3 pairings of the U vertex is 2 cw^2 x (M M summed over the 3 pairings): exact, no sampling
        exact = [(2 * cw[depth] ** 2 / n, [[(1.0, Mn, None, None)]] * 2)]
        if depth == 2:  # B = identity for a linear sigma
            exact.append((2 * (cw[1] * cw[2]) ** 2 / n, [[(1.0, Ms, None, None)]] * 2))
        est = {m: u_part(m, exact) for m in (1, 2)}
        err = {m: np.zeros_like(est[m]) for m in (1, 2)}
    else:
        parts = {1: [], 2: []}
        for _ in range(n_batches):
            drawn = [(1.0 / n, sampler(rng, B)) for sampler in comps]  # independent neurons per component, batch
            for m in (1, 2):
                parts[m].append(u_part(m, drawn))
        est = {m: np.mean(parts[m], 0) for m in (1, 2)}
        err = {m: np.std(parts[m], 0, ddof=1) / np.sqrt(n_batches) for m in (1, 2)}
    shift_parts = {}
    for m in (1, 2):
        tot = sum(float(t.coefficient) * _graph_value(t.graphs[0], [shift], yt, Kinv, R)
                  for t in series[(1, m)] if t.graphs[0].vertices[0][0] == "dK1")
        shift_parts[m] = math.factorial(m) * _symmetrize(np.asarray(tot))
    mean[1] = est[1] + shift_parts[1]
    cov[1] = est[2] + shift_parts[2]
    mean_err, cov_err = [np.zeros(M), err[1]], [np.zeros((M, M)), err[2]]
    if order == 2:  # depth 1: one kappa_6 vertex or two kappa_4 vertices; own random stream (order 1 unchanged)
        if act.slopes == (1.0, 1.0):
            est2, err2 = _second_order_exact(Mn, cw[1], n, yt, Kinv, R), None
        else:
            rng2 = np.random.default_rng([seed, 2])
            parts2 = []
            for _ in range(n_batches):
                pool = np.stack([_sample(act, F1, rng2, B)[1] for _ in range(4)], 1)
                cls = _second_order_classes(_rows(pool, yt, Kinv, R), cw[1], n)
                parts2.append({m: cls[(m, "S")] + cls[(m, "UU")] for m in (1, 2)})
            est2 = {m: np.mean([p[m] for p in parts2], 0) for m in (1, 2)}
            err2 = {m: np.std([p[m] for p in parts2], 0, ddof=1) / np.sqrt(n_batches) for m in (1, 2)}
        mean[2], cov[2] = est2[1], est2[2]
        mean_err.append(np.zeros(M) if err2 is None else err2[1])
        cov_err.append(np.zeros((M, M)) if err2 is None else err2[2])
    return LargePosterior(mean, cov, np.stack(mean_err), np.stack(cov_err), shift_parts[1], shift_parts[2],
                          B * n_batches, seed)
