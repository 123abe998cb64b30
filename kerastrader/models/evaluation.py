"""Out-of-sample diagnostics of a direction classifier, shared by training and the report."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn import metrics as skm


def classification_metrics(
    y_true: np.ndarray, y_prob: np.ndarray, threshold: float = 0.5
) -> dict[str, Any]:
    """Accuracy, precision, recall, F1, ROC AUC, log loss, the confusion matrix and the
    calibration curve (ten quantile bins: mean prediction against the share that went up).

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
    if both and len(y_true) >= 20:
        from sklearn.calibration import calibration_curve

        frac, mean = calibration_curve(y_true, y_prob, n_bins=10, strategy="quantile")
        out["calibration"] = {
            "mean_predicted": [float(v) for v in mean],
            "fraction_up": [float(v) for v in frac],
        }
    return out


def multiclass_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Down/flat/up classifier: accuracy, balanced accuracy, macro precision/recall/F1,
    one-vs-rest ROC AUC, log loss and the 3 x 3 confusion matrix (rows: actual)."""
    y_true = np.asarray(y_true, dtype=int).ravel()
    probs = np.asarray(probs, dtype=float).reshape(len(y_true), -1)
    labels = list(range(probs.shape[1]))
    y_pred = probs.argmax(axis=1)
    present = np.unique(y_true)
    auc = None
    if len(present) == len(labels):
        auc = float(skm.roc_auc_score(y_true, probs, multi_class="ovr", labels=labels))
    clipped = np.clip(probs, 1e-7, 1.0)
    clipped = clipped / clipped.sum(axis=1, keepdims=True)
    prf = {
        name: float(fn(y_true, y_pred, average="macro", labels=labels, zero_division=0))
        for name, fn in (
            ("precision", skm.precision_score),
            ("recall", skm.recall_score),
            ("f1", skm.f1_score),
        )
    }
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred))
        if len(present) > 1
        else None,
        **prf,
        "roc_auc": auc,
        "log_loss": float(skm.log_loss(y_true, clipped, labels=labels)),
        "class_shares": [float((y_true == c).mean()) for c in labels] if len(y_true) else None,
        "base_rate": float(max((y_true == c).mean() for c in labels)) if len(y_true) else math.nan,
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "n_test": int(len(y_true)),
    }


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Forward-return regression: MSE, MAE, directional accuracy (sign agreement, zero
    returns excluded) and the information coefficient (Spearman rank correlation)."""
    from scipy.stats import spearmanr

    y_true = np.asarray(y_true, dtype=float).ravel()
    y_pred = np.asarray(y_pred, dtype=float).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{y_true.shape=} != {y_pred.shape=}")
    moved = y_true != 0
    ic = None
    if len(y_true) > 2 and np.std(y_pred) > 0 and np.std(y_true) > 0:
        ic = float(spearmanr(y_true, y_pred).statistic)
    return {
        "mse": float(skm.mean_squared_error(y_true, y_pred)) if len(y_true) else math.nan,
        "mae": float(skm.mean_absolute_error(y_true, y_pred)) if len(y_true) else math.nan,
        "directional_accuracy": float((np.sign(y_pred[moved]) == np.sign(y_true[moved])).mean())
        if moved.any()
        else None,
        "ic_spearman": ic,
        "mean_prediction": float(np.mean(y_pred)) if len(y_pred) else math.nan,
        "std_prediction": float(np.std(y_pred)) if len(y_pred) else math.nan,
        "base_rate": float((y_true[moved] > 0).mean()) if moved.any() else math.nan,
        "n_test": int(len(y_true)),
    }
