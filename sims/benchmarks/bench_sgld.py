"""SGLD throughput of sft.sim.sample_tlbp against this machine's matrix-product rate; chains for a 5% LLC.

Model: depth-2 network of width n (default 512), input dimension n_0 = 16, relu, C_W = 2, C_b = 0,
N training points (default 1024) x ~ N(0, I), realizable labels y = f_{w*}(x) with w* the network at
initialization (so L_n(w*) = 0 and w* is a minimum). The network and data are drawn in each dtype,
so the float32 and float64 rows sample different networks (their LLCs differ). TLBP: nbeta = N / log N (beta = 1/log N),
gamma = 100, minibatch b (default 64), step eps = 0.5 / (nbeta h_max + gamma) (h_max by the sampler's
power iteration at w*), C chains, full-batch L_n recorded every ``thin`` steps.

FLOP count (matrix products only). Layer sizes n_0, n, n, 1; forward on B inputs F(B) = sum_l 2 B
n_{l-1} n_l; a gradient costs 3F - F_1 (backward: two products per layer except layer 1). One SGLD
step: (3F(b) - F_1(b)) + F(N)/thin (the recorded full-batch loss, amortized);
GFLOP/s = C * steps * step_flops / time / 1e9, chain.steps/s = C * steps / time.
Timing: sample_tlbp compiles once per loss function; the time of K steps is t(K_long) - t(K_short)
(both calls after a warm-up, same compiled program, the power iteration and set-up cancel).
Reference, same dtype, measured in this run: "chained" = dependent (C, b, n) @ (C, n, n) products in
one compiled loop (the hidden-layer product of the vmapped chains, sims/benchmarks/bench_training.py),
and a single (b, n) @ (n, n) product per call (bench_ensemble.py). The ratio (%) is against "chained".

Chains for a 5% LLC: the pilot run (K_long steps after ``burn_in``) gives lambda_c per chain; with
sigma = std_c(lambda_c), C_5% = (sigma / (0.05 lambda_hat))^2 chains of that length give a 5% (1 sigma)
error bar.

Usage (repository root):
    PYTHONPATH=. python sims/benchmarks/bench_sgld.py [--width n] [--points N] [--batch b] [--chains C]
        [--steps K] [--thin T] [--dtypes float64 float32]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import sft  # noqa: F401  (enables float64)
from sft.sim import apply, default_nbeta, init_params, llc_from_samples, network_loss, sample_tlbp
from sft.sim import sgld as _sgld

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ensemble import matmul_gflops  # noqa: E402  (same reference as the other benchmarks)
from bench_training import chained_gflops  # noqa: E402

KW = dict(activation="relu", C_W=2.0, C_b=0.0)


def problem(width, points, n_0, dtype):
    p = [(w[0], b[0]) for w, b in init_params(jax.random.key(0), n_ensemble=1, in_dim=n_0,
                                              widths=[width, width], dtype=dtype)]
    x = jnp.asarray(np.random.default_rng(1).normal(size=(points, n_0)), dtype)
    return network_loss(p, x, apply(p, x, **KW), **KW)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    jax.block_until_ready(out.loss)
    return out, time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--points", type=int, default=1024)
    ap.add_argument("--inputs", type=int, default=16)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--burn-in", type=int, default=100)
    ap.add_argument("--thin", type=int, default=10)
    ap.add_argument("--gamma", type=float, default=100.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    a = ap.parse_args()
    n, N, b, C = a.width, a.points, a.batch, a.chains
    sizes = (a.inputs, n, n, 1)
    F = lambda B: [2 * B * u * v for u, v in zip(sizes[:-1], sizes[1:])]
    step_flops = 3 * sum(F(b)) - F(b)[0] + sum(F(N)) / a.thin
    nbeta = default_nbeta(N)
    print(f"jax {jax.__version__}, {jax.device_count()} x {jax.devices()[0].platform}; depth 2, width {n}, "
          f"n_0 = {a.inputs}, N = {N}, batch {b}, {C} chains, nbeta = N/log N = {nbeta:.1f}, "
          f"gamma = {a.gamma}, thin {a.thin}; MFLOP/step = {step_flops / 1e6:.1f}")
    print(f"{'dtype':>8} {'matmul GF/s':>12} {'chained GF/s':>12} {'chain.st/s':>11} {'SGLD GF/s':>10} "
          f"{'(%)':>5} {'LLC':>8} {'+-':>7} {'R-hat':>6} {'C_5%':>6} {'steps':>6}")
    for name in a.dtypes:
        dtype = jnp.dtype(name)
        prob = problem(n, N, a.inputs, dtype)
        h_max = float(_sgld._top_curvature(prob.loss, prob.w_star, prob.data))
        eps = 0.5 / (nbeta * h_max + a.gamma)
        run = lambda k: sample_tlbp(prob.loss, prob.w_star, jax.random.key(2), data=prob.data,
                                    nbeta=nbeta, gamma=a.gamma, step_size=eps, n_chains=C,
                                    n_steps=k, burn_in=a.burn_in, thin=a.thin, batch_size=b)
        short, long_ = a.thin, a.steps
        timed(lambda: run(short))                       # compile the short schedule
        timed(lambda: run(long_))                       # compile the long schedule
        t_short = min(timed(lambda: run(short))[1] for _ in range(a.repeats))
        res, t_long = min((timed(lambda: run(long_)) for _ in range(a.repeats)), key=lambda r: r[1])
        rate = C * (long_ - short) / (t_long - t_short)
        gf = rate * step_flops / 1e9
        ref = chained_gflops(C, b, n, 50, dtype, a.repeats)
        one = matmul_gflops(b, n, dtype, a.repeats)
        est = llc_from_samples(res)
        sigma = est.per_chain.std(ddof=1)
        c5 = (sigma / (0.05 * est.llc)) ** 2
        print(f"{name:>8} {one:>12.1f} {ref:>12.1f} {rate:>11.1f} {gf:>10.1f} {100 * gf / ref:>5.0f} "
              f"{est.llc:>8.2f} {est.stderr:>7.2f} {est.rhat:>6.3f} {math.ceil(c5):>6d} {long_:>6d}",
              flush=True)


if __name__ == "__main__":
    main()
