"""ser_ccc: concordance correlation coefficient per emotional attribute, as an evaluate module.

Self-contained (numpy, datasets, evaluate; no ser_hf import), so the folder can be pushed unchanged
as a Hub metric space; `ser_hf.metrics.functional.ccc` is the same formula.
"""
import datasets
import evaluate
import numpy as np

_DESCRIPTION = (
    "Lin's concordance correlation coefficient (population moments) for each column of N x D "
    "dimensional emotion predictions, and the mean over columns. NaN references mark missing "
    "annotations and are left out of that column only."
)

_KWARGS_DESCRIPTION = """
Args:
    predictions: N rows of D floats (model outputs).
    references: N rows of D floats (annotations); NaN or None marks a missing value.
    attribute_names: D names for the columns; defaults to arousal, valence, dominance.
Returns:
    ccc_<name> for every attribute and ccc_mean, their unweighted mean.
Example:
    >>> import evaluate
    >>> metric = evaluate.load("path/to/ser_ccc")
    >>> metric.compute(predictions=[[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]],
    ...                references=[[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])["ccc_mean"]
    1.0
"""

_CITATION = """
@article{lin1989ccc,
  title={A concordance correlation coefficient to evaluate reproducibility},
  author={Lin, Lawrence I-Kuei},
  journal={Biometrics},
  volume={45},
  number={1},
  pages={255--268},
  year={1989}
}
"""

DEFAULT_ATTRIBUTES = ("arousal", "valence", "dominance")


def _ccc(p, t):
    mean_p, mean_t = p.mean(), t.mean()
    var_p, var_t = np.mean((p - mean_p) ** 2), np.mean((t - mean_t) ** 2)
    denominator = var_p + var_t + (mean_p - mean_t) ** 2
    if denominator == 0.0:  # both the same constant: exactly right
        return 1.0
    return float(2.0 * np.mean((p - mean_p) * (t - mean_t)) / denominator)


class SerCcc(evaluate.Metric):
    """Per-attribute CCC for the arousal/valence/dominance regression task."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Sequence(datasets.Value("float64")),
                }
            ),
        )

    def _compute(self, predictions, references, attribute_names=None):
        p = np.asarray(predictions, dtype=np.float64)
        t = np.asarray([[np.nan if v is None else v for v in row] for row in references], dtype=np.float64)
        if p.ndim != 2 or p.shape != t.shape or p.shape[0] == 0:
            raise ValueError(f"predictions {p.shape} and references {t.shape} must be the same non-empty N x D")
        names = list(DEFAULT_ATTRIBUTES if attribute_names is None else attribute_names)
        if len(names) != p.shape[1] or len(set(names)) != len(names):
            raise ValueError(f"need {p.shape[1]} unique attribute names, got {names}")
        result = {}
        for column, name in enumerate(names):
            if not np.isfinite(p[:, column]).all():
                raise ValueError(f"prediction for {name!r} in row {int(np.flatnonzero(~np.isfinite(p[:, column]))[0])} is not finite")
            if np.isinf(t[:, column]).any():
                raise ValueError(f"target for {name!r} in row {int(np.flatnonzero(np.isinf(t[:, column]))[0])} is infinite")
            annotated = ~np.isnan(t[:, column])
            if not annotated.any():
                raise ValueError(f"no row has an annotated {name!r} target, so its CCC is undefined")
            result[f"ccc_{name}"] = _ccc(p[annotated, column], t[annotated, column])
        result["ccc_mean"] = float(np.mean(list(result.values())))
        return result
