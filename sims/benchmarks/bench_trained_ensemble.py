"""Trained-ensemble throughput (issue 13, item 6): sft.sim.train_ensemble with thousands of vmapped networks,
as a fraction of this machine's matrix-product rate measured in the same run.

S relu networks, ``depth`` hidden layers of width n, n_0 = n, one output, P training points, K full-batch GD
steps (L = 1/2 sum_a (f(x_a) - y_a)^2), float64 and float32. S is as large as the parameter memory budget
allows (``--max-ensemble``, default 2048; ``--budget-gib`` for parameters + gradients + update, 3 copies).

FLOP count (matrix products only, as :mod:`bench_training`): forward F = sum_l 2 P n_{l-1} n_l over the layer
sizes n, .., n, 1; backward 2F - F_1 (layer 1's input is not differentiated); one GD step 3F - F_1, so

    GFLOP/s = S K (3F - F_1) / t_steps / 1e9,     t_steps = t(K steps) - t(0 steps),

the difference of two end-to-end ``train_ensemble`` calls (same S, same compiled shapes up to the scan
length), which removes the weight draw and the recordings at step 0 (their cost, t(0), is printed too).
Compilation is excluded (one warm-up call per configuration; the compiled function is cached).

References, measured in this run with the same dtype (best of ``--repeats`` after a warm-up):
  "batched" = K dependent (S, P, n) @ (S, n, n) products in one jitted lax.fori_loop: the shape of a hidden
              layer's product in the vmapped ensemble (what training could reach at best);
  "jnp.dot" = one (m, m) @ (m, m) jnp.dot, m = max(n, ``--peak-n`` = 1024) (a large square product: the
              machine's practical peak for jax);
  "numpy"   = the same square product with numpy's BLAS (OpenBLAS here).
The fractions printed are training GFLOP/s over each reference. The load average is printed before and
after (other processes on a shared machine slow every number; the ratios are taken within one run).

Findings (this 2-core machine, load 2.3-3.7, defaults: P = 32, K = 10, S = 16-2032): training runs at
35-49 % of the "batched" reference of the same shapes, 12-29 % of the square jnp.dot rate (240-250 GFLOP/s
float64, 470-510 float32) and 24-63 % of numpy's. The gap to the square rate is the shape: with P = 32 rows
each network's products are (32, n) @ (n, n), bandwidth-bound (every weight matrix is read for 32 rows);
the backward weight gradients (n, P) @ (P, n) and the elementwise update (every weight read and written
each step) add traffic per flop. With P = 256 (width 512, depth 2, S = 128) training reaches 111 GFLOP/s
float64 (88 % of batched, 46 % of jnp.dot) and 240 float32 (88 %, 49 %). A repeated call compiles nothing
(checked with jax_log_compiles); t_0 (weight draw + step-0 recordings) is 25-35 % of a 10-step call.
No change to sft.sim.training was needed or made.

Usage (repository root):
    PYTHONPATH=. python sims/benchmarks/bench_trained_ensemble.py [--widths 256 512 1024] [--depths 2 4]
        [--points 32] [--steps 10] [--max-ensemble 2048] [--budget-gib 3] [--repeats 2]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import sft  # noqa: F401  (enables float64)
from sft.sim import train_ensemble

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ensemble import best_time  # noqa: E402
from bench_training import chained_gflops  # noqa: E402


def square_gflops(n, dtype, repeats):
    """(jnp.dot GFLOP/s, numpy GFLOP/s) of one (n, n) @ (n, n) product (numpy: best of 3 x repeats)."""
    rng = np.random.default_rng(0)
    a, b = (rng.normal(size=(n, n)).astype(dtype) for _ in range(2))
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    f = jax.jit(jnp.dot)
    t_j = best_time(lambda: f(ja, jb), repeats)
    np.dot(a, b)
    t_n = min(_timed(lambda: np.dot(a, b)) for _ in range(3 * repeats))
    return 2 * n ** 3 / t_j / 1e9, 2 * n ** 3 / t_n / 1e9


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def ensemble_size(width, depth, itemsize, max_ensemble, budget_gib):
    """Largest S <= max_ensemble (a multiple of 16) whose parameters, gradients and updates fit the budget."""
    n_params = depth * width * (width + 1) + width + 1
    s = int(budget_gib * 2 ** 30 // (3 * n_params * itemsize))
    return max(16, min(max_ensemble, s // 16 * 16))


def training_times(p, width, depth, n_ensemble, n_steps, dtype, repeats):
    """(t(K steps), t(0 steps)) of train_ensemble end to end, compilation excluded."""
    rng = np.random.default_rng(2)
    x, y, xs = rng.normal(size=(p, width)), rng.normal(size=p), rng.normal(size=(1, width))

    def run(k):
        return lambda: train_ensemble(jax.random.key(0), x, y, xs, n_ensemble=n_ensemble,
                                      widths=[width] * depth, activation="relu", C_W=2.0, C_b=0.0,
                                      learning_rate=0.1 / p, n_steps=k, record_every=max(k, 1),
                                      chunk_size=n_ensemble, dtype=dtype).train_loss
    return best_time(run(n_steps), repeats), best_time(run(0), repeats)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--depths", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--points", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--max-ensemble", type=int, default=2048)
    ap.add_argument("--budget-gib", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--peak-n", type=int, default=1024)
    a = ap.parse_args()
    print(f"jax {jax.__version__}, {jax.device_count()} x {jax.devices()[0].platform}, {os.cpu_count()} CPUs; "
          f"relu, n_0 = n, P = {a.points}, K = {a.steps} GD steps; load average {os.getloadavg()}")
    print(f"{'depth':>5} {'n':>5} {'dtype':>7} {'S':>5} {'batched':>8} {'jnp.dot':>8} {'numpy':>7} "
          f"{'t_K s':>7} {'t_0 s':>6} {'train':>7} {'%batch':>6} {'%dot':>5} {'%np':>5}   (GFLOP/s)")
    for depth in a.depths:
        for width in a.widths:
            for dtype in (jnp.float64, jnp.float32):
                item = np.dtype(dtype).itemsize
                S = ensemble_size(width, depth, item, a.max_ensemble, a.budget_gib)
                sizes = (width,) * (depth + 1) + (1,)
                layers = [2 * a.points * u * v for u, v in zip(sizes[:-1], sizes[1:])]
                flops = S * a.steps * (3 * sum(layers) - layers[0])
                ref = chained_gflops(S, a.points, width, a.steps, dtype, a.repeats)
                dot, npy = square_gflops(max(width, a.peak_n), np.dtype(dtype), a.repeats)
                t_k, t_0 = training_times(a.points, width, depth, S, a.steps, dtype, a.repeats)
                gf = flops / (t_k - t_0) / 1e9
                print(f"{depth:>5} {width:>5} {np.dtype(dtype).name:>7} {S:>5} {ref:>8.1f} {dot:>8.1f} "
                      f"{npy:>7.1f} {t_k:>7.2f} {t_0:>6.2f} {gf:>7.1f} {100 * gf / ref:>6.0f} "
                      f"{100 * gf / dot:>5.0f} {100 * gf / npy:>5.0f}", flush=True)
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
