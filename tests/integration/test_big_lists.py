"""Big tool lists (real descriptions from Seal-Tools) on the real embedded model:

- by default the window grows to fit the list, over the same loaded weights, so 160
  described tools route with their descriptions whole and 500 still fit;
- a window fixed by the caller (``n_ctx``) keeps the old behaviour: descriptions cut, then
  names only, then a clear refusal.

Latency and memory of a bigger window are measured in benchmarks/big_tools.py."""

from __future__ import annotations

import json

import pytest
from support import SHARED

from openhoof_router.core.engine import RouterEngine
from openhoof_router.core.tools import ToolError, normalize_tools
from openhoof_router.models.llamacpp import LlamaCppBackend

SEAL_TOOLS = SHARED / "corpora" / "seal_tools" / "tools.jsonl"
pytestmark = pytest.mark.skipif(not SEAL_TOOLS.exists(), reason="the shared Seal-Tools corpus is not here")


def seal_tools(n: int):
    with open(SEAL_TOOLS) as fh:
        return normalize_tools([json.loads(line) for line, _ in zip(fh, range(n), strict=False)])


def test_a_fixed_window_shortens_then_refuses(base_ref):
    backend = LlamaCppBackend(base_ref.gguf, n_ctx=2048, n_threads=1, model_id=base_ref.identity)
    try:
        engine = RouterEngine(backend)
        assert engine.prepare(seal_tools(40)).level == 0
        assert engine.prepare(seal_tools(160)).level > 0
        assert any("tool list shortened" in n for n in engine.prepare(seal_tools(160)).notes)
        with pytest.raises(ToolError, match="context window 2048"):
            engine.prepare(seal_tools(500))
        assert backend.n_ctx == 2048
    finally:
        backend.close()


@pytest.mark.slow
def test_the_window_grows_for_160_described_tools(base_ref, tmp_path):
    backend = LlamaCppBackend(base_ref.gguf, n_threads=1, model_id=base_ref.identity, state_dir=tmp_path)
    try:
        engine = RouterEngine(backend)
        weights = backend.model
        tools = seal_tools(160)
        prepared = engine.prepare(tools)
        assert prepared.level == 0 and prepared.notes == []  # descriptions whole
        assert 2048 < backend.n_ctx <= 32768 and backend.model is weights  # a new context, the same weights
        d = engine.route("analyze the DNA evidence collected at the crime scene", tools)
        assert d.valid, d.error
        assert set(d.scores) == {t.name for t in tools}
        assert not any("shortened" in n for n in d.notes)
        window = backend.n_ctx
        assert engine.prepare(seal_tools(40)).level == 0 and backend.n_ctx == window  # it never shrinks
        assert engine.prepare(seal_tools(500)).level == 0 and backend.n_ctx > window
    finally:
        backend.close()
    restarted = LlamaCppBackend(base_ref.gguf, n_threads=1, model_id=base_ref.identity, state_dir=tmp_path)
    try:  # a block longer than the sliding window (512) comes back from disk whole
        router = RouterEngine(restarted)
        again = router.route("analyze the DNA evidence collected at the crime scene", tools)
        # read: only the message and the verdict marks (161 here: ~690 tokens, the cost of a long list)
        after_block = (len(router.codec.user_turn("analyze the DNA evidence collected at the crime scene"))
                       + len(router.codec.segment(router.prepare(tools).specs).ids))
        assert restarted.reused == len(prepared.prefix) > 512 and restarted.evaluated == after_block
        assert again.tool_names == d.tool_names and again.confidence == pytest.approx(d.confidence, rel=1e-3)
    finally:
        restarted.close()
