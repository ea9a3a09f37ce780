"""sft: statistical field theory of wide neural networks.

Subpackages, in tiers that depend one way (numerics -> physics -> workflows):

- ``sft.gaussian``  Gaussian expectations, Hermite series and tensors, independent references
- ``sft.kernels``   activations, infinite-width NNGP/NTK recursions, criticality
- ``sft.finite``    finite-width statistics: vertices, kernel shifts, NTK fluctuations, exact deep-linear laws
- ``sft.symbolic``  cumulants, Wick contractions, Edgeworth expansions, Feynman diagrams (sympy)
- ``sft.predict``   Gaussian predictors and their finite-width corrections, kernel renormalization
- ``sft.circuits``  impurities in a renormalized Gaussian background, planted circuits, residual GPs
- ``sft.sim``       JAX ensembles, training, posterior samplers, estimators with error bars
- ``sft.workflow``  figures registry and cache, reports, command line

Conventions are stated once in :mod:`sft.conventions` (including float64: ``import sft`` turns on
``jax_enable_x64`` unless the environment variable ``SFT_NO_X64=1`` is set). Subpackages load lazily on first use.
"""
import os

import jax

if os.environ.get("SFT_NO_X64", "") not in ("1", "true", "True", "yes"):
    # float64 for the whole process; opt out with SFT_NO_X64=1 (see sft.conventions: sft's JAX entry
    # points then raise until you enable x64 yourself).
    jax.config.update("jax_enable_x64", True)

from ._lazy import attach  # noqa: E402

__version__ = "0.1.0"
_SUBPACKAGES = ["conventions", "threads", "gaussian", "kernels", "finite", "symbolic", "predict", "circuits", "sim", "workflow"]
__getattr__, __dir__, __all__ = attach(__name__, {name: [] for name in _SUBPACKAGES})
