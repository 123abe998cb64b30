"""One TOML file describes an experiment; mistakes in it are named, never ignored."""

from __future__ import annotations

import tomllib

import pytest

from kerastrader.config import default_config, dump_config, load_config, parse_override
from kerastrader.errors import ConfigError


def test_defaults_load_and_validate():
    cfg = load_config()
    assert cfg["model"]["window"] == 30
    assert cfg["data"]["path"] == ""


def test_file_values_override_defaults(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('[training]\nepochs = 3\n[data]\nsymbol = "NVDA"\n')
    cfg = load_config(path)
    assert cfg["training"]["epochs"] == 3 and cfg["data"]["symbol"] == "NVDA"
    assert cfg["training"]["batch_size"] == 64


def test_set_overrides_win_over_the_file(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text("[training]\nepochs = 3\n")
    cfg = load_config(path, ["training.epochs=2", "model.units=[8, 4]"])
    assert cfg["training"]["epochs"] == 2 and cfg["model"]["units"] == [8, 4]


def test_unknown_section_is_named(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text("[trainig]\nepochs = 3\n")
    with pytest.raises(ConfigError, match=r"unknown section \[trainig\]"):
        load_config(path)


def test_unknown_key_is_named_with_the_known_ones():
    with pytest.raises(ConfigError, match="unknown key training.epoch .*epochs"):
        load_config(None, ["training.epoch=2"])


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match="training.epochs must be int, not str"):
        load_config(None, ["training.epochs=many"])


def test_integer_is_accepted_for_a_float_key():
    assert load_config(None, ["broker.cash=5000"])["broker"]["cash"] == 5000.0


def test_exit_above_enter_is_refused():
    with pytest.raises(ConfigError, match="strategy.exit"):
        load_config(None, ["strategy.enter=0.4", "strategy.exit=0.6"])


def test_invalid_toml_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[training\n")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(path)


def test_override_values_are_toml_or_plain_strings():
    assert parse_override("data.symbol=SPY") == ("data", "symbol", "SPY")
    assert parse_override("strategy.allow_short=true") == ("strategy", "allow_short", True)
    with pytest.raises(ConfigError, match="expected section.key=value"):
        parse_override("epochs=2")


def test_resolved_config_round_trips_through_toml():
    cfg = default_config()
    assert tomllib.loads(dump_config(cfg)) == cfg


def test_a_relative_data_path_in_a_config_file_is_relative_to_that_file(tmp_path):
    (tmp_path / "exp").mkdir()
    path = tmp_path / "exp" / "exp.toml"
    path.write_text('[data]\npath = "../bars.csv"\n')
    assert load_config(path)["data"]["path"] == str((tmp_path / "bars.csv").resolve())
