"""Every OPENHOOF_* on/off setting reads the same words the same way."""

from __future__ import annotations

import pytest

from openhoof_router.models.env_switch import env_switch
from openhoof_router.models.quiet import DEBUG_ENV, debugging


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), ("", None), ("  ", None),
    ("0", False), ("off", False), ("No", False), (" FALSE ", False),
    ("1", True), ("on", True), ("yes", True), ("/opt/lib/libmkl_rt.so", True),
])
def test_env_switch_reads_off_words_as_off_and_blank_as_unset(value, expected):
    assert env_switch(value) is expected


@pytest.mark.parametrize(("value", "on"), [("", False), ("0", False), ("false", False), ("1", True), ("true", True)])
def test_debugging_reads_the_same_words(monkeypatch, value, on):
    monkeypatch.setenv(DEBUG_ENV, value)
    assert debugging() is on
