"""The demo's services on AWS (moto) and in Redis: what each seed function creates, and the
DemoService record it returns for the state file (see devinfra.demo for the whole demo and
the state file's shape)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis

from devinfra import demo_migrations
from executors.aws import aws_client
from executors.base import Connections
from executors.dns import Route53Backend

ENVIRONMENT = "production"
FLAG_KEY_PREFIX = "backout-demo:flags:"
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class DemoRelease:
    """One release of a demo service, as the state file lists it."""

    version: str
    artifact: str
    shipped_hours_ago: float
    notes: str
    known_good: bool
    backup: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        if self.backup is None:
            del document["backup"]
        return document


@dataclass(frozen=True)
class DemoService:
    """A service the console can load: backend kind, target config, releases, live version."""

    name: str
    backend: str
    description: str
    target_config: Mapping[str, Any]
    releases: tuple[DemoRelease, ...]
    # None for a backend with no version to read (a registered command).
    live_version: str | None
    environment: str = ENVIRONMENT
    # PromQL per signal the decision helper reads (Service.signal_queries).
    signal_queries: Mapping[str, str] = field(default_factory=dict)
    # Minutes live, checks passing, before release tracking marks a release known-good
    # (0: never); and the automatic rollback policy (Service.auto_rollback).
    known_good_bake_minutes: int = 0
    auto_rollback: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "environment": self.environment,
            "backend": self.backend,
            "description": self.description,
            "target_config": dict(self.target_config),
            "releases": [release.to_json() for release in self.releases],
            "live_version": self.live_version,
            "signal_queries": dict(self.signal_queries),
            "known_good_bake_minutes": self.known_good_bake_minutes,
            "auto_rollback": dict(self.auto_rollback),
        }

    @property
    def known_good(self) -> DemoRelease | None:
        """The newest known-good release, if it has one."""
        good = [release for release in self.releases if release.known_good]
        return good[-1] if good else None


def seed_ecs(connections: Connections) -> DemoService:
    """ECS service checkout on cluster storefront: checkout:2 (v2.4.0) live, checkout:1 good."""
    ecs = aws_client(connections, "ecs")
    ecs.create_cluster(clusterName="storefront")
    arns = {}
    for version in ("v2.3.1", "v2.4.0"):
        registered = ecs.register_task_definition(
            family="checkout",
            networkMode="bridge",
            containerDefinitions=[
                {
                    "name": "checkout",
                    "image": f"registry.example.com/storefront/checkout:{version}",
                    "memory": 256,
                    "portMappings": [{"containerPort": 8080}],
                }
            ],
        )
        arns[version] = registered["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(
        cluster="storefront",
        serviceName="checkout",
        taskDefinition=arns["v2.4.0"],
        desiredCount=3,
        launchType="EC2",
    )
    # moto reports the tasks running only once an update names the desired count.
    ecs.update_service(cluster="storefront", service="checkout", desiredCount=3)
    return DemoService(
        name="checkout",
        backend="ecs",
        description="Checkout API on ECS (cluster storefront, service checkout)",
        target_config={"cluster": "storefront", "service": "checkout"},
        releases=(
            DemoRelease(
                "v2.3.1", arns["v2.3.1"], 26, "Card payments through the new PSP client.", True
            ),
            DemoRelease(
                "v2.4.0",
                arns["v2.4.0"],
                0.3,
                "Retry policy rewrite; card payments fail with 502 since.",
                False,
            ),
        ),
        live_version=arns["v2.4.0"],
    )


_SITE_RELEASES = {
    "v5.1.0": {
        "index.html": '<!doctype html><title>Shop</title><script src="/assets/app.js"></script>',
        "assets/app.js": "console.log('storefront v5.1.0');",
        "assets/app.css": "body { font-family: sans-serif; }",
    },
    "v5.2.0": {
        "index.html": '<!doctype html><title>Shop</title><script src="/assets/app.js"></script>'
        '<script src="/assets/chat.js"></script>',
        "assets/app.js": "console.log('storefront v5.2.0'); checkout.render(undefined.cart);",
        "assets/app.css": "body { font-family: system-ui; }",
        "assets/chat.js": "console.log('chat widget');",
    },
}
_CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


def seed_static_frontend(connections: Connections) -> DemoService:
    """Releases v5.1.0 and v5.2.0 in a versioned bucket; the live bucket serves v5.2.0."""
    s3 = aws_client(connections, "s3")
    releases_bucket, live_bucket = "backout-demo-web-releases", "backout-demo-web-live"
    for bucket in (releases_bucket, live_bucket):
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for release, files in _SITE_RELEASES.items():
        for key, body in files.items():
            content_type = _CONTENT_TYPES[Path(key).suffix]
            s3.put_object(
                Bucket=releases_bucket,
                Key=f"releases/{release}/{key}",
                Body=body.encode(),
                ContentType=content_type,
            )
    for key, body in _SITE_RELEASES["v5.2.0"].items():
        s3.put_object(
            Bucket=live_bucket,
            Key=key,
            Body=body.encode(),
            ContentType=_CONTENT_TYPES[Path(key).suffix],
        )
    origin = {
        "Id": "live",
        "DomainName": f"{live_bucket}.s3.amazonaws.com",
        "S3OriginConfig": {"OriginAccessIdentity": ""},
    }
    distribution = aws_client(connections, "cloudfront").create_distribution(
        DistributionConfig={
            "CallerReference": "backout-demo-web",
            "Origins": {"Quantity": 1, "Items": [origin]},
            "DefaultCacheBehavior": {
                "TargetOriginId": "live",
                "ViewerProtocolPolicy": "redirect-to-https",
                "TrustedSigners": {"Enabled": False, "Quantity": 0},
                "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
                "MinTTL": 0,
            },
            "Comment": "Backout demo storefront",
            "Enabled": True,
        }
    )["Distribution"]
    return DemoService(
        name="web-frontend",
        backend="static_frontend",
        description="Storefront single-page app on S3 behind CloudFront",
        target_config={
            "releases_bucket": releases_bucket,
            "releases_prefix": "releases/",
            "live_bucket": live_bucket,
            "distribution_id": distribution["Id"],
            "index_key": "index.html",
        },
        releases=(
            DemoRelease(
                "v5.1.0",
                f"s3://{releases_bucket}/releases/v5.1.0/",
                30,
                "Basket redesign.",
                True,
            ),
            DemoRelease(
                "v5.2.0",
                f"s3://{releases_bucket}/releases/v5.2.0/",
                1,
                "Chat widget; the basket page throws for signed-out visitors.",
                False,
            ),
        ),
        live_version="v5.2.0",
    )


def seed_dns(connections: Connections) -> DemoService:
    """status.backout-demo.example.com CNAME: blue saved as the backup, then green made live."""
    route53 = aws_client(connections, "route53")
    zone = route53.create_hosted_zone(
        Name="backout-demo.example.com", CallerReference="backout-demo"
    )["HostedZone"]
    config = {
        "hosted_zone_id": zone["Id"],
        "record_name": "status.backout-demo.example.com",
        "record_type": "CNAME",
        # Where "maintenance" points the record: a page that says the site is being fixed.
        "maintenance_target": "maintenance.backout-demo.example.net",
    }
    values = {
        "blue": "status-blue.backout-demo.example.net",
        "green": "status-green.backout-demo.example.net",
    }

    def point_at(value: str) -> None:
        record = {"Name": config["record_name"], "Type": "CNAME", "TTL": 300}
        record["ResourceRecords"] = [{"Value": value}]
        route53.change_resource_record_sets(
            HostedZoneId=zone["Id"],
            ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": record}]},
        )

    point_at(values["blue"])
    # The backup a deploy pipeline saves before switching; a rollback hands it back.
    backup = Route53Backend(config, connections).backup()
    point_at(values["green"])
    return DemoService(
        name="status-dns",
        backend="dns",
        description="DNS record of the status site (Route 53 CNAME)",
        target_config=config,
        releases=(
            DemoRelease(
                "blue",
                f"{values['blue']} (TTL 300)",
                72,
                "Blue load balancer; record saved before the switch.",
                True,
                backup={"record_sets": backup},
            ),
            DemoRelease(
                "green",
                f"{values['green']} (TTL 300)",
                1,
                "Switched to the green load balancer; its TLS certificate has expired.",
                False,
            ),
        ),
        live_version=f"{values['green']} (TTL 300)",
    )


def seed_feature_flag(redis_url: str) -> DemoService:
    """Flag new-checkout-flow turned on in Redis under the demo's own key prefix."""
    flag = "new-checkout-flow"
    client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.set(f"{FLAG_KEY_PREFIX}{flag}", "on")
    finally:
        client.close()
    return DemoService(
        name=flag,
        backend="feature_flag",
        description="Feature flag for the new checkout flow (Redis flag store)",
        target_config={"store": "redis", "flag": flag, "key_prefix": FLAG_KEY_PREFIX},
        releases=(
            DemoRelease("flag-off", f"{flag}=off", 48, "Old checkout flow for everyone.", True),
            DemoRelease(
                "flag-on", f"{flag}=on", 0.5, "New checkout flow on for all visitors.", False
            ),
        ),
        live_version=f"{flag}=on",
    )


