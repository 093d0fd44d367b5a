"""What exists on a platform that could become a service of the console: Deployments of a
Kubernetes namespace (optionally by label selector), services of an ECS cluster, RDS
instances, Route 53 records, and S3 buckets behind a CloudFront distribution.

Each source lists candidates: a service name (a slug), its backend and the target config
the backend takes (validated by it), with what it runs now when the platform says. Nothing
is written. rollbacks.services.discovery compares them with the console's services, makes
their names unique, and imports what a person ticks.

What a person types to narrow a listing (namespace, selector, cluster, zone) is checked
here, by `parameter_value`, before any platform is asked: the page and the command report
the same problems, each naming its field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from kubernetes import client as kube_client
from kubernetes.client.exceptions import ApiException

from executors.aws import aws_client
from executors.base import Connections
from executors.errors import BackendError, ConfigError
from executors.kubernetes.client import api_error, shared_kube_api_client
from executors.registry import backend_class

NAME_MAX = 80
# The most candidates one listing returns; a bigger estate is listed by narrower sources.
MAX_CANDIDATES = 500
RECORD_TYPES = ("A", "AAAA", "CNAME")
# The longest value of each parameter a person may type (a cluster may be given by its ARN).
PARAMETER_MAX_LENGTH = {"namespace": 63, "selector": 253, "cluster": 320, "zone": 253}

_NAMESPACE = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
# Kubernetes label selectors: comma-separated `key`, `!key`, `key=value` (`==`, `!=`) and
# `key in (v1, v2)` / `key notin (...)`; keys may carry a DNS-subdomain prefix (`a.io/name`).
_LABEL_NAME = r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = rf"(?:[a-z0-9](?:[-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}"
_LABEL_TERM = (
    rf" *(?:!? *{_LABEL_KEY}"
    rf"|{_LABEL_KEY} *(?:==?|!=) *(?:{_LABEL_NAME})?"
    rf"|{_LABEL_KEY} +(?:in|notin) *\( *{_LABEL_NAME}(?: *, *{_LABEL_NAME})* *\)) *"
)
_SELECTOR = re.compile(rf"{_LABEL_TERM}(?:,{_LABEL_TERM})*")
_CLUSTER = re.compile(r"(?:arn:aws[a-z-]*:ecs:[a-z0-9-]+:[0-9]{12}:cluster/)?[A-Za-z0-9_-]{1,255}")
_ZONE = re.compile(r"(?:[A-Za-z0-9_-]{1,63}\.)*[A-Za-z0-9_-]{1,63}\.?")
# Each parameter's form, and what to say of a value not in it.
_FORMS = {
    "namespace": (
        _NAMESPACE,
        "not a Kubernetes namespace name (lower-case letters, digits and '-')",
    ),
    "selector": (_SELECTOR, "not a Kubernetes label selector (e.g. tier=web,track!=canary)"),
    "cluster": (_CLUSTER, "not an ECS cluster name or ARN (letters, digits, '-' and '_')"),
    "zone": (_ZONE, "not a hosted zone id or domain name"),
}


@dataclass(frozen=True)
class Candidate:
    name: str
    backend: str
    target_config: dict[str, Any]
    description: str = ""
    live: str = ""
    notes: list[str] = field(default_factory=list)
    # Why it cannot be imported as listed (its config does not pass its backend); empty if it can.
    problem: str = ""
    # The target_config keys saying which thing on the platform this is: a console service
    # of its name and backend with other values there is a different thing (empty: all keys).
    identity: tuple[str, ...] = ()
    # The target_config keys that are a starting value, not what the platform says: an
    # import fills them in where a service has none, and never overwrites them.
    suggested: tuple[str, ...] = ()

    @property
    def owned(self) -> dict[str, Any]:
        """The part of the target config the platform says, which an import writes over."""
        return {k: v for k, v in self.target_config.items() if k not in self.suggested}


class ParameterError(ConfigError):
    """A value a person typed to narrow a listing that no platform would take."""

    def __init__(self, parameter: str, problem: str) -> None:
        super().__init__(f"{parameter}: {problem}")
        self.parameter = parameter
        self.problem = problem


def slug(text: str) -> str:
    """A service name for `text`: lower-case letters, digits and hyphens, at most NAME_MAX."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return (cleaned or "service")[:NAME_MAX].rstrip("-")


def suffixed(name: str, suffix: str) -> str:
    """`name` with `-suffix`, shortened first so that the suffix survives NAME_MAX."""
    return f"{name[: NAME_MAX - len(suffix) - 1].rstrip('-')}-{suffix}"


