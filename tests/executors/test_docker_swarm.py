"""DockerSwarmBackend against the Engine stand-in (devinfra.hosted.docker_engine), over its
Unix socket and over TCP."""

from __future__ import annotations

import time

import pytest

from devinfra.hosted.docker_engine import DockerEngineStandin, SwarmService
from executors.base import (
    BackendError,
    CheckStatus,
    ConfigError,
    Connections,
    DeadlineExceeded,
    RollbackTarget,
)
from executors.docker_swarm import DockerSwarmBackend, same_image
from executors.options import OptionError

GOOD = "registry.example.com/search/api:1.8.0@sha256:" + "8a" * 32
BAD = "registry.example.com/search/api:1.9.0@sha256:" + "c4" * 32
OLDER = "registry.example.com/search/api:1.7.3"


@pytest.fixture
def search(docker_engine: DockerEngineStandin) -> SwarmService:
    """search-api: BAD in its Spec, GOOD in its PreviousSpec, two replicas."""
    return docker_engine.add_service("search-api", [GOOD, BAD])


def backend_for(host: str, **config: str) -> DockerSwarmBackend:
    return DockerSwarmBackend(
        {"service": "search-api", "docker_host": host, **config},
        Connections(),
        poll_interval=0.05,
        timeout=2.0,
    )


@pytest.fixture(params=["unix", "tcp"])
def backend(
    request: pytest.FixtureRequest, docker_engine: DockerEngineStandin
) -> DockerSwarmBackend:
    """The backend reaching the stand-in over its Unix socket, then over TCP."""
    host = docker_engine.unix_host if request.param == "unix" else docker_engine.tcp_host
    return backend_for(host)


def drafted(backend: DockerSwarmBackend, **params: str) -> RollbackTarget:
    return RollbackTarget(params=backend.validate_params(params, live=True), previous=True)


def posts(standin: DockerEngineStandin) -> list:
    return standin.calls("POST", r"/v1\.45/services/[^/]+/update")


def test_the_live_version_is_the_specs_image_read_at_the_pinned_api_version(
    backend, search, docker_engine
):
    assert backend.live_version() == BAD
    assert backend.capture_backup() == {"image": BAD}
    assert docker_engine.requests[-1].path == "/v1.45/services/search-api"


def test_drafting_previous_pins_previous_specs_image(backend, search):
    assert backend.validate_params({}, live=True) == {"image": GOOD}
    options = backend.live_options()["image"]
    assert [(c.value, c.current) for c in options.choices] == [(GOOD, False), (BAD, True)]


def test_a_release_given_by_tag_is_pinned_when_it_is_previous_specs(backend, search):
    tag_only = "registry.example.com/search/api:1.8.0"
    params = backend.validate_params(backend.pin_release({}, tag_only), live=True)

    assert params == {"image": tag_only}
    assert backend.plan(RollbackTarget(artifact=tag_only, params=params)).target_version == tag_only


def test_a_release_that_is_not_previous_spec_is_refused_when_drafted(backend, search):
    with pytest.raises(OptionError) as refused:
        backend.validate_params(backend.pin_release({}, OLDER), live=True)

    assert refused.value.option == "image"
    assert f"PreviousSpec runs {GOOD}, not {OLDER}" in refused.value.reason


def test_a_service_without_previous_spec_is_refused_when_drafted(backend, docker_engine):
    docker_engine.add_service("search-api", [BAD])

    with pytest.raises(OptionError) as refused:
        backend.validate_params({}, live=True)

    assert refused.value.option == "image"
    assert "has no PreviousSpec" in refused.value.reason
    with pytest.raises(ConfigError, match="has no PreviousSpec"):
        backend.plan(RollbackTarget(previous=True))


def test_a_service_that_does_not_exist_is_refused_naming_service(backend, docker_engine):
    with pytest.raises(OptionError) as refused:
        backend.validate_params({}, live=True)

    assert refused.value.option == "service"
    assert "(the Engine answers: service search-api not found)" in refused.value.reason


def test_a_node_that_is_no_swarm_manager_is_a_permanent_error_naming_docker_host(
    backend, search, docker_engine
):
    docker_engine.swarm_manager = False

    with pytest.raises(OptionError) as refused:
        backend.validate_params({}, live=True)
    assert refused.value.option == "docker_host"
    assert f"docker_host {backend.docker_host} is not a Swarm manager" in refused.value.reason
    with pytest.raises(ConfigError) as failed:
        backend.apply(RollbackTarget(previous=True))
    assert not failed.value.retryable


def test_plan_names_previous_specs_image_and_changes_nothing(backend, search, docker_engine):
    plan = backend.plan(drafted(backend))

    assert f"back to its PreviousSpec: {BAD} → {GOOD}" in plan.summary
    assert [(c.attribute, c.before, c.after) for c in plan.changes] == [("image", BAD, GOOD)]
    assert not posts(docker_engine)
    assert docker_engine.find("search-api").image == BAD


