"""Thread limits for sft's heavy numerical work, so that BLAS and XLA do not oversubscribe the cores.

Why: numpy and scipy call a multithreaded BLAS/LAPACK (OpenBLAS or MKL) whose pool has one thread per
core, and JAX's XLA CPU backend keeps a second pool of the same size. A computation that alternates
between them (a figure piece: an XLA ensemble simulation, then numpy eigendecompositions and solves)
runs with twice as many busy threads as cores; both pools spin while waiting, and small BLAS calls
(eigh of a few-hundred-square matrix, a loop of Monte Carlo solves) become many times slower. Measured
on a busy 2-core machine (load 10-14): 20 x (numpy eigh of a 300 x 300 matrix + a jitted XLA matmul)
took 14-39 s wall with 2 BLAS threads and 1.5 s with 1; the planted and impurity tests took 380 s
wall (67 s CPU) with 2 and 104 s (11 s CPU) with 1. :func:`limit_threads` caps the BLAS pools
(through threadpoolctl, for every BLAS library loaded in the process) for the duration of a block
and restores them afterwards; XLA keeps its own pool. :mod:`sft.workflow.figures` computes every
figure piece inside it, the numpy eigh loops of :mod:`sft.circuits.planted` and the impurity Monte
Carlo (:func:`sft.circuits.impurity.alloy_local_green_mc`) use it as a decorator (``@limit_threads()``),
and the test session runs inside it (``conftest.py``). Use it around your own numpy-heavy loops that
run next to JAX work.

The cap is ``blas`` if given, else the environment variable ``SFT_BLAS_THREADS`` if set, else 1.
Set ``SFT_BLAS_THREADS=0`` to leave the BLAS pools untouched (e.g. for one large eigh on an idle
many-core machine).
"""
from __future__ import annotations

import contextlib
import os

__all__ = ["limit_threads", "blas_thread_limit"]


def blas_thread_limit(blas=None) -> int:
    """The BLAS thread cap: ``blas`` if given, else ``$SFT_BLAS_THREADS``, else 1; 0 means no cap.

    >>> blas_thread_limit(2), blas_thread_limit("1"), blas_thread_limit(0)
    (2, 1, 0)
    """
    source = "blas"
    if blas is None:
        blas, source = os.environ.get("SFT_BLAS_THREADS", "1"), "SFT_BLAS_THREADS"
    text = str(blas).strip()
    if isinstance(blas, bool) or not text.isdigit():
        raise ValueError(f"{source}={blas!r} is not allowed: give an integer >= 1 (threads per BLAS "
                         "pool), or 0 to leave the BLAS pools as they are")
    return int(text)


@contextlib.contextmanager
def limit_threads(blas=None):
    """Within the block, every BLAS pool of the process uses at most :func:`blas_thread_limit` threads.

    Example (the cap applies inside the block and is undone after it):

    >>> import numpy as np
    >>> from threadpoolctl import threadpool_info
    >>> with limit_threads(1):
    ...     _ = np.linalg.eigh(np.eye(50))
    ...     print(all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] == "blas"))
    True
    """
    n = blas_thread_limit(blas)
    if n == 0:
        yield
        return
    import scipy.linalg  # noqa: F401  (scipy's own BLAS, used also by JAX's CPU LAPACK calls: load it
    from threadpoolctl import threadpool_limits  # now, so that the limit covers it)

    with threadpool_limits(limits=n, user_api="blas"):
        yield
