"""Query parameters travel apart from the SQL (psycopg's server-side binding) instead of
being quoted into it on the client; DATABASE_SERVER_SIDE_BINDING=0 goes back to quoting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from incidents.models import Incident

ROOT = Path(__file__).resolve().parents[2]
TITLE = "返回 🚀 שלום <b>'; DROP TABLE x; --\x01"


@pytest.mark.django_db
def test_a_query_sends_its_values_apart_from_its_text() -> None:
    if not connection.features.uses_server_side_binding:
        pytest.skip("DATABASE_SERVER_SIDE_BINDING=0 in this environment")
    now = timezone.now()
    Incident.objects.create(title=TITLE, severity="P2", started_at=now, detected_at=now)

    with connection.cursor() as cursor:
        # The server's record of the statement it is running: this very query.
        cursor.execute(
            "SELECT query FROM pg_stat_activity WHERE pid = pg_backend_pid() AND %s <> ''",
            [TITLE],
        )
        (received,) = cursor.fetchone()
    assert "$1" in received
    assert "DROP TABLE" not in received
    assert Incident.objects.filter(title=TITLE).get().title == TITLE


def bound_on_the_server(**env: str) -> str:
    code = (
        "import django; django.setup(); from django.db import connection; "
        "print(connection.features.uses_server_side_binding)"
    )
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "console.settings", **env}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_setting_turns_it_on_and_off() -> None:
    assert bound_on_the_server(DATABASE_SERVER_SIDE_BINDING="1") == "True"
    assert bound_on_the_server(DATABASE_SERVER_SIDE_BINDING="0") == "False"
