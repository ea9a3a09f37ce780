"""Benchmark: the keep-k sweep of sft.circuits.sparse_synapses on a realistic layer, against Monte Carlo.

Layer: lam = 10 strong synapses per neuron (log-normal |J|, s = 0.5, random sign) on a dense Gaussian
background (C_W = 1), erf, two inputs with K_in = [[1, 0.6], [0.6, 1.5]] (the next-layer kernel is 2 x 2).
Sweep: k = 0, 1, ..., 10 strongest kept, each with Edgeworth order 0 (i) and 2 (ii), plus the exact law:
23 predicted 2-D densities and kernels from one call of :func:`predicted_densities` (float64).

Printed: wall seconds and peak memory (tracemalloc: Python/numpy allocations; ru_maxrss: whole process)
of the sweep; its numerical precision (largest kernel change against a refined run, n_g = 128,
n_u = 16); the reference measured in the same run: a finite-width Monte Carlo (n = 1000 inputs,
S networks, Rao-Blackwellized, JAX float64) with its standard error; and the ratios sweep / MC, both for
the MC as run and for an MC of the sweep's precision (time x (MC error / precision)^2, its 1/sqrt(S) law).

Usage:  python sims/benchmarks/bench_sparse_synapses.py [--quick]
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without install

import jax  # noqa: E402
import numpy as np  # noqa: E402

from sft.circuits import sparse_synapses as ss  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer Monte Carlo networks")
    args = p.parse_args()
    lam, n, S = 10.0, 1000, (4_000 if args.quick else 20_000)
    layer = ss.SparseLayer(lam, ss.lognormal_synapses(1.0, 0.5), "erf", [[1.0, 0.6], [0.6, 1.5]], C_W=1.0)
    ks = [float(k) for k in range(11)]
    methods = [("exact",)] + [("keep", k, o) for o in (0, 2) for k in ks]

    ss.predicted_densities(layer, [("keep", 1.0, 2)], n_grid=64)          # warm-up (sympy, imports)
    tracemalloc.start()
    t0 = time.perf_counter()
    axes, dens = ss.predicted_densities(layer, methods)
    K = np.array([ss.next_kernel(layer, axes, q) for q in dens])
    t_sweep = time.perf_counter() - t0
    peak_py = tracemalloc.get_traced_memory()[1] / 2 ** 20
    tracemalloc.stop()
    axes_f, dens_f = ss.predicted_densities(layer, [("exact",), ("keep", 5.0, 0)], n_g=128, n_u=16)
    Kf = np.array([ss.next_kernel(layer, axes_f, q) for q in dens_f])
    prec = max(np.abs(K[0] - Kf[0]).max(), np.abs(K[1 + 5] - Kf[1]).max(), 1e-300)

    ss.simulate_conditionals(layer, n, jax.random.key(1), 10, batch=2000)  # compile
    t0 = time.perf_counter()
    D, G = ss.simulate_conditionals(layer, n, jax.random.key(0), S, batch=2000)
    Kmc, Emc = ss.mc_next_kernel(layer, D, G)
    t_mc = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    e_mc = Emc.max()
    t_mc_same = t_mc * (e_mc / prec) ** 2

    iu = np.triu_indices(2)
    print(f"layer: lam = {lam:g}, log-normal s = 0.5, erf, 2 inputs; grid {len(axes[0])}^2; jax {jax.__version__}")
    print(f"{'k':>4} {'err (i)':>10} {'err (ii) R=2':>13}   (max |K_pred - K_exact| over the 3 entries)")
    for i, k in enumerate(ks):
        e0 = np.abs(K[1 + i] - K[0])[iu].max()
        e2 = np.abs(K[1 + len(ks) + i] - K[0])[iu].max()
        print(f"{k:4.0f} {e0:10.2e} {e2:13.2e}")
    z = np.abs(K[0] - Kmc)[iu] / Emc[iu]
    print(f"exact law vs MC (n = {n}, S = {S}): |z| = {np.array2string(z, precision=2)} (MC 1 sigma {e_mc:.1e})")
    print(f"sweep ({len(methods)} predictions): {t_sweep:.2f} s, peak traced {peak_py:.0f} MiB; "
          f"precision {prec:.1e} (vs refined quadrature)")
    print(f"reference MC: {t_mc:.2f} s for 1 sigma = {e_mc:.1e}; process peak RSS {rss:.0f} MiB")
    print(f"ratio sweep / MC as run: {t_sweep / t_mc:.3g};  sweep / MC of the same precision "
          f"(~{t_mc_same:.3g} s): {t_sweep / t_mc_same:.3g}")


if __name__ == "__main__":
    main()
