"""Hot reload: a promoted run is picked up while threads keep routing; a broken one is refused."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time

import pytest

from openhoof_router import ToolRouter
from openhoof_router.store.runs import BaseModelInfo, ModelRegistry, RunFiles, RunManifest

MESSAGES = ["Check disk space on the server", "remember that the deploy moved to friday", "notify ops"]


def make_run(registry: ModelRegistry, name: str, gguf_bytes_from=None, corrupt: bool = False):
    """A run folder the loader accepts: a manifest naming its GGUF (here the base's own bytes)."""
    run = registry.paths.runs_dir / name
    run.mkdir(parents=True)
    RunManifest(run_id=name, backend="test", base_model=BaseModelInfo(name="gemma-3-270m-q4_k_m"),
                files=RunFiles(gguf="router.gguf")).save(run)
    target = run / "router.gguf"
    if corrupt:
        target.write_bytes(b"GGUF\x03\x00\x00\x00" + os.urandom(4096))
    else:
        try:
            os.link(gguf_bytes_from, target)  # same bytes, no copy
        except OSError:
            shutil.copyfile(gguf_bytes_from, target)
    return run


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_hot_reload_under_concurrent_calls(paths, base_ref, builtin, caplog):
    registry = ModelRegistry(paths)
    router = ToolRouter(builtin, paths=paths, threshold=0, n_threads=1, reload_interval=0)
    reloader = router.service.reloader
    initial = router.service.serving["run"]  # the general adapter (or the base), following
    assert reloader is not None and reloader.current_run == initial
    decisions, errors, stop = [], [], threading.Event()

    def worker(k: int) -> None:
        i = k
        while not stop.is_set():
            try:
                decisions.append(router.decide(MESSAGES[i % len(MESSAGES)]))
            except Exception as exc:  # noqa: BLE001 - any failure is the test's failure
                errors.append(exc)
            i += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(decisions) >= 2, 60, "first decisions")
        good = make_run(registry, "run-good", base_ref.gguf)
        registry.promote(good, {"accuracy": 1.0})
        wait_for(lambda: reloader.current_run == "run-good", 120, "the new run to serve")
        seen = len(decisions)
        wait_for(lambda: any(d.adapter == "run-good" for d in decisions[seen:]), 60, "decisions by the new run")

        with caplog.at_level(logging.WARNING, logger="openhoof_router.serving.reload"):
            broken = make_run(registry, "run-broken", corrupt=True)
            registry.promote(broken)
            wait_for(lambda: router.last_reload_error is not None, 60, "the refusal")
            reloader.wait(30)
        seen = len(decisions)
        wait_for(lambda: len(decisions) >= seen + 2, 60, "calls after the refusal")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    router.close()

    assert errors == []
    assert all(d.valid and d.error is None for d in decisions), [d.error for d in decisions if d.error]
    adapters = [d.adapter for d in decisions]
    assert adapters[0] == initial and "run-good" in adapters and "run-broken" not in adapters
    first_new = adapters.index("run-good")
    assert all(a == "run-good" for a in adapters[first_new + 4:])  # never back to the old model
    assert "run-broken" in router.last_reload_error
    assert reloader.current_run == "run-good"
    assert any("refused run 'run-broken'" in r.getMessage() for r in caplog.records)
    assert [h["ok"] for h in reloader.history] == [True, False]
    print(f"hot reload: {len(decisions)} decisions from 2 threads, swap took "
          f"{reloader.history[0]['seconds']:.2f} s, refusal took {reloader.history[1]['seconds']:.2f} s")


def test_broken_promoted_run_at_startup_serves_the_general_adapter(paths, builtin, caplog):
    registry = ModelRegistry(paths)
    registry.promote(make_run(registry, "run-broken", corrupt=True))
    with caplog.at_level(logging.WARNING, logger="openhoof_router.serving.service"):
        router = ToolRouter(builtin, paths=paths, threshold=0, n_threads=1, reload_in_background=False)
    try:
        assert "run-broken" in router.last_reload_error
        assert any("serving the general adapter" in r.getMessage() for r in caplog.records)
        assert router.service.serving["source"] in ("general", "base")
        assert router.decide(MESSAGES[0]).adapter == router.service.serving["run"]
        # A pointer to a run that has gone away is refused the same way (synchronous check).
        gone = make_run(registry, "run-gone", corrupt=True)
        registry.promote(gone)
        shutil.rmtree(gone)
        assert router.reload() is False and "run-gone" in router.last_reload_error
        assert router.decide(MESSAGES[1]).valid
    finally:
        router.close()


def test_pinned_models_do_not_follow(engine, builtin, tmp_path):
    router = ToolRouter(builtin, engine=engine, data_dir=tmp_path)
    assert router.service.reloader is None and router.last_reload_error is None
    with pytest.raises(RuntimeError, match="hot reload is off"):
        router.reload()
