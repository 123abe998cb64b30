"""The artifact round-trips, and loading refuses what does not fit."""

from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import pytest

from kerastrader.errors import ModelMismatchError
from kerastrader.models.artifact import Artifact, load_artifact, save_artifact
from kerastrader.models.windows import make_windows


def _test_windows(result):
    ds = result.dataset
    scaled = result.loaded.scaler.transform(ds.features)
    return make_windows(scaled, ds.ends["test"], result.loaded.window)


def test_loaded_model_predicts_what_the_trained_one_did(trained):
    x = _test_windows(trained)
    np.testing.assert_allclose(trained.loaded.batch_predictor(x), trained.p_test, atol=1e-6)


def test_artifact_directory_holds_keras_onnx_and_metadata(trained):
    names = {p.name for p in trained.loaded.path.iterdir()}
    assert names == {"model.keras", "model.onnx", "metadata.json"}


def test_a_different_feature_list_is_refused_with_both_lists(trained):
    names = trained.loaded.metadata["features"]["names"]
    with pytest.raises(ModelMismatchError, match=r"the model needs \['rsi_14'\]"):
        trained.loaded.check_compatible([n for n in names if n != "rsi_14"])


def test_a_different_window_is_refused(trained):
    with pytest.raises(
        ModelMismatchError, match="trained with window 10, config has model.window = 30"
    ):
        trained.loaded.check_compatible(window=30)


def test_a_missing_directory_is_refused(tmp_path):
    with pytest.raises(ModelMismatchError, match="not a model directory"):
        load_artifact(tmp_path / "nope")


def test_a_missing_metadata_file_is_refused(trained, tmp_path):
    copy = shutil.copytree(trained.loaded.path, tmp_path / "m")
    (copy / "metadata.json").unlink()
    with pytest.raises(ModelMismatchError, match="missing metadata.json"):
        load_artifact(copy)


def test_a_model_file_changed_after_saving_is_refused(trained, tmp_path):
    copy = shutil.copytree(trained.loaded.path, tmp_path / "m")
    with open(copy / "model.keras", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelMismatchError, match="SHA-256 differs"):
        load_artifact(copy)


def test_metadata_that_disagrees_with_the_model_shape_is_refused(trained, tmp_path):
    copy = shutil.copytree(trained.loaded.path, tmp_path / "m")
    meta = json.loads((copy / "metadata.json").read_text())
    meta["window"] = 20
    (copy / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelMismatchError, match="input shape"):
        load_artifact(copy)


def test_safe_mode_refuses_a_model_with_arbitrary_code(trained, tmp_path):
    inputs = keras.Input((10, 9))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(x)))
    meta = json.loads((trained.loaded.path / "metadata.json").read_text())
    meta.pop("files")
    art = Artifact(model=model, metadata=meta, onnx_bytes=b"unused")
    path = save_artifact(art, tmp_path / "lambda")
    with pytest.raises(ModelMismatchError, match="cannot be loaded by Keras"):
        load_artifact(path)


def test_a_failed_save_leaves_the_previous_artifact_intact(trained, tmp_path):
    path = save_artifact(trained.loaded, tmp_path / "m")
    before = (path / "metadata.json").read_text()

    class Broken:
        def save(self, _):
            raise OSError("disk full")

    broken = Artifact(model=Broken(), metadata=dict(trained.loaded.metadata))
    with pytest.raises(OSError, match="disk full"):
        save_artifact(broken, path)
    assert (path / "metadata.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_onnx_export_was_checked_against_keras_on_the_test_windows(trained):
    import onnxruntime as ort

    # The saved model.onnx, run by onnxruntime itself, against the loaded Keras model.
    x = _test_windows(trained).astype(np.float32)
    session = ort.InferenceSession(
        str(trained.loaded.path / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    want = keras.ops.convert_to_numpy(trained.loaded.model(x, training=False))
    diff = float(np.max(np.abs(got.reshape(want.shape) - want)))
    assert diff <= 1e-5
    onnx = trained.loaded.metadata["onnx"]
    assert onnx["checked_windows"] == len(trained.test_ends) == len(x)
    assert onnx["max_abs_diff"] == pytest.approx(diff, abs=1e-6)  # the record tells the truth
