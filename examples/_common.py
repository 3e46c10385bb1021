"""Shared bits of the examples: demo tools, command-line options, a stand-in reasoner.

The examples talk to the documented default reasoner, Qwen3-8B behind an OpenAI-compatible
endpoint (``OPENHOOF_REASONER_URL`` / ``OPENHOOF_REASONER_MODEL``, default Ollama's
``http://localhost:11434/v1`` + ``qwen3:8b``). ``--stand-in`` instead starts
llama-cpp-python's server over the embedded Gemma 3 270M base on loopback, so every
example runs on a bare machine: the plumbing is real, the stand-in's answers are not smart.
"""

from __future__ import annotations

import argparse
import atexit
import sys
import tempfile
from pathlib import Path

from langchain_core.tools import tool

WORKSPACE = Path(tempfile.gettempdir()) / "openhoof-example-workspace"


# -- demo tools (safe: nothing here touches the host) -------------------------------------

@tool
def memory_read(file: str) -> str:
    """Read one of the agent's own workspace files (daily notes, MEMORY.md)."""
    path = WORKSPACE / Path(file).name
    if not path.exists():
        raise FileNotFoundError(f"{file} does not exist in the workspace")
    return path.read_text()


@tool
def memory_write(file: str, content: str) -> str:
    """Write or append text to the agent's own memory files in its workspace."""
    WORKSPACE.mkdir(parents=True, exist_ok=True)
    with open(WORKSPACE / Path(file).name, "a") as fh:
        fh.write(content + "\n")
    return f"wrote {len(content)} characters to {file}"


@tool
def exec(command: str) -> str:  # noqa: A001 - the OpenHoof tool's name
    """Run a shell command on the host and return its output."""
    return f"(demo) would run: {command!r}; pretend output: /dev/sda1 62% used"


@tool
def notify(title: str, message: str = "") -> str:
    """Send a notification to the human operator."""
    return f"(demo) notified: {title}"


@tool
def shared_search(query: str) -> str:
    """Search the entries and findings that all agents have shared."""
    return f"(demo) 1 finding for {query!r}: redis OOM at 03:12, fixed by raising maxmemory"


@tool
def list_tools() -> str:
    """List the tools this agent can use."""
    return ", ".join(t.name for t in TOOLS)


TOOLS = [memory_read, memory_write, exec, notify, shared_search, list_tools]
QUESTIONS = [
    "Check disk space on the server",
    "remember that the deploy moved to friday",
    "has any agent written up the redis outage?",
    "thanks, that's all for today",
]


# -- options ---------------------------------------------------------------------------

def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("questions", nargs="*", help="messages to send (default: a few samples)")
    p.add_argument("--stand-in", action="store_true",
                   help="serve the embedded 270M base as the reasoner on loopback (no Qwen needed)")
    p.add_argument("--threshold", type=float, default=None,
                   help="router confidence threshold (default: the served run's fitted one; "
                        "1.01 forces the fallback to all tools)")
    p.add_argument("--data-dir", default=None, help="where the logs go (default: OPENHOOF_DATA_DIR / ~/.openhoof)")
    return p


def stand_in_server() -> str:
    """Start llama-cpp-python's OpenAI-compatible server over the embedded base; returns its URL."""
    from openhoof_router.models.base_model import embedded_gguf

    # the test suite's loopback server (tests/support, not part of the package): one stand-in for both
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from support.loopback_server import serve_gguf

    server = serve_gguf(embedded_gguf().gguf)
    url = server.__enter__()
    atexit.register(server.__exit__, None, None, None)
    return url


def reasoner(args: argparse.Namespace, max_tokens: int | None = None):
    """The reasoner chat model: the configured endpoint, or the loopback stand-in."""
    from openhoof_router.langchain.reasoner import openai_compatible_reasoner

    if args.stand_in:
        return openai_compatible_reasoner(stand_in_server(), "gemma", max_tokens=max_tokens or 48)
    return openai_compatible_reasoner(max_tokens=max_tokens)
