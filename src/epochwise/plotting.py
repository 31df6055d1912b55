"""Learning curves and the explorer's plots (matplotlib)."""

from .insight.plots import plot_batch_sizes, plot_history, plot_lr_finder, read_history_csv

__all__ = ['plot_history', 'plot_batch_sizes', 'plot_lr_finder', 'read_history_csv']
