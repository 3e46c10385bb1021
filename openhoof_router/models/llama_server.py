"""llama-cpp-python's OpenAI-compatible server under the router's llama.cpp load rule.

    python -m openhoof_router.models.llama_server --model GGUF [llama_cpp.server's options]

The same as ``python -m llama_cpp.server``, except that it loads every model through
:func:`~openhoof_router.models.llama_params.with_load_rule`, so a stand-in
reasoner or teacher does not die where the router would not. Needs
``pip install 'llama-cpp-python[server]'``.
"""

from __future__ import annotations

from typing import Any


def main() -> None:
    import llama_cpp.llama_cpp as lib
    from llama_cpp.server.__main__ import main as serve

    from openhoof_router.models.llama_params import with_load_rule

    defaults = lib.llama_model_default_params

    def model_default_params() -> Any:
        return with_load_rule(defaults())

    lib.llama_model_default_params = model_default_params  # what llama_cpp.Llama loads with
    serve()


if __name__ == "__main__":
    main()
