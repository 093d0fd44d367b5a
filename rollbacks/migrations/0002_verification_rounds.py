"""Verification rounds and their checks as rows, filled from the timeline.

Until now a round existed only as timeline entries (`payload.phase = "verification"`): a
RUN entry `started` listing its checks, a CHECK_RESULT entry per result and a RUN entry
concluding it (`passed`, `failed`, `inconclusive`, or `recorded` with the `outcome`). The
backfill reads them in id order and writes the rows the code now reads, so an upgraded
database shows its past rounds as before. As the code did, the first result of a check and
the first conclusion of a round count, and a result for a check its round did not list
adds it. Entries are left as they are (the timeline is append-only).
"""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

PHASE = "verification"
CONCLUSIONS = ("passed", "failed", "inconclusive", "recorded")


def backfill_rounds(apps, schema_editor):
    timeline_entry = apps.get_model("incidents", "TimelineEntry")
    run_model = apps.get_model("rollbacks", "Run")
    step_model = apps.get_model("rollbacks", "Step")
    round_model = apps.get_model("rollbacks", "VerificationRound")
    check_model = apps.get_model("rollbacks", "VerificationCheck")

    rounds = {}  # round key -> unsaved VerificationRound
    incident_of = {}  # round key -> the incident its entries belong to
    checks = {}  # round key -> {index: unsaved VerificationCheck}
    entries = timeline_entry.objects.filter(
        payload__phase=PHASE, kind__in=["run", "check_result"]
    ).order_by("id")
    for entry in entries.iterator():
        payload = entry.payload
        key = payload.get("round")
        if not isinstance(key, str) or not key:
            continue
        if entry.kind == "run" and payload.get("event") == "started":
            if key in rounds:
                continue
            number = int(payload.get("number", 1))
            rounds[key] = round_model(
                run_id=payload.get("run"),
                key=key,
                number=number,
                trigger="steps_done" if number == 1 else "resumed",
                state="running",
                started_at=entry.created_at,
            )
            incident_of[key] = entry.incident_id
            checks[key] = {
                int(check["index"]): check_model(
                    index=int(check["index"]),
                    step_id=check.get("step"),
                    service=check.get("service", ""),
                    name=check.get("check", "?"),
                    kind=check.get("kind", "?"),
                )
                for check in payload.get("checks", [])
            }
            continue
        round_ = rounds.get(key)
        if round_ is None or incident_of[key] != entry.incident_id or round_.state != "running":
            continue  # results and conclusions count only while their round is open
        if entry.kind == "check_result":
            index = int(payload.get("index", -1))
            check = checks[key].get(index)
            if check is None:
                check = checks[key][index] = check_model(
                    index=index,
                    step_id=payload.get("step"),
                    service=payload.get("service", ""),
                    name=payload.get("check", "?"),
                    kind=payload.get("kind", "?"),
                )
            elif check.status != "pending":
                continue
            check.status = payload.get("outcome") or "inconclusive"
            check.observed = payload.get("observed")
            check.threshold = payload.get("threshold")
            check.message = payload.get("message", "")
            check.ticks = payload.get("ticks", "")
            check.recorded_at = entry.created_at
        elif payload.get("event") in CONCLUSIONS:
            event = payload["event"]
            outcome = payload.get("outcome", "") if event == "recorded" else event
            round_.state = event
            round_.outcome = "not_run" if outcome == "not run" else outcome
            round_.finished_at = entry.created_at
            round_.summary = entry.body

    runs = run_model.objects.filter(pk__in={round_.run_id for round_ in rounds.values()})
    run_incidents = dict(runs.values_list("pk", "incident_id"))
    kept = [
        round_
        for key, round_ in rounds.items()
        if run_incidents.get(round_.run_id) == incident_of[key]
    ]
    # The code starts a round only once the run's latest has concluded. Should a round have
    # been left open behind a later one, it is closed, unrun, when the later one started.
    previous = {}
    for round_ in sorted(kept, key=lambda round_: round_.number):
        earlier = previous.get(round_.run_id)
        if earlier is not None and earlier.state == "running":
            earlier.state, earlier.outcome = "recorded", "not_run"
            earlier.finished_at = round_.started_at
        previous[round_.run_id] = round_
    round_model.objects.bulk_create(kept)

    step_ids = set(
        step_model.objects.filter(run_id__in=run_incidents).values_list("pk", flat=True)
    )
    rows = []
    for round_ in kept:
        for index, check in sorted(checks[round_.key].items()):
            check.round = round_
            if check.step_id not in step_ids:
                check.step_id = None
            rows.append(check)
    check_model.objects.bulk_create(rows)


