"""Infinite-width kernels: activations, the NNGP/NTK layer recursions, and criticality.
"""
from .._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    'activations': ['Activation', 'get_activation', 'scale_invariant', 'leaky_relu', 'ACTIVATION_NAMES'],
    'recursion': ['nngp', 'ntk', 'nngp_and_ntk'],
    'criticality': ['kernel_map', 'chi_parallel', 'chi_perp', 'taylor_coefficients', 'small_K_expansion', 'FixedPoint', 'fixed_points', 'Criticality', 'nontrivial_critical_points', 'critical_initialization', 'universality_class', 'kernel_flow', 'correlation_flow'],
})