def seed_database(connections: Connections) -> DemoService:
    """RDS orders-db with a snapshot taken before migration 42; the secret points at it."""
    rds = aws_client(connections, "rds")
    instance = rds.create_db_instance(
        DBInstanceIdentifier="orders-db",
        DBName="orders",
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        MasterUsername="orders",
        MasterUserPassword="demo-only-password",
        AllocatedStorage=20,
        # Automated backups, so a point-in-time restore is offered beside the snapshot.
        BackupRetentionPeriod=7,
    )["DBInstance"]
    rds.create_db_snapshot(
        DBSnapshotIdentifier="orders-db-schema-41", DBInstanceIdentifier="orders-db"
    )
    endpoint = instance["Endpoint"]
    aws_client(connections, "secretsmanager").create_secret(
        Name="backout-demo/orders-db",
        SecretString=json.dumps(
            {
                "engine": "postgres",
                "host": endpoint["Address"],
                "port": endpoint["Port"],
                "username": "orders",
                "password": "demo-only-password",
                "dbname": "orders",
                "dbInstanceIdentifier": "orders-db",
            }
        ),
    )
    return DemoService(
        name="orders-db",
        backend="database",
        description="Orders PostgreSQL on RDS; restores from snapshot, then repoints the secret",
        target_config={
            "source_instance": "orders-db",
            "mode": "snapshot",
            "secret": "backout-demo/orders-db",
        },
        releases=(
            DemoRelease(
                "schema-41",
                "orders-db-schema-41",
                28,
                "Snapshot taken before migration 42.",
                True,
            ),
            DemoRelease(
                "schema-42",
                "orders-db",
                0.4,
                "Migration 42 split the addresses table; order totals come out wrong.",
                False,
            ),
        ),
        live_version="orders-db",
    )


