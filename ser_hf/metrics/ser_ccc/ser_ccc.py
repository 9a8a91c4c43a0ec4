"""ser_ccc: concordance correlation coefficient per emotional attribute, as a local evaluate module.

The math lives in ``ser_hf.metrics.functional`` (imported, not copied) because evaluate copies this
script into its modules cache, where relative imports cannot reach the package; ser_hf therefore has
to be importable (installed or on the path) wherever this module is loaded.
"""
import datasets
import evaluate
from ser_hf.data.schema import ATTRIBUTES
from ser_hf.metrics.functional import ccc_per_attribute

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
    >>> from ser_hf.metrics import load_metric
    >>> metric = load_metric("ser_ccc")
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
        names = ATTRIBUTES if attribute_names is None else attribute_names
        return ccc_per_attribute(predictions, references, names)
