"""The four default public texts become update templates ("Investigating", "Identified",
"Monitoring", "Resolved"), which the support lead edits, reorders and starts updates from on
the console's templates page. From here on a fresh draft starts from the first template of
its status (statuspage.services.draft_defaults), so the `public_*` message templates are
removed: one text per purpose, in one place. Each template keeps the text as it stood
(edited in the admin or not), under the title "Service disruption: {components}".

Going back puts each text (as the template holds it then) back into its message template
and removes the four templates.
"""

from importlib import import_module

from django.db import migrations
from django.db.models import Max

TITLE = "Service disruption: {components}"
# (template name, public status, message template key, component status: blank for the
# state the incident's severity suggests)
DEFAULTS = (
    ("Investigating", "investigating", "public_investigating", ""),
    ("Identified", "identified", "public_identified", ""),
    ("Monitoring", "monitoring", "public_monitoring", ""),
    ("Resolved", "resolved", "public_resolved", "operational"),
)


def first_texts() -> dict:
    """The texts migration 0002 wrote, for a message template deleted since."""
    return import_module("statuspage.migrations.0002_default_texts").TEXTS


def templates_from_texts(apps, schema_editor):
    MessageTemplate = apps.get_model("statuspage", "MessageTemplate")
    UpdateTemplate = apps.get_model("statuspage", "UpdateTemplate")
    texts = first_texts()
    taken = set(UpdateTemplate.objects.values_list("name", flat=True))
    # After any template there is already (none, unless the migration runs again).
    position = UpdateTemplate.objects.aggregate(last=Max("position"))["last"] or 0
    for name, status, key, component_status in DEFAULTS:
        message = MessageTemplate.objects.filter(key=key).first()
        if name not in taken:
            position += 1
            UpdateTemplate.objects.create(
                name=name,
                title=TITLE,
                body=message.body if message is not None else texts[key][1],
                status=status,
                component_status=component_status,
                position=position,
            )
        MessageTemplate.objects.filter(key=key).delete()


def texts_from_templates(apps, schema_editor):
    MessageTemplate = apps.get_model("statuspage", "MessageTemplate")
    UpdateTemplate = apps.get_model("statuspage", "UpdateTemplate")
    texts = first_texts()
    for name, _status, key, _component_status in DEFAULTS:
        template = UpdateTemplate.objects.filter(name=name).first()
        MessageTemplate.objects.update_or_create(
            key=key,
            defaults={
                "subject": "",
                "body": template.body if template is not None else texts[key][1],
            },
        )
        if template is not None:
            template.delete()


class Migration(migrations.Migration):
    dependencies = [("statuspage", "0006_history_maintenances_subscribers_templates")]

    operations = [migrations.RunPython(templates_from_texts, texts_from_templates)]
