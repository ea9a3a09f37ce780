"""pytest (tests/ and the doctests of sft/): one BLAS thread per pool for the whole session.

The test processes run JAX (XLA's own thread pool) next to numpy/scipy BLAS calls; on a 2-core machine
the two pools oversubscribe the cores (see :mod:`sft.threads`). ``SFT_BLAS_THREADS`` overrides.
"""
import pytest

from sft.threads import limit_threads


@pytest.fixture(autouse=True, scope="session")
def _blas_thread_limit():
    with limit_threads():
        yield
