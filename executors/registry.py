"""Backend kinds and where their classes live, imported lazily.

Importing a backend pulls in boto3 or the kubernetes client; the web process only needs
that when it actually plans or runs a step.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from executors.base import Backend

BACKENDS: dict[str, str] = {
    "kubernetes": "executors.kubernetes.backend.KubernetesDeploymentBackend",
    "ecs": "executors.ecs.EcsServiceBackend",
    "static_frontend": "executors.static_frontend.StaticFrontendBackend",
    "database": "executors.database.RdsRestoreBackend",
    "dns": "executors.dns.Route53Backend",
    "feature_flag": "executors.flags.backend.FeatureFlagBackend",
    "command": "executors.command.RegisteredCommandBackend",
}


@cache
def backend_class(kind: str) -> type[Backend]:
    """The Backend subclass for `kind`; KeyError for an unknown kind."""
    module_path, _, class_name = BACKENDS[kind].rpartition(".")
    return getattr(import_module(module_path), class_name)  # type: ignore[no-any-return]
