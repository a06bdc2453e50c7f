"""Evaluation: metrics, the pitch tracker, Griffin-Lim, model scores, the report, training curves
and inspection of runs and exports."""
