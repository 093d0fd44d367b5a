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
    "secret_switch": "executors.secret_switch.SecretSwitchBackend",
    "ecs_restart": "executors.ecs_restart.EcsRestartBackend",
    "terraform_state": "executors.terraform_state.TerraformStateBackend",
    "s3_versions": "executors.s3_versions.S3VersionsBackend",
    "git_revert": "executors.git_revert.GitRevertBackend",
    "pg_restore": "executors.pg_restore.PostgresRestoreBackend",
    "edge_functions": "executors.edge_functions.EdgeFunctionsBackend",
    "vercel": "executors.vercel.VercelBackend",
    "github_actions": "executors.github_actions.GitHubActionsBackend",
    "docker_swarm": "executors.docker_swarm.DockerSwarmBackend",
    "doppler": "executors.doppler.DopplerBackend",
}


@cache
def backend_class(kind: str) -> type[Backend]:
    """The Backend subclass for `kind`; KeyError for an unknown kind."""
    module_path, _, class_name = BACKENDS[kind].rpartition(".")
    return getattr(import_module(module_path), class_name)  # type: ignore[no-any-return]
