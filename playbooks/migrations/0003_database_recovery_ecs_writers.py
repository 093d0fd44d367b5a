"""Version 2 of the built-in database recovery playbook: its writers may be ECS services as
well as Kubernetes Deployments. Added only where version 1 is still the one shipped, so a
playbook an organisation has edited is left as it is."""

from pathlib import Path

from django.db import migrations

SOURCE = Path(__file__).resolve().parent.parent / "builtin" / "database-recovery.yaml"
COMMENT = "Writers may be ECS services (scaled, and restarted by a forced new deployment)"


def add_version(apps, schema_editor):
    from playbooks.documents import document_parse

    PlaybookVersion = apps.get_model("playbooks", "PlaybookVersion")
    newest = (
        PlaybookVersion.objects.filter(playbook__name="database-recovery", playbook__built_in=True)
        .order_by("-number")
        .first()
    )
    if newest is None or newest.number != 1 or newest.comment != "Shipped with Backout":
        return
    source = SOURCE.read_text()
    document = document_parse(source)
    PlaybookVersion.objects.create(
        playbook=newest.playbook,
        number=2,
        title=document["title"],
        document=document,
        source=source,
        comment=COMMENT,
    )


def remove_version(apps, schema_editor):
    PlaybookVersion = apps.get_model("playbooks", "PlaybookVersion")
    PlaybookVersion.objects.filter(
        playbook__name="database-recovery", number=2, comment=COMMENT, runs=None
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("playbooks", "0002_builtin_playbooks")]

    operations = [migrations.RunPython(add_version, remove_version)]
