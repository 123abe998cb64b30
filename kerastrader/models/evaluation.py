"""Out-of-sample diagnostics of a direction classifier, shared by training and the report."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn import metrics as skm


def classification_metrics(
    y_true: np.ndarray, y_prob: np.ndarray, threshold: float = 0.5
) -> dict[str, Any]:
    """Accuracy, precision, recall, F1, ROC AUC, log loss and the confusion matrix.

    ``y_prob`` is the predicted probability of class 1 (the next bar closes higher). ROC AUC is
    NaN-free only when both classes occur; with one class it is reported as None rather than
    raising, because a short test slice can legitimately be one-sided.
    """
    y_true = np.asarray(y_true, dtype=int).ravel()
    y_prob = np.asarray(y_prob, dtype=float).ravel()
    if y_true.shape != y_prob.shape:
        raise ValueError(f"{y_true.shape=} != {y_prob.shape=}")
    y_pred = (y_prob > threshold).astype(int)
    both = len(np.unique(y_true)) == 2
    out: dict[str, Any] = {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred)) if both else None,
        "precision": float(skm.precision_score(y_true, y_pred, zero_division=0)),
        "recall": float(skm.recall_score(y_true, y_pred, zero_division=0)),
        "f1": float(skm.f1_score(y_true, y_pred, zero_division=0)),
        "roc_auc": float(skm.roc_auc_score(y_true, y_prob)) if both else None,
        "log_loss": float(skm.log_loss(y_true, np.clip(y_prob, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "base_rate": float(y_true.mean()) if len(y_true) else math.nan,
        "threshold": float(threshold),
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=[0, 1]).tolist(),
        "n_test": int(len(y_true)),
    }
    return out
