"""A local OpenAI-compatible server (llama-cpp-python's) over a GGUF, on loopback.

A stand-in reasoner or teacher when no Qwen3-8B endpoint is at hand: the examples'
``--stand-in`` and the test suite use it (it is not part of the installed package):
``with serve_gguf(path) as url: ChatOpenAI(base_url=url, ...)``. The default chat format,
``chatml-function-calling``, honours ``tool_choice``, so a forced tool call really is one.
Needs ``pip install 'llama-cpp-python[server]'``.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_gguf(gguf: str | Path, *, threads: int = 1, n_ctx: int = 2048, chat_format: str = "chatml-function-calling",
               timeout_s: float = 120, log_dir: str | Path | None = None) -> Iterator[str]:
    """Run the server until the block ends; yields its ``/v1`` base URL."""
    port = free_port()
    log_path = Path(log_dir or tempfile.gettempdir()) / f"openhoof-server-{port}.log"
    with open(log_path, "wb") as log:  # a file, never a pipe: a full pipe would stall the server
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
             "--port", str(port), "--n_ctx", str(n_ctx), "--chat_format", chat_format, "--n_threads", str(threads)],
            stdout=log, stderr=subprocess.STDOUT,
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
        finally:
            proc.kill()
            proc.wait(30)
