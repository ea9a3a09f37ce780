"""sft: statistical field theory of wide neural networks.

Tiers (depending one way): numerics (``gaussian``) -> physics objects (``activations``, ``kernels``,
``criticality``) -> workflows (``networks``, ``figures``, ``cli``). Conventions: ``sft.conventions``.
"""
import jax

jax.config.update("jax_enable_x64", True)

from . import conventions, activations, gaussian, kernels  # noqa: E402,F401

__all__ = ["conventions", "activations", "gaussian", "kernels"]
__version__ = "0.1.0"