def orders_database_url(console_database_url: str) -> str:
    """The demo orders database: $DEMO_ORDERS_DATABASE_URL, else `<console database>_orders`
    on the console's PostgreSQL server (so a second demo with a database of its own has its
    own orders schema too)."""
    explicit = os.environ.get(demo_migrations.URL_VARIABLE)
    if explicit:
        return explicit
    console = psycopg.conninfo.conninfo_to_dict(console_database_url).get("dbname") or "backout"
    return psycopg.conninfo.make_conninfo(console_database_url, dbname=f"{console}_orders")


def command_registrations(database_url: str) -> dict[str, Any]:
    """The registered commands of the demo (REGISTERED_COMMANDS_FILE's content)."""
    return {
        "orders-migrate": {
            "argv": [
                sys.executable,
                "-m",
                "devinfra.demo_migrations",
                "migrate",
                "{app}",
                "{migration}",
            ],
            "arguments": {
                "type": "object",
                "properties": {
                    "app": {"enum": list(demo_migrations.MIGRATIONS)},
                    "migration": {
                        "title": "Migrate to",
                        "description": "Migrations after this one are unapplied, newest first",
                        "enum": demo_migrations.NAMES["orders"],
                    },
                },
                "required": ["app", "migration"],
                "additionalProperties": False,
            },
            "timeout": 120,
            "cwd": str(ROOT),
            "env": {demo_migrations.URL_VARIABLE: database_url},
            "check": [sys.executable, "-m", "devinfra.demo_migrations", "check"],
            "check_timeout": 30,
            "description": "Move the orders schema to a migration (forward or back)",
        },
        "orders-check": {
            "argv": [sys.executable, "-m", "devinfra.demo_migrations", "check"],
            "timeout": 30,
            "cwd": str(ROOT),
            "env": {demo_migrations.URL_VARIABLE: database_url},
            "check": [sys.executable, "-m", "devinfra.demo_migrations", "check"],
            "idempotent": True,
            "description": "Check that the orders schema matches its applied migrations",
        },
    }


def seed_commands(database_url: str, registrations_file: Path) -> list[DemoService]:
    """The orders schema at 0042 in a PostgreSQL database of its own, the registered
    commands that move and check it (written to `registrations_file`), and a service for
    each: orders-schema (moves it) and orders-integrity (the database recovery playbook's
    data check)."""
    environment = {**os.environ, demo_migrations.URL_VARIABLE: database_url}
    subprocess.run(
        [sys.executable, "-m", "devinfra.demo_migrations", "setup"],
        cwd=ROOT,
        env=environment,
        check=True,
        capture_output=True,
        timeout=60,
    )
    registrations_file.write_text(json.dumps(command_registrations(database_url), indent=2))
    schema = DemoService(
        name="orders-schema",
        backend="command",
        description="Orders database schema, moved by the registered command orders-migrate",
        target_config={"command": "orders-migrate", "arguments": {"app": "orders"}},
        releases=(
            DemoRelease(
                "0041_order_totals",
                "orders migration 0041_order_totals",
                50,
                "Order totals stored in cents.",
                True,
            ),
            DemoRelease(
                "0042_split_addresses",
                "orders migration 0042_split_addresses",
                0.4,
                "Split addresses.line into street and city; city is empty for old orders.",
                False,
            ),
        ),
        live_version=None,
    )
    integrity = DemoService(
        name="orders-integrity",
        backend="command",
        description="Checks the orders schema against its applied migrations (read only)",
        target_config={"command": "orders-check"},
        releases=(),  # nothing to roll back: it only reads
        live_version=None,
    )
    return [schema, integrity]
