"""The demo's services restored from S3 object versions, on the demo's moto server: a
Terraform state with three versions and a lock table (executors.terraform_state), and a
frontend whose second build was uploaded over the first in place (executors.s3_versions)."""

from __future__ import annotations

import datetime
import hashlib
import json
import time

from devinfra.demo_services import DemoRelease, DemoService
from executors.aws import aws_client
from executors.base import Connections
from executors.s3_versions import S3VersionsBackend
from executors.terraform_state import state_label

STATE_BUCKET = "backout-demo-tfstate"
STATE_KEY = "network/terraform.tfstate"
LOCK_TABLE = "backout-demo-tf-locks"
STATE_LINEAGE = "0b6f3c2e-94d1-4a57-8e0b-d1c2a3b4e5f6"
# serial → (NAT instance size, release, hours ago, notes, known good)
_STATES = {
    1: ("t3.small", "network-40", 80, "NAT gateway on t3.small.", True),
    2: ("t3.medium", "network-41", 30, "NAT gateway on t3.medium.", True),
    3: ("t3.nano", "network-42", 0.5, "NAT resized to t3.nano; egress drops under load.", False),
}

BUILDS_BUCKET = "backout-demo-web-builds"
BUILDS_PREFIX = "shop/"
_BUILDS = {
    "v7.0.0": {
        "index.html": '<!doctype html><title>Shop</title><script src="/shop/app.js"></script>',
        "app.js": "console.log('shop v7.0.0');",
        "app.css": "body { margin: 0; }",
    },
    "v7.1.0": {
        "index.html": '<!doctype html><title>Shop</title><script src="/shop/app.js"></script>'
        '<script src="/shop/reviews.js"></script>',
        "app.js": "console.log('shop v7.1.0'); basket.total(undefined);",
        "app.css": "body { margin: 0; }",
        "reviews.js": "console.log('reviews widget');",
    },
}
_CONTENT_TYPES = {"html": "text/html", "js": "text/javascript", "css": "text/css"}


def _state(serial: int, size: str) -> bytes:
    document = {
        "version": 4,
        "terraform_version": "1.9.8",
        "serial": serial,
        "lineage": STATE_LINEAGE,
        "outputs": {"nat_size": {"value": size, "type": "string"}},
        "resources": [
            {
                "mode": "managed",
                "type": "aws_instance",
                "name": "nat",
                "provider": 'provider["registry.terraform.io/hashicorp/aws"]',
                "instances": [{"schema_version": 1, "attributes": {"instance_type": size}}],
            }
        ],
        "check_results": None,
    }
    return json.dumps(document, indent=2).encode()


def seed_terraform_state(connections: Connections) -> DemoService:
    """State network/terraform.tfstate at serials 1, 2, 3 (live) of one lineage in a
    versioned bucket, and the lock table with Terraform's digest of serial 3."""
    s3 = aws_client(connections, "s3")
    dynamodb = aws_client(connections, "dynamodb")
    s3.create_bucket(Bucket=STATE_BUCKET)
    s3.put_bucket_versioning(Bucket=STATE_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    dynamodb.create_table(
        TableName=LOCK_TABLE,
        KeySchema=[{"AttributeName": "LockID", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "LockID", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    releases = []
    for serial, (size, version, hours, notes, good) in _STATES.items():
        body = _state(serial, size)
        written = s3.put_object(
            Bucket=STATE_BUCKET, Key=STATE_KEY, Body=body, ContentType="application/json"
        )
        # As terraform does after each write: the digest it checks the next read against.
        dynamodb.put_item(
            TableName=LOCK_TABLE,
            Item={
                "LockID": {"S": f"{STATE_BUCKET}/{STATE_KEY}-md5"},
                "Digest": {"S": hashlib.md5(body, usedforsecurity=False).hexdigest()},
            },
        )
        saved = {"version_id": written["VersionId"], "serial": serial, "lineage": STATE_LINEAGE}
        releases.append(
            DemoRelease(
                version,
                state_label(serial, STATE_LINEAGE),
                hours,
                notes,
                good,
                backup={"state_version": saved},
            )
        )
    return DemoService(
        name="network-state",
        backend="terraform_state",
        description="Terraform state of the network stack (S3 backend, DynamoDB locks)",
        target_config={"bucket": STATE_BUCKET, "key": STATE_KEY, "lock_table": LOCK_TABLE},
        releases=tuple(releases),
        live_version=state_label(3, STATE_LINEAGE),
    )


def _upload(s3: object, files: dict[str, str]) -> None:
    for name, body in files.items():
        s3.put_object(  # type: ignore[attr-defined]
            Bucket=BUILDS_BUCKET,
            Key=BUILDS_PREFIX + name,
            Body=body.encode(),
            ContentType=_CONTENT_TYPES[name.rpartition(".")[2]],
        )


def seed_s3_versions(connections: Connections) -> DemoService:
    """Build v7.0.0 of the shop, then v7.1.0 uploaded over it in place a second later, in a
    versioned bucket behind a CloudFront distribution; v7.0.0 saved its version ids."""
    s3 = aws_client(connections, "s3")
    s3.create_bucket(Bucket=BUILDS_BUCKET)
    s3.put_bucket_versioning(Bucket=BUILDS_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    origin = {
        "Id": "builds",
        "DomainName": f"{BUILDS_BUCKET}.s3.amazonaws.com",
        "S3OriginConfig": {"OriginAccessIdentity": ""},
    }
    distribution = aws_client(connections, "cloudfront").create_distribution(
        DistributionConfig={
            "CallerReference": "backout-demo-shop",
            "Origins": {"Quantity": 1, "Items": [origin]},
            "DefaultCacheBehavior": {
                "TargetOriginId": "builds",
                "ViewerProtocolPolicy": "redirect-to-https",
                "TrustedSigners": {"Enabled": False, "Quantity": 0},
                "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
                "MinTTL": 0,
            },
            "Comment": "Backout demo shop (builds uploaded in place)",
            "Enabled": True,
        }
    )["Distribution"]
    config = {
        "bucket": BUILDS_BUCKET,
        "prefix": BUILDS_PREFIX,
        "distribution_id": distribution["Id"],
    }
    backend = S3VersionsBackend(config, connections)
    _upload(s3, _BUILDS["v7.0.0"])
    first = (backend.live_version() or "", backend.capture_backup())
    # S3 times are to the second: the second build lands in a later one, so a restore
    # time between the two builds exists.
    now = datetime.datetime.now(datetime.UTC)
    time.sleep(1.05 - now.microsecond / 1e6)
    _upload(s3, _BUILDS["v7.1.0"])
    live = backend.live_version() or ""
    return DemoService(
        name="shop-web",
        backend="s3_versions",
        description="Shop frontend uploaded in place to a versioned S3 prefix behind CloudFront",
        target_config=config,
        releases=(
            DemoRelease("v7.0.0", first[0], 20, "Basket totals in the header.", True, first[1]),
            DemoRelease(
                "v7.1.0", live, 0.7, "Reviews widget; the basket throws for empty carts.", False
            ),
        ),
        live_version=live,
    )
