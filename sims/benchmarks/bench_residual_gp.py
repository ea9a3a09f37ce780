"""Benchmark: the residual-GP diagnostic (sft.circuits.residual_gp) on a network of width 1000 with 10^4
evaluation inputs. float64, CPU.

Each interpretation is scored twice: kernel with C_b = 0 fixed (the background's true value; one SVD)
and with C_b learnt (the default; one SVD per profile-likelihood evaluation).

Network: d = 32 Gaussian inputs, f = 3 sparse strong relu circuits + N = 1000 background relu neurons
(a ~ N(0, 1), w ~ N(0, I/d), N^{-1/2} readout). Interpretations: complete (all 3 circuits) and one that
misses a circuit. Route (exact for the finite-rank kernel, module docstring of sft.circuits.residual_gp):
hyperparameters by maximum marginal likelihood on n_fit = 2000 inputs with m = 512 random features
(Woodbury, O(n_fit m^2) per evaluation); held-out log-likelihood, whitening and skew/kurtosis on all
M = 10^4 evaluation inputs by the thin SVD of the (M, m) predictive factor (O(M m^2)); no M x M matrix.

Reference measured in the same run: one dense eigendecomposition (what the exact dense route needs per
kernel, i.e. per (input_scale, C_b) evaluation) at n = 2000, extrapolated as n^3 to n = 10^4, times the
number of feature-SVD evaluations the fit used: what fitting densely on all 10^4 points would cost (it
would also need 0.8 GB per 10^4 x 10^4 matrix).
Peak memory: the process's peak resident set size (ru_maxrss) minus that before the runs. A small
untimed warm-up call first absorbs JAX's one-time compilation.

Usage:  python sims/benchmarks/bench_residual_gp.py [--quick]
"""
from __future__ import annotations

import argparse
import itertools
import resource
import sys
import time
from pathlib import Path

import numpy as np
import scipy.linalg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without install


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def network(seed, n, d=32, width=1000):
    """x (n, d), per-circuit outputs (n, 3), background outputs (n,)."""
    from sft.circuits import neuron_contributions
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    bg = neuron_contributions(x, rng.normal(size=(width, d)) / np.sqrt(d), rng.normal(size=width),
                              activation="relu", scale=width ** -0.5).sum(1)
    U = np.linalg.qr(rng.normal(size=(d, 3)))[0].T
    circ = neuron_contributions(x, 3.0 * U, np.array([3.0, -2.0, 2.5]), activation="relu", bias=np.full(3, -4.5))
    return x, circ, bg


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="n_fit = 1000, M = 2000, m = 256")
    args = ap.parse_args(argv)
    n_fit, M, m = (1000, 2000, 256) if args.quick else (2000, 10_000, 512)
    import jax

    import sft  # noqa: F401  (x64)
    from sft.circuits import residual_gp as rg

    x, circ, bg = network(0, n_fit + M)
    f = bg + circ.sum(1)
    # warm-up (one-time JAX compilation of the random draws and the activation), not timed
    rg.diagnose_interpretation((f[:50], f[50:100]), (0 * f[:50], 0 * f[:50]), x[:50], x[50:100],
                               key=jax.random.key(0), n_features=m, learn_input=False)
    base = rss_mb()
    # reference: one dense eigendecomposition at n = 2000
    rng = np.random.default_rng(1)
    G = rng.normal(size=(2000, 2000))
    A = G @ G.T / 2000 + np.eye(2000)
    t = time.perf_counter()
    scipy.linalg.eigh(A)
    t_dense = time.perf_counter() - t
    del G, A
    counts = []
    orig = rg._feature_spectrum

    def counted(*a, **k):
        counts[-1] += 1
        return orig(*a, **k)

    rg._feature_spectrum = counted
    print(f"width 1000, d = 32, n_fit = {n_fit}, M = {M} held-out inputs, m = {m} features, float64")
    print(f"{'interpretation, kernel':<26}{'seconds':>9}{'n_svd':>8}{'loglik/pt':>11}{'noise':>9}{'skew z':>9}"
          f"{'kurt z':>9}{'dense est. s':>14}{'ratio':>8}")
    for (name, keep), learn in itertools.product((("complete", [0, 1, 2]), ("misses circuit 2", [0, 1])),
                                                 (False, True)):
        g = circ[:, keep].sum(1)
        counts.append(0)
        t = time.perf_counter()
        d = rg.diagnose_interpretation((f[:n_fit], f[n_fit:]), (g[:n_fit], g[n_fit:]), x[:n_fit], x[n_fit:],
                                       key=jax.random.key(0), n_features=m, learn_input=learn)
        sec = time.perf_counter() - t
        dense = counts[-1] * t_dense * (M / 2000) ** 3
        name += ", C_b fit" if learn else ", C_b = 0"
        print(f"{name:<26}{sec:9.1f}{counts[-1]:8d}{d.heldout_loglik:11.3f}{d.noise:9.3g}{d.skewness_z:9.1f}"
              f"{d.kurtosis_z:9.1f}{dense:14.0f}{dense / sec:8.0f}")
    print(f"peak RSS above baseline: {rss_mb() - base:.0f} MB (baseline {base:.0f} MB); dense reference: "
          f"{t_dense:.3f} s per n = 2000 eigendecomposition, extrapolated as n^3")
    rg._feature_spectrum = orig


if __name__ == "__main__":
    main()
