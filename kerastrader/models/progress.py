"""Progress bars for the slow parts: training epochs and the backtest."""

from __future__ import annotations

import keras
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def make_progress() -> Progress:
    """A rich progress bar on stderr, so stdout stays clean for piping."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )


class EpochProgress(keras.callbacks.Callback):
    """One bar step per epoch with the losses; early stopping ends the bar where it stops."""

    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.epochs = epochs
        self._progress: Progress | None = None
        self._task = None

    def on_train_begin(self, logs=None) -> None:
        self._progress = make_progress()
        self._progress.start()
        self._task = self._progress.add_task("training", total=self.epochs, info="")

    def on_epoch_end(self, epoch, logs=None) -> None:
        logs = logs or {}
        info = " ".join(f"{k}={logs[k]:.4f}" for k in ("loss", "val_loss", "val_auc") if k in logs)
        self._progress.update(self._task, advance=1, info=info)

    def on_train_end(self, logs=None) -> None:
        if self._progress is not None:
            self._progress.stop()
