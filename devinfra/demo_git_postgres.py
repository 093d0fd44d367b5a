"""The demo's git and PostgreSQL services: a bare repository with a few commits under the
demo's state directory (git_revert), and a scratch PostgreSQL database with a couple of
dumps beside it (pg_restore). Both are made again from scratch at each start.

- storefront-config (git_revert): the bare repository demo-git/storefront-config.git, branch
  main: "Add the storefront settings" (v1.0), "Raise the checkout timeout to 30 s" (v1.1,
  known-good), then the merge of branch payments-provider (v1.2, live): it switches the
  payment provider and breaks checkout. Rolling back to v1.1 reverts the merge with -m 1.
- inventory-db (pg_restore): the database beside the command service's orders one
  (`backout_orders` → `backout_inventory`) on the same PostgreSQL server, with the dumps
  inventory-v3.1.dump (known-good prices) and inventory-v3.2.dump (prices a hundred times
  too high) in demo-dumps/. The seed restores
  v3.2 through the backend itself, so the database's marker says so; the service's check
  query fails while any price is over 10,000 cents.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import psycopg
from psycopg import sql

from devinfra.demo_services import DemoRelease, DemoService
from executors.base import BackendError, Connections, RollbackTarget
from executors.pg_restore import PostgresRestoreBackend
from executors.pg_restore_options import stamp_now

INVENTORY_PASSWORD_ENV = "DEMO_INVENTORY_PASSWORD"

GIT_AUTHOR = {
    "GIT_AUTHOR_NAME": "Storefront Dev",
    "GIT_AUTHOR_EMAIL": "dev@backout-demo.example.com",
    "GIT_COMMITTER_NAME": "Storefront Dev",
    "GIT_COMMITTER_EMAIL": "dev@backout-demo.example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}
PRICE_CHECK = "SELECT 1 FROM products HAVING max(price_cents) <= 10000"


def _git(cwd: Path, *args: str) -> str:
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **GIT_AUTHOR}
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=environment, check=True, capture_output=True, timeout=30
    )
    return done.stdout.decode().strip()


def _commit(clone: Path, files: dict[str, str], subject: str) -> str:
    for name, text in files.items():
        (clone / name).write_text(text)
        _git(clone, "add", name)
    _git(clone, "commit", "-q", "-m", subject)
    return _git(clone, "rev-parse", "HEAD")


def seed_git_repository(state_dir: Path) -> DemoService:
    """The storefront-config repository (see the module docstring), made afresh. git runs
    in other folders than ours, so every path it is given is absolute."""
    root = (state_dir / "demo-git").resolve()
    shutil.rmtree(root, ignore_errors=True)
    bare, clone = root / "storefront-config.git", root / "seed-clone"
    root.mkdir(parents=True)
    _git(root, "init", "-q", "--bare", "-b", "main", str(bare))
    _git(root, "init", "-q", "-b", "main", str(clone))
    settings = "checkout_timeout_seconds = 10\npayment_provider = 'acme-pay'\n"
    first = _commit(clone, {"settings.toml": settings}, "Add the storefront settings")
    good = _commit(
        clone,
        {"settings.toml": settings.replace("= 10", "= 30")},
        "Raise the checkout timeout to 30 s",
    )
    _git(clone, "checkout", "-q", "-b", "payments-provider")
    _commit(clone, {"payments.toml": "provider = 'newpay'\nretries = 0\n"}, "Add newpay settings")
    _git(clone, "checkout", "-q", "main")
    _git(
        clone,
        "merge",
        "-q",
        "--no-ff",
        "-m",
        "Merge branch 'payments-provider'",
        "payments-provider",
    )
    bad = _git(clone, "rev-parse", "HEAD")
    _git(clone, "push", "-q", str(bare), "main")
    shutil.rmtree(clone)
    return DemoService(
        name="storefront-config",
        backend="git_revert",
        description="Storefront settings in git (branch main); a rollback reverts and pushes",
        target_config={
            "repository": bare.resolve().as_uri(),
            "branch": "main",
            "author_name": "Backout",
            "author_email": "backout@backout-demo.example.com",
            "work_dir": str((root / "work").resolve()),
        },
        releases=(
            DemoRelease("v1.0", first, 72, "First settings.", False),
            DemoRelease("v1.1", good, 30, "Checkout timeout raised to 30 s.", True),
            DemoRelease("v1.2", bad, 0.5, "New payment provider: checkout fails.", False),
        ),
        live_version=bad,
    )


def database_passwords(services: Iterable[DemoService]) -> dict[str, str]:
    """The environment variables naming the passwords of the seeded database services, with
    their values: the env file hands them to the console's workers, which restore."""
    names = {
        str(service.target_config["password_env"])
        for service in services
        if service.backend == "pg_restore" and service.target_config.get("password_env")
    }
    return {name: os.environ[name] for name in sorted(names) if name in os.environ}


