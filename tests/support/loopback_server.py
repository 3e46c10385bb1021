"""A local OpenAI-compatible server (llama-cpp-python's) over a GGUF, on loopback.

A stand-in reasoner or teacher when no Qwen3-8B endpoint is at hand: the test suite and the
examples' ``--stand-in`` use it (test support, not part of the installed package):
``with serve_gguf(path) as url: ChatOpenAI(base_url=url, ...)``. The default chat format,
``chatml-function-calling``, honours ``tool_choice``, so a forced tool call really is one.
It runs through ``openhoof_router.models.llama_server``, so the model loads as the router's
do (no AMX kernels where the CPU reports AMX). The server's log file is removed when the block
ends, unless the server failed (the error names the file). Needs ``pip install 'llama-cpp-python[server]'``.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def _die_with_parent() -> None:
    """In the child, before exec: Linux kills it when its parent dies, so a server
    never outlives a test run that was killed before its teardown. (The "parent" is the
    thread that started it: start servers from a thread that outlives them.)"""
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG; uvicorn would wait out a busy request on SIGTERM


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_gguf(gguf: str | Path, *, threads: int = 1, n_ctx: int = 2048, chat_format: str = "chatml-function-calling",
               timeout_s: float = 120, log_dir: str | Path | None = None) -> Iterator[str]:
    """Run the server until the block ends; yields its ``/v1`` base URL."""
    port = free_port()
    log_path = Path(log_dir or tempfile.gettempdir()) / f"openhoof-server-{port}.log"
    failed = True  # until the server has served and stopped on our kill
    with open(log_path, "wb") as log:  # a file, never a pipe: a full pipe would stall the server
        proc = subprocess.Popen(
            [sys.executable, "-m", "openhoof_router.models.llama_server", "--model", str(gguf), "--host", "127.0.0.1",
             "--port", str(port), "--n_ctx", str(n_ctx), "--chat_format", chat_format, "--n_threads", str(threads)],
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
        )
        url = f"http://127.0.0.1:{port}/v1"
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}; see {log_path}")
                try:
                    with urllib.request.urlopen(f"{url}/models", timeout=2) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"llama_cpp.server did not come up in {timeout_s:.0f} s; see {log_path}")
                time.sleep(0.2)
            yield url
            failed = proc.poll() is not None  # it died on its own while in use
        finally:
            proc.kill()
            proc.wait(30)
    if not failed:
        log_path.unlink(missing_ok=True)
