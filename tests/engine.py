"""Fixtures on the embedded engine, loaded by conftest as a plugin.

chdb opens one engine path per process, so every test in a run shares one
engine; tests keep apart by using app names of their own.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from logd.store import Store

_apps = itertools.count()


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    path = tmp_path_factory.mktemp("engine") / "clickhouse"
    opened = Store(f"chdb://{path}", retention=0)
    opened.open()
    yield opened
    opened.close()


@pytest.fixture
def app_name(request: pytest.FixtureRequest) -> str:
    """An app name no other test in this run uses."""
    return f"{request.node.name[:40]}-{next(_apps)}"
