"""Ensemble forward throughput of sft.sim.networks against this machine's matrix-product rate.

For each width n and dtype: S networks with ``depth`` hidden layers of width n, input dimension n,
one output, evaluated on N inputs. FLOPs of one forward pass: sum_l 2 N n_{l-1} n_l (matrix products
only). Reference: the rate of one (N, n) @ (n, n) product of the same dtype, measured in this run.

    forward  = the compiled per-chunk loop on parameters already drawn (what a training or analysis
               loop over fixed networks costs);
    end2end  = ensemble_outputs, i.e. drawing the parameters (threefry normals) + forward.

Usage (repository root):  PYTHONPATH=. python sims/benchmarks/bench_ensemble.py [--inputs N] [--ensemble S] [--depth D] [--repeats R]
"""
from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import sft  # noqa: F401  (enables float64)
from sft.sim import networks as nw
def best_time(fn, repeats):
    """Minimum wall time of ``fn()`` (blocked until ready) over ``repeats`` runs after one warm-up."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return min(times)


def matmul_gflops(n_inputs, width, dtype, repeats):
    a = jnp.asarray(np.random.default_rng(0).normal(size=(n_inputs, width)), dtype)
    b = jnp.asarray(np.random.default_rng(1).normal(size=(width, width)), dtype)
    f = jax.jit(jnp.dot)
    return 2 * n_inputs * width ** 2 / best_time(lambda: f(a, b), repeats) / 1e9


def ensemble_gflops(n_inputs, width, depth, n_ensemble, dtype, repeats):
    sizes = (width,) * (depth + 1) + (1,)
    flops = n_ensemble * sum(2 * n_inputs * a * b for a, b in zip(sizes[:-1], sizes[1:]))
    x = jnp.asarray(np.random.default_rng(2).normal(size=(n_inputs, width)), dtype)
    key = jax.random.key(0)
    kw = dict(n_ensemble=n_ensemble, widths=[width] * depth, activation="relu", C_W=2.0, C_b=0.0,
              chunk_size=n_ensemble, dtype=dtype)
    n_dev = jax.device_count()
    chunk = max(2, -(-n_ensemble // n_dev)) * n_dev
    params = nw._init_chunk(jnp.arange(chunk, dtype=jnp.uint32), key, sizes, np.dtype(dtype))
    forward = nw._compiled("outputs", "relu", (2.0,) * (depth + 1), (0.0,) * (depth + 1), n_dev)
    t_fwd = best_time(lambda: forward(params, x), repeats) * n_ensemble / chunk
    t_all = best_time(lambda: nw.ensemble_outputs(key, x, **kw), repeats)
    return flops / t_fwd / 1e9, flops / t_all / 1e9


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--inputs", type=int, default=1024)
    p.add_argument("--ensemble", type=int, default=8)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--widths", type=int, nargs="+", default=[256, 512, 1024])
    a = p.parse_args()
    print(f"jax {jax.__version__}, devices: {jax.device_count()} x {jax.devices()[0].platform}; "
          f"N = {a.inputs} inputs, S = {a.ensemble} networks, depth {a.depth}, relu")
    print(f"{'width':>6} {'dtype':>8} {'matmul GF/s':>12} {'forward GF/s':>13} {'(%)':>5} "
          f"{'end2end GF/s':>13} {'(%)':>5}")
    for width in a.widths:
        for dtype in (jnp.float64, jnp.float32):
            ref = matmul_gflops(a.inputs, width, dtype, a.repeats)
            fwd, e2e = ensemble_gflops(a.inputs, width, a.depth, a.ensemble, dtype, a.repeats)
            print(f"{width:>6} {np.dtype(dtype).name:>8} {ref:>12.1f} {fwd:>13.1f} {100 * fwd / ref:>5.0f} "
                  f"{e2e:>13.1f} {100 * e2e / ref:>5.0f}")


if __name__ == "__main__":
    main()
