"""Components get their own place on the public page: groups, `only_show_if_degraded`, and
many services behind one component (and one service behind several) instead of the
one-to-one `service` link.

Every component keeps its row, id, name, status, position and times, so its public
incidents and published revisions still point at it, and its former service becomes the
first of its services. A description that is word for word its service's description was
copied from the console by the old `status_components` command: it describes the
infrastructure, not what customers use, so it is cleared (the service keeps it).
"""

import django.db.models.deletion
from django.db import migrations, models


def services_from_the_one_to_one_link(apps, schema_editor):
    Component = apps.get_model("statuspage", "Component")
    for component in Component.objects.filter(service__isnull=False).select_related("service"):
        component.services.add(component.service)
        if component.description and component.description == component.service.description:
            Component.objects.filter(pk=component.pk).update(description="")


def one_to_one_link_from_the_services(apps, schema_editor):
    # Back to one service per component: each component gets the first of its services
    # that no component before it took. The cleared descriptions stay cleared.
    Component = apps.get_model("statuspage", "Component")
    taken: set[int] = set()
    for component in Component.objects.filter(is_group=False).order_by("pk"):
        first = component.services.exclude(pk__in=taken).order_by("pk").first()
        if first is not None:
            taken.add(first.pk)
            Component.objects.filter(pk=component.pk).update(service=first)


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0013_service_auto_rollback"),
        ("statuspage", "0004_delivery_recipients_done"),
    ]

    operations = [
        migrations.AddField(
            model_name="component",
            name="is_group",
            field=models.BooleanField(
                default=False, help_text="A group of components (Statuspage's `group: true`)"
            ),
        ),
        migrations.AddField(
            model_name="component",
            name="group",
            field=models.ForeignKey(
                blank=True,
                limit_choices_to={"is_group": True},
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="members",
                to="statuspage.component",
            ),
        ),
        migrations.AddField(
            model_name="component",
            name="only_show_if_degraded",
            field=models.BooleanField(
                default=False, help_text="Listed on the public page only while not operational"
            ),
        ),
        migrations.AddField(
            model_name="component",
            name="services",
            field=models.ManyToManyField(
                blank=True,
                help_text="The console services behind this component; their incidents "
                "suggest it as affected",
                related_name="status_components",
                to="incidents.service",
            ),
        ),
        migrations.RunPython(services_from_the_one_to_one_link, one_to_one_link_from_the_services),
        migrations.RemoveField(model_name="component", name="service"),
        migrations.AlterField(
            model_name="component", name="name", field=models.CharField(max_length=100)
        ),
        migrations.AddConstraint(
            model_name="component",
            constraint=models.UniqueConstraint(
                fields=("group", "name"), name="component_unique_name", nulls_distinct=False
            ),
        ),
        migrations.AddConstraint(
            model_name="component",
            constraint=models.CheckConstraint(
                condition=models.Q(("is_group", False), ("group__isnull", True), _connector="OR"),
                name="component_groups_do_not_nest",
            ),
        ),
        migrations.AddConstraint(
            model_name="component",
            constraint=models.CheckConstraint(
                condition=models.Q(("group", models.F("pk")), _negated=True),
                name="component_not_own_group",
            ),
        ),
    ]
