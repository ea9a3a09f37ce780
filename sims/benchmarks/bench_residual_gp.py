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

Dense reference, the strongest exact dense route for the same job, timed in the same run: the residual
GP with the exact kernel matrix (``fit_residual_gp(kernel=...)`` route) needs one eigendecomposition of
the n_fit x n_fit fitting kernel per (input_scale, C_b) evaluation (amplitude and noise then cost O(n)
each), and for the held-out scores one Cholesky factorization of the M x M predictive covariance (enough
for the log-likelihood and a whitening). Reference = (number of evaluations the feature fit used) x
(eigh at n_fit, measured) + (Cholesky at M, measured). Forming the kernel matrices is not counted (in
the baseline's favour). Earlier versions extrapolated an eigendecomposition at n = 10^4 per evaluation
(fitting densely on all M points, a different and needlessly expensive job) and reported 70-380x.
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
    counts = []
    orig = rg._feature_spectrum

    def counted(*a, **k):
        counts[-1] += 1
        return orig(*a, **k)

    rg._feature_spectrum = counted
    rows = []
    for (name, keep), learn in itertools.product((("complete", [0, 1, 2]), ("misses circuit 2", [0, 1])),
                                                 (False, True)):
        g = circ[:, keep].sum(1)
        counts.append(0)
        t = time.perf_counter()
        d = rg.diagnose_interpretation((f[:n_fit], f[n_fit:]), (g[:n_fit], g[n_fit:]), x[:n_fit], x[n_fit:],
                                       key=jax.random.key(0), n_features=m, learn_input=learn)
        rows.append((name + (", C_b fit" if learn else ", C_b = 0"), time.perf_counter() - t, counts[-1], d))
    peak = rss_mb() - base
    # dense reference: eigh at n_fit (per evaluation) and one Cholesky at M, both measured here
    rng = np.random.default_rng(1)

    def spd(n):
        G = rng.normal(size=(n, n))
        return G @ G.T / n + np.eye(n)

    A = spd(n_fit)
    t = time.perf_counter()
    scipy.linalg.eigh(A)
    t_eigh = time.perf_counter() - t
    A = spd(M)
    t = time.perf_counter()
    scipy.linalg.cholesky(A, lower=True)
    t_chol = time.perf_counter() - t
    del A
    print(f"width 1000, d = 32, n_fit = {n_fit}, M = {M} held-out inputs, m = {m} features, float64")
    print(f"{'interpretation, kernel':<26}{'seconds':>9}{'n_svd':>8}{'loglik/pt':>11}{'noise':>9}{'skew z':>9}"
          f"{'kurt z':>9}{'dense s':>9}{'ratio':>8}")
    for name, sec, n_eval, d in rows:
        dense = n_eval * t_eigh + t_chol
        print(f"{name:<26}{sec:9.2f}{n_eval:8d}{d.heldout_loglik:11.3f}{d.noise:9.3g}{d.skewness_z:9.1f}"
              f"{d.kurtosis_z:9.1f}{dense:9.2f}{dense / sec:8.2f}")
    print(f"peak RSS above baseline: {peak:.0f} MB (baseline {base:.0f} MB, before the dense reference); "
          f"dense reference: eigh at n_fit = {n_fit}: {t_eigh:.3f} s per evaluation, Cholesky at M = {M}: "
          f"{t_chol:.3f} s")
    rg._feature_spectrum = orig


if __name__ == "__main__":
    main()
