"""A self-checking merged-GGUF cache: the general adapter merged into the real embedded base,
checked against its sidecar on each start; a truncated copy is rebuilt; when it cannot be
rebuilt (a real process whose file-size limit stops the merge), the base serves and says so."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from openhoof_router.models.base_model import sha256_file
from openhoof_router.store.runs import general_run

pytestmark = pytest.mark.skipif(general_run() is None, reason="the general adapter is not built in this checkout")


def _link_base(cache: Path, base_ref) -> None:
    (cache / "base").mkdir(parents=True)
    for src in (base_ref.gguf, base_ref.gguf.with_name(base_ref.gguf.name + ".sha256.json")):
        if src.exists():
            try:
                os.link(src, cache / "base" / src.name)
            except OSError:
                shutil.copy2(src, cache / "base" / src.name)


@pytest.fixture(scope="module")
def built_cache(tmp_path_factory, base_ref) -> Path:
    """The general adapter merged once into a cache of this module's own."""
    cache = tmp_path_factory.mktemp("merged-cache")
    _link_base(cache, base_ref)
    saved = {k: os.environ.get(k) for k in ("OPENHOOF_CACHE_DIR", "OPENHOOF_HOME", "OPENHOOF_THREADS")}
    os.environ.update(OPENHOOF_CACHE_DIR=str(cache), OPENHOOF_HOME=str(cache / "home"), OPENHOOF_THREADS="1")
    try:
        serving, _, decision = _serve()
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    assert serving["source"] == "general" and decision.valid
    return cache


@pytest.fixture()
def private_cache(tmp_path, base_ref, built_cache, monkeypatch) -> Path:
    """A cache of this test's own (the shared one is never damaged): the base hard-linked,
    a copy of the good merge and its sidecar."""
    cache = tmp_path / "cache"
    _link_base(cache, base_ref)
    (cache / "merged").mkdir()
    good = _merged(built_cache)
    for src in (good, good.with_name(good.name + ".json")):
        shutil.copy2(src, cache / "merged" / src.name)
    monkeypatch.setenv("OPENHOOF_CACHE_DIR", str(cache))
    monkeypatch.setenv("OPENHOOF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OPENHOOF_THREADS", "1")
    return cache


def _merged(cache: Path) -> Path:
    [gguf] = (cache / "merged").glob("general-*.gguf")
    return gguf


def _serve(**kw):
    from openhoof_router.serving.service import RouterService

    service = RouterService(hot_reload=False, n_threads=1, **kw)
    try:
        decision = service.route("check disk space on the server", ["exec", "notify"])
        return dict(service.serving), service.last_reload_error, decision
    finally:
        service.close()


def test_a_truncated_cached_merge_is_rebuilt_on_the_next_start(private_cache, caplog):
    target = _merged(private_cache)
    sidecar = json.loads(target.with_name(target.name + ".json").read_text())
    assert sidecar["size"] == target.stat().st_size and sidecar["sha256"] == sha256_file(target)

    with open(target, "r+b") as fh:  # a copy cut short (a full disk, an interrupted sync)
        fh.truncate(sidecar["size"] // 3)
    serving, error, decision = _serve()
    assert serving["source"] == "general" and error is None and decision.valid and decision.adapter
    assert target.stat().st_size == sidecar["size"] and sha256_file(target) == sidecar["sha256"]
    assert "does not match its checksum" in caplog.text

    # a change in place that keeps the size: caught by the hash (the mtime moved)
    with open(target, "r+b") as fh:
        fh.seek(sidecar["size"] // 2)
        fh.write(b"\x00" * 4096)
    os.utime(target, ns=(0, 1))
    assert _serve()[0]["source"] == "general" and sha256_file(target) == sidecar["sha256"]


PROBE = textwrap.dedent("""
    import json, resource, sys
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))  # no file may grow past 1 MB
    sys.path.insert(0, sys.argv[1])
    from test_merged_cache import _serve
    serving, error, decision = _serve()
    print(json.dumps({"serving": serving, "error": error, "valid": decision.valid, "adapter": decision.adapter}))
""")


def test_when_the_merge_cannot_be_rebuilt_the_base_serves_and_says_so(private_cache):
    target = _merged(private_cache)
    size = target.stat().st_size
    with open(target, "r+b") as fh:
        fh.truncate(size // 2)
    proc = subprocess.run([sys.executable, "-c", PROBE, str(Path(__file__).parent)], capture_output=True,
                          text=True, timeout=300, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["serving"]["source"] == "base" and out["serving"]["run"] is None
    assert out["valid"] and out["adapter"] is None  # the base really serves
    [refused] = out["serving"]["refused"]
    assert "could not build its merged model" in refused and refused in out["error"]
    assert "could not build its merged model" in proc.stderr and "serving the untrained base" in proc.stderr
    assert target.stat().st_size == size // 2  # nothing half-built replaced it
    assert not list(target.parent.glob(".*.tmp"))  # and the failed attempt left nothing behind
