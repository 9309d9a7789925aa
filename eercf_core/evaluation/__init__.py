"""Evaluation: `metrics` (R@K, MdR, MnR from ranks), `ranked` (a ranked TSV + ground truth ->
t2v and v2t metrics) and `plots` (recall curves as PNG)."""
