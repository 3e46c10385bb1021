"""Plain text as the model reads it: cleaned, one line, cut to fit."""

from __future__ import annotations

import re
import unicodedata

ELLIPSIS = "…"

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def clean_text(text: str) -> str:
    """Plain text for the model: lone surrogates become U+FFFD, control characters spaces.

    (``json.loads`` produces lone surrogates from escaped input; they cannot be encoded.)
    """
    if not isinstance(text, str):
        text = str(text)
    text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return _CONTROL.sub(" ", unicodedata.normalize("NFC", text))


def _one_line(text: str, limit: int) -> str:
    text = " ".join(clean_text(text).split())
    if limit <= 0:
        return ""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + ELLIPSIS



def _cut_middle(text: str, keep: int) -> str:
    if keep >= len(text):
        return text
    if keep <= 1:
        return ELLIPSIS
    head = (2 * keep) // 3
    tail = keep - head - 1
    return text[:head] + ELLIPSIS + (text[-tail:] if tail > 0 else "")
