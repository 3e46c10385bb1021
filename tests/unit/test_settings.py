"""RouterSettings: one typed object, each field with its OPENHOOF_* variable; precedence; errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from openhoof_router.core.records import RoutingDecision, ToolCall
from openhoof_router.models.device import ModelSettings, serving_backend
from openhoof_router.models.llamacpp import default_threads
from openhoof_router.serving.policy import ThresholdPolicy
from openhoof_router.serving.settings import DEFAULT_NO_TOOL_THRESHOLD, DEFAULT_THRESHOLD, RouterSettings, SettingsError
from openhoof_router.store.paths import Paths
from openhoof_router.store.runs import Decoding

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No OPENHOOF_* variable from the machine leaks into these tests."""
    import os

    for name in [n for n in os.environ if n.startswith("OPENHOOF_")]:
        monkeypatch.delenv(name)


def test_every_setting_has_a_documented_variable():
    names = RouterSettings.env_names()
    assert names["n_threads"] == "OPENHOOF_THREADS" and names["home"] == "OPENHOOF_HOME"
    assert names["model"] == "OPENHOOF_MODEL" and names["tool_thresholds"] == "OPENHOOF_TOOL_THRESHOLDS"
    readme = README.read_text()
    for field, env in names.items():
        assert re.fullmatch(r"OPENHOOF_[A-Z_]+", env), field
        assert env in (RouterSettings.model_fields[field].description or ""), f"{field}: its description names {env}"
        assert f"`{env}`" in readme, f"README's settings table lacks {env}"


def test_values_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENHOOF_THREADS", "2")
    monkeypatch.setenv("OPENHOOF_TOOL_THRESHOLDS", '{"exec": 0.7}')
    monkeypatch.setenv("OPENHOOF_HOT_RELOAD", "false")
    monkeypatch.setenv("OPENHOOF_BACKEND", "llamacpp")  # an alias
    monkeypatch.setenv("OPENHOOF_HOME", str(tmp_path))
    monkeypatch.setenv("OPENHOOF_MODELS_DIR", "")  # empty: unset
    s = RouterSettings()
    assert (s.n_threads, s.tool_thresholds, s.hot_reload, s.backend) == (2, {"exec": 0.7}, False, "llama.cpp")
    assert s.paths() == Paths.resolve() == Paths(home=tmp_path, data_dir=tmp_path / "data" / "function_pipeline",
                                                  models_dir=tmp_path / "models" / "tool_router",
                                                  cache_dir=tmp_path / "cache")
    # the layers below read the same declarations when no router passes values down
    assert ModelSettings().n_threads == 2 and default_threads() == 2 and serving_backend("auto") == "llama.cpp"


def test_precedence_keywords_over_settings_over_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENHOOF_THRESHOLD", "0.3")
    monkeypatch.setenv("OPENHOOF_MAX_TOOLS", "2")
    monkeypatch.setenv("OPENHOOF_DATA_DIR", str(tmp_path / "env-data"))
    assert RouterSettings().threshold == 0.3
    given = RouterSettings(threshold=0.6)
    assert (given.threshold, given.max_tools) == (0.6, 2)  # the environment fills what is not given
    merged = RouterSettings.of(given, threshold=0.9, tool_thresholds={"notify": 0.1})
    assert (merged.threshold, merged.max_tools, merged.tool_thresholds) == (0.9, 2, {"notify": 0.1})
    assert given.threshold == 0.6  # settings are immutable; of() makes a new one
    # None means "not given" for settings without a default value, as keyword arguments always did
    kept = RouterSettings.of(None, data_dir=None, threshold=None, max_logged_chars=None)
    assert kept.data_dir == tmp_path / "env-data" and kept.threshold == 0.3
    assert kept.max_logged_chars is None  # ... but None is a value where the default is not None
    assert RouterSettings.of(given) is given
    assert Paths.resolve(data_dir=tmp_path / "arg").data_dir == tmp_path / "arg"


@pytest.mark.parametrize(("env", "value", "names"), [
    ("OPENHOOF_MAX_TOOLS", "0", ("max_tools", "OPENHOOF_MAX_TOOLS")),
    ("OPENHOOF_THREADS", "many", ("n_threads", "OPENHOOF_THREADS")),
    ("OPENHOOF_BACKEND", "tpu", ("backend", "OPENHOOF_BACKEND", "tpu")),
    ("OPENHOOF_TOOL_THRESHOLDS", '{"exec": -1}', ("tool_thresholds", ">= 0")),
    ("OPENHOOF_HOT_RELOAD", "sometimes", ("hot_reload",)),
])
def test_bad_environment_values_name_field_and_variable(monkeypatch, env, value, names):
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError) as info:
        RouterSettings()
    assert all(n in str(info.value) for n in names), str(info.value)


def test_bad_keyword_values_and_unknown_names():
    with pytest.raises(SettingsError, match="threshold .OPENHOOF_THRESHOLD."):
        RouterSettings.of(None, threshold=-0.1)
    with pytest.raises(SettingsError, match="reload_interval"):
        RouterSettings(reload_interval=-1)
    with pytest.raises(TypeError, match="unknown router setting.*thresold"):
        RouterSettings.of(None, thresold=0.5)
    with pytest.raises(SettingsError):
        RouterSettings(surprise=1)


def test_paths_and_models_are_accepted_as_objects(tmp_path):
    s = RouterSettings(model=tmp_path / "runs" / "r1", base_model=tmp_path / "base.gguf", home="~/oh")
    assert s.model == str(tmp_path / "runs" / "r1") and s.base_model == str(tmp_path / "base.gguf")
    assert s.home == Path("~/oh").expanduser()


def test_a_runs_fitted_thresholds_serve_under_explicit_ones():
    fitted = Decoding(top_threshold=0.3, threshold=0.7, tool_thresholds={"exec": 0.9, "none": 0.6})
    # the safe side: "no tool" needs more than a tool unless fitted, or the caller set one bar for all
    assert ThresholdPolicy.served(Decoding()) == ThresholdPolicy(DEFAULT_THRESHOLD, {"none": DEFAULT_NO_TOOL_THRESHOLD})
    assert ThresholdPolicy.served(Decoding(), 0.0) == ThresholdPolicy(0.0, {})
    kept = ThresholdPolicy.served(Decoding(keep_threshold=0.02))
    assert kept.keep == 0.02 and ThresholdPolicy.served(Decoding(keep_threshold=0.02), keep_threshold=0.5).keep == 0.5
    assert ThresholdPolicy.served(fitted) == ThresholdPolicy(0.7, {"exec": 0.9, "none": 0.6})
    explicit = ThresholdPolicy.served(fitted, 0.2, {"exec": 0.1})
    assert explicit == ThresholdPolicy(0.2, {"exec": 0.1, "none": 0.6})
    decision = RoutingDecision(tool_calls=[ToolCall(name="exec")], scores={"exec": 0.5}, confidence=0.5)
    assert ThresholdPolicy.served(fitted).judge(decision) == 0.9 and decision.fallback_reason == "tool_threshold:exec"
