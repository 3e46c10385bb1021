"""How llama.cpp loads a model here: on the CPU, and never through ggml's AMX kernels on a CPU
that advertises AMX.

llama.cpp moves weights into "extra" buffer types when it loads a model: ggml's AMX buffer
on CPUs that report AMX, repacked layouts elsewhere. Virtual machines can report AMX (the
``amx_tile`` flag) without enabling its register state; the first matrix product there kills
the process with a general protection fault at ``ldtilecfg`` (seen on the 2-core development
VM with llama-cpp-python 0.3.36). A crashed process is the one failure a router must never
have, so where the CPU reports AMX the extra buffer types are off (the plain CPU kernels
serve, at about the same speed for a 270M model); elsewhere llama.cpp's default stands.
``OPENHOOF_LLAMA_EXTRA_BUFFERS=1`` (or ``0``) decides it either way.

:func:`model_params` is what the router's llama.cpp backend loads with;
``python -m openhoof_router.models.llama_server`` runs llama-cpp-python's OpenAI-compatible
server under the same rule (the stand-in reasoner and teacher of the tests and examples).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from types import ModuleType
from typing import Any

from openhoof_router.models.env_switch import env_switch

EXTRA_BUFFERS_ENV = "OPENHOOF_LLAMA_EXTRA_BUFFERS"
_CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: Path = _CPUINFO) -> frozenset[str]:
    """The first CPU's feature flags from ``cpuinfo`` (empty where there is no such file)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def extra_buffers_allowed(flags: frozenset[str] | None = None, env: dict[str, str] | None = None) -> bool:
    """Whether llama.cpp may use its extra buffer types (see the module docs): the
    ``OPENHOOF_LLAMA_EXTRA_BUFFERS`` setting where one is given, else not on a CPU that
    reports AMX."""
    chosen = env_switch((os.environ if env is None else env).get(EXTRA_BUFFERS_ENV))
    if chosen is not None:
        return chosen
    return "amx_tile" not in (_host_flags() if flags is None else flags)


@functools.cache
def _host_flags() -> frozenset[str]:
    return cpu_flags()


def with_load_rule(params: Any) -> Any:
    """``params`` (llama.cpp model parameters) with the extra buffer types decided by
    :func:`extra_buffers_allowed`; the router and the stand-in server both load through it."""
    if hasattr(params, "use_extra_bufts"):  # the releases that have it
        params.use_extra_bufts = extra_buffers_allowed()
    return params


def model_params(llama_cpp: ModuleType) -> Any:
    """llama.cpp's default model parameters, on the CPU, under :func:`with_load_rule`."""
    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = 0
    return with_load_rule(params)
