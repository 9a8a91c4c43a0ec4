"""ser_classification: macro-F1, micro-F1, accuracy and UAR for categorical SER, as a local evaluate module.

The math lives in ``ser_hf.metrics.functional`` (imported, not copied) because evaluate copies this
script into its modules cache, where relative imports cannot reach the package; ser_hf therefore has
to be importable (installed or on the path) wherever this module is loaded.
"""
import datasets
import evaluate
from ser_hf.metrics.functional import classification_metrics

_DESCRIPTION = (
    "Macro-F1 (the primary score of the categorical task), micro-F1, accuracy and unweighted average "
    "recall (balanced accuracy) for integer class ids. Classes absent from both predictions and "
    "references are left out unless `labels` names them."
)

_KWARGS_DESCRIPTION = """
Args:
    predictions: N predicted class ids (ints).
    references: N true class ids (ints).
    labels: optional class ids to score; default is every class seen in predictions or references.
    num_classes: optional bound used to reject out-of-range ids.
Returns:
    macro_f1, micro_f1, accuracy, uar.
Example:
    >>> from ser_hf.metrics import load_metric
    >>> metric = load_metric("ser_classification")
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 2])["accuracy"]
    0.6666666666666666
"""

_CITATION = ""


class SerClassification(evaluate.Metric):
    """Scores of the categorical SER task."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("int64"),
                    "references": datasets.Value("int64"),
                }
            ),
        )

    def _compute(self, predictions, references, labels=None, num_classes=None):
        return classification_metrics(predictions, references, num_classes=num_classes, labels=labels)
