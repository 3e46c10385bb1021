"""Fixtures for both tiers: real files in temporary folders (unit), the real embedded model
and a loopback server (integration; requested only by tests under tests/integration)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support import ROOT, SHARED  # noqa: F401 - re-exported for tests that import them from here

from openhoof_router.store.paths import Paths


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One model cache for the whole session (OPENHOOF_CACHE_DIR reuses an existing one)."""
    existing = os.environ.get("OPENHOOF_CACHE_DIR")
    return Path(existing) if existing else tmp_path_factory.mktemp("cache")


@pytest.fixture()
def home(tmp_path, cache_dir, monkeypatch) -> Path:
    """A fresh OPENHOOF_HOME per test, sharing the session's model cache."""
    monkeypatch.setenv("OPENHOOF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OPENHOOF_CACHE_DIR", str(cache_dir))
    monkeypatch.delenv("OPENHOOF_DATA_DIR", raising=False)
    monkeypatch.delenv("OPENHOOF_MODELS_DIR", raising=False)
    monkeypatch.setenv("OPENHOOF_THREADS", "1")  # routers started from the environment share 2 cores
    return tmp_path / "home"


@pytest.fixture()
def paths(home) -> Paths:
    return Paths.resolve()


@pytest.fixture(scope="session")
def base_ref(cache_dir):
    from openhoof_router.models.base_model import embedded_gguf

    return embedded_gguf(Paths(home=cache_dir, data_dir=cache_dir, models_dir=cache_dir, cache_dir=cache_dir))


@pytest.fixture(scope="session")
def engine(base_ref):
    """The real embedded base through llama.cpp. One thread: tests share the 2 cores with
    a loopback server, and llama.cpp's thread barriers slow 5-50x when oversubscribed."""
    from openhoof_router.core.engine import RouterEngine
    from openhoof_router.models.llamacpp import LlamaCppBackend

    eng = RouterEngine(LlamaCppBackend(base_ref.gguf, n_threads=1, model_id=base_ref.identity))
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def builtin():
    from openhoof_router.core.tools import builtin_tools

    return builtin_tools()


@pytest.fixture(scope="session")
def server_url(base_ref, tmp_path_factory):
    """llama-cpp-python's OpenAI-compatible server over the embedded base, on loopback."""
    from support.loopback_server import serve_gguf

    with serve_gguf(base_ref.gguf, log_dir=tmp_path_factory.mktemp("server")) as url:
        yield url
