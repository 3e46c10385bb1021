"""Optional packages and the extra that installs each: the one table behind every install hint.

A missing optional package is one line naming the ``pip install`` to run, wherever it shows:
``hoof-route`` / ``hoof-train`` (exit code 4) and the package's lazy exports
(``from openhoof_router.langchain import ToolRouterMiddleware`` without LangChain installed).
"""

from __future__ import annotations

EXTRAS: dict[str, str] = {
    # import name -> the extra that brings it
    "torch": "train", "transformers": "train", "peft": "train",
    "accelerate": "train", "matplotlib": "train", "sentencepiece": "train", "rich": "train", "tqdm": "train",
    "psutil": "train", "llama_cpp": "llama", "uvicorn": "cpu", "fastapi": "cpu", "sse_starlette": "cpu",
    "mlx": "mlx-linux' (Linux) or 'openhoof-router[mac]", "mlx_lm": "mlx-linux",
    "langchain": "langchain", "langchain_openai": "langchain", "langgraph": "langchain",
    "sentence_transformers": "bench",
}


def missing_extra(exc: ImportError) -> str | None:
    """The extra that installs the package ``exc`` misses (None: not an optional package of ours)."""
    return EXTRAS.get((exc.name or "").split(".")[0])


def install_hint(exc: ImportError) -> str:
    """One line: which package is missing and the ``pip install`` that brings it."""
    extra = missing_extra(exc)
    if extra is None:
        return f"missing package: {exc}"
    return f"missing package {(exc.name or '').split('.')[0]!r}: pip install 'openhoof-router[{extra}]'"
