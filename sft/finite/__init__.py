"""Finite-width statistics: four-point vertex, kernel shift, NTK fluctuations (O(1/n)); six-point vertex and
1/n^2 corrections; exact one-hidden-layer cumulants; deep-linear and ReLU exact laws.
"""
from .._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    'vertex': ['SingleInput', 'MultiInput', 'single_input', 'multi_input', 'single_input_step', 'neuron_excess_kurtosis', 'gaussian_rule', 'nu_scale_invariant', 'nu_from_recursion', 'width_ratios'],
    'ntk_variance': ['NTKFluctuations', 'ntk_fluctuations', 'ntk_step', 'ntk_relative_variance', 'nu_theta_from_recursion', 'deep_linear_ntk_second_moment', 'deep_linear_ntk_relative_variance', 'NTKFluctuationsMulti', 'ntk_fluctuations_multi', 'ntk_step_multi', 'readout_ntk_covariance'],
    'one_layer_cumulants': ['one_hidden_layer_cumulant', 'one_hidden_layer_cumulants', 'neuron_cumulants'],
    'second_order': ['SecondOrder', 'second_order_single_input', 'second_order_step', 'gaussian_moment_derivatives'],
    'second_order_multi': ['SecondOrderMulti', 'second_order_multi_input', 'second_order_multi_step'],
    'relu_exact': ['layer_gain_moment', 'output_cumulant_ratios', 'cumulant_ratio_series'],
    'meta_kernels': ['OutputMetaKernels', 'output_meta_kernels', 'meta_kernel_step', 'gaussian_factor_mean', 'LayerMetaKernels', 'layer_meta_kernels'],
    'meta_kernel_contractions': ['LinearMetaKernels', 'linear_meta_kernels', 'contract_meta_kernel', 'dense_meta_kernel'],
    'meta_kernels_batched': ['batched_gaussian_means', 'batched_meta_kernels', 'cost_estimate'],
    'deep_linear': ['output_moment', 'metric_relative_variance', 'excess_kurtosis', 'first_order_excess_kurtosis', 'scale_invariant_nu', 'sample_outputs'],
})