def inventory_database_url(orders_url: str) -> str:
    """The inventory database beside the orders one: `backout_orders` → `backout_inventory`
    (so the demo's tests, with an orders database of their own, get their own too)."""
    orders = psycopg.conninfo.conninfo_to_dict(orders_url).get("dbname") or "backout_orders"
    base = str(orders).removesuffix("_orders")
    return psycopg.conninfo.make_conninfo(orders_url, dbname=f"{base}_inventory")


def seed_git_and_postgres(state_dir: Path, orders_url: str) -> tuple[list[DemoService], list[str]]:
    """Both services, and a warning for the database one when PostgreSQL cannot make it
    (it is then left out, as the command service is). `state_dir` may be relative (bin/demo
    gives var/…): the services' configs hold it absolute, as the workers run elsewhere."""
    state_dir = state_dir.resolve()
    services = [seed_git_repository(state_dir)]
    warnings = []
    try:
        services.append(seed_postgres_dumps(inventory_database_url(orders_url), state_dir))
    except (psycopg.Error, BackendError) as error:
        warnings.append(f"inventory database service left out: {error}")
    return services, warnings


def seed_postgres_dumps(database_url: str, state_dir: Path) -> DemoService:
    """The inventory database and its two dumps (see the module docstring), made afresh;
    `database_url` names the database to (re)create."""
    parts = psycopg.conninfo.conninfo_to_dict(database_url)
    name = str(parts["dbname"])
    admin = psycopg.conninfo.make_conninfo(database_url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dumps = state_dir / "demo-dumps"
    shutil.rmtree(dumps, ignore_errors=True)
    dumps.mkdir(parents=True)
    config: dict[str, object] = {
        "host": str(parts.get("host") or "127.0.0.1"),
        "port": int(parts.get("port") or 5432),
        "user": str(parts.get("user") or "postgres"),
        "dbname": name,
        "dump_dir": str(dumps.resolve()),
        "check_query": PRICE_CHECK,
        "timeout_seconds": 120,
    }
    if parts.get("password"):
        config["password_env"] = INVENTORY_PASSWORD_ENV
        os.environ[INVENTORY_PASSWORD_ENV] = str(parts["password"])
    backend = PostgresRestoreBackend(config, Connections())
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(
            "CREATE TABLE products (sku text PRIMARY KEY, name text NOT NULL, "
            "price_cents integer NOT NULL)"
        )
        connection.execute(
            "INSERT INTO products VALUES ('MUG-1', 'Mug', 1200), ('TEE-2', 'T-shirt', 2500), "
            "('CAP-3', '帽子 🧢', 1800)"
        )
        backend.dump_to(dumps / "inventory-v3.1.dump")
        connection.execute("UPDATE products SET price_cents = price_cents * 100")
        connection.execute("ALTER TABLE products ADD COLUMN currency text DEFAULT 'EUR'")
    backend.dump_to(dumps / "inventory-v3.2.dump")
    backend.apply(
        RollbackTarget(params={"dump": "inventory-v3.2.dump", "restore_stamp": stamp_now()})
    )
    return DemoService(
        name="inventory-db",
        backend="pg_restore",
        description="Inventory PostgreSQL (self-managed); restored in place from a dump",
        target_config=config,
        releases=(
            DemoRelease("v3.1", "inventory-v3.1.dump", 26, "Prices in cents.", True),
            DemoRelease(
                "v3.2",
                "inventory-v3.2.dump",
                0.3,
                "The currency migration multiplied every price by 100.",
                False,
            ),
        ),
        live_version="inventory-v3.2.dump",
    )
