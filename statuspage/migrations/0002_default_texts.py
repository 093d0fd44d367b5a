"""Default texts for the public page, internal notices and the customer notice. Editable in
the admin; {placeholders} are listed in docs/status-page.md."""

from django.db import migrations

TEXTS = {
    "public_investigating": (
        "",
        "We are looking into problems with {components}. Some requests may fail or be slow "
        "while we work out the cause. Next update here within 30 minutes, sooner if we learn "
        "more.",
    ),
    "public_identified": (
        "",
        "We know what is wrong with {components} and are putting it right, which may mean "
        "going back to the previous version. Until that is done some requests may still fail.",
    ),
    "public_monitoring": (
        "",
        "{components} is working again. Service restored: {restored_at}. Verified: "
        "{verified_at}. We are watching closely to be sure it stays that way.",
    ),
    "public_resolved": (
        "",
        "This incident is over: {components} has behaved normally since {restored_at} "
        "(verified: {verified_at}). We are sorry for the disruption and will study how to "
        "keep it from happening again.",
    ),
    "rollback_started": (
        "[{severity}] Rollback {run} started: {title}",
        "Rollback {run} is under way for “{title}” ({severity}).\n"
        "Steps: {run_steps}\n"
        "Impact began {started_at}; detected {detected_at}.\n"
        "Watch it live: {incident_url}",
    ),
    "rollback_progress": (
        "[{severity}] Rollback {run} still {run_state} after {run_elapsed} min",
        "Rollback {run} for “{title}”: {run_progress} after {run_elapsed} minutes.\n"
        "Steps: {run_steps}\n"
        "{incident_url}",
    ),
    "rollback_finished": (
        "[{severity}] Rollback {run} {run_state}: {title}",
        "Rollback {run} for “{title}” ended {run_state} after {run_elapsed} minutes.\n"
        "Steps: {run_steps}\n"
        "Service restored: {restored_at}. Verified: {verified_at}.\n"
        "{incident_url}",
    ),
    "customer_notice": (
        "Service disruption affecting {components}",
        "Hello,\n\n"
        "Starting {started_at}, {components} did not work as it should for about "
        "{outage_minutes} minutes. Service restored: {restored_at}.\n\n"
        "We are sorry for the trouble this caused you. If you still see problems, reply to "
        "this message and we will look into it with you. Live status: {status_url}\n\n"
        "The support team",
    ),
}


def add_texts(apps, schema_editor):
    MessageTemplate = apps.get_model("statuspage", "MessageTemplate")
    for key, (subject, body) in TEXTS.items():
        MessageTemplate.objects.get_or_create(key=key, defaults={"subject": subject, "body": body})


def remove_texts(apps, schema_editor):
    apps.get_model("statuspage", "MessageTemplate").objects.filter(key__in=TEXTS).delete()


class Migration(migrations.Migration):
    dependencies = [("statuspage", "0001_initial")]

    operations = [migrations.RunPython(add_texts, remove_texts)]
