"""O(1/n) posterior at P = M = 100 without cumulant tensors (sft.predict.large_posterior) against the full-tensor
route (sft.finite.multi_input + sft.predict.perturbative_posterior), depth 2, tanh and ReLU.

Data: two classes of a synthetic set in d = 50 (seed 0): x = u + 2 c e, u ~ N(0, I_50), c = +-1 the class,
e a fixed random unit vector, rescaled to |x|^2 / d = 1; labels y = c; P = 100 training and M = 100 test points
(N = 200); C_W = 1.5 (tanh) / 2.0 (ReLU), C_b = 0.1, noise sigma^2 = ``--noise`` (default 1.0), float64.

Measured (this machine, load average printed):
- large_posterior: seconds (one call), peak Python/numpy memory (tracemalloc), and the Monte Carlo relative
  error of the correction, |err| / |c_1| (Frobenius norms over the test points), for ``--samples`` neurons per
  component; the neurons needed for a 10 % relative error, S (e / 0.1)^2 (error ~ S^-1/2), and their time;
- reference in the same run: multi_input at depth 2 for N = 6 and 8 (seconds), extrapolated to N = 200
  by its cost C(N, 4) (four-input integrals dominate), with the memory of its N^4 tensors, (2 depth + 8) N^4 8 bytes.

O(1/n^2) (``--part order2``, depth 1, same data, tanh and ReLU): large_posterior(order=2) with ``--samples``
rows of four neurons each, seconds and peak memory of the call and the relative Monte Carlo error of mean[2], cov[2]
(and of mean[1], cov[1] from the same call); references measured in the same run: the order-1 call (ratio), the
machine's float64 matrix-product rate (the call's time in 200 x 200 x 200 products), and the size of the
full-tensor route's kappa_6 at N = 200 (N^6 x 8 bytes; not computable). Measured (load 3-5, 8192 rows, 8 batches):
tanh 35.9 s wall / 23.9 s CPU, peak 64 MiB, |mean[2]| = 265 +- 94 (rel 0.36), |cov[2]| = 1140 +- 232 (rel 0.20);
ReLU 24.0 s / 15.5 s, 60 MiB, |mean[2]| = 666 +- 503 (rel 0.76), |cov[2]| = 8500 +- 1560 (rel 0.18); the order-1
calls took 6.5 / 4.4 s. The matrix-product reference is unstable on this shared machine: best of 20 was 0.15 ms
(106 GFLOP/s) in that run and 16-29 ms in runs at load 6-11, so its ratio is only indicative.

Usage (repository root): PYTHONPATH=. python sims/benchmarks/bench_large_posterior.py [--samples S] [--noise s2]
[--part all|order1|order2]
"""
from __future__ import annotations

import argparse
import math
import os
import time
import tracemalloc

import numpy as np

import sft  # noqa: F401  (enables float64)
from sft.finite import multi_input
from sft.predict import large_posterior
from sft.sim import two_class_mixture


def _timed(**kw):
    """large_posterior(**kw), its wall and process CPU seconds and peak traced memory (MiB)."""
    tracemalloc.start()
    t, cpu = time.perf_counter(), time.process_time()
    out = large_posterior(**kw)
    sec, cpu = time.perf_counter() - t, time.process_time() - cpu
    peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
    tracemalloc.stop()
    return out, sec, cpu, peak


def matmul_seconds(N=200, repeats=20):
    """Seconds of one float64 N x N x N matrix product on this machine (best of ``repeats``)."""
    a = np.random.default_rng(0).standard_normal((2, N, N))
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        a[0] @ a[1]
        best = min(best, time.perf_counter() - t)
    return best


