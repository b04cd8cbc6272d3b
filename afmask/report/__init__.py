"""Plots and the HTML report."""

from afmask.report.compare import comparison_csv, comparison_rows, render_comparison
from afmask.report.html import render_report, viewer_data
from afmask.report.plots import (
    curves_figure,
    plot_mask,
    plot_training,
    sanity_figure,
    training_figure,
)

__all__ = [
    "comparison_csv", "comparison_rows", "curves_figure", "plot_mask", "plot_training", "render_comparison",
    "render_report", "sanity_figure", "training_figure", "viewer_data",
]
