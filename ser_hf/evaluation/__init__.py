"""Evaluation side of ser-hf: what is computed and written after training.

- `ser_hf.evaluation.report`: the evaluation report of one model (or ensemble) on one split.
- `ser_hf.evaluation.submission`: challenge submission CSVs written by the report.
- `ser_hf.evaluation.ensemble`: combining checkpoints (mean, vote, stacking, weight averaging).
- `ser_hf.evaluation.robustness`: scores under controlled degradations (``evaluate --perturb``).
"""