def order2(args, xtr, y, xte):
    """O(1/n^2) at depth 1 (module docstring)."""
    mm = matmul_seconds()
    N = xtr.shape[0] + xte.shape[0]
    print(f"order 2, depth 1: one 200^3 float64 matrix product {mm * 1e3:.2f} ms "
          f"({2 * 200 ** 3 / mm / 1e9:.1f} GFLOP/s); full-tensor kappa_6 at N = {N}: {N ** 6 * 8 / 2 ** 40:.0f} TiB")
    for act, cw in (("tanh", 1.5), ("relu", 2.0)):
        kw = dict(x_train=xtr, y_train=y, x_test=xte, depth=1, activation=act, C_W=cw, C_b=0.1, noise=args.noise,
                  samples=args.samples, n_batches=8, seed=0)
        one, sec1, _, _ = _timed(order=1, **kw)
        out, sec, cpu, peak = _timed(order=2, **kw)
        rel = {(name, j): np.linalg.norm(e[j]) / np.linalg.norm(v[j]) for j in (1, 2)
               for name, v, e in (("mean", out.mean, out.mean_err), ("cov", out.cov, out.cov_err))}
        print(f"{act}: large_posterior(order=2) P = M = 100, {out.samples} rows of 4 neurons: {sec:.1f} s "
              f"(CPU {cpu:.1f} s) "
              f"({sec / sec1:.1f} x the order-1 call, {sec1:.1f} s; {sec / mm:.2g} matrix products), "
              f"peak {peak:.0f} MiB")
        for j in (1, 2):
            print(f"   |mean[{j}]| = {np.linalg.norm(out.mean[j]):.3g} +- {np.linalg.norm(out.mean_err[j]):.3g} "
                  f"(rel {rel[('mean', j)]:.2f}), |cov[{j}]| = {np.linalg.norm(out.cov[j]):.3g} +- "
                  f"{np.linalg.norm(out.cov_err[j]):.3g} (rel {rel[('cov', j)]:.2f})")
        need = max(out.samples * (rel[(name, 2)] / 0.1) ** 2 for name in ("mean", "cov"))
        print(f"   rows for 10 % relative error of the O(1/n^2) part: ~{need:.2g} "
              f"(~{sec * need / out.samples / 3600:.2g} h at this rate); order-1 part equal to the order-1 call: "
              f"{np.array_equal(out.mean[:2], one.mean)}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=8192)
    ap.add_argument("--noise", type=float, default=1.0)
    ap.add_argument("--part", choices=("all", "order1", "order2"), default="all")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()}, {os.cpu_count()} cores; noise {args.noise}")
    xtr, y, xte = two_class_mixture()
    if args.part in ("all", "order2"):
        order2(args, xtr, y, xte)
        print(f"load average {os.getloadavg()}")
    if args.part == "order2":
        return
    for act, cw in (("tanh", 1.5), ("relu", 2.0)):
        kw = dict(depth=2, activation=act, C_W=cw, C_b=0.1)
        tracemalloc.start()
        t = time.perf_counter()
        out = large_posterior(xtr, y, xte, noise=args.noise, samples=args.samples, n_batches=8, seed=0, **kw)
        sec = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
        tracemalloc.stop()
        rel = {name: np.linalg.norm(e[1]) / np.linalg.norm(v[1])
               for name, v, e in (("mean", out.mean, out.mean_err), ("cov", out.cov, out.cov_err))}
        need = max(out.samples * (r / 0.1) ** 2 for r in rel.values())
        print(f"{act}: large_posterior P = M = 100, {out.samples} neurons/component: {sec:.1f} s, "
              f"peak {peak:.0f} MiB;"
              f" |c1 mean| = {np.linalg.norm(out.mean[1]):.3g} +- {np.linalg.norm(out.mean_err[1]):.3g} "
              f"(rel {rel['mean']:.2f}), |c1 cov| = {np.linalg.norm(out.cov[1]):.3g} +- "
              f"{np.linalg.norm(out.cov_err[1]):.3g} (rel {rel['cov']:.2f}); kernel-shift part (exact) "
              f"|mean| = {np.linalg.norm(out.shift_mean):.3g}, |cov| = {np.linalg.norm(out.shift_cov):.3g}")
        hours = sec * need / out.samples / 3600
        warn = " -- unreliable: rel > 0.5, the correction is not resolved" if max(rel.values()) > 0.5 else ""
        print(f"   neurons for 10 % relative error: ~{need:.2g} (~{hours:.2g} h at this rate){warn}")
        times = {}
        for N in (6, 8):
            x = np.concatenate([xtr, xte])[:N]
            multi_input(x[:4], **kw)  # compile
            t = time.perf_counter()
            multi_input(x, **kw)
            times[N] = time.perf_counter() - t
        per = times[8] / math.comb(8, 4)
        print(f"   full-tensor route: multi_input depth 2 N = 6: {times[6]:.2f} s, N = 8: {times[8]:.2f} s -> N = 200: "
              f"~{per * math.comb(200, 4) / 3600:.3g} h (C(N,4) scaling), tensors "
              f"{(2 * 2 + 8) * 200 ** 4 * 8 / 2 ** 30:.0f} GiB")


if __name__ == "__main__":
    main()