class Migration(migrations.Migration):

    dependencies = [
        ('rollbacks', '0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='VerificationRound',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('key', models.CharField(max_length=32, unique=True)),
                ('number', models.PositiveSmallIntegerField()),
                ('trigger', models.CharField(choices=[('steps_done', 'Every step finished'), ('resumed', 'The run was resumed')], max_length=20)),
                ('state', models.CharField(choices=[('running', 'Running'), ('passed', 'Passed'), ('failed', 'Failed'), ('inconclusive', 'Inconclusive'), ('recorded', 'Recorded')], default='running', max_length=20)),
                ('outcome', models.CharField(blank=True, choices=[('passed', 'Passed'), ('failed', 'Failed'), ('inconclusive', 'Inconclusive'), ('not_run', 'Not run')], max_length=20)),
                ('started_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('summary', models.TextField(blank=True, help_text='What the concluding timeline entry said')),
                ('run', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='verification_rounds', to='rollbacks.run')),
            ],
            options={
                'ordering': ['run', 'number'],
            },
        ),
        migrations.CreateModel(
            name='VerificationCheck',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('index', models.PositiveSmallIntegerField()),
                ('service', models.CharField(max_length=80)),
                ('name', models.TextField()),
                ('kind', models.CharField(max_length=30)),
                ('status', models.CharField(choices=[('pending', 'Pending'), ('passed', 'Passed'), ('failed', 'Failed'), ('inconclusive', 'Inconclusive')], default='pending', max_length=20)),
                ('observed', models.JSONField(blank=True, null=True)),
                ('threshold', models.JSONField(blank=True, null=True)),
                ('message', models.TextField(blank=True)),
                ('ticks', models.CharField(blank=True, help_text="The checklist items' check_key it ticks", max_length=50)),
                ('recorded_at', models.DateTimeField(blank=True, null=True)),
                ('step', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='rollbacks.step')),
                ('round', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='checks', to='rollbacks.verificationround')),
            ],
            options={
                'ordering': ['round', 'index'],
            },
        ),
        migrations.AddConstraint(
            model_name='verificationround',
            constraint=models.UniqueConstraint(fields=('run', 'number'), name='verification_round_number'),
        ),
        migrations.AddConstraint(
            model_name='verificationround',
            constraint=models.UniqueConstraint(condition=models.Q(('state', 'running')), fields=('run',), name='verification_one_running_round'),
        ),
        migrations.AddConstraint(
            model_name='verificationround',
            constraint=models.CheckConstraint(condition=models.Q(('number__gte', 1)), name='verification_round_number_from_1'),
        ),
        migrations.AddConstraint(
            model_name='verificationround',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('number', 1), ('trigger', 'steps_done')), models.Q(('number__gt', 1), ('trigger', 'resumed')), _connector='OR'), name='verification_round_trigger'),
        ),
        migrations.AddConstraint(
            model_name='verificationround',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('finished_at__isnull', True), ('outcome', ''), ('state', 'running')), models.Q(models.Q(('state', 'running'), _negated=True), ('finished_at__isnull', False), models.Q(('outcome', ''), _negated=True)), _connector='OR'), name='verification_round_concluded_has_outcome'),
        ),
        migrations.AddConstraint(
            model_name='verificationround',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('state__in', ['passed', 'failed', 'inconclusive']), _negated=True), ('outcome', models.F('state')), _connector='OR'), name='verification_round_decided_by_outcome'),
        ),
        migrations.AddConstraint(
            model_name='verificationcheck',
            constraint=models.UniqueConstraint(fields=('round', 'index'), name='verification_check_index'),
        ),
        migrations.AddConstraint(
            model_name='verificationcheck',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('recorded_at__isnull', True), ('status', 'pending')), models.Q(models.Q(('status', 'pending'), _negated=True), ('recorded_at__isnull', False)), _connector='OR'), name='verification_check_recorded_has_instant'),
        ),
        migrations.RunPython(backfill_rounds, migrations.RunPython.noop),
    ]
