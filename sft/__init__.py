"""sft: statistical field theory of wide neural networks.

Tiers (depending one way): numerics (``gaussian``, ``estimators``) -> physics objects
(``activations``, ``kernels``, ``criticality``, ``finite_width``, ``ntk_fluctuations``,
``deep_linear``) -> workflows (``networks``, ``report``, ``figures``, ``cli``).
Conventions: ``sft.conventions`` (stated once, used everywhere).
"""
import jax

jax.config.update("jax_enable_x64", True)

from . import (activations, conventions, criticality, deep_linear, estimators,  # noqa: E402
               finite_width, gaussian, kernels, networks, ntk_fluctuations, report)

__all__ = ["activations", "conventions", "criticality", "deep_linear", "estimators", "finite_width",
           "gaussian", "kernels", "networks", "ntk_fluctuations", "report"]
__version__ = "0.1.0"
