"""The demo's services for the secret switch and the ECS restart (devinfra.demo calls these
seeds beside those of devinfra.demo_services): a Secrets Manager secret with two versions,
an SSM parameter with a history, and an ECS service to restart, verified by a CloudWatch
alarm."""

from __future__ import annotations

from devinfra.demo_services import DemoRelease, DemoService
from executors.aws import aws_client
from executors.base import Connections

DEMO_SECRET = "backout-demo/orders-db-url"
# A demo-only password, in the secret's values: the full runs check it is never recorded.
DEMO_SECRET_PASSWORD = "demo-only-url-password"
DEMO_PARAMETER = "/backout-demo/checkout/psp-endpoint"
RESTART_CLUSTER, RESTART_SERVICE = "backout-demo-workers", "orders-worker"
DEMO_ALARM = "backout-demo-orders-worker-errors"


def seed_secret_switch(connections: Connections) -> DemoService:
    """Secret backout-demo/orders-db-url: the replica's URL first (good), then the new
    primary's (bad, AWSCURRENT)."""
    secrets = aws_client(connections, "secretsmanager")
    hosts = {
        "replica-a": "orders-a.backout-demo.internal",
        "primary-b": "orders-b.backout-demo.internal",
    }
    versions: dict[str, str] = {}
    for label, host in hosts.items():
        value = f"postgres://orders:{DEMO_SECRET_PASSWORD}@{host}:5432/orders"
        if not versions:
            answer = secrets.create_secret(Name=DEMO_SECRET, SecretString=value)
        else:
            answer = secrets.put_secret_value(SecretId=DEMO_SECRET, SecretString=value)
        versions[label] = str(answer["VersionId"])
    return DemoService(
        name="orders-db-url",
        backend="secret_switch",
        description=f"Orders database URL (Secrets Manager secret {DEMO_SECRET})",
        target_config={"secret": DEMO_SECRET},
        releases=(
            DemoRelease(
                "replica-a", versions["replica-a"], 30, "Orders database at orders-a.", True
            ),
            DemoRelease(
                "primary-b",
                versions["primary-b"],
                0.5,
                "Switched to orders-b; its users table is empty after a failed restore.",
                False,
            ),
        ),
        live_version=versions["primary-b"],
    )


def seed_parameter_switch(connections: Connections) -> DemoService:
    """SecureString /backout-demo/checkout/psp-endpoint with versions 1 to 3: 3 (live)
    points at a payment provider endpoint that refuses the shop's certificate."""
    ssm = aws_client(connections, "ssm")
    endpoints = (
        "https://psp-eu-1.backout-demo.example.net/v2",
        "https://psp-eu-2.backout-demo.example.net/v2",
        "https://psp-eu-3.backout-demo.example.net/v3",
    )
    for number, endpoint in enumerate(endpoints):
        ssm.put_parameter(
            Name=DEMO_PARAMETER,
            Value=endpoint,
            Type="SecureString",
            Description="Payment provider endpoint of checkout",
            Overwrite=number > 0,
        )
    return DemoService(
        name="checkout-psp-endpoint",
        backend="secret_switch",
        description=f"Checkout's payment provider endpoint (SSM parameter {DEMO_PARAMETER})",
        target_config={"parameter": DEMO_PARAMETER},
        releases=(
            DemoRelease("psp-eu-1", "1", 60, "First EU endpoint.", True),
            DemoRelease("psp-eu-2", "2", 20, "Second EU endpoint.", True),
            DemoRelease("psp-eu-3", "3", 0.5, "API v3; refuses the shop's certificate.", False),
        ),
        live_version="3",
    )


def seed_ecs_restart(connections: Connections) -> DemoService:
    """ECS service orders-worker on cluster backout-demo-workers, two tasks, verified by the
    CloudWatch alarm backout-demo-orders-worker-errors (OK).

    moto settles a forced deployment only for a service created with no tasks and scaled
    afterwards (executors.ecs_restart says why), so it is made that way."""
    ecs = aws_client(connections, "ecs")
    ecs.create_cluster(clusterName=RESTART_CLUSTER)
    arns = {}
    for version in ("v1.3.2", "v1.4.0"):
        registered = ecs.register_task_definition(
            family=RESTART_SERVICE,
            networkMode="bridge",
            containerDefinitions=[
                {
                    "name": RESTART_SERVICE,
                    "image": f"registry.example.com/orders/worker:{version}",
                    "memory": 256,
                    "secrets": [{"name": "DATABASE_URL", "valueFrom": DEMO_SECRET}],
                }
            ],
        )
        arns[version] = str(registered["taskDefinition"]["taskDefinitionArn"])
    arn = arns["v1.4.0"]
    ecs.create_service(
        cluster=RESTART_CLUSTER,
        serviceName=RESTART_SERVICE,
        taskDefinition=arn,
        desiredCount=0,
        launchType="EC2",
    )
    ecs.update_service(cluster=RESTART_CLUSTER, service=RESTART_SERVICE, desiredCount=2)
    cloudwatch = aws_client(connections, "cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName=DEMO_ALARM,
        AlarmDescription="Orders worker job failures",
        Namespace="BackoutDemo/OrdersWorker",
        MetricName="FailedJobs",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=5,
        ComparisonOperator="GreaterThanThreshold",
    )
    cloudwatch.set_alarm_state(
        AlarmName=DEMO_ALARM, StateValue="OK", StateReason="No failed jobs in the last minute"
    )
    return DemoService(
        name="orders-worker",
        backend="ecs_restart",
        description="Orders worker on ECS; restart it to pick up a switched database URL",
        target_config={
            "cluster": RESTART_CLUSTER,
            "service": RESTART_SERVICE,
            "checks": [
                {"kind": "cloudwatch_alarm", "name": "job failures", "alarms": [DEMO_ALARM]}
            ],
        },
        releases=(
            DemoRelease("v1.3.2", arns["v1.3.2"], 50, "Ran clean for two days.", True),
            DemoRelease(
                "v1.4.0",
                arn,
                6,
                "Reads DATABASE_URL from the secret at start; holds the old database until "
                "restarted.",
                False,
            ),
        ),
        live_version=arn,
    )
