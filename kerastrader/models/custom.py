"""A user's own model, in one of two forms, trained and saved like the built-in families.

- a saved ``.keras`` file: loaded (safe mode on), checked against the window and features,
  compiled with the head's loss if it is not compiled, then trained from its current weights;
- an import path ``package.module:function`` or a file ``path/to/models.py:function``
  (relative to the config file): called as ``function(input_shape)`` (or
  ``function(input_shape, head=...)`` when it takes a ``head`` argument), returning a compiled
  Keras model. ``input_shape`` is ``(window, n_features)``.

Either way the result must take ``(None, window, n_features)`` and give the head's outputs.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from pathlib import Path

import keras

from kerastrader.errors import ConfigError
from kerastrader.models.heads import Head


def _from_file(path: Path) -> keras.Model:
    if not path.is_file():
        raise ConfigError(f"model.custom = {str(path)!r}: file not found")
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as exc:  # Keras raises many kinds for a bad file
        raise ConfigError(f"{path}: cannot be loaded by Keras ({exc})") from None


def _from_source(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    spec = importlib.util.spec_from_file_location(f"kerastrader_user_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _from_import(spec: str, input_shape: tuple[int, int], head: Head) -> keras.Model:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(
            f"model.custom = {spec!r}: expected a .keras file or 'package.module:function'"
        )
    try:
        if module_name.endswith(".py"):
            module = _from_source(Path(module_name))
        else:
            module = importlib.import_module(module_name)
    except (ImportError, FileNotFoundError) as exc:
        raise ConfigError(f"model.custom = {spec!r}: cannot import {module_name} ({exc})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"model.custom = {spec!r}: {module_name} has no function {attr}")
    kwargs = {"head": head.kind} if "head" in inspect.signature(fn).parameters else {}
    model = fn(input_shape, **kwargs)
    if not isinstance(model, keras.Model):
        raise ConfigError(
            f"model.custom = {spec!r}: returned {type(model).__name__}, not a keras.Model"
        )
    return model


def custom_model(spec: str, window: int, n_features: int, head: Head) -> keras.Model:
    """The user's model, checked to fit the inputs and the head."""
    path = Path(spec)
    from_file = path.suffix == ".keras"
    model = _from_file(path) if from_file else _from_import(spec, (window, n_features), head)
    want = (None, window, n_features)
    got = tuple(model.input_shape)
    if got != want:
        raise ConfigError(
            f"model.custom = {spec!r}: input shape {got}, the config gives {want} "
            "(model.window, number of features)"
        )
    head.check_output_shape(tuple(model.output_shape), f"model.custom = {spec!r}")
    if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", False):
        model.compile(optimizer=keras.optimizers.Adam(1e-3), **head.compile_args())
    return model
