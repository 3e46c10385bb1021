"""The MLX path for real: backend over the float base, LoRA training, the adapter served by
MLX and (merged with numpy) by llama.cpp.

Skipped when MLX is not installed. On Linux that means ``pip install "mlx[cpu]" mlx-lm mkl``
(plain ``mlx`` lacks ``libmlx.so`` there). MLX's Linux wheel ships a reference BLAS that is
~10-50x slow; :mod:`openhoof_router.models.mlx_toolkit` loads MKL under it in process when this module
is imported before anything imports ``mlx.core``. If that was too late (another module
imported MLX first), the whole file re-runs itself in a subprocess with ``LD_PRELOAD`` set.
By hand, on Linux::

    OPENHOOF_CACHE_DIR=/tmp/oh/cache python -m pytest -q tests/integration/test_mlx.py
    # or, explicitly:  LD_PRELOAD=$VIRTUAL_ENV/lib/libmkl_rt.so.3 python -m pytest -q tests/integration/test_mlx.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from openhoof_router.models import mlx_toolkit as mlx_env

FAST = mlx_env.preload_mkl() or mlx_env.mlx_fast()  # must run before mlx.core is imported
mx = pytest.importorskip("mlx.core", reason="MLX not installed (Linux: pip install 'mlx[cpu]' mlx-lm mkl)",
                         exc_type=ImportError)
pytest.importorskip("mlx_lm", reason="mlx-lm not installed", exc_type=ImportError)

from openhoof_router.models.loading import BackendError, load_backend  # noqa: E402
from openhoof_router.models.mlx_backend import MLXBackend  # noqa: E402
from openhoof_router.core.engine import RouterEngine  # noqa: E402
from openhoof_router.models.mlx_toolkit import MLXError, import_mlx  # noqa: E402
from openhoof_router.store.paths import Paths  # noqa: E402
from openhoof_router.store.runs import BaseModelInfo, RunFiles, RunManifest  # noqa: E402
from openhoof_router.learning.config import TrainConfig  # noqa: E402
from openhoof_router.learning.data.groups import Group, Sample  # noqa: E402

CHILD_FLAG = "OPENHOOF_MLX_TEST_CHILD"
RERUN = not FAST and not os.environ.get(CHILD_FLAG)
pytestmark = pytest.mark.slow

MESSAGES = [
    "Check disk space on the server",
    "remember that the deploy moved to friday",
    "thanks, that's all for today",
]


def test_mlx_suite_with_mkl_preloaded():
    """Only when MKL could not be loaded in this process: run this file again with LD_PRELOAD."""
    if not RERUN:
        pytest.skip("MKL is under MLX in this process; the tests run here")
    env = mlx_env.mlx_env()
    if "libmkl_rt" not in env.get("LD_PRELOAD", ""):
        pytest.skip(mlx_env.SLOW_HINT)
    env[CHILD_FLAG] = "1"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


@pytest.fixture(autouse=True)
def _in_the_right_process(request):
    if RERUN and request.node.name != "test_mlx_suite_with_mkl_preloaded":
        pytest.skip("runs in the LD_PRELOAD subprocess (see test_mlx_suite_with_mkl_preloaded)")


@pytest.fixture(scope="module")
def model_paths(cache_dir) -> Paths:
    return Paths(home=cache_dir, data_dir=cache_dir, models_dir=cache_dir, cache_dir=cache_dir)


@pytest.fixture(scope="module")
def mlx_base(base_ref, model_paths):
    if RERUN:
        pytest.skip("runs in the subprocess")
    backend = MLXBackend(base_ref, paths=model_paths)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def mlx_engine(mlx_base):
    return RouterEngine(mlx_base)


# -- errors ----------------------------------------------------------------------------

def test_missing_mlx_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlx_lm", None)  # import mlx_lm -> ImportError
    with pytest.raises(MLXError, match="mlx-linux"):
        import_mlx()


def test_bad_adapter_folder_is_a_clear_backend_error(base_ref, model_paths, tmp_path):
    with pytest.raises(BackendError, match="not a LoRA adapter folder"):
        MLXBackend(base_ref, adapter=tmp_path, paths=model_paths)


def test_mkl_is_under_mlx():
    assert mlx_env.mkl_active(), mlx_env.SLOW_HINT


# -- the base model --------------------------------------------------------------------

def test_tokens_match_llamacpp(mlx_engine, engine, builtin):
    assert mlx_engine.codec.tool_block(builtin) == engine.codec.tool_block(builtin)
    for message in MESSAGES:
        assert mlx_engine.codec.user_turn(message) == engine.codec.user_turn(message)
    assert mlx_engine.codec.segment(builtin) == engine.codec.segment(builtin)
    assert (mlx_engine.codec.yes_id, mlx_engine.codec.no_id) == (engine.codec.yes_id, engine.codec.no_id)


def test_decisions_are_structured_and_valid(mlx_engine, builtin):
    names = {t.name for t in builtin}
    for message in MESSAGES:
        d = mlx_engine.route(message, builtin)
        assert d.valid, d.error
        assert set(d.tool_names) <= names
        assert len(d.tool_names) == len(set(d.tool_names)) <= mlx_engine.max_tools
        assert 0.0 <= d.confidence <= 1.0 and set(d.scores) == names
        assert d.backend == "mlx" and d.model.startswith("gemma-3-270m") and d.adapter is None


def test_cached_path_matches_uncached(mlx_engine, builtin):
    subset = builtin[:4]
    for message in MESSAGES[:2]:
        for tools in (builtin, subset, builtin):  # switching tool lists restores saved states
            cached = mlx_engine.route(message, tools, use_cache=True)
            fresh = mlx_engine.route(message, tools, use_cache=False)
            assert cached.tool_names == fresh.tool_names
            assert cached.confidence == pytest.approx(fresh.confidence, rel=1e-3, abs=1e-9)


def test_next_token_agrees_with_llamacpp(mlx_base, mlx_engine, engine, builtin):
    """Float MLX vs Q4_K_M llama.cpp over the same (dequantized) weights: close, not equal."""
    llama = engine.backend
    prefix = mlx_engine.codec.tool_block(builtin)
    for message in MESSAGES:
        user = mlx_engine.codec.user_turn(message)
        mlx_base.start(prefix)
        a = mlx_base.feed(user)
        llama.start(prefix)
        b = llama.feed(user)
        assert a.shape == b.shape and a.dtype == np.float32
        top_a, top_b = np.argsort(-a)[:5], np.argsort(-b)[:5]
        assert len(set(top_a) & set(top_b)) >= 3, (message, top_a, top_b)
        assert top_a[0] in top_b[:3] and top_b[0] in top_a[:3], (message, top_a, top_b)
        assert np.corrcoef(a, b)[0, 1] > 0.98
        # the constrained decision over the offered tools: the same tools come out
        assert mlx_engine.route(message, builtin).tool_names == engine.route(message, builtin).tool_names


# -- training --------------------------------------------------------------------------

TOOLS4 = ["memory_write", "exec", "notify", "shared_search"]


def _groups(builtin, n_train: int, n_val: int) -> tuple[list[Group], list[Group]]:
    """Short prompts (4 tools) so a step stays cheap on 2 cores."""
    from openhoof_router.learning.data.assemble import curated_train

    specs = [t for t in builtin if t.name in TOOLS4]
    picked = [Sample(r.input.user_message, r.tool_names) for r in curated_train()
              if set(r.tool_names) <= set(TOOLS4) and len(r.input.user_message) < 90][: n_train + n_val]
    train = [Group(specs, picked[i:i + 2]) for i in range(0, n_train, 2)]
    return train, [Group(specs, picked[n_train:])]


@pytest.fixture(scope="module")
def trained(builtin, base_ref, model_paths, tmp_path_factory):
    if RERUN:
        pytest.skip("runs in the subprocess")
    from openhoof_router.learning.trainers.mlx import train_mlx

    train, val = _groups(builtin, 16, 2)
    assert sum(len(g.samples) for g in train) == 16 and len(val[0].samples) == 2
    out = tmp_path_factory.mktemp("mlx_run")
    cfg = TrainConfig(max_steps=6, batch_size=2)  # the default lr 1e-4, rank 16, alpha 32
    result = train_mlx(train, val, cfg, out, base_ref, paths=model_paths, progress=False)
    RunManifest(run_id=out.name, base_model=BaseModelInfo(name=base_ref.name, sha256=base_ref.sha256),
                files=RunFiles(mlx="mlx")).save(out)
    yield out, result
    shutil.rmtree(out, ignore_errors=True)


def test_training_lowers_the_loss(trained):
    _, result = trained
    losses = [row["loss"] for row in result.history]
    assert result.backend == "mlx" and result.steps == 6 and len(losses) == 6
    assert all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < 0.8 * np.mean(losses[:2]), losses
    vals = [row["val_loss"] for row in result.history if "val_loss" in row]
    assert vals and vals[-1] < vals[0]
    assert result.peak_rss_mb > 100 and result.duration_s > 0
    assert [row["step"] for row in result.history] == list(range(1, 7))


def test_adapter_is_mlx_lm_format(trained):
    out, result = trained
    assert result.adapter_dir == out / "mlx"
    config = json.loads((result.adapter_dir / "adapter_config.json").read_text())
    assert config["fine_tune_type"] == "lora" and config["num_layers"] == 18
    assert config["lora_parameters"]["rank"] == 16
    assert config["lora_parameters"]["scale"] == pytest.approx(32 / 16)  # PEFT's alpha / r
    weights = mx.load(str(result.adapter_dir / "adapters.safetensors"))
    assert len(weights) == 18 * 7 * 2 and all(k.endswith(("lora_a", "lora_b")) for k in weights)


def test_factors_read_from_the_mlx_adapter(trained):
    from openhoof_router.models.lora import read_lora

    _, result = trained
    factors = read_lora(result.adapter_dir)
    lora = mx.load(str(result.adapter_dir / "adapters.safetensors"))
    name = "model.layers.3.mlp.up_proj"
    a, b, scale = factors[name]
    np.testing.assert_allclose(scale * (b @ a), 2.0 * (np.array(lora[name + ".lora_a"]) @
                                                       np.array(lora[name + ".lora_b"])).T, atol=1e-6)
    assert len(factors) == 18 * 7


def test_trained_run_loads_and_routes(trained, builtin, base_ref, model_paths, mlx_base, engine):
    out, result = trained
    backend = load_backend("mlx", base_model=base_ref, model=out, paths=model_paths)  # a run folder
    llama = load_backend("llama.cpp", base_model=base_ref, model=out, paths=model_paths, n_threads=1)
    try:
        assert isinstance(backend, MLXBackend) and backend.adapter_id == out.name
        specs = [t for t in builtin if t.name in TOOLS4]
        eng = RouterEngine(backend)
        for message in ("remember that the deploy moved to friday", "run df -h on the box"):
            d = eng.route(message, specs)
            assert d.valid, d.error
            assert set(d.tool_names) <= set(TOOLS4) and d.adapter == out.name
        # the adapter is really applied, by MLX and by llama.cpp (merged with numpy): both moved
        # away from the base the same way
        prefix = eng.codec.tool_block(specs)
        user = eng.codec.user_turn("remember that the deploy moved to friday")
        backend.start(prefix)
        tuned = backend.feed(user)
        mlx_base.start(prefix)
        plain = mlx_base.feed(user)
        llama.start(prefix)
        served = llama.feed(user)
        assert np.abs(tuned - plain).max() > 0.1
        assert np.corrcoef(tuned - plain, served - engine_feed(engine, prefix, user))[0, 1] > 0.8
    finally:
        backend.close()
        llama.close()


def engine_feed(engine, prefix, user):
    engine.backend.start(prefix)
    return engine.backend.feed(user)
