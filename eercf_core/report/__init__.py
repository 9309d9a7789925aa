"""The HTML result gallery (`eercf report`, `eercf search --html`).

    gallery  results + index -> index.html + assets/ (load_results, write_report, gate_weights)
    page     the page template, stylesheet and script (package files in assets/), rendered with
             the data inline
"""
from eercf_core.report.gallery import QueryResults, gate_weights, load_results, write_report

__all__ = ["QueryResults", "gate_weights", "load_results", "write_report"]
