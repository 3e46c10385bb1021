"""Which model serves (serving.selection.serve) with the real embedded model: refusals and
their reasons, ``hoof-train status`` saying the same, and a run's decoding settings reaching
every engine (start-up, hot reload, evaluation, RouterEngine.load) and the threshold policy."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys

import pytest

from openhoof_router import RouterEngine, RouterService, ToolRouter, ToolRouterMiddleware, router_node
from openhoof_router.models.backend import BackendError
from openhoof_router.serving.policy import ThresholdPolicy
from openhoof_router.serving.selection import engine_for, serve
from openhoof_router.serving.settings import RouterSettings
from openhoof_router.store.runs import BaseModelInfo, Decoding, ModelRegistry, RunFiles, RunManifest, general_run

FITTED = Decoding(top_threshold=0.3, extra_threshold=0.6, threshold=0.7, tool_thresholds={"exec": 0.9})
OTHER_BASE = "f" * 64


def make_run(paths, name: str, base_ref, *, decoding: Decoding | None = None, base_sha: str | None = None):
    """A run folder the loader accepts: its manifest names a GGUF (the base's own bytes)."""
    run = paths.runs_dir / name
    run.mkdir(parents=True)
    RunManifest(run_id=name, backend="test", files=RunFiles(gguf="router.gguf"), decoding=decoding or Decoding(),
                base_model=BaseModelInfo(name="gemma-3-270m-q4_k_m", sha256=base_sha or base_ref.sha256)).save(run)
    try:
        os.link(base_ref.gguf, run / "router.gguf")  # same bytes, no copy
    except OSError:
        shutil.copyfile(base_ref.gguf, run / "router.gguf")
    return run


def hoof_train_status(paths) -> tuple[dict, str]:
    """``hoof-train status`` as a process, JSON and text."""
    env = {**os.environ, "OPENHOOF_HOME": str(paths.home)}
    run = [sys.executable, "-m", "openhoof_router.cli.train", "status"]
    as_json = subprocess.run([*run, "--json"], env=env, capture_output=True, text=True, timeout=120, check=True)
    text = subprocess.run(run, env=env, capture_output=True, text=True, timeout=120, check=True,
                          ).stdout
    return json.loads(as_json.stdout), text


@pytest.mark.parametrize("content", ["", "{not json", '{"run_id": 3}'])
def test_a_garbage_latest_json_is_refused_with_a_warning(paths, content, caplog):
    paths.latest_pointer.parent.mkdir(parents=True)
    paths.latest_pointer.write_text(content)
    with caplog.at_level(logging.WARNING):
        checked = serve(paths=paths, load=False)
    assert checked.source == "general" and checked.run_id == general_run().run_id
    assert len(checked.refused) == 1 and "latest.json: not a valid pointer" in checked.refused[0]
    assert any("not a valid pointer" in r.getMessage() and "serving the general adapter" in r.getMessage()
               for r in caplog.records)


def test_a_router_refuses_a_garbage_pointer_and_serves_the_general_adapter(paths, caplog):
    paths.latest_pointer.parent.mkdir(parents=True)
    paths.latest_pointer.write_text("")  # a crash mid-write of another tool, a disk filled up
    with caplog.at_level(logging.WARNING):
        service = RouterService(paths=paths, reload_in_background=False, log_decisions=False)
    try:
        assert service.serving["source"] == "general"
        assert "not a valid pointer" in service.last_reload_error
        assert any("not a valid pointer" in r.getMessage() for r in caplog.records)
        assert service.route("Check disk space on the server", ["exec", "notify"]).valid
    finally:
        service.close()


def test_status_names_what_a_router_serves_and_what_it_refused(paths, base_ref):
    registry = ModelRegistry(paths)
    registry.promote(make_run(paths, "run-other-base", base_ref, base_sha=OTHER_BASE))
    status, text = hoof_train_status(paths)
    assert status["latest"]["run_id"] == "run-other-base"  # the pointer names it ...
    serving = status["serving"]
    assert serving["source"] == "general" and serving["run"] == general_run().run_id  # ... a router would not
    assert len(serving["refused"]) == 1 and "run-other-base" in serving["refused"][0]
    assert "trained on base" in serving["refused"][0]
    assert "serving: the general adapter" in text and "refused run 'run-other-base'" in text
    # the router agrees, and a pinned run of another base raises instead of falling back
    assert serve(paths=paths, load=False).refused == serving["refused"]
    with pytest.raises(BackendError, match="trained on base"):
        serve(RouterSettings(model=paths.runs_dir / "run-other-base"), paths=paths, load=False)
    registry.promote(make_run(paths, "run-good", base_ref))
    status, text = hoof_train_status(paths)
    assert status["serving"] == {**status["serving"], "source": "promoted", "run": "run-good", "refused": []}
    assert "★ run-good" in text


def test_a_runs_decoding_settings_reach_every_engine(paths, base_ref):
    router = ToolRouter(["exec", "notify"], paths=paths, reload_in_background=False, log_decisions=False)
    try:
        assert router.service.serving["source"] == "general"
        run = make_run(paths, "run-fitted", base_ref, decoding=FITTED)
        ModelRegistry(paths).promote(run)
        assert router.reload() is True  # hot reload installs the run with its settings
        assert router.service.serving == {"source": "promoted", "run": "run-fitted", "refused": []}
        assert (router.engine.rule.top_threshold, router.engine.rule.extra_threshold) == (0.3, 0.6)
        assert router.service.policy == ThresholdPolicy(0.7, {"exec": 0.9, "none": 0.9})  # "no tool": the safe side
        assert router.decide("Check disk space on the server").adapter == "run-fitted"
    finally:
        router.close()
    # start-up, with explicit thresholds over the fitted ones
    service = RouterService(paths=paths, threshold=0.2, tool_thresholds={"notify": 0.1}, hot_reload=False,
                            log_decisions=False)
    try:
        assert service.serving["run"] == "run-fitted" and service.engine.rule.top_threshold == 0.3
        assert service.policy == ThresholdPolicy(0.2, {"exec": 0.9, "notify": 0.1})
    finally:
        service.close()
    for engine in (engine_for(run, n_threads=1), RouterEngine.load(backend="llama.cpp", model=run, n_threads=1)):
        assert (engine.rule.top_threshold, engine.rule.extra_threshold) == (0.3, 0.6)
        assert engine.backend.adapter_id == "run-fitted"
        engine.close()


def test_the_middleware_and_the_node_take_settings(paths, tmp_path):
    settings = RouterSettings(model="base", data_dir=tmp_path / "logs", hot_reload=False)
    middleware = ToolRouterMiddleware(settings=settings, threshold=0)
    try:
        service = middleware.router.service
        assert service.serving["source"] == "base" and service.policy.default == 0
        assert service.paths.data_dir == tmp_path / "logs" and service.reloader is None
    finally:
        middleware.router.close()
    with pytest.raises(TypeError, match="not both"):
        ToolRouterMiddleware(router=middleware.router, threshold=0.5)
    with pytest.raises(TypeError, match="unknown router setting"):
        ToolRouterMiddleware(router_model="base")  # the old rename is gone: settings=RouterSettings(model=...)
    node = router_node(tools=["exec", "notify"], settings=settings)
    out = node.invoke({"messages": [("human", "Check disk space on the server")]})
    assert out["routing"]["valid"] and (tmp_path / "logs" / "training_data.jsonl").exists()
