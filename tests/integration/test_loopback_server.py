"""The loopback server the tests and the examples' ``--stand-in`` use: it serves, and its log
file goes when it stops, unless it failed (then the error names the log, which is kept)."""

from __future__ import annotations

import json
import urllib.request

import pytest
from support.loopback_server import serve_gguf


def test_the_log_is_removed_after_a_clean_stop(base_ref, tmp_path):
    with serve_gguf(base_ref.gguf, n_ctx=512, log_dir=tmp_path) as url:
        [log] = tmp_path.glob("openhoof-server-*.log")
        assert url.endswith(log.stem.rsplit("-", 1)[1] + "/v1")
        with urllib.request.urlopen(f"{url}/models", timeout=10) as resp:
            assert json.load(resp)["data"]
        # A completion runs the model's matrix products (where a CPU's AMX kernels would fault).
        body = json.dumps({"prompt": "The sky is", "max_tokens": 2}).encode()
        request = urllib.request.Request(f"{url}/completions", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as resp:
            assert json.load(resp)["usage"]["completion_tokens"] >= 1
    assert list(tmp_path.iterdir()) == []


def test_a_server_that_fails_keeps_its_log_and_names_it(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 64)
    logs = tmp_path / "logs"
    logs.mkdir()
    with pytest.raises(RuntimeError, match="exited with") as info, serve_gguf(broken, log_dir=logs, timeout_s=120):
        pass
    [log] = logs.iterdir()
    assert str(log) in str(info.value) and log.stat().st_size > 0