def parameter_value(parameter: str, value: str) -> str:
    """`value` as a listing takes it (stripped; a zone in another script as its ASCII
    name), or ParameterError saying what is wrong with it; "" when nothing was given."""
    value = value.strip()
    if not value:
        return ""
    if parameter not in _FORMS:
        raise ParameterError(parameter, "not a parameter of any source")
    pattern, problem = _FORMS[parameter]
    limit = PARAMETER_MAX_LENGTH[parameter]
    if len(value) > limit:
        raise ParameterError(parameter, f"at most {limit} characters")
    if parameter == "zone" and not value.isascii():
        # Route 53 keeps internationalised names in their ASCII (punycode) form.
        try:
            value = value.encode("idna").decode("ascii")
        except UnicodeError:
            raise ParameterError(parameter, problem) from None
    if not value.isascii() or not pattern.fullmatch(value):
        raise ParameterError(parameter, problem)
    return value


def checked(candidate: Candidate) -> Candidate:
    """The candidate, its config validated by its backend; one that does not pass carries
    the reason (it is listed, and cannot be imported as it is)."""
    try:
        backend_class(candidate.backend).validate_config(candidate.target_config)
    except ConfigError as error:
        return replace(candidate, problem=str(error))
    return candidate


def kubernetes(connections: Connections, *, namespace: str, selector: str = "") -> list[Candidate]:
    apps = kube_client.AppsV1Api(shared_kube_api_client(connections, connect_retries=1))
    try:
        listed = apps.list_namespaced_deployment(
            namespace, label_selector=selector or None, limit=MAX_CANDIDATES, _request_timeout=15
        )
    except ApiException as error:
        raise api_error(f"listing Deployments in {namespace}", error) from error
    found = []
    items: list[Any] = listed.items
    for deployment in items:
        containers = deployment.spec.template.spec.containers or []
        found.append(
            checked(
                Candidate(
                    name=slug(deployment.metadata.name),
                    backend="kubernetes",
                    target_config={"namespace": namespace, "deployment": deployment.metadata.name},
                    description=f"Kubernetes Deployment {namespace}/{deployment.metadata.name}",
                    live=str(containers[0].image or "") if containers else "",
                    identity=("namespace",),
                )
            )
        )
    return found


def pages(
    call: Callable[..., Mapping[str, Any]], key: str, token: str, **params: Any
) -> Iterator[Any]:
    """Every item of a paged AWS listing, up to MAX_CANDIDATES."""
    count, next_token = 0, None
    while True:
        answer = call(**params, **({token: next_token} if next_token else {}))
        for item in answer.get(key, []):
            yield item
            count += 1
            if count >= MAX_CANDIDATES:
                return
        next_token = answer.get("NextToken") or answer.get("NextMarker") or answer.get("Marker")
        if not next_token:
            return


def ecs(connections: Connections, *, cluster: str) -> list[Candidate]:
    client = aws_client(connections, "ecs")
    arns = list(pages(client.list_services, "serviceArns", "nextToken", cluster=cluster))
    found = []
    for start in range(0, len(arns), 10):
        answer = client.describe_services(cluster=cluster, services=arns[start : start + 10])
        for service in answer.get("services", []):
            found.append(
                checked(
                    Candidate(
                        name=slug(service["serviceName"]),
                        backend="ecs",
                        target_config={"cluster": cluster, "service": service["serviceName"]},
                        description=f"ECS service {service['serviceName']} (cluster {cluster})",
                        live=str(service.get("taskDefinition", "")),
                        identity=("cluster",),
                    )
                )
            )
    return found


def secrets_naming(connections: Connections, addresses: set[str]) -> dict[str, str]:
    """address → the Secrets Manager secret whose value names it (the connection setting a
    restore repoints), among the first 100 secrets. Values are read, never kept."""
    client = aws_client(connections, "secretsmanager")
    found: dict[str, str] = {}
    for listed in list(pages(client.list_secrets, "SecretList", "NextToken"))[:100]:
        try:
            value = str(client.get_secret_value(SecretId=listed["ARN"]).get("SecretString", ""))
        except Exception:  # no permission for that one: it is not ours to point
            continue
        for address in addresses:
            if address and address in value and address not in found:
                found[address] = listed["Name"]
    return found


def rds(connections: Connections) -> list[Candidate]:
    client = aws_client(connections, "rds")
    instances = list(pages(client.describe_db_instances, "DBInstances", "Marker"))
    addresses = {str(i.get("Endpoint", {}).get("Address", "")) for i in instances}
    secrets = secrets_naming(connections, addresses) if instances else {}
    found = []
    for instance in instances:
        name = instance["DBInstanceIdentifier"]
        config: dict[str, Any] = {"source_instance": name, "mode": "snapshot"}
        secret = secrets.get(str(instance.get("Endpoint", {}).get("Address", "")))
        if secret:
            config["secret"] = secret
        found.append(
            checked(
                Candidate(
                    name=slug(name),
                    backend="database",
                    target_config=config,
                    description=f"RDS {instance.get('Engine', 'database')} instance {name}",
                    live=str(instance.get("EngineVersion", "")),
                    notes=[
                        f"restores from a snapshot, then repoints {secret}"
                        if secret
                        else "no secret names its address: add it in the admin after import"
                    ],
                    identity=("source_instance",),
                    suggested=("mode",),
                )
            )
        )
    return found


