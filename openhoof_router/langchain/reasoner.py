"""The reasoner: any LangChain chat model; by default Qwen3-8B behind an OpenAI-compatible server.

Ollama, llama-server (llama.cpp), LlamaFarm and vLLM all speak the OpenAI chat API, so one
``langchain_openai.ChatOpenAI`` configured by base URL and model name reaches any of them::

    reasoner = openai_compatible_reasoner()                    # OPENHOOF_REASONER_* or Ollama
    reasoner = openai_compatible_reasoner(server="llama-server")
    reasoner = openai_compatible_reasoner("http://gpu-box:8000/v1", "Qwen/Qwen3-8B")

Environment: ``OPENHOOF_REASONER_URL``, ``OPENHOOF_REASONER_MODEL``,
``OPENHOOF_REASONER_API_KEY`` (local servers ignore the key, but the client needs one).
"""

from __future__ import annotations

import os
from typing import Any

SERVERS: dict[str, tuple[str, str]] = {
    # name: (base URL, how that server names Qwen3-8B by default)
    "ollama": ("http://localhost:11434/v1", "qwen3:8b"),
    "llama-server": ("http://localhost:8080/v1", "qwen3-8b"),
    "vllm": ("http://localhost:8000/v1", "Qwen/Qwen3-8B"),
    # LlamaFarm serves each project under /v1/projects/{namespace}/{project}; the model is
    # the name given under runtime.models in llamafarm.yaml (see integrations/llamafarm.yaml).
    "llamafarm": ("http://localhost:8000/v1/projects/default/openhoof", "reasoner"),
}
DEFAULT_SERVER = "ollama"


def openai_compatible_reasoner(
    base_url: str | None = None,
    model: str | None = None,
    *,
    server: str | None = None,
    api_key: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    timeout: float | None = 120.0,
    **kwargs: Any,
) -> Any:
    """A ``ChatOpenAI`` for an OpenAI-compatible endpoint (needs ``langchain-openai``).

    Args:
        base_url: the server's ``/v1`` URL (default: ``OPENHOOF_REASONER_URL``, else the
            ``server`` preset's).
        model: the model name on that server (default: ``OPENHOOF_REASONER_MODEL``, else
            the preset's name for Qwen3-8B).
        server: a preset from :data:`SERVERS` (default ``ollama``).
        max_tokens: reply cap; also sent as the older ``max_tokens`` field, because some
            servers (llama-cpp-python's among them) ignore ``max_completion_tokens``.
        kwargs: anything else ``ChatOpenAI`` takes.
    """
    try:
        from langchain_openai import ChatOpenAI
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("the default reasoner needs langchain-openai: "
                          "pip install 'openhoof-router[langchain]'") from exc
    preset_url, preset_model = SERVERS[server or DEFAULT_SERVER]
    if max_tokens is not None:
        kwargs["max_tokens"] = max_tokens
        kwargs["extra_body"] = {"max_tokens": max_tokens, **(kwargs.get("extra_body") or {})}
    if temperature is not None:
        kwargs["temperature"] = temperature
    return ChatOpenAI(
        base_url=base_url or os.environ.get("OPENHOOF_REASONER_URL") or preset_url,
        model=model or os.environ.get("OPENHOOF_REASONER_MODEL") or preset_model,
        api_key=api_key or os.environ.get("OPENHOOF_REASONER_API_KEY") or "not-needed",
        timeout=timeout,
        **kwargs,
    )
