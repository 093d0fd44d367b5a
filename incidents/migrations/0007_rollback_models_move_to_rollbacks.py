"""The approval, run, step and step-log models now belong to the rollbacks app.

State only: the tables, their rows, sequences and triggers stay where they are, and
rollbacks 0001 takes the same tables over (`db_table`). This migration runs after the
rollbacks app and every app pointing at these models has moved its references over.
"""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("incidents", "0006_timeline_commit_order"),
        ("rollbacks", "0001_initial"),
        ("statuspage", "0003_notice_run_in_rollbacks"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.RemoveConstraint(
                    model_name='approval',
                    name='one_decision_per_approver',
                ),
                migrations.DeleteModel(
                    name='ApprovalPolicy',
                ),
                migrations.RemoveField(
                    model_name='approvalrequest',
                    name='incident',
                ),
                migrations.RemoveField(
                    model_name='approvalrequest',
                    name='requested_by',
                ),
                migrations.RemoveConstraint(
                    model_name='run',
                    name='run_confirmation_complete',
                ),
                migrations.RemoveConstraint(
                    model_name='run',
                    name='run_started_only_when_confirmed',
                ),
                migrations.RemoveConstraint(
                    model_name='run',
                    name='run_finished_has_instant',
                ),
                migrations.RemoveIndex(
                    model_name='step',
                    name='step_state_heartbeat',
                ),
                migrations.RemoveConstraint(
                    model_name='step',
                    name='step_unique_position',
                ),
                migrations.RemoveConstraint(
                    model_name='step',
                    name='step_timeout_range',
                ),
                migrations.RemoveConstraint(
                    model_name='step',
                    name='step_applied_after_apply_started',
                ),
                migrations.RemoveConstraint(
                    model_name='step',
                    name='step_finished_has_instant',
                ),
                migrations.RemoveConstraint(
                    model_name='step',
                    name='step_running_is_claimed',
                ),
                migrations.RemoveConstraint(
                    model_name='steplog',
                    name='steplog_unique_seq',
                ),
                migrations.RemoveField(
                    model_name='run',
                    name='approval_request',
                ),
                migrations.RemoveField(
                    model_name='run',
                    name='confirmed_by',
                ),
                migrations.RemoveField(
                    model_name='run',
                    name='created_by',
                ),
                migrations.RemoveField(
                    model_name='run',
                    name='incident',
                ),
                migrations.RemoveField(
                    model_name='step',
                    name='blocked_by',
                ),
                migrations.RemoveField(
                    model_name='step',
                    name='release',
                ),
                migrations.RemoveField(
                    model_name='step',
                    name='run',
                ),
                migrations.RemoveField(
                    model_name='step',
                    name='service',
                ),
                migrations.RemoveField(
                    model_name='steplog',
                    name='step',
                ),
                migrations.DeleteModel(
                    name='Approval',
                ),
                migrations.DeleteModel(
                    name='ApprovalRequest',
                ),
                migrations.DeleteModel(
                    name='Run',
                ),
                migrations.DeleteModel(
                    name='Step',
                ),
                migrations.DeleteModel(
                    name='StepLog',
                ),
            ],
        ),
    ]
