"""The demo's hosted-API stand-ins and the services that use them (devinfra.demo starts
them beside moto and the Kubernetes stand-in).

Each entry of HOSTED_SEEDS is the dotted path of a function `(connections) -> HostedSeed`
that starts its stand-in, seeds it, and returns the stand-in, its demo services, and the
environment the console's processes need to reach it (the token variables the services'
`token_env` name). The services' target configs carry the stand-in's URL as `api_url`, so a
restarted demo, whose stand-ins listen on new ports, loads them again with the new URL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module

from devinfra.demo_services import DemoService
from devinfra.hosted.server import Standin
from executors.base import Connections

HOSTED_SEEDS: tuple[str, ...] = (
    "devinfra.hosted.vercel.seed_demo",
    "devinfra.hosted.github.seed_demo",
    "devinfra.hosted.docker_engine.seed_demo",
    "devinfra.hosted.doppler.seed_demo",
    "devinfra.hosted.pagerduty.seed_demo",
    "devinfra.hosted.sentry.seed_demo",
)


@dataclass
class HostedSeed:
    """One stand-in, started and seeded, with its demo services and environment."""

    standin: Standin
    services: list[DemoService]
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class HostedDemo:
    """Every hosted stand-in of the demo."""

    seeds: list[HostedSeed] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def services(self) -> list[DemoService]:
        return [service for seed in self.seeds for service in seed.services]

    def env(self) -> dict[str, str]:
        return {key: value for seed in self.seeds for key, value in seed.env.items()}

    def alive(self) -> bool:
        return all(seed.standin.alive() for seed in self.seeds)

    def stop(self) -> None:
        for seed in self.seeds:
            seed.standin.stop()


def _seed_function(path: str) -> Callable[[Connections], HostedSeed]:
    module, _, name = path.rpartition(".")
    return getattr(import_module(module), name)  # type: ignore[no-any-return]


def start_hosted_demo(connections: Connections) -> HostedDemo:
    """Start and seed every stand-in of HOSTED_SEEDS; one that fails is left out with a
    warning, and the rest are stopped if this is interrupted."""
    demo = HostedDemo()
    try:
        for path in HOSTED_SEEDS:
            try:
                demo.seeds.append(_seed_function(path)(connections))
            except (OSError, RuntimeError) as error:
                demo.warnings.append(f"{path} left out: {error}")
    except BaseException:
        demo.stop()
        raise
    return demo
