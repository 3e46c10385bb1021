"""Test support shared by both tiers and the examples' ``--stand-in`` (not part of the package).

``tests/`` is on ``sys.path`` under pytest (its ``conftest.py`` sits there), so tests import
``from support import SHARED`` and ``from support.loopback_server import serve_gguf``.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"  # the project's shared material, beside the checkout (absent: tests skip)
# Two tools that are not OpenHoof's, as OpenAI function schemas (teacher synthesis tests).
CUSTOM_TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city.",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
    {"type": "function", "function": {"name": "book_table", "description": "Reserve a restaurant table.",
                                      "parameters": {"type": "object", "properties": {"when": {"type": "string"}}}}},
]
