"""Workflows: the figure registry and its cache, reports of theory against simulation, the command line.
"""
from .._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    'figures': ['Figure', 'ROOT', 'SIMS_DIR', 'FIGURES_DIR', 'CACHE_DIR', 'discover', 'select', 'piece_key', 'code_version', 'cached_piece', 'compute_all', 'build', 'run_script',
                'Interrupted', 'stop_on_interrupt'],
    'report': ['Comparison', 'Report'],
    'cli': ['main'],
})
