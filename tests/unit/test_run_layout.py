"""Where things live, on real folders: the resolved paths, a run folder's files, its manifest,
the checks before a run is served, and the registry's atomic ``latest`` pointer."""

from __future__ import annotations

import os

import pytest

from openhoof_router.core.prompt import PROMPT_FORMAT
from openhoof_router.store.paths import Paths
from openhoof_router.store.runs import (
    MANIFEST,
    BaseModelInfo,
    ModelRegistry,
    RunError,
    RunLayout,
    RunManifest,
    ServedRun,
    general_run,
)


def manifest(run_id: str, **kw) -> RunManifest:
    return RunManifest(run_id=run_id, base_model=BaseModelInfo(name="gemma-3-270m"), **kw)


def make_run(registry: ModelRegistry, prefix: str = "run") -> ServedRun:
    """A run folder as a trainer leaves it: a PEFT adapter, a GGUF, the manifest naming both."""
    layout = RunLayout(root=registry.new_run_dir(prefix))
    adapter = layout.adapter("cpu")
    adapter.mkdir()
    layout.gguf.write_bytes(b"GGUF")
    manifest(layout.root.name, files=layout.files(adapter, layout.gguf)).save(layout.root)
    return ServedRun.open(layout.root)


def test_paths_come_from_arguments_then_environment_then_defaults(tmp_path, monkeypatch):
    for name in ("HOME", "DATA_DIR", "MODELS_DIR", "CACHE_DIR"):
        monkeypatch.delenv(f"OPENHOOF_{name}", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    default = Paths.resolve()
    assert default.home == tmp_path / "user" / ".openhoof"
    assert default.data_dir == default.home / "data" / "function_pipeline"
    assert default.models_dir == default.home / "models" / "tool_router"
    assert default.runs_dir == default.models_dir / "runs" and default.latest_pointer.parent == default.models_dir
    monkeypatch.setenv("OPENHOOF_HOME", str(tmp_path / "env-home"))
    monkeypatch.setenv("OPENHOOF_DATA_DIR", str(tmp_path / "env-data"))
    from_env = Paths.resolve()
    assert from_env.home == tmp_path / "env-home" and from_env.data_dir == tmp_path / "env-data"
    assert from_env.cache_dir == tmp_path / "env-home" / "cache"
    given = Paths.resolve(home=tmp_path / "arg", data_dir=tmp_path / "arg-data")
    assert given.home == tmp_path / "arg" and given.data_dir == tmp_path / "arg-data"
    assert given.decisions_file.parent == given.outcomes_file.parent == given.data_dir


def test_a_run_folder_lists_its_files_relative_to_itself(paths):
    run = make_run(ModelRegistry(paths))
    assert run.manifest.files.peft == RunLayout.PEFT_DIR and run.manifest.files.gguf == RunLayout.GGUF
    assert run.adapter == run.path / RunLayout.PEFT_DIR and run.file("gguf") == run.path / RunLayout.GGUF
    assert run.file("mlx") is None
    layout = RunLayout(root=run.path)
    assert layout.adapter("mlx").name == RunLayout.MLX_DIR and layout.manifest == run.path / MANIFEST
    assert layout.checkpoint(12).name == "step-000012" and layout.checkpoint(12).parent == layout.checkpoints
    assert layout.files(layout.adapter("mlx")).mlx == RunLayout.MLX_DIR
    moved = paths.home / "moved"
    os.replace(run.path, moved)  # relative paths: a run folder can be moved or copied whole
    assert ServedRun.open(moved).file("gguf") == moved / RunLayout.GGUF


def test_manifests_round_trip_and_are_replaced_whole(paths):
    run = make_run(ModelRegistry(paths))
    saved = run.manifest.model_copy(update={"metrics": {"held_out": {"accuracy": 0.8}}, "promoted": True})
    saved.decoding.tool_thresholds = {"exec": 0.7}
    saved.save(run.path)
    loaded = RunManifest.load(run.path)
    assert loaded == saved and loaded.prompt_format == PROMPT_FORMAT
    assert sorted(p.name for p in run.path.iterdir()) == sorted([MANIFEST, RunLayout.PEFT_DIR, RunLayout.GGUF])


def test_runs_that_cannot_be_served_are_refused_with_the_reason(paths, tmp_path):
    with pytest.raises(RunError, match="manifest.json is missing"):
        ServedRun.open(tmp_path)
    (tmp_path / MANIFEST).write_text('{"run_id": 3}')
    with pytest.raises(RunError, match="not a valid run manifest"):
        ServedRun.open(tmp_path)
    run = make_run(ModelRegistry(paths))
    manifest(run.run_id, files=run.manifest.files, prompt_format="openhoof-v0").save(run.path)
    with pytest.raises(RunError, match="trained on prompt format 'openhoof-v0'.*retrain it"):
        ServedRun.open(run.path)
    manifest(run.run_id, files=run.manifest.files).save(run.path)
    (run.path / RunLayout.GGUF).unlink()
    with pytest.raises(RunError, match="gguf file router-q8_0.gguf is missing"):
        ServedRun.open(run.path)
    manifest(run.run_id).save(run.path)
    with pytest.raises(RunError, match="no adapter and no GGUF"):
        ServedRun.open(run.path)


def test_the_registry_promotes_atomically_and_lists_its_runs(paths):
    registry = ModelRegistry(paths)
    assert registry.latest() is None and registry.pointer_stamp() is None and registry.runs() == []
    with pytest.raises(RunError, match="no promoted run"):
        registry.latest_run()
    first, second = make_run(registry), make_run(registry)
    assert first.path != second.path and first.path.parent == second.path.parent == paths.runs_dir
    registry.promote(first.path, {"accuracy": 0.7})
    stamp = registry.pointer_stamp()
    assert registry.latest_run().run_id == first.run_id and registry.latest().metrics == {"accuracy": 0.7}
    registry.promote(second.path, {"accuracy": 0.85})
    assert registry.latest_run().run_id == second.run_id and registry.pointer_stamp() != stamp
    assert [p.name for p in paths.models_dir.iterdir() if p.name.startswith(".")] == []  # no temp file left
    (paths.runs_dir / "junk").mkdir()
    assert [m.run_id for _, m in registry.runs()] == sorted([first.run_id, second.run_id])
    registry.pointer.write_text("{half a pointer")
    assert registry.latest() is None


def test_the_shipped_general_run_opens():
    run = general_run()
    if run is None:
        pytest.skip("the general adapter is not built in this checkout")
    assert run.manifest.kind == "general" and run.adapter is not None and run.adapter.is_dir()


def test_cache_folders_and_the_one_default_for_optional_paths(tmp_path, monkeypatch):
    from openhoof_router.store.paths import resolve_paths

    given = Paths.resolve(home=tmp_path / "given")
    assert [given.base_cache, given.merged_cache, given.eval_cache] == \
        [given.cache_dir / "base", given.cache_dir / "merged", given.cache_dir / "evals"]
    assert resolve_paths(given) is given
    assert resolve_paths(given, tmp_path / "logs").data_dir == tmp_path / "logs"
    monkeypatch.setenv("OPENHOOF_HOME", str(tmp_path / "env"))
    monkeypatch.delenv("OPENHOOF_DATA_DIR", raising=False)
    assert resolve_paths(None).home == tmp_path / "env"


def test_every_run_file_is_named_by_the_layout(tmp_path):
    layout = RunLayout(root=tmp_path)
    assert layout.exported("q8_0") == layout.gguf and layout.exported("f16").name == "router-f16.gguf"
    names = [layout.gguf, layout.history, layout.eval_report, layout.loss_plot, layout.confusion_plot,
             layout.samples, layout.checkpoints, layout.adapter("cpu"), layout.adapter("mlx"), layout.manifest]
    assert len({p.name for p in names}) == len(names) and all(p.parent == tmp_path for p in names)


def test_a_run_can_start_from_a_bare_adapter_folder(tmp_path):
    """``--start-from`` takes a PEFT folder without a manifest (its weights, whatever prompt
    format they were served with): how a new format continues from an older adapter."""
    from openhoof_router.learning.run import start_adapter
    from openhoof_router.models.base_model import BaseModelRef

    base = BaseModelRef("tiny", sha256="0" * 64)
    folder = tmp_path / "general-v2"
    folder.mkdir()
    (folder / "adapter_config.json").write_text("{}")
    assert start_adapter(str(folder), base) == (folder, "general-v2")
    assert start_adapter("none", base) == (None, None) and start_adapter(None, base) == (None, None)
    with pytest.raises(RunError):
        start_adapter(str(tmp_path / "missing"), base)
