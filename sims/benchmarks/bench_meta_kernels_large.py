"""Meta-kernels for many inputs (issue 13, item 6): where the time of the recursion goes, and what N = 100 at
depth 10 costs (seconds, MiB), for linear sigma (exact pair-product terms) and smooth sigma (batched quadrature).

1. Profile of one layer of :func:`sft.finite.meta_kernel_step` (tanh, N = 2, 3, 4): total, the part in its
   Gaussian means (``meta_kernels._tensor``, by cProfile) and the rest (einsum algebra); against the batched
   means (:func:`sft.finite.meta_kernels_batched.batched_gaussian_means`, compilation excluded) on the same K,
   with the quadrature node count per layer (:func:`cost_estimate`) and the node rate.
2. Linear sigma, N = 100, depth 10: :func:`sft.finite.meta_kernel_contractions.linear_meta_kernels` and three
   contractions (dNTK with two residual vectors, ddNTK II with two, with three); peak traced memory.
3. Smooth sigma (tanh), default (1e-10) nodes: batched_meta_kernels at N = 4 (depth 10) and N = 6 (depth 2),
   the node rate measured there, and the extrapolation t(N) = depth x nodes(N) / rate for N = 8, 16, 32, 100; memory of one layer measured at N = 8, 16, 32 with a 2-node rule (the same arrays, negligible
   quadrature), extrapolated to N = 100 by N^4.
Memory: tracemalloc peak of numpy allocations (jax buffers of one node block, ~0.2 GiB, not included).
The load average is printed: on a shared 2-core machine every time scales with it.

Usage (repository root):  PYTHONPATH=. python sims/benchmarks/bench_meta_kernels_large.py [--depth 10]
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time
import tracemalloc

import numpy as np

import sft  # noqa: F401  (enables float64)
from sft.finite import meta_kernels as mkmod
from sft.finite.meta_kernel_contractions import contract_meta_kernel, linear_meta_kernels
from sft.finite.meta_kernels_batched import _meta_step, batched_gaussian_means, batched_meta_kernels, cost_estimate


def _inputs(N, seed=0):
    return np.random.default_rng(seed).normal(size=(N, 40))


def _kernel(N):
    x = _inputs(N)
    return 0.1 + 1.2 * x @ x.T / x.shape[1]


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def traced(fn):
    """(result, seconds, peak MiB of traced numpy allocations)."""
    tracemalloc.start()
    out, dt = timed(fn)
    peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
    tracemalloc.stop()
    return out, dt, peak


def profile_step(N):
    K = _kernel(N)
    z = np.zeros((N,) * 4)
    prof = cProfile.Profile()
    _, t_ref = timed(lambda: prof.runcall(mkmod.meta_kernel_step, K, K, z, z, z, z, z, z, z, z, 1.0,
                                          activation="tanh", C_W=1.2))
    st = pstats.Stats(prof)
    t_means = sum(v[3] for k, v in st.stats.items() if k[2] == "_tensor")
    batched_gaussian_means(K, activation="tanh")  # compile the shapes of this N
    g, t_b = timed(lambda: batched_gaussian_means(K, activation="tanh"))
    _, t_alg = timed(lambda: _meta_step(g, K, z, z, (z,) * 6, 1.0, 1.2))
    nodes = cost_estimate(N)[1]
    print(f"  N = {N}: meta_kernel_step {t_ref:6.2f} s (Gaussian means {t_means:6.2f} s, rest "
          f"{t_ref - t_means:5.2f} s) | batched means {t_b:6.2f} s + algebra {t_alg:5.3f} s | "
          f"{nodes:.3g} nodes/layer, {nodes / t_b / 1e6:.2f} M nodes/s batched, "
          f"speed-up {t_ref / (t_b + t_alg):.1f}x", flush=True)
    return nodes / t_b


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=10)
    a = ap.parse_args()
    print(f"load average {os.getloadavg()}, {os.cpu_count()} CPUs; float64 throughout")

    print("1. one layer, tanh, K = 0.1 + 1.2 x x^T / 40 (x ~ N(0, 1) (N, 40), seed 0)")
    for N in (2, 3, 4):
        profile_step(N)
    K4 = _kernel(4)
    for n4 in (10, 20):
        nn = {1: 96, 2: 64, 3: 32, 4: n4}
        batched_gaussian_means(K4, activation="tanh", n_nodes=nn)
        _, t = timed(lambda: batched_gaussian_means(K4, activation="tanh", n_nodes=nn))
        print(f"  N = 4, n_4 = {n4} nodes per side ({(2 * n4) ** 4:.3g} four-input nodes): batched means {t:.2f} s")

    print(f"2. linear sigma, N = 100, depth {a.depth}, C_W = 1, C_b = 0.1, x ~ N(0, 1) (100, 40)")
    x = _inputs(100)
    mk, t_terms, mib = traced(lambda: linear_meta_kernels(x, depth=a.depth, C_W=1.0, C_b=0.1))
    r = np.random.default_rng(1).normal(size=100)
    for name, vecs in (("dntk_f (x, r, r, d)", (None, r, r, None)), ("ddntk_II (x, y, r, r)", (None, None, r, r)),
                       ("ddntk_II (x, r, r, r)", (None, r, r, r))):
        field = mk.dntk_f if name.startswith("dntk") else mk.ddntk_II
        _, t, m = traced(lambda: contract_meta_kernel(field, mk, vecs))
        print(f"  {name}: {t * 1e3:.2f} ms, {m:.1f} MiB", flush=True)
    print(f"  terms: {t_terms * 1e3:.1f} ms, {mib:.1f} MiB; {len(mk.dntk_f)} + {len(mk.ddntk_II)} pair-product "
          f"terms (dense would be 2 x 100^4 x 8 B = {2 * 100 ** 4 * 8 / 2 ** 30:.1f} GiB)")

    print(f"3. tanh, depth {a.depth}, default nodes (n = 96, 64, 32, 20 per side for d = 1..4)")
    x4 = _inputs(4)
    batched_meta_kernels(x4, depth=1, activation="tanh", C_W=1.2, C_b=0.1)  # compile
    _, t4, m4 = traced(lambda: batched_meta_kernels(x4, depth=a.depth, activation="tanh", C_W=1.2, C_b=0.1))
    rate = a.depth * cost_estimate(4)[1] / t4
    print(f"  N = 4: {t4:.1f} s, {m4:.1f} MiB (numpy peak); {rate / 1e6:.2f} M nodes/s", flush=True)
    x6 = _inputs(6)
    _, t6, m6 = traced(lambda: batched_meta_kernels(x6, depth=2, activation="tanh", C_W=1.2, C_b=0.1))
    nodes6 = 2 * cost_estimate(6)[1]
    print(f"  N = 6, depth 2: {t6:.1f} s ({nodes6 / rate:.1f} s predicted from the N = 4 rate), {m6:.1f} MiB; "
          f"{nodes6 / t6 / 1e6:.2f} M nodes/s (used below)", flush=True)
    rate = nodes6 / t6
    tiny = {1: 2, 2: 2, 3: 1, 4: 1}
    mem = {}
    for N in (8, 16, 32):
        xN = _inputs(N)
        _, t, mem[N] = traced(lambda: batched_meta_kernels(xN, depth=1, activation="tanh", C_W=1.2, C_b=0.1,
                                                            n_nodes=tiny))
        print(f"  N = {N}: one layer with a 2-node rule (the same arrays): {t:.1f} s, {mem[N]:.0f} MiB peak", flush=True)
    for N in (8, 16, 32, 100):
        subsets, nodes = cost_estimate(N)
        m = mem.get(N, mem[32] * (N / 32) ** 4)
        print(f"  N = {N:3d}: {subsets:.3g} subsets, {nodes:.3g} nodes per layer -> {a.depth * nodes / rate:.3g} s "
              f"= {a.depth * nodes / rate / 3600:.3g} h at the N = 6 rate; memory: tensors "
              f"{'measured' if N in mem else 'extrapolated'} {m:.0f} MiB + node buffers ~{m4:.0f} MiB")
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