def test_apply_posts_the_rollback_at_the_version_read_with_the_current_spec(
    backend, search, docker_engine
):
    version, spec = search.index, search.as_json()["Spec"]

    result = backend.apply(drafted(backend))

    assert result.changed
    assert result.facts == {"service_id": search.id, "from_image": BAD, "to_image": GOOD}
    [call] = posts(docker_engine)
    assert call.path == f"/v1.45/services/{search.id}/update"
    assert call.query == {"version": str(version), "rollback": "previous"}
    assert call.body == spec
    described = docker_engine.find("search-api").as_json()
    assert described["UpdateStatus"]["State"] == "rollback_started"
    assert described["PreviousSpec"] == spec
    assert described["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == GOOD


def test_applying_twice_rolls_back_once(backend, search, docker_engine):
    target = drafted(backend)
    backend.apply(target)
    backend.wait(target, deadline=time.monotonic() + 5)

    again = backend.apply(target)

    assert not again.changed
    assert "already runs" in again.detail and "rollback_completed" in again.detail
    assert len(posts(docker_engine)) == 1
    assert backend.plan(target).is_noop


def test_a_retry_after_the_rollback_does_not_roll_forward_to_the_new_previous_spec(
    backend, search, docker_engine
):
    target = drafted(backend)
    backend.apply(target)
    # PreviousSpec is now the bad spec: the pinned image keeps the step where it went.
    assert (
        docker_engine.find("search-api").previous_spec["TaskTemplate"]["ContainerSpec"]["Image"]
        == BAD
    )

    assert not backend_for(backend.docker_host).apply(target).changed
    assert docker_engine.find("search-api").image == GOOD


def test_update_out_of_sequence_is_retryable_and_the_retry_rolls_back(
    backend, search, docker_engine
):
    target = drafted(backend)
    docker_engine.move_version_before_update()

    with pytest.raises(BackendError) as raced:
        backend.apply(target)

    assert raced.value.retryable
    assert "update out of sequence" in str(raced.value)
    assert docker_engine.find("search-api").image == BAD
    assert backend.apply(target).changed
    assert docker_engine.find("search-api").image == GOOD


def test_wait_follows_update_status_and_tasks_until_the_rollback_completed(backend, search):
    target = drafted(backend)
    backend.apply(target)
    lines: list[str] = []

    backend.wait(target, deadline=time.monotonic() + 5, log=lines.append)

    assert "rollback_started (manually requested rollback); 0/2 tasks running" in lines[0]
    assert lines[-1] == (
        f"Swarm service search-api: rollback_completed (rollback completed); "
        f"2/2 tasks running {GOOD}"
    )
    checks = backend.checks(target)
    assert [(c.name, c.status) for c in checks] == [
        ("image matches target", CheckStatus.PASSED),
        ("update settled", CheckStatus.PASSED),
        ("tasks running the image", CheckStatus.PASSED),
    ]


def test_checks_fail_while_the_rollback_is_still_moving(docker_engine, search):
    docker_engine.settle_seconds = 30
    backend = backend_for(docker_engine.tcp_host)
    target = drafted(backend)
    backend.apply(target)

    checks = {c.name: c for c in backend.checks(target)}

    assert checks["image matches target"].status == CheckStatus.PASSED
    assert checks["update settled"].status == CheckStatus.FAILED
    assert checks["tasks running the image"].status == CheckStatus.FAILED
    assert checks["tasks running the image"].observed == 0


def test_a_paused_rollback_fails_at_once_with_the_engines_message(backend, search, docker_engine):
    docker_engine.failing_images.add(GOOD)
    target = drafted(backend)
    backend.apply(target)

    with pytest.raises(BackendError) as paused:
        backend.wait(target, deadline=time.monotonic() + 10)

    assert not isinstance(paused.value, DeadlineExceeded)
    assert not paused.value.retryable
    assert "rollback_paused: rollback paused due to failure or early termination of task" in str(
        paused.value
    )


def test_wait_past_the_deadline_raises_deadline_exceeded(docker_engine, search):
    docker_engine.settle_seconds = 30
    backend = backend_for(docker_engine.unix_host)
    target = drafted(backend)
    backend.apply(target)

    with pytest.raises(DeadlineExceeded, match="rollback_started"):
        backend.wait(target, deadline=time.monotonic() + 0.3)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_throttling_and_server_errors_are_retryable_with_retry_after(
    backend, search, docker_engine, status
):
    docker_engine.fail_next(status, retry_after="7", path_prefix="/v1.45/services")

    with pytest.raises(BackendError) as failed:
        backend.apply(RollbackTarget(previous=True))

    assert failed.value.retryable
    assert getattr(failed.value, "retry_after", None) == 7.0
    assert not posts(docker_engine)


@pytest.mark.parametrize("over", ["unix", "tcp"])
def test_an_engine_that_answers_too_late_is_retryable(docker_engine, search, over):
    host = docker_engine.unix_host if over == "unix" else docker_engine.tcp_host
    backend = DockerSwarmBackend(
        {"service": "search-api", "docker_host": host}, Connections(), timeout=0.3
    )
    docker_engine.delay_next(1.0)

    with pytest.raises(BackendError, match="no answer within 0.3 s") as failed:
        backend.live_version()

    assert failed.value.retryable


def test_an_unreachable_socket_is_retryable_at_run_time_and_refused_when_drafted(tmp_path):
    backend = backend_for(f"unix://{tmp_path}/nothing.sock")

    with pytest.raises(BackendError) as failed:
        backend.live_version()
    assert failed.value.retryable
    assert "nothing.sock" in str(failed.value)
    with pytest.raises(OptionError) as refused:
        backend.validate_params({}, live=True)
    assert refused.value.option == "docker_host"


@pytest.mark.parametrize(
    "value",
    [
        "registry.example.com/" + "a" * 400,
        "検索/api:1.8.0",
        "search-api:1.8.0 🚀",
        "<script>alert(1)</script>",
        "search-api:1.8.0\x07",
        "\u202eregistry.example.com/search/api:1.8.0",
        "search-api@sha256:short",
    ],
)
def test_an_image_that_is_no_image_reference_is_refused_naming_image(search, docker_engine, value):
    with pytest.raises(OptionError) as refused:
        backend_for(docker_engine.tcp_host).validate_params({"image": value})

    assert refused.value.option == "image"


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"docker_host": "ftp://host"}, "docker_host"),
        ({"docker_host": "tcp://host:2375/path"}, "docker_host"),
        ({"service": "search api"}, "service"),
        ({"service": "s" * 64}, "service"),
        ({"tls_cert": "/etc/docker/cert.pem"}, "config"),
    ],
)
def test_a_target_config_it_cannot_use_is_refused(config, field):
    with pytest.raises(ConfigError, match=f"^{field}"):
        DockerSwarmBackend({"service": "search-api", **config}, Connections())


