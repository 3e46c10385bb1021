"""Quiet by default: what the model libraries print, and notices of slow first-time work.

A plain ``hoof-route`` prints its JSON and nothing else. llama.cpp's own log (on every load:
``llama_kv_cache_iswa: using full-size SWA cache ...``), transformers' weight-loading bar and
its info / deprecation messages are hidden unless debugging is on: ``--debug`` on either
command line, or ``OPENHOOF_DEBUG=1``. Work that happens once and takes seconds (merging an
adapter into a GGUF, writing the base's float copy) says what it does in one line on stderr,
so a first run never sits silent.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from openhoof_router.models.env_switch import env_switch

DEBUG_ENV = "OPENHOOF_DEBUG"

_silent_callback: Any = None
"""llama.cpp's no-op log callback; kept referenced, or ctypes would free it under llama.cpp."""
_closing: Any = None


def debugging() -> bool:
    """Whether ``OPENHOOF_DEBUG`` asks for the libraries' own output (the CLIs' ``--debug`` sets it)."""
    return env_switch(os.environ.get(DEBUG_ENV)) is True


def set_debugging(on: bool = True) -> None:
    """Turn debugging on (or off) for this process and the model loads that follow."""
    os.environ[DEBUG_ENV] = "1" if on else "0"


def notice(message: str) -> None:
    """One line on stderr about slow one-off work (shown even when quiet: the user would wait blind)."""
    print(f"openhoof-router: {message}", file=sys.stderr, flush=True)


def quiet_llama_cpp(llama_cpp: ModuleType) -> bool:
    """Silence llama.cpp's log unless debugging; returns the ``verbose`` flag to load models with.

    llama-cpp-python installs a log callback at import that prints llama.cpp's warnings (its
    level numbers changed upstream, so ``verbose=False`` no longer hides them); this replaces
    it with a no-op. Also closes, at exit, the two ``/dev/null`` files llama-cpp-python opens
    at import and never closes (``ResourceWarning: unclosed file '/dev/null'``).
    """
    global _silent_callback, _closing
    if not _closing:
        _closing = atexit.register(_close_devnull, llama_cpp)
    if debugging():
        return True
    if _silent_callback is None:
        _silent_callback = llama_cpp.llama_log_callback(lambda level, text, user_data: None)
        llama_cpp.llama_log_set(_silent_callback, ctypes.c_void_p(0))
    return False


def _close_devnull(llama_cpp: ModuleType) -> None:
    utils = getattr(llama_cpp, "_utils", None)
    for name in ("outnull_file", "errnull_file"):
        handle = getattr(utils, name, None)
        if handle is not None:
            handle.close()


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' progress bars, its info / warning logs and its deprecation notices
    (about its own internals, which users cannot act on) inside the block (unless debugging)."""
    if debugging():
        yield
        return
    from transformers.utils import logging as hf_logging

    gguf_utils: Any  # the module, or None
    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # a transformers without GGUF loading
        gguf_utils = None

    bars, level = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    # the GGUF conversion bar comes from tqdm itself, past transformers' switch
    gguf_tqdm = getattr(gguf_utils, "tqdm", None)
    if gguf_tqdm is not None:
        gguf_utils.tqdm = functools.partial(gguf_tqdm, disable=True)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft)\.")
            yield
    finally:
        if gguf_tqdm is not None:
            gguf_utils.tqdm = gguf_tqdm
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
