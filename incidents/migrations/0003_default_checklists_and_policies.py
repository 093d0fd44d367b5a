"""Default checklist templates and approval policies from the runbooks (editable in admin)."""

from django.db import migrations

# (name, kind, position, [(text, check_key)])
CHECKLISTS = [
    (
        "Before rolling back",
        "pre_rollback",
        0,
        [
            ("Checked whether switching a feature flag off would stop the harm", ""),
            ("Checked whether a hotfix could ship in under ten minutes", ""),
            ("Required approvals are in", ""),
            ("War room channel told a rollback is coming", ""),
            ("Status page says we are investigating", ""),
            ("Support asked to hold outgoing customer replies", ""),
            ("Incident commander named on this incident", ""),
            ("Timeline started with what we know so far", ""),
        ],
    ),
    (
        "After rolling back",
        "post_rollback",
        1,
        [
            ("Health endpoints answer with the rolled-back version", "http_health"),
            ("Pods are running and none is crash-looping", "pods_healthy"),
            ("Error rate is back at its usual level", "error_rate"),
            ("Latency is back within its usual range", "latency"),
            ("Logs show no error patterns that were not there before", ""),
            ("Critical user journeys work end to end", "smoke_command"),
            ("Data integrity counts match expectations", "data_integrity"),
            ("Every monitor and alert is green", ""),
        ],
    ),
    (
        "Once it is over",
        "post_incident",
        2,
        [
            ("Status page marked resolved with a short explanation", ""),
            ("Customers who wrote in have been answered", ""),
            ("Post-mortem drafted and a review meeting booked", ""),
            ("Follow-up actions have an owner and a due date", ""),
        ],
    ),
]

# (name, severities, scenario, required roles)
POLICIES = [
    ("Major incidents need on-call and an engineering lead", ["P0", "P1"], "any",
     ["On-call", "Engineering Lead"]),
    ("Data corruption needs the CTO", [], "data_corruption", ["CTO"]),
    ("A security breach needs the CTO and the security lead", [], "security_breach",
     ["CTO", "Security Lead"]),
]


def add_defaults(apps, schema_editor):
    ChecklistTemplate = apps.get_model("incidents", "ChecklistTemplate")
    ChecklistTemplateItem = apps.get_model("incidents", "ChecklistTemplateItem")
    ApprovalPolicy = apps.get_model("incidents", "ApprovalPolicy")
    for name, kind, position, items in CHECKLISTS:
        template, created = ChecklistTemplate.objects.get_or_create(
            name=name, defaults={"kind": kind, "position": position}
        )
        if created:
            ChecklistTemplateItem.objects.bulk_create(
                ChecklistTemplateItem(template=template, position=i, text=text, check_key=key)
                for i, (text, key) in enumerate(items)
            )
    for name, severities, scenario, roles in POLICIES:
        ApprovalPolicy.objects.get_or_create(
            name=name,
            defaults={"severities": severities, "scenario": scenario, "required_roles": roles},
        )


def remove_defaults(apps, schema_editor):
    apps.get_model("incidents", "ChecklistTemplate").objects.filter(
        name__in=[name for name, *_ in CHECKLISTS]
    ).delete()
    apps.get_model("incidents", "ApprovalPolicy").objects.filter(
        name__in=[name for name, *_ in POLICIES]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("incidents", "0002_database_rules")]

    operations = [migrations.RunPython(add_defaults, remove_defaults)]
