"""A local Kubernetes API server stand-in for tests and demos, built on kmock.

No kube-apiserver can be installed on the development machines, so this serves the part
of the Kubernetes API that Backout's rollbacks use, over plain HTTP on 127.0.0.1, well
enough for both the official `kubernetes` Python client and `kubectl` (get, rollout
history / undo / status / restart, scale, set image, delete).

Built by subclassing `kmock.KubernetesEmulator` (PyPI kmock 0.8). What is kept from kmock:
the aiohttp server (`kmock.Server`), request recording (`standin.requests`), its DSL for
ad-hoc reactions (`standin['get /healthz'] << 200`), API discovery (`/api`, `/apis`,
`/apis/apps/v1`, ...) from declared resources, and the object store (`standin.objects`,
with each object's recent versions). What is replaced, because kmock 0.8 lacks it:

- request parsing (kmock's path parser raises on `/api/v1/namespaces`);
- the resource semantics: uid, resourceVersion, generation, creationTimestamp; label and
  field selectors on list and watch; PUT with resourceVersion preconditions (409);
  JSON, merge and strategic-merge patches (see devinfra.kube_patches); status and scale
  subresources; server-side dry run; cascading deletion by ownerReferences; lists with
  kind/apiVersion/resourceVersion; watch resuming from a resourceVersion and ending at
  `timeoutSeconds`; Status error bodies shaped like the real server's;
- controllers: a Deployment/ReplicaSet controller simulation with revisions, rollout
  status catching up after `status_delay` seconds, and crash-looping pods (see
  devinfra.kube_controllers);
- fault injection: answer the next N matching requests with 500/409/429/... or hang.

The server is `devinfra.kube_server.KubeStandin`, built up from the object store
(devinfra.kube_store) and the resource API (devinfra.kube_api); what it serves and the
API server's rules for writes are in devinfra.kube_resources. This module runs it.

Use it in-process (tests)::

    handle = start_kube_standin(status_delay=0.05)
    handle.seed([{"namespace": "shop", "name": "web", "images": ["web:1", "web:2"]}])
    handle.fail_next(2, status=500, method="PATCH")
    ...
    handle.stop()

or as a process (demo)::

    python -m devinfra.kube_standin --port 8001 --seed demo --kubeconfig /tmp/standin.yaml
    kubectl --kubeconfig /tmp/standin.yaml -n storefront rollout history deploy/web
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kmock
import yaml

from devinfra.kube_resources import DEFAULT_NAMESPACES, RESOURCE_TYPES, Fault, resource_type
from devinfra.kube_server import KubeStandin
from executors.json_docs import json_copy

# -- running it ------------------------------------------------------------------------------


@dataclass
class KubeStandinHandle:
    """A stand-in served from a background thread; every method is thread-safe."""

    url: str
    port: int
    standin: KubeStandin
    _loop: asyncio.AbstractEventLoop
    _thread: threading.Thread
    _stop: asyncio.Event

    @property
    def thread_id(self) -> int:
        """The operating system's id of the thread that serves (for its CPU priority)."""
        assert self._thread.native_id is not None  # started before the handle is made
        return self._thread.native_id

    def call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        """Run `function` on the server's event loop thread and return its result."""

        async def run() -> Any:
            return function(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    def seed(self, specs: str | Iterable[Mapping[str, Any]]) -> None:
        """Create settled Deployments: "demo", a JSON file path, or specs (see KubeStandin.seed)."""
        self.call(self.standin.seed, load_seed(specs))

    def create(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Create an object from a manifest as a client would (the rollout is not settled)."""
        plural = _plural_for(manifest)
        return self.call(
            self.standin.create_object, resource_type(plural), json_copy(dict(manifest))
        )

    def get(self, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """A stored object, e.g. `get("deployments", "shop", "web")`."""
        return self.call(self.standin.get_object, plural, namespace, name)

    def list(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Stored objects of one kind, e.g. `list("replicasets", "shop")`."""
        return self.call(self.standin.list_objects, plural, namespace)

    def settle(self, namespace: str, name: str) -> None:
        """Complete a Deployment's rollout now instead of after the status delay."""
        self.call(self.standin.controllers.settle, namespace, name)

    def set_status_delay(self, seconds: float) -> None:
        """How long rollouts take to report complete from now on."""
        self.call(self.standin.set_status_delay, seconds)

    def crash_loop_image(self, image: str, crashing: bool = True) -> None:
        """Make pods running `image` crash-loop (or stop doing so for new pods)."""

        def update() -> None:
            if crashing:
                self.standin.crash_loop_images.add(image)
            else:
                self.standin.crash_loop_images.discard(image)

        self.call(update)

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 500,
        method: str | None = None,
        path: str | None = None,
        retry_after: int | None = 1,
    ) -> None:
        """Answer the next `count` matching requests with `status` and a Status body.

        `method` ("PATCH") and `path` (a regular expression searched in the URL path)
        narrow the requests; 429 answers carry `Retry-After: retry_after`.
        """
        self.standin.inject_fault(
            Fault(count, status=status, method=method, path=path, retry_after=retry_after)
        )

    def hang_next(
        self,
        count: int = 1,
        *,
        seconds: float = 30.0,
        method: str | None = None,
        path: str | None = None,
        then_status: int | None = None,
    ) -> None:
        """Hold the next `count` matching requests for `seconds` before answering
        (normally, or with `then_status`); a client with a shorter timeout gives up."""
        self.standin.inject_fault(
            Fault(count, status=then_status, hang=seconds, method=method, path=path)
        )

    def clear_faults(self) -> None:
        """Forget faults that have not fired yet."""
        self.standin.clear_faults()

    def reset(self) -> None:
        """Delete everything but the default namespaces; forget faults and crashing images."""

        def wipe() -> None:
            self.standin.clear_faults()
            self.standin.crash_loop_images.clear()
            for created in self.standin.list_objects("namespaces"):
                if created["metadata"]["name"] not in DEFAULT_NAMESPACES:
                    self.standin.delete_object(resource_type("namespaces"), created)
            for namespace in DEFAULT_NAMESPACES:
                for rt in RESOURCE_TYPES:
                    if rt.namespaced:
                        for obj in self.standin.list_objects(rt.plural, namespace):
                            self.standin.delete_object(rt, obj)

        self.call(wipe)

    def write_kubeconfig(self, path: str | Path, *, namespace: str = "default") -> Path:
        """Write a kubeconfig for kubectl and the Python client pointing at this stand-in."""
        return write_kubeconfig(path, self.url, namespace=namespace)

    def stop(self) -> None:
        """Close watches and hanging requests, stop the server and its thread."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=15)


def _plural_for(manifest: Mapping[str, Any]) -> str:
    for rt in RESOURCE_TYPES:
        if rt.kind == manifest.get("kind") and rt.api_version == manifest.get("apiVersion"):
            return rt.plural
    raise ValueError(
        f"the stand-in does not serve {manifest.get('apiVersion')}/{manifest.get('kind')}"
    )


def start_kube_standin(
    port: int | None = None,
    *,
    host: str = "127.0.0.1",
    status_delay: float = 0.2,
    restart_interval: float = 1.0,
    crash_loop_images: Iterable[str] = (),
    seed: str | Iterable[Mapping[str, Any]] | None = None,
) -> KubeStandinHandle:
    """Serve a stand-in from a daemon thread; returns once it accepts connections.

    `port=None` picks a free port. `status_delay` is how long a rollout takes to report
    complete; `restart_interval` how often crash-looping containers restart.
    """
    started = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        stop = asyncio.Event()
        standin = KubeStandin(
            status_delay=status_delay,
            restart_interval=restart_interval,
            crash_loop_images=set(crash_loop_images),
        )
        async with standin:
            if seed is not None:
                # Seeded before the port opens: whoever connects first sees the whole seed.
                standin.seed(load_seed(seed))
            async with kmock.Server(standin, host=host, port=port, user_agent="") as server:
                box.update(
                    loop=asyncio.get_running_loop(), stop=stop, standin=standin, port=server.port
                )
                started.set()
                await stop.wait()
                standin.stop_streams()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as error:  # reported to the starting thread
            box["error"] = error
            started.set()

    thread = threading.Thread(target=run, name="kube-standin", daemon=True)
    thread.start()
    if not started.wait(timeout=15) or "error" in box:
        raise RuntimeError(f"the Kubernetes stand-in did not start: {box.get('error')!r}")
    return KubeStandinHandle(
        url=f"http://{host}:{box['port']}",
        port=box["port"],
        standin=box["standin"],
        _loop=box["loop"],
        _thread=thread,
        _stop=box["stop"],
    )


def write_kubeconfig(
    path: str | Path, url: str, *, namespace: str = "default", context: str = "kube-standin"
) -> Path:
    """Write a kubeconfig whose current context points at `url` without credentials."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kube-standin", "cluster": {"server": url}}],
        "users": [{"name": "kube-standin", "user": {}}],
        "contexts": [
            {
                "name": context,
                "context": {
                    "cluster": "kube-standin",
                    "user": "kube-standin",
                    "namespace": namespace,
                },
            }
        ],
        "current-context": context,
        "preferences": {},
    }
    path = Path(path)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


