"""The demo's Lambda@Edge service (devinfra.demo calls this seed beside the others): a Lambda
function with three published versions on the demo's moto server, and a CloudFront
distribution whose default cache behaviour runs the last, bad one on viewer requests.

The distribution keeps its associations only because the demo's moto runs through
devinfra.moto_server (moto 5.2 as shipped drops them)."""

from __future__ import annotations

import io
import json
import zipfile

from devinfra.demo_services import DemoRelease, DemoService
from executors.aws import aws_client
from executors.base import Connections

EDGE_FUNCTION = "storefront-edge-auth"
EDGE_ROLE = "backout-demo-edge-auth"
EDGE_ORIGIN = "shop.backout-demo.example.net"
EDGE_CALLER_REFERENCE = "backout-demo-storefront-edge"
# What each published version of the function does, oldest first; the last is live and bad.
EDGE_VERSIONS = (
    ("auth-1.2.0", "Checks the session cookie.", True),
    ("auth-1.3.0", "Adds the country header for the shop's prices.", True),
    ("auth-1.4.0", "Reads the session from a new cookie name; logs every visitor out.", False),
)


def _code(release: str) -> bytes:
    """A small Node.js viewer-request handler, different for each release."""
    handler = f"// {release}\nexports.handler = async (event) => event.Records[0].cf.request;\n"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("index.js", handler)
    return archive.getvalue()


def seed_edge_functions(connections: Connections) -> DemoService:
    """Lambda function storefront-edge-auth with versions 1 to 3, and a distribution whose
    default cache behaviour runs version 3 (auth-1.4.0, bad) on viewer requests."""
    iam = aws_client(connections, "iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": ["lambda.amazonaws.com", "edgelambda.amazonaws.com"]},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role = iam.create_role(RoleName=EDGE_ROLE, AssumeRolePolicyDocument=json.dumps(trust))
    lambdas = aws_client(connections, "lambda")
    arns: dict[str, str] = {}
    for number, (release, notes, _) in enumerate(EDGE_VERSIONS):
        if number == 0:
            lambdas.create_function(
                FunctionName=EDGE_FUNCTION,
                Runtime="nodejs20.x",
                Role=role["Role"]["Arn"],
                Handler="index.handler",
                Code={"ZipFile": _code(release)},
                Description="Storefront session check at the edge",
            )
        else:
            lambdas.update_function_code(FunctionName=EDGE_FUNCTION, ZipFile=_code(release))
        published = lambdas.publish_version(
            FunctionName=EDGE_FUNCTION, Description=f"{release}: {notes}"
        )
        arns[release] = str(published["FunctionArn"])
    live = arns[EDGE_VERSIONS[-1][0]]
    cloudfront = aws_client(connections, "cloudfront")
    created = cloudfront.create_distribution(
        DistributionConfig={
            "CallerReference": EDGE_CALLER_REFERENCE,
            "Comment": "Storefront, with its session check at the edge",
            "Enabled": True,
            "Origins": {
                "Quantity": 1,
                "Items": [
                    {
                        "Id": "shop",
                        "DomainName": EDGE_ORIGIN,
                        "CustomOriginConfig": {
                            "HTTPPort": 80,
                            "HTTPSPort": 443,
                            "OriginProtocolPolicy": "https-only",
                        },
                    }
                ],
            },
            "DefaultCacheBehavior": {
                "TargetOriginId": "shop",
                "ViewerProtocolPolicy": "redirect-to-https",
                "ForwardedValues": {"QueryString": True, "Cookies": {"Forward": "all"}},
                "MinTTL": 0,
                "LambdaFunctionAssociations": {
                    "Quantity": 1,
                    "Items": [
                        {
                            "LambdaFunctionARN": live,
                            "EventType": "viewer-request",
                            "IncludeBody": False,
                        }
                    ],
                },
            },
        }
    )
    distribution_id = str(created["Distribution"]["Id"])
    hours_ago = (72.0, 26.0, 1.0)
    return DemoService(
        name="storefront-edge-auth",
        backend="edge_functions",
        description=(
            f"Storefront session check (Lambda@Edge {EDGE_FUNCTION} on viewer requests of "
            f"CloudFront distribution {distribution_id})"
        ),
        target_config={
            "distribution_id": distribution_id,
            "event_type": "viewer-request",
            "function": EDGE_FUNCTION,
        },
        releases=tuple(
            DemoRelease(release, arns[release], hours, notes, good)
            for (release, notes, good), hours in zip(EDGE_VERSIONS, hours_ago, strict=True)
        ),
        live_version=live,
    )
