"""The rollback models, taken over from the incidents app with their tables.

State only for the schema: the tables were created by incidents 0002-0004 and keep their
names (`db_table`), rows, sequences and triggers. The content types (and so the permissions
and admin history that point at them) are relabelled from `incidents` to `rollbacks`.
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

MOVED_MODELS = ["approvalpolicy", "approvalrequest", "approval", "run", "step", "steplog"]


def relabel(apps, from_label, to_label):
    content_type = apps.get_model("contenttypes", "ContentType")
    taken = set(
        content_type.objects.filter(app_label=to_label, model__in=MOVED_MODELS).values_list(
            "model", flat=True
        )
    )
    content_type.objects.filter(app_label=from_label, model__in=MOVED_MODELS).exclude(
        model__in=taken
    ).update(app_label=to_label)


def relabel_content_types(apps, schema_editor):
    relabel(apps, "incidents", "rollbacks")


def relabel_content_types_back(apps, schema_editor):
    relabel(apps, "rollbacks", "incidents")


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('contenttypes', '0002_remove_content_type_name'),
        ('incidents', '0006_timeline_commit_order'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name='ApprovalPolicy',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=100, unique=True)),
                        ('severities', models.JSONField(blank=True, default=list, help_text='Severities this applies to; empty means all')),
                        ('scenario', models.CharField(choices=[('any', 'Any rollback'), ('data_corruption', 'Data corruption'), ('security_breach', 'Security breach')], default='any', max_length=30)),
                        ('required_roles', models.JSONField(default=list)),
                        ('active', models.BooleanField(default=True)),
                    ],
                    options={
                        'verbose_name_plural': 'approval policies',
                        'db_table': 'incidents_approvalpolicy',
                        'ordering': ['name'],
                    },
                ),
                migrations.CreateModel(
                    name='ApprovalRequest',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('scenario', models.CharField(choices=[('any', 'Any rollback'), ('data_corruption', 'Data corruption'), ('security_breach', 'Security breach')], default='any', max_length=30)),
                        ('reason', models.TextField()),
                        ('requested_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('required_roles', models.JSONField(default=list)),
                        ('status', models.CharField(choices=[('pending', 'Pending'), ('approved', 'Approved'), ('rejected', 'Rejected'), ('withdrawn', 'Withdrawn')], default='pending', max_length=20)),
                        ('decided_at', models.DateTimeField(blank=True, null=True)),
                        ('incident', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='approval_requests', to='incidents.incident')),
                        ('requested_by', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'db_table': 'incidents_approvalrequest',
                        'ordering': ['-requested_at', '-id'],
                    },
                ),
                migrations.CreateModel(
                    name='Run',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('state', models.CharField(choices=[('draft', 'Draft'), ('awaiting_approval', 'Awaiting approval'), ('approved', 'Approved'), ('running', 'Running'), ('paused', 'Paused'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('cancelled', 'Cancelled')], default='draft', max_length=20)),
                        ('reason', models.TextField(blank=True, help_text='Why this rollback is needed')),
                        ('scenario', models.CharField(choices=[('any', 'Any rollback'), ('data_corruption', 'Data corruption'), ('security_breach', 'Security breach')], default='any', max_length=30)),
                        ('dry_run', models.BooleanField(default=False, help_text='Plan every step and time it, but change nothing')),
                        ('drill', models.BooleanField(default=False, help_text="A rehearsal: timed, but not counted in the incident's metrics")),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                        ('planned_at', models.DateTimeField(blank=True, help_text='Last dry run', null=True)),
                        ('confirmation_text', models.CharField(blank=True, max_length=200)),
                        ('confirmed_at', models.DateTimeField(blank=True, null=True)),
                        ('started_at', models.DateTimeField(blank=True, null=True)),
                        ('paused_at', models.DateTimeField(blank=True, null=True)),
                        ('finished_at', models.DateTimeField(blank=True, null=True)),
                        ('failure_reason', models.TextField(blank=True)),
                        ('approval_request', models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='run', to='rollbacks.approvalrequest')),
                        ('confirmed_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('incident', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='runs', to='incidents.incident')),
                    ],
                    options={
                        'db_table': 'incidents_run',
                        'ordering': ['-created_at', '-id'],
                    },
                ),
                migrations.CreateModel(
                    name='Step',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('position', models.PositiveSmallIntegerField(help_text='Order in the plan, from 1')),
                        ('group', models.PositiveSmallIntegerField(default=1, help_text='Steps of one group run together; groups run in ascending order')),
                        ('backend', models.CharField(choices=[('kubernetes', 'Kubernetes Deployment'), ('ecs', 'AWS ECS service'), ('static_frontend', 'Static frontend (S3 + CloudFront)'), ('database', 'Database (RDS restore)'), ('dns', 'DNS record (Route 53)'), ('feature_flag', 'Feature flag'), ('command', 'Registered command')], max_length=30)),
                        ('from_version', models.CharField(blank=True, help_text='Live when planned', max_length=500)),
                        ('to_version', models.CharField(blank=True, max_length=200)),
                        ('to_artifact', models.CharField(blank=True, max_length=500)),
                        ('to_previous', models.BooleanField(default=False, help_text='Back to the previous revision')),
                        ('params', models.JSONField(blank=True, default=dict, help_text='e.g. {"operation": "undo"}')),
                        ('timeout_seconds', models.PositiveIntegerField(default=600)),
                        ('state', models.CharField(choices=[('pending', 'Pending'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('skipped', 'Skipped'), ('cancelled', 'Cancelled')], default='pending', max_length=20)),
                        ('attempts', models.PositiveSmallIntegerField(default=0)),
                        ('enqueued_at', models.DateTimeField(blank=True, null=True)),
                        ('started_at', models.DateTimeField(blank=True, null=True)),
                        ('deadline', models.DateTimeField(blank=True, null=True)),
                        ('apply_started_at', models.DateTimeField(blank=True, null=True)),
                        ('applied_at', models.DateTimeField(blank=True, null=True)),
                        ('finished_at', models.DateTimeField(blank=True, null=True)),
                        ('heartbeat_at', models.DateTimeField(blank=True, null=True)),
                        ('claim_token', models.CharField(blank=True, max_length=32)),
                        ('worker', models.CharField(blank=True, max_length=200)),
                        ('plan_summary', models.TextField(blank=True)),
                        ('planned_changes', models.JSONField(blank=True, default=list)),
                        ('apply_detail', models.TextField(blank=True)),
                        ('apply_facts', models.JSONField(blank=True, default=dict)),
                        ('reached_version', models.CharField(blank=True, max_length=500)),
                        ('check_results', models.JSONField(blank=True, default=list)),
                        ('error', models.TextField(blank=True)),
                        ('error_retryable', models.BooleanField(default=False)),
                        ('skip_reason', models.TextField(blank=True, help_text='Why the step was skipped or cancelled')),
                        ('blocked_by', models.ForeignKey(blank=True, help_text='The failed step that stopped this one', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='rollbacks.step')),
                        ('release', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='incidents.release')),
                        ('run', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='steps', to='rollbacks.run')),
                        ('service', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='incidents.service')),
                    ],
                    options={
                        'db_table': 'incidents_step',
                        'ordering': ['run', 'position'],
                    },
                ),
                migrations.CreateModel(
                    name='StepLog',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('seq', models.PositiveIntegerField()),
                        ('at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('line', models.TextField()),
                        ('step', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='log_lines', to='rollbacks.step')),
                    ],
                    options={
                        'db_table': 'incidents_steplog',
                        'ordering': ['step', 'seq'],
                    },
                ),
                migrations.CreateModel(
                    name='Approval',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('role', models.CharField(max_length=100)),
                        ('decision', models.CharField(choices=[('approve', 'Approve'), ('reject', 'Reject')], max_length=10)),
                        ('comment', models.TextField(blank=True)),
                        ('decided_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('approver', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('request', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='approvals', to='rollbacks.approvalrequest')),
                    ],
                    options={
                        'db_table': 'incidents_approval',
                        'ordering': ['decided_at', 'id'],
                        'constraints': [models.UniqueConstraint(fields=('request', 'approver'), name='one_decision_per_approver')],
                    },
                ),
                migrations.AddConstraint(
                    model_name='run',
                    constraint=models.CheckConstraint(condition=models.Q(('confirmed_at__isnull', True), models.Q(('confirmed_by__isnull', False), models.Q(('confirmation_text', ''), _negated=True)), _connector='OR'), name='run_confirmation_complete'),
                ),
                migrations.AddConstraint(
                    model_name='run',
                    constraint=models.CheckConstraint(condition=models.Q(models.Q(('state__in', ['running', 'paused', 'succeeded', 'failed']), _negated=True), models.Q(('confirmed_at__isnull', False), ('started_at__isnull', False)), _connector='OR'), name='run_started_only_when_confirmed'),
                ),
                migrations.AddConstraint(
                    model_name='run',
                    constraint=models.CheckConstraint(condition=models.Q(models.Q(('state__in', ['succeeded', 'failed', 'cancelled']), _negated=True), ('finished_at__isnull', False), _connector='OR'), name='run_finished_has_instant'),
                ),
                migrations.AddIndex(
                    model_name='step',
                    index=models.Index(fields=['state', 'heartbeat_at'], name='step_state_heartbeat'),
                ),
                migrations.AddConstraint(
                    model_name='step',
                    constraint=models.UniqueConstraint(fields=('run', 'position'), name='step_unique_position'),
                ),
                migrations.AddConstraint(
                    model_name='step',
                    constraint=models.CheckConstraint(condition=models.Q(('timeout_seconds__gte', 1), ('timeout_seconds__lte', 3600)), name='step_timeout_range'),
                ),
                migrations.AddConstraint(
                    model_name='step',
                    constraint=models.CheckConstraint(condition=models.Q(('applied_at__isnull', True), ('apply_started_at__isnull', False), _connector='OR'), name='step_applied_after_apply_started'),
                ),
                migrations.AddConstraint(
                    model_name='step',
                    constraint=models.CheckConstraint(condition=models.Q(models.Q(('state__in', ['succeeded', 'failed', 'skipped', 'cancelled']), _negated=True), ('finished_at__isnull', False), _connector='OR'), name='step_finished_has_instant'),
                ),
                migrations.AddConstraint(
                    model_name='step',
                    constraint=models.CheckConstraint(condition=models.Q(models.Q(('state', 'running'), _negated=True), models.Q(('deadline__isnull', False), ('started_at__isnull', False), models.Q(('claim_token', ''), _negated=True)), _connector='OR'), name='step_running_is_claimed'),
                ),
                migrations.AddConstraint(
                    model_name='steplog',
                    constraint=models.UniqueConstraint(fields=('step', 'seq'), name='steplog_unique_seq'),
                ),
    
            ],
        ),
        migrations.RunPython(relabel_content_types, relabel_content_types_back),
    ]
