"""The status page's history and reach: every component state change is recorded (the uptime
bars), scheduled maintenances with their updates, email subscribers with each message sent
to them, and the support lead's update templates.

The history of components that exist already is rebuilt from what was published: each starts
operational when it was created, then takes the states its published revisions set, in
order, and ends in its present state if that differs (a repair in the admin).
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


def history_from_revisions(apps, schema_editor):
    Component = apps.get_model("statuspage", "Component")
    Revision = apps.get_model("statuspage", "Revision")
    Change = apps.get_model("statuspage", "ComponentStatusChange")
    components = {c.pk: c for c in Component.objects.filter(is_group=False)}
    # Per component: its changes in order, the last one being its state so far.
    changes = {
        pk: [Change(component=c, status="operational", changed_at=c.created_at)]
        for pk, c in components.items()
    }
    for revision in Revision.objects.order_by("published_at", "id"):
        for key, status in (revision.component_statuses or {}).items():
            component = components.get(int(key)) if str(key).isdigit() else None
            if component is None or changes[component.pk][-1].status == status:
                continue
            changes[component.pk].append(
                Change(
                    component=component,
                    status=status,
                    changed_at=max(revision.published_at, changes[component.pk][-1].changed_at),
                    public_incident_id=revision.public_incident_id,
                )
            )
    for pk, component in components.items():
        last = changes[pk][-1]
        if last.status != component.status:
            # Set in the admin, which did not always move `updated_at`: never before the
            # change it replaces, so the bars end in the state the component has.
            changes[pk].append(
                Change(
                    component=component,
                    status=component.status,
                    changed_at=max(component.updated_at, last.changed_at),
                )
            )
    Change.objects.bulk_create([change for listed in changes.values() for change in listed])


class Migration(migrations.Migration):
    dependencies = [
        ("statuspage", "0005_component_groups_and_services"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="revision",
            name="notify_subscribers",
            field=models.BooleanField(
                default=False, help_text="Sent to the page's email subscribers when published"
            ),
        ),
        migrations.CreateModel(
            name="Maintenance",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=200)),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("scheduled", "Scheduled"),
                            ("in_progress", "In progress"),
                            ("verifying", "Verifying"),
                            ("completed", "Completed"),
                        ],
                        default="scheduled",
                        max_length=20,
                    ),
                ),
                (
                    "impact",
                    models.CharField(
                        choices=[
                            ("maintenance", "Maintenance"),
                            ("none", "None"),
                            ("minor", "Minor"),
                            ("major", "Major"),
                            ("critical", "Critical"),
                        ],
                        default="maintenance",
                        max_length=12,
                    ),
                ),
                ("scheduled_for", models.DateTimeField()),
                ("scheduled_until", models.DateTimeField()),
                ("auto_start", models.BooleanField(default=True)),
                ("auto_complete", models.BooleanField(default=True)),
                ("previous_statuses", models.JSONField(blank=True, default=dict)),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("resolved_at", models.DateTimeField(blank=True, null=True)),
                (
                    "created_at",
                    models.DateTimeField(default=django.utils.timezone.now, editable=False),
                ),
                ("updated_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "components",
                    models.ManyToManyField(
                        blank=True, related_name="maintenances", to="statuspage.component"
                    ),
                ),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["-scheduled_for", "-id"],
            },
        ),
        migrations.CreateModel(
            name="ComponentStatusChange",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("operational", "Operational"),
                            ("degraded_performance", "Degraded performance"),
                            ("partial_outage", "Partial outage"),
                            ("major_outage", "Major outage"),
                            ("under_maintenance", "Under maintenance"),
                        ],
                        max_length=30,
                    ),
                ),
                ("changed_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "component",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="status_changes",
                        to="statuspage.component",
                    ),
                ),
                (
                    "public_incident",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="status_changes",
                        to="statuspage.publicincident",
                    ),
                ),
                (
                    "maintenance",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="status_changes",
                        to="statuspage.maintenance",
                    ),
                ),
            ],
            options={
                "ordering": ["component", "changed_at", "id"],
            },
        ),
        migrations.CreateModel(
            name="MaintenanceUpdate",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("scheduled", "Scheduled"),
                            ("in_progress", "In progress"),
                            ("verifying", "Verifying"),
                            ("completed", "Completed"),
                        ],
                        max_length=20,
                    ),
                ),
                ("body", models.TextField(help_text="Markdown as published, raw HTML removed")),
                ("body_html", models.TextField(help_text="The body rendered and sanitised")),
                ("notify_subscribers", models.BooleanField(default=False)),
                ("published_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "maintenance",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="updates",
                        to="statuspage.maintenance",
                    ),
                ),
                (
                    "published_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["maintenance", "published_at", "id"],
            },
        ),
        migrations.CreateModel(
            name="Subscriber",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "email",
                    models.EmailField(
                        help_text="Stored in lower case", max_length=254, unique=True
                    ),
                ),
                (
                    "token_digest",
                    models.CharField(
                        editable=False,
                        help_text="SHA-256 of the link's token",
                        max_length=64,
                        unique=True,
                    ),
                ),
                (
                    "created_at",
                    models.DateTimeField(default=django.utils.timezone.now, editable=False),
                ),
                ("confirmation_sent_at", models.DateTimeField(blank=True, null=True)),
                ("confirmed_at", models.DateTimeField(blank=True, null=True)),
                (
                    "components",
                    models.ManyToManyField(
                        blank=True,
                        help_text="None: every component",
                        related_name="subscribers",
                        to="statuspage.component",
                    ),
                ),
            ],
            options={
                "ordering": ["email"],
            },
        ),
        migrations.CreateModel(
            name="SubscriberMessage",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("confirmation", "Confirmation"),
                            ("incident_update", "Incident update"),
                            ("maintenance_update", "Maintenance update"),
                        ],
                        max_length=20,
                    ),
                ),
                (
                    "state",
                    models.CharField(
                        choices=[("pending", "Pending"), ("sent", "Sent"), ("failed", "Failed")],
                        default="pending",
                        max_length=10,
                    ),
                ),
                ("attempts", models.PositiveSmallIntegerField(default=0)),
                ("last_error", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("claimed_until", models.DateTimeField(blank=True, null=True)),
                ("sent_at", models.DateTimeField(blank=True, null=True)),
                (
                    "maintenance_update",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="subscriber_messages",
                        to="statuspage.maintenanceupdate",
                    ),
                ),
                (
                    "revision",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="subscriber_messages",
                        to="statuspage.revision",
                    ),
                ),
                (
                    "subscriber",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="messages",
                        to="statuspage.subscriber",
                    ),
                ),
            ],
            options={
                "ordering": ["created_at", "id"],
            },
        ),
        migrations.CreateModel(
            name="UpdateTemplate",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=100, unique=True)),
                ("title", models.CharField(max_length=200)),
                ("body", models.TextField()),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("investigating", "Investigating"),
                            ("identified", "Identified"),
                            ("monitoring", "Monitoring"),
                            ("resolved", "Resolved"),
                            ("postmortem", "Postmortem"),
                        ],
                        default="investigating",
                        max_length=20,
                    ),
                ),
                (
                    "component_status",
                    models.CharField(
                        blank=True,
                        choices=[
                            ("operational", "Operational"),
                            ("degraded_performance", "Degraded performance"),
                            ("partial_outage", "Partial outage"),
                            ("major_outage", "Major outage"),
                            ("under_maintenance", "Under maintenance"),
                        ],
                        max_length=30,
                    ),
                ),
                ("position", models.PositiveSmallIntegerField(default=0)),
                ("updated_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "components",
                    models.ManyToManyField(
                        blank=True, related_name="update_templates", to="statuspage.component"
                    ),
                ),
                (
                    "updated_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["position", "name"],
            },
        ),
        migrations.AddIndex(
            model_name="maintenance",
            index=models.Index(fields=["status", "scheduled_for"], name="maintenance_status_start"),
        ),
        migrations.AddConstraint(
            model_name="maintenance",
            constraint=models.CheckConstraint(
                condition=models.Q(("scheduled_until__gt", models.F("scheduled_for"))),
                name="maintenance_ends_after_it_starts",
            ),
        ),
        migrations.AddIndex(
            model_name="componentstatuschange",
            index=models.Index(
                fields=["component", "changed_at"], name="status_change_component_at"
            ),
        ),
        migrations.AddIndex(
            model_name="subscribermessage",
            index=models.Index(fields=["state", "created_at"], name="subscriber_message_state"),
        ),
        migrations.AddConstraint(
            model_name="subscribermessage",
            constraint=models.UniqueConstraint(
                fields=("subscriber", "revision"), name="subscriber_message_once_per_revision"
            ),
        ),
        migrations.AddConstraint(
            model_name="subscribermessage",
            constraint=models.UniqueConstraint(
                fields=("subscriber", "maintenance_update"),
                name="subscriber_message_once_per_maintenance_update",
            ),
        ),
        migrations.CreateModel(
            name="SubscriberFanout",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("fanned_out_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("counted_at", models.DateTimeField(blank=True, null=True)),
                (
                    "maintenance_update",
                    models.OneToOneField(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="subscriber_fanout",
                        to="statuspage.maintenanceupdate",
                    ),
                ),
                (
                    "revision",
                    models.OneToOneField(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="subscriber_fanout",
                        to="statuspage.revision",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("revision__isnull", True))
                        ^ models.Q(("maintenance_update__isnull", True)),
                        name="subscriber_fanout_one_event",
                    )
                ],
            },
        ),
        migrations.RunPython(history_from_revisions, migrations.RunPython.noop),
    ]
