"""ser_classification: macro-F1, micro-F1, accuracy and UAR for categorical SER, as an evaluate module.

Self-contained (scikit-learn, numpy, datasets, evaluate; no ser_hf import), so the folder can be
pushed unchanged as a Hub metric space; `ser_hf.metrics.functional` computes the same numbers with
the same scikit-learn calls for bootstrap resampling.
"""
import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support, recall_score

_DESCRIPTION = (
    "Macro-F1 (the primary score of the Interspeech 2025 SER challenge's categorical task), micro-F1, "
    "accuracy and unweighted average recall (UAR, balanced accuracy) for integer class ids. Classes absent "
    "from both predictions and references are left out unless `labels` names them; zero divisions count as 0."
)

_KWARGS_DESCRIPTION = """
Args:
    predictions: N predicted class ids (ints).
    references: N true class ids (ints).
    labels: optional class ids to score; default is every class seen in predictions or references.
        UAR averages recall over the classes of that set that occur in the references.
    per_class: also return {class id: precision, recall, f1, support}.
Returns:
    macro_f1, micro_f1, accuracy, uar (and per_class).
Example:
    >>> import evaluate
    >>> metric = evaluate.load("path/to/ser_classification")
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 2])["accuracy"]
    0.6666666666666666
"""

_CITATION = """
@inproceedings{lessons2025ser,
  title={Lessons Learnt: Revisit Key Training Strategies for Effective Speech Emotion Recognition in the Wild},
  booktitle={Interspeech},
  year={2025}
}
"""


class SerClassification(evaluate.Metric):
    """Scores of the categorical SER task."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
            reference_urls=["https://scikit-learn.org/stable/modules/model_evaluation.html#classification-metrics"],
        )

    def _compute(self, predictions, references, labels=None, per_class=False):
        predictions, references = np.asarray(predictions, dtype=np.int64), np.asarray(references, dtype=np.int64)
        if predictions.size == 0:
            raise ValueError("predictions are empty")
        classes = np.union1d(predictions, references) if labels is None else np.asarray(labels, dtype=np.int64)
        present = np.intersect1d(classes, references)
        if present.size == 0:
            raise ValueError(f"none of the classes {classes.tolist()} occurs in the references")
        result = {
            "macro_f1": float(f1_score(references, predictions, labels=classes, average="macro", zero_division=0)),
            "micro_f1": float(f1_score(references, predictions, labels=classes, average="micro", zero_division=0)),
            "accuracy": float(accuracy_score(references, predictions)),
            "uar": float(recall_score(references, predictions, labels=present, average="macro", zero_division=0)),
        }
        if per_class:
            precision, recall, f1, support = precision_recall_fscore_support(
                references, predictions, labels=classes, zero_division=0
            )
            result["per_class"] = {
                int(c): {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                for c, p, r, f, s in zip(classes, precision, recall, f1, support)
            }
        return result