@pytest.mark.parametrize(
    ("running", "wanted", "same"),
    [
        (GOOD, "registry.example.com/search/api:1.8.0", True),
        (GOOD, "registry.example.com/search/api@sha256:" + "8a" * 32, True),
        (GOOD, "registry.example.com/search/api:1.9.0", False),
        (GOOD, "registry.example.com/search/api:1.8.0@sha256:" + "c4" * 32, False),
        ("registry.example.com/search/api:1.8.0", GOOD, False),
        ("docker.io/library/nginx:1.27", "nginx:1.27", True),
        ("nginx", "nginx:latest", True),
        (
            "registry.example.com:5000/search/api:1.8.0",
            "registry.example.com/search/api:1.8.0",
            False,
        ),
    ],
)
def test_images_compare_by_digest_else_by_name_and_tag(running, wanted, same):
    assert same_image(running, wanted) is same


@pytest.fixture
def tls_engine(docker_engine, docker_tls, search) -> DockerEngineStandin:
    """The stand-in over TLS too, asking clients for a certificate its CA signed."""
    return docker_engine.start_tls(
        docker_tls.server_cert, docker_tls.server_key, client_ca=docker_tls.ca
    )


@pytest.mark.parametrize("scheme", ["https", "tcp"])
def test_tls_with_the_daemons_ca_and_a_client_certificate_reaches_the_engine(
    tls_engine, docker_tls, scheme
):
    backend = backend_for(
        tls_engine.tls_host.replace("https", scheme),
        tls_ca=docker_tls.ca,
        tls_cert=docker_tls.client_cert,
        tls_key=docker_tls.client_key,
    )

    assert backend.live_version() == BAD


def test_a_daemon_certificate_no_ca_given_vouches_for_is_a_permanent_error(tls_engine, docker_tls):
    backend = backend_for(
        tls_engine.tls_host, tls_cert=docker_tls.client_cert, tls_key=docker_tls.client_key
    )

    with pytest.raises(ConfigError) as failed:
        backend.live_version()

    assert f"docker_host {tls_engine.tls_host}: TLS failed" in str(failed.value)
    assert "CERTIFICATE_VERIFY_FAILED" in str(failed.value)


def test_without_a_client_certificate_a_verifying_daemon_answers_nothing(tls_engine, docker_tls):
    backend = backend_for(tls_engine.tls_host, tls_ca=docker_tls.ca)
    asked = len(tls_engine.requests)

    # TLS 1.3 sends the refusal after the handshake: it arrives as a TLS alert (a
    # ConfigError) or as a connection the daemon closed (retryable), as timing has it.
    with pytest.raises(BackendError, match=tls_engine.tls_host):
        backend.live_version()

    assert len(tls_engine.requests) == asked