def route53(connections: Connections, *, zone: str = "") -> list[Candidate]:
    """A, AAAA and CNAME records of every hosted zone, or of the one `zone` names (its id or
    domain). A name with records of several types lists each under a name with its type."""
    client = aws_client(connections, "route53")
    wanted = zone.rstrip(".").lower()
    zones = [
        z
        for z in pages(client.list_hosted_zones, "HostedZones", "Marker")
        if not zone or z["Id"].split("/")[-1] == zone or z["Name"].rstrip(".").lower() == wanted
    ]
    records: list[tuple[str, Mapping[str, Any]]] = []
    for hosted in zones:
        zone_id = hosted["Id"].split("/")[-1]
        answer = client.list_resource_record_sets(HostedZoneId=zone_id, MaxItems="300")
        records += [
            (zone_id, record)
            for record in answer.get("ResourceRecordSets", [])
            if record["Type"] in RECORD_TYPES
        ]
    records = records[:MAX_CANDIDATES]
    types: dict[tuple[str, str], set[str]] = {}
    for zone_id, record in records:
        types.setdefault((zone_id, record["Name"]), set()).add(record["Type"])
    found: list[Candidate] = []
    for zone_id, record in records:
        name = record["Name"].rstrip(".")
        values = [v["Value"] for v in record.get("ResourceRecords", [])]
        alias = record.get("AliasTarget", {}).get("DNSName", "")
        service_name = slug(name.replace(".", "-"))
        if len(types[(zone_id, record["Name"])]) > 1:
            service_name = suffixed(service_name, record["Type"].lower())
        found.append(
            checked(
                Candidate(
                    name=service_name,
                    backend="dns",
                    target_config={
                        "hosted_zone_id": zone_id,
                        "record_name": name,
                        "record_type": record["Type"],
                    },
                    description=f"DNS record {name} ({record['Type']}, Route 53)",
                    live=alias.rstrip(".") or ", ".join(values)[:200],
                )
            )
        )
    return found


def static_frontends(connections: Connections) -> list[Candidate]:
    """S3 buckets that a CloudFront distribution serves (its S3 origins)."""
    cloudfront = aws_client(connections, "cloudfront")
    answer = cloudfront.list_distributions().get("DistributionList", {})
    found = []
    for distribution in answer.get("Items", [])[:MAX_CANDIDATES]:
        for origin in distribution.get("Origins", {}).get("Items", []):
            domain = origin.get("DomainName", "")
            if ".s3." not in domain and not domain.endswith(".s3.amazonaws.com"):
                continue
            bucket = domain.split(".s3")[0]
            found.append(
                checked(
                    Candidate(
                        name=slug(bucket),
                        backend="static_frontend",
                        target_config={
                            "releases_bucket": bucket,
                            "releases_prefix": "releases/",
                            "live_bucket": bucket,
                            "distribution_id": distribution["Id"],
                        },
                        description=f"Static site in S3 {bucket} behind CloudFront "
                        f"{distribution['Id']}",
                        notes=["builds are looked for under releases/ of the same bucket"],
                        identity=("live_bucket",),
                        suggested=("releases_prefix",),
                    )
                )
            )
    return found


# What each source must be told, and what it may be told.
PARAMETERS = {
    "kubernetes": (("namespace",), ("selector",)),
    "ecs": (("cluster",), ()),
    "rds": ((), ()),
    "route53": ((), ("zone",)),
    "static": ((), ()),
}
SOURCES: dict[str, Callable[..., list[Candidate]]] = {
    "kubernetes": kubernetes,
    "ecs": ecs,
    "rds": rds,
    "route53": route53,
    "static": static_frontends,
}


def discover(source: str, connections: Connections, **params: str) -> list[Candidate]:
    """The candidates of `source`, each target listed once; ParameterError (a ConfigError)
    for a value no platform would take, BackendError when the platform cannot be listed."""
    if source not in SOURCES:
        raise ConfigError(f"source: one of {', '.join(SOURCES)}")
    required, optional = PARAMETERS[source]
    taken = {
        name: value
        for name in required + optional
        if (value := parameter_value(name, params.get(name) or ""))
    }
    missing = [name for name in required if name not in taken]
    if missing:
        raise ConfigError(f"{missing[0]}: required to list {source}")
    try:
        listed = SOURCES[source](connections, **taken)
    except (BackendError, ConfigError):
        raise
    except Exception as error:  # botocore's errors, connection failures
        raise BackendError(f"listing {source}: {type(error).__name__}: {error}"[:400]) from error
    # Two origins of one distribution may name the same bucket: one target, one candidate.
    seen: set[tuple[str, str]] = set()
    unique = []
    for candidate in listed:
        target = (candidate.backend, json.dumps(candidate.target_config, sort_keys=True))
        if target not in seen:
            seen.add(target)
            unique.append(candidate)
    return unique
