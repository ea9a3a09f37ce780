"""Cost of the meta-kernel recursion (sft.finite.meta_kernels) against the number of inputs N.

Per layer, the dNTK/ddNTK step needs eight four-point tensors <f0(z_a0) f1(z_a1) f2(z_a2) f3(z_a3)>_K
(N^4 entries each) plus two-point and derivative tensors. Every entry involves d <= 4 distinct inputs, so
the step integrates once per subset S of d inputs (C(N, d) subsets; (2 n_d)^d nodes with n_d = 96, 64, 32,
20 per side for d = 1..4) and fills every entry whose inputs are exactly S from one (d^2 x P) @ (P x d^2)
matrix product. Node evaluations per four-point tensor and layer: sum_d C(N, d) (2 n_d)^d.

Measured here: wall time of meta_kernel_step (tanh, B = F = P = .. = 0 inputs, which do not change the
cost) for small N, the node count, and the rate (node evaluations per second, the product of 4 arrays +
the matrix product, ~50 flop per node), compared with this machine's matrix-product rate measured in the
same run; then the node count of N = 100 at depth 10, and the time that rate implies.
Output also: the load average (the machine is shared), the N^4 memory of one tensor.

Usage (repository root):  PYTHONPATH=. python sims/benchmarks/bench_meta_kernels.py [--max-inputs 6]
"""
from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np

import sft  # noqa: F401  (float64)
from sft.finite import meta_kernels as mk

NODES = {1: 96, 2: 64, 3: 32, 4: 20}


def node_count(N):
    return sum(math.comb(N, d) * (2 * NODES[d]) ** d for d in range(1, min(N, 4) + 1))


def matmul_gflops(n=1024, repeats=3):
    a, b = np.random.default_rng(0).normal(size=(2, n, n))
    best = min((lambda t: (a @ b, time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def step_time(N, repeats=2):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(N, 3))
    K = 0.1 + 1.5 * x @ x.T / 3
    z4 = np.zeros((N,) * 4)
    args = (K, K, z4, z4) + (z4,) * 6 + (1.0,)
    mk.meta_kernel_step(*args, activation="tanh", C_W=1.5)  # compile the derivative functions
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        mk.meta_kernel_step(*args, activation="tanh", C_W=1.5)
        best = min(best, time.perf_counter() - t)
    return best


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-inputs", type=int, default=6)
    a = p.parse_args()
    print(f"load average {os.getloadavg()}, cpus {os.cpu_count()}")
    gf = matmul_gflops()
    print(f"matrix product (1024^2, float64): {gf:.1f} GFLOP/s")
    rate = None
    for N in range(2, a.max_inputs + 1):
        t = step_time(N)
        nodes = 8 * node_count(N)  # eight four-point tensors dominate
        rate = nodes / t
        print(f"N = {N}: meta_kernel_step {t:7.2f} s/layer, {nodes:.3g} node evaluations, {rate:.3g} nodes/s "
              f"(~{50 * rate / 1e9 / gf:.2f} of the matmul rate at 50 flop/node)")
    N, depth = 100, 10
    nodes = 8 * node_count(N) * depth
    print(f"N = {N}, depth {depth}: {nodes:.3g} node evaluations -> ~{nodes / rate / 3600:.3g} h at the last rate; "
          f"memory of one (N,)*4 tensor {N ** 4 * 8 / 2 ** 30:.2f} GiB (about 20 are alive per step)")


if __name__ == "__main__":
    main()
