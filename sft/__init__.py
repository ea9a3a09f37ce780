"""sft: statistical field theory of wide neural networks.

Tiers (depending one way): numerics (``gaussian``, ``estimators``, ``cumulants``, ``hermite``,
``wick``) -> physics objects (``activations``, ``kernels``, ``criticality``, ``finite_width``,
``ntk_fluctuations``, ``deep_linear``, ``edgeworth``, ``diagrams``, ``schwinger_dyson``, ``predictors``,
``posterior_correction``, ``gd_correction``, ``kernel_renormalization``, ``impurity``, ``planted``,
``gaussian_equivalence``, ``sparse_synapses``) -> workflows (``networks``, ``training``, ``sampling``,
``residual_gp``, ``report``, ``figures``, ``cli``). ``testing`` holds independent references.
Conventions: ``sft.conventions`` (stated once, used everywhere).
"""
import jax

jax.config.update("jax_enable_x64", True)

from . import (activations, conventions, criticality, cumulants, deep_linear, diagrams,  # noqa: E402
               edgeworth, estimators, finite_width, gaussian, gaussian_equivalence, gd_correction, hermite, impurity, kernel_renormalization, kernels, networks,
               ntk_fluctuations, planted, posterior_correction, predictors, report, residual_gp, sampling, schwinger_dyson, sparse_synapses, testing, training,
               wick)

__all__ = ["activations", "conventions", "criticality", "cumulants", "deep_linear", "diagrams",
           "edgeworth", "estimators", "finite_width", "gaussian", "gaussian_equivalence", "gd_correction", "hermite",
           "impurity", "kernel_renormalization", "kernels", "networks",
           "ntk_fluctuations", "planted", "posterior_correction", "predictors", "report", "residual_gp", "sampling", "schwinger_dyson", "sparse_synapses", "testing", "training", "wick"]
__version__ = "0.1.0"
