from __future__ import annotations

from typing import Any

import pytest

from tests.postmortems.builders import commander, resolved_incident


@pytest.fixture
def ic(roles: dict) -> Any:
    return commander()


@pytest.fixture
def incident(ic: Any) -> Any:
    return resolved_incident(by=ic)
