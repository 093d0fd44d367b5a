"""The three playbooks Backout ships: database recovery, frontend restore, maintenance
window (playbooks/builtin/*.yaml), each saved as version 1 when not there yet."""

from pathlib import Path

from django.db import migrations

BUILTIN = Path(__file__).resolve().parent.parent / "builtin"
NAMES = ("database-recovery", "frontend-restore", "maintenance-window")


def add_builtins(apps, schema_editor):
    from playbooks.documents import document_parse

    Playbook = apps.get_model("playbooks", "Playbook")
    PlaybookVersion = apps.get_model("playbooks", "PlaybookVersion")
    for name in NAMES:
        source = (BUILTIN / f"{name}.yaml").read_text()
        document = document_parse(source)
        playbook, created = Playbook.objects.get_or_create(name=name, defaults={"built_in": True})
        if created:
            PlaybookVersion.objects.create(
                playbook=playbook,
                number=1,
                title=document["title"],
                document=document,
                source=source,
                comment="Shipped with Backout",
            )


def remove_builtins(apps, schema_editor):
    Playbook = apps.get_model("playbooks", "Playbook")
    PlaybookVersion = apps.get_model("playbooks", "PlaybookVersion")
    unused = PlaybookVersion.objects.filter(playbook__name__in=NAMES, runs=None)
    unused.delete()
    Playbook.objects.filter(name__in=NAMES, built_in=True, versions=None).delete()


class Migration(migrations.Migration):
    dependencies = [("playbooks", "0001_initial")]

    operations = [migrations.RunPython(add_builtins, remove_builtins)]
