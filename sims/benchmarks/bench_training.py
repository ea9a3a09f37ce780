"""Trained-ensemble throughput of sft.sim.train_ensemble against this machine's matrix-product rate.

S networks with ``depth`` hidden layers of width n, input dimension n_0 = n, one output, trained by
full-batch gradient descent on L = 1/2 sum_a (f(x_a) - y_a)^2 over P training points (M = 1 test input,
recorded only at the first and last step), float64 and float32.

FLOP count (matrix products only; activations, the elementwise update and the loss are O(P n) and
O(n^2) and left out). With layer sizes n_0, n_1, .., n_depth, 1 the forward pass on P inputs costs
F = sum_l F_l, F_l = 2 P n_{l-1} n_l. The backward pass has two products per layer (grad w.r.t.
omega^(l) and w.r.t. the layer's input) except layer 1, whose input x is not differentiated: 2F - F_1.
One gradient-descent step therefore counts 3F - F_1 (~2F for one hidden layer with n_0 = n, ~2.5F
for two), and

    GFLOP/s = S * n_steps * (3F - F_1) / time / 1e9,      network.steps/s = S * n_steps / time.

The input x is shared by the S networks, so XLA may run layer 1 as one (P, n_0) @ (n_0, S n_1)
product, larger and faster than the per-network products of the reference.

References, same dtype, measured in this run (jit-compiled, blocked until ready, best of ``repeats``
after a warm-up): "matmul" = one (P, n) @ (n, n) product per call (includes the dispatch overhead of
one call, which dominates at small n); "chained" = ``--steps`` dependent products
z <- (z @ w) / sqrt(n) of shape (S, P, n) @ (S, n, n) in one lax.fori_loop, the shape of a hidden
layer's product in the vmapped ensemble and, like training, free of per-product dispatch (the ratio
(%) is taken against it).
train_ensemble is timed end to end (drawing the initial parameters included, compilation excluded by
a warm-up call: its compiled step function is cached per configuration).

Usage (repository root):
    PYTHONPATH=. python sims/benchmarks/bench_training.py [--ensemble S] [--steps K] [--repeats R]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import sft  # noqa: F401  (enables float64)
from sft.sim import train_ensemble

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ensemble import best_time, matmul_gflops  # noqa: E402  (same timing and reference as there)


def chained_gflops(batch, p, width, n_products, dtype, repeats):
    """GFLOP/s of n_products dependent (batch, p, n) @ (batch, n, n) products in one compiled loop."""
    a = jnp.asarray(np.random.default_rng(0).normal(size=(batch, p, width)), dtype)
    b = jnp.asarray(np.random.default_rng(1).normal(size=(batch, width, width)) / np.sqrt(width), dtype)
    f = jax.jit(lambda a, b: jax.lax.fori_loop(0, n_products, lambda i, z: jnp.matmul(z, b), a))
    return n_products * batch * 2 * p * width ** 2 / best_time(lambda: f(a, b), repeats) / 1e9


def training_rate(p, width, depth, n_ensemble, n_steps, dtype, repeats):
    """(network.steps per second, GFLOP/s) of train_ensemble."""
    sizes = (width,) * (depth + 1) + (1,)
    layers = [2 * p * a * b for a, b in zip(sizes[:-1], sizes[1:])]
    step_flops = 3 * sum(layers) - layers[0]
    rng = np.random.default_rng(2)
    x, y, xs = rng.normal(size=(p, width)), rng.normal(size=p), rng.normal(size=(1, width))
    run = lambda: train_ensemble(jax.random.key(0), x, y, xs, n_ensemble=n_ensemble, widths=[width] * depth,
                                 activation="relu", C_W=2.0, C_b=0.0, learning_rate=0.1 / p,
                                 n_steps=n_steps, record_every=n_steps, chunk_size=n_ensemble,
                                 dtype=dtype).train_loss
    t = best_time(run, repeats)
    return n_ensemble * n_steps / t, n_ensemble * n_steps * step_flops / t / 1e9


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ensemble", type=int, default=8)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--depths", type=int, nargs="+", default=[1, 2])
    p.add_argument("--widths", type=int, nargs="+", default=[128, 512, 1024])
    p.add_argument("--points", type=int, nargs="+", default=[64, 256])
    a = p.parse_args()
    print(f"jax {jax.__version__}, devices: {jax.device_count()} x {jax.devices()[0].platform}; "
          f"S = {a.ensemble} networks x {a.steps} steps, relu, n_0 = n; "
          "FLOPs/step = 3F - F_1 (see docstring)")
    print(f"{'depth':>5} {'n':>5} {'P':>4} {'dtype':>8} {'matmul GF/s':>12} {'chained GF/s':>12} "
          f"{'net.steps/s':>12} {'train GF/s':>11} {'(%)':>5}")
    for depth in a.depths:
        for width in a.widths:
            for points in a.points:
                for dtype in (jnp.float64, jnp.float32):
                    one = matmul_gflops(points, width, dtype, a.repeats)
                    ref = chained_gflops(a.ensemble, points, width, a.steps, dtype, a.repeats)
                    rate, gf = training_rate(points, width, depth, a.ensemble, a.steps, dtype, a.repeats)
                    print(f"{depth:>5} {width:>5} {points:>4} {np.dtype(dtype).name:>8} {one:>12.1f} "
                          f"{ref:>12.1f} {rate:>12.1f} {gf:>11.1f} {100 * gf / ref:>5.0f}", flush=True)


if __name__ == "__main__":
    main()
