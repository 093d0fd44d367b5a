"""The moto server the tests and the demo run (`python -m devinfra.moto_server`): moto's own,
with CloudFront distribution updates made the way CloudFront makes them.

moto 5.2 stores a distribution's cache behaviours without their `LambdaFunctionAssociations`
and `FunctionAssociations` (it always answers `Quantity: 0`), keeps one ETag for a
distribution's whole life and accepts any `IfMatch`. The Lambda@Edge backend
(executors.edge_functions) edits exactly those, so before the server starts this module makes
moto:

- keep both association lists of the default and the path cache behaviours as sent;
- refuse a Lambda@Edge association whose ARN names no published version (no `:<number>`
  qualifier, or `$LATEST`) with `InvalidLambdaFunctionAssociation`, as CloudFront does;
- give the distribution a new ETag on every update, refuse an update without `IfMatch`
  (`InvalidIfMatchVersion`) and one with another than the current ETag (`PreconditionFailed`,
  HTTP 412);
- put an updated distribution back to `InProgress`; it reads `Deployed` again as moto's state
  manager says (`cloudfront::distribution`: at once by default; tests set a number of reads
  through `/moto-api/state-manager/set-transition`).

Every other service is moto's, unchanged.
"""

from __future__ import annotations

import re
from typing import Any

from moto.cloudfront import models as cloudfront
from moto.cloudfront.exceptions import CloudFrontException

# A published version of a function: CloudFront accepts nothing else for Lambda@Edge.
_VERSION_ARN = re.compile(r"arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:[^:]+:\d+")


class PreconditionFailed(CloudFrontException):
    def __init__(self) -> None:
        super().__init__(
            "PreconditionFailed",
            "The If-Match version does not match the distribution's current ETag.",
        )


class InvalidIfMatchVersion(CloudFrontException):
    def __init__(self) -> None:
        super().__init__(
            "InvalidIfMatchVersion",
            "The If-Match version is missing or not valid for the distribution.",
        )


class InvalidLambdaFunctionAssociation(CloudFrontException):
    def __init__(self, arn: str) -> None:
        super().__init__(
            "InvalidLambdaFunctionAssociation",
            f"The function ARN must reference a specific function version: {arn}",
        )


def _associations(config: dict[str, Any], key: str) -> dict[str, Any]:
    """The association list as sent, with its Quantity counted; `{"Quantity": 0}` when empty."""
    items = list((config.get(key) or {}).get("Items") or [])
    return {"Quantity": len(items), "Items": items} if items else {"Quantity": 0}


def _check_versions(behaviour: dict[str, Any]) -> None:
    for association in (behaviour.get("LambdaFunctionAssociations") or {}).get("Items") or []:
        arn = str(association.get("LambdaFunctionARN") or "")
        if not _VERSION_ARN.fullmatch(arn):
            raise InvalidLambdaFunctionAssociation(arn)


def _check_config(config: dict[str, Any]) -> None:
    _check_versions(config.get("DefaultCacheBehavior") or {})
    for behaviour in (config.get("CacheBehaviors") or {}).get("Items") or []:
        _check_versions(behaviour)


def patch_cloudfront() -> None:
    """Make moto's CloudFront keep associations and honour ETags (see the module's docstring)."""
    behaviour_init = cloudfront.DefaultCacheBehaviour.__init__
    if getattr(behaviour_init, "keeps_associations", False):
        return

    def init_behaviour(self: Any, config: dict[str, Any]) -> None:
        behaviour_init(self, config)
        self.lambda_function_associations = _associations(config, "LambdaFunctionAssociations")
        self.function_associations = _associations(config, "FunctionAssociations")

    init_behaviour.keeps_associations = True  # type: ignore[attr-defined]
    cloudfront.DefaultCacheBehaviour.__init__ = init_behaviour  # type: ignore[method-assign]

    create = cloudfront.CloudFrontBackend.create_distribution_with_tags
    update = cloudfront.CloudFrontBackend.update_distribution

    def create_distribution(
        self: Any, distribution_config: dict[str, Any], tags: list[dict[str, str]]
    ) -> Any:
        _check_config(distribution_config)
        return create(self, distribution_config, tags)

    def update_distribution(
        self: Any, dist_config: dict[str, Any], _id: str, if_match: Any
    ) -> tuple[Any, str, str]:
        current = self.distributions.get(_id)
        if not if_match:
            raise InvalidIfMatchVersion()
        if current is not None and if_match != current.etag:
            raise PreconditionFailed()
        if dist_config:
            _check_config(dist_config)
        distribution, location, _ = update(self, dist_config, _id, if_match)
        distribution.etag = cloudfront.random_id()
        distribution.status = "InProgress"
        distribution._tick = 0  # moto's ManagedState counts reads from here
        return distribution, location, distribution.etag

    cloudfront.CloudFrontBackend.create_distribution_with_tags = create_distribution  # type: ignore[method-assign]
    cloudfront.CloudFrontBackend.update_distribution = update_distribution  # type: ignore[method-assign]


def main() -> None:
    """Patch CloudFront, then run moto's server with the command line given."""
    patch_cloudfront()
    from moto.server import main as moto_main

    moto_main()


if __name__ == "__main__":
    main()
