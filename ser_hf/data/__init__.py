"""Corpora, audio decoding, collators and input validation."""
from ser_hf.data.schema import ATTRIBUTES, COLUMNS, FEATURES, rows_to_dataset, rows_to_dataset_dict

__all__ = ["ATTRIBUTES", "COLUMNS", "FEATURES", "rows_to_dataset", "rows_to_dataset_dict"]
