"""The unit tier loads no model and starts no server: the fixtures that would say so."""

from __future__ import annotations

import pytest


def _integration_only(name: str):
    @pytest.fixture(name=name)
    def fixture():
        pytest.fail(f"the unit tier has no model and no server: a test that needs `{name}` "
                    "belongs in tests/integration")

    return fixture


base_ref = _integration_only("base_ref")
engine = _integration_only("engine")
server_url = _integration_only("server_url")
