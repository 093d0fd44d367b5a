"""The RDS world the database tests share: an instance `orders` and the secret that points
the application at it (the fixtures are in conftest.py)."""

from __future__ import annotations

PASSWORD = "correct-horse-battery"
OLD_HOST = "orders.aaaaaaaaaa.us-east-1.rds.amazonaws.com"
SECRET_CONFIG = {"source_instance": "orders", "mode": "point_in_time", "secret": "orders/db"}


def rds_secret(host: str) -> dict:
    return {
        "engine": "postgres",
        "host": host,
        "port": 5432,
        "username": "app",
        "password": PASSWORD,
        "dbname": "orders",
        "dbInstanceIdentifier": host.split(".")[0],
    }