DEMO_SEED: tuple[dict[str, Any], ...] = (
    {
        "namespace": "storefront",
        "name": "web",
        "replicas": 3,
        "images": [
            "registry.example.com/storefront/web:v2.3.0",
            "registry.example.com/storefront/web:v2.4.0",
            "registry.example.com/storefront/web:v2.4.1",
        ],
    },
    {
        "namespace": "storefront",
        "name": "api",
        "replicas": 3,
        "images": [
            "registry.example.com/storefront/api:v1.8.2",
            "registry.example.com/storefront/api:v1.9.0",
        ],
    },
    {
        "namespace": "storefront",
        "name": "worker",
        "replicas": 2,
        "images": [
            "registry.example.com/storefront/worker:v1.8.2",
            "registry.example.com/storefront/worker:v1.9.0",
        ],
    },
    {
        "namespace": "payments",
        "name": "payments-api",
        "replicas": 2,
        "images": [
            "registry.example.com/payments/api:v3.1.0",
            "registry.example.com/payments/api:v3.2.0",
        ],
    },
)


def load_seed(seed: str | Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Seed specs from "demo", a JSON file path, or already-parsed specs."""
    if isinstance(seed, str):
        if seed == "demo":
            return [json_copy(spec) for spec in DEMO_SEED]
        loaded = json.loads(Path(seed).read_text())
        return list(loaded["deployments"] if isinstance(loaded, dict) else loaded)
    return list(seed)


def main(argv: list[str] | None = None) -> int:
    """`python -m devinfra.kube_standin`: serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--seed", help='"demo" or a JSON file with a list of deployment specs')
    parser.add_argument("--status-delay", type=float, default=2.0, help="seconds per rollout")
    parser.add_argument("--restart-interval", type=float, default=5.0)
    parser.add_argument(
        "--crash-loop-image", action="append", default=[], help="pods with this image crash-loop"
    )
    parser.add_argument("--kubeconfig", help="write a kubeconfig for this server to this path")
    options = parser.parse_args(argv)

    if options.kubeconfig:
        # Written before the port opens, so a client that sees the port finds the file.
        path = write_kubeconfig(options.kubeconfig, f"http://{options.host}:{options.port}")
        print(f"kubeconfig: kubectl --kubeconfig {path} get deploy -A", flush=True)
    handle = start_kube_standin(
        options.port,
        host=options.host,
        status_delay=options.status_delay,
        restart_interval=options.restart_interval,
        crash_loop_images=options.crash_loop_image,
        seed=options.seed,
    )
    print(f"Kubernetes stand-in serving on {handle.url}", flush=True)
    try:
        while handle._thread.is_alive():
            handle._thread.join(timeout=1)
    except KeyboardInterrupt:
        pass
    finally:
        handle.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
