"""The rollback domain: approval policies and requests, runs, steps and their log lines, and
the verification rounds that follow a run's steps, with their checks.

Tables keep the names they had when these models lived in `incidents` (`incidents_run`, …):
the move between apps changed Django's state only (migration rollbacks 0001), so an existing
database carries its rows, sequences and triggers forward untouched. The verification tables
came later (rollbacks 0002) and have Django's own names (`rollbacks_verificationround`, …).
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from incidents.models import BackendKind, Incident, Release, Service, Severity


class Scenario(models.TextChoices):
    ANY = "any", "Any rollback"
    DATA_CORRUPTION = "data_corruption", "Data corruption"
    SECURITY_BREACH = "security_breach", "Security breach"


class ApprovalPolicy(models.Model):
    """Which approver roles a rollback needs, by severity and scenario: `required_roles`
    names Django groups (e.g. "CTO"), each covered by an approval from someone in that group
    who is not the requester."""

    name = models.CharField(max_length=100, unique=True)
    severities = models.JSONField(
        default=list, blank=True, help_text="Severities this applies to; empty means all"
    )
    scenario = models.CharField(max_length=30, choices=Scenario.choices, default=Scenario.ANY)
    required_roles = models.JSONField(default=list)
    restores_data = models.BooleanField(
        default=False,
        help_text="Only for plans with a step that restores data (a database restore), "
        "whatever scenario the commander picked",
    )
    active = models.BooleanField(default=True)

    class Meta:
        db_table = "incidents_approvalpolicy"
        ordering = ["name"]
        verbose_name_plural = "approval policies"

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if not isinstance(self.severities, list) or not set(self.severities) <= set(
            Severity.values
        ):
            raise ValidationError({"severities": f"Choose from {', '.join(Severity.values)}."})
        if not isinstance(self.required_roles, list) or not all(
            isinstance(role, str) and role for role in self.required_roles
        ):
            raise ValidationError({"required_roles": "A list of role (group) names."})
        if not self.required_roles:
            raise ValidationError({"required_roles": "Name at least one role."})

    def applies_to(self, *, severity: str, scenario: str, restores_data: bool = False) -> bool:
        """Whether the policy covers a plan: its severity, and its scenario — a plan that
        restores data counts as a data-corruption plan whatever scenario was picked."""
        severity_matches = not self.severities or severity in self.severities
        scenarios = {Scenario.ANY, scenario} | (
            {Scenario.DATA_CORRUPTION} if restores_data else set()
        )
        scenario_matches = self.scenario in scenarios
        restore_matches = restores_data or not self.restores_data
        return self.active and severity_matches and scenario_matches and restore_matches


class ApprovalRequestStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    WITHDRAWN = "withdrawn", "Withdrawn"


class ApprovalRequest(models.Model):
    """A request for the approvals a rollback needs, with the roles fixed at request time."""

    incident = models.ForeignKey(
        Incident, on_delete=models.PROTECT, related_name="approval_requests"
    )
    scenario = models.CharField(max_length=30, choices=Scenario.choices, default=Scenario.ANY)
    reason = models.TextField()
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    requested_at = models.DateTimeField(default=timezone.now)
    required_roles = models.JSONField(default=list)
    # Why each role is needed: [{"role", "policy", "why"}], as shown before the request.
    reasons = models.JSONField(default=list, blank=True)
    status = models.CharField(
        max_length=20, choices=ApprovalRequestStatus.choices, default=ApprovalRequestStatus.PENDING
    )
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "incidents_approvalrequest"
        ordering = ["-requested_at", "-id"]

    def __str__(self) -> str:
        return f"Approval request #{self.pk} for incident #{self.incident_id}"

    def covered_roles(self) -> set[str]:
        return {
            approval.role
            for approval in self.approvals.all()
            if approval.decision == ApprovalDecision.APPROVE
        }

    def missing_roles(self) -> list[str]:
        covered = self.covered_roles()
        return [role for role in self.required_roles if role not in covered]


class ApprovalDecision(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"


class Approval(models.Model):
    """One approver's decision, given in one role."""

    request = models.ForeignKey(ApprovalRequest, on_delete=models.PROTECT, related_name="approvals")
    approver = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    role = models.CharField(max_length=100)
    decision = models.CharField(max_length=10, choices=ApprovalDecision.choices)
    comment = models.TextField(blank=True)
    decided_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "incidents_approval"
        ordering = ["decided_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["request", "approver"], name="one_decision_per_approver"
            )
        ]

    def __str__(self) -> str:
        return f"{self.approver} {self.decision} as {self.role}"


# -- Rollback runs and steps ---------------------------------------------------------------
#
# A run is a rollback plan and its execution in one record: its steps are the plan, and the
# run's state says how far it got. Steps with the same `group` run concurrently; groups run
# in ascending order, and a failed step stops every later group. The engine
# (rollbacks.engine) executes steps; rollbacks.services holds the commander's operations.


class RunState(models.TextChoices):
    DRAFT = "draft", "Draft"
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
    APPROVED = "approved", "Approved"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


RUN_FINISHED_STATES = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED})

# Which run state may follow which. A failed run reopens (failed → running) only when the
# commander retries or skips the step that failed it.
RUN_TRANSITIONS: dict[str, frozenset[str]] = {
    RunState.DRAFT: frozenset({"awaiting_approval", "approved", "running", "cancelled"}),
    RunState.AWAITING_APPROVAL: frozenset({"approved", "draft", "running", "cancelled"}),
    RunState.APPROVED: frozenset({"running", "draft", "cancelled"}),
    RunState.RUNNING: frozenset({"paused", "succeeded", "failed", "cancelled"}),
    RunState.PAUSED: frozenset({"running", "cancelled"}),
    RunState.SUCCEEDED: frozenset(),
    RunState.FAILED: frozenset({"running"}),
    RunState.CANCELLED: frozenset(),
}

# The word typed to start a run touching several services (one service: its name).
CONFIRMATION_WORD = "ROLLBACK"


class Run(models.Model):
    """A rollback plan for an incident and its execution: ordered steps in parallel groups,
    the approval it needs, the typed confirmation that started it, and its timings."""

    incident = models.ForeignKey(Incident, on_delete=models.PROTECT, related_name="runs")
    state = models.CharField(max_length=20, choices=RunState.choices, default=RunState.DRAFT)
    reason = models.TextField(blank=True, help_text="Why this rollback is needed")
    scenario = models.CharField(max_length=30, choices=Scenario.choices, default=Scenario.ANY)
    dry_run = models.BooleanField(
        default=False, help_text="Plan every step and time it, but change nothing"
    )
    drill = models.BooleanField(
        default=False, help_text="A rehearsal: timed, but not counted in the incident's metrics"
    )
    approval_request = models.OneToOneField(
        ApprovalRequest, null=True, blank=True, on_delete=models.PROTECT, related_name="run"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    planned_at = models.DateTimeField(null=True, blank=True, help_text="Last dry run")

    confirmation_text = models.CharField(max_length=200, blank=True)
    confirmed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    confirmed_at = models.DateTimeField(null=True, blank=True)

    started_at = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    failure_reason = models.TextField(blank=True)

    class Meta:
        db_table = "incidents_run"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(confirmed_at__isnull=True)
                | (models.Q(confirmed_by__isnull=False) & ~models.Q(confirmation_text="")),
                name="run_confirmation_complete",
            ),
            models.CheckConstraint(
                condition=~models.Q(state__in=["running", "paused", "succeeded", "failed"])
                | models.Q(started_at__isnull=False, confirmed_at__isnull=False),
                name="run_started_only_when_confirmed",
            ),
            models.CheckConstraint(
                condition=~models.Q(state__in=["succeeded", "failed", "cancelled"])
                | models.Q(finished_at__isnull=False),
                name="run_finished_has_instant",
            ),
        ]

    def __str__(self) -> str:
        return f"Run #{self.pk} for incident #{self.incident_id} ({self.state})"

    @property
    def is_finished(self) -> bool:
        return self.state in RUN_FINISHED_STATES

    def can_become(self, state: str) -> bool:
        return state in RUN_TRANSITIONS[self.state]

    @property
    def duration(self) -> timedelta | None:
        if self.started_at is None:
            return None
        end = self.finished_at or timezone.now()
        return end - self.started_at  # type: ignore[no-any-return]

    def expected_confirmation(self, steps: list[Step] | None = None) -> str:
        """What the commander must type to start: the service's name when the run touches
        one service, else CONFIRMATION_WORD. `steps`: the run's, loaded with their services."""
        names = {step.service.name for step in steps or self.steps.select_related("service")}
        return names.pop() if len(names) == 1 else CONFIRMATION_WORD


class StepState(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"
    CANCELLED = "cancelled", "Cancelled"


STEP_FINISHED_STATES = frozenset(
    {StepState.SUCCEEDED, StepState.FAILED, StepState.SKIPPED, StepState.CANCELLED}
)


class Step(models.Model):
    """One rollback action: a service taken from one version to another by its backend.

    `applied_at` is written once the backend's apply has returned and before the step is
    marked done: a task delivered again after a crash sees it and goes straight to waiting
    instead of applying twice. `apply_started_at` without `applied_at` means an apply may
    have happened; backends that cannot repeat an apply safely are told so.
    """

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveSmallIntegerField(help_text="Order in the plan, from 1")
    group = models.PositiveSmallIntegerField(
        default=1, help_text="Steps of one group run together; groups run in ascending order"
    )
    group_label = models.CharField(
        max_length=200, blank=True, help_text="What the group does, as a playbook names it"
    )
    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="+")
    backend = models.CharField(max_length=30, choices=BackendKind.choices)
    release = models.ForeignKey(
        Release, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    from_version = models.CharField(max_length=500, blank=True, help_text="Live when planned")
    to_version = models.CharField(max_length=200, blank=True)
    to_artifact = models.CharField(max_length=500, blank=True)
    to_previous = models.BooleanField(default=False, help_text="Back to the previous revision")
    params = models.JSONField(default=dict, blank=True, help_text='e.g. {"operation": "undo"}')
    timeout_seconds = models.PositiveIntegerField(default=600)

    state = models.CharField(max_length=20, choices=StepState.choices, default=StepState.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    deadline = models.DateTimeField(null=True, blank=True)
    apply_started_at = models.DateTimeField(null=True, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.CharField(max_length=32, blank=True)
    worker = models.CharField(max_length=200, blank=True)

    plan_summary = models.TextField(blank=True)
    planned_changes = models.JSONField(default=list, blank=True)
    apply_detail = models.TextField(blank=True)
    apply_facts = models.JSONField(default=dict, blank=True)
    reached_version = models.CharField(max_length=500, blank=True)
    check_results = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    error_retryable = models.BooleanField(default=False)
    skip_reason = models.TextField(blank=True, help_text="Why the step was skipped or cancelled")
    blocked_by = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The failed step that stopped this one",
    )

    class Meta:
        db_table = "incidents_step"
        ordering = ["run", "position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "position"], name="step_unique_position"),
            models.CheckConstraint(
                condition=models.Q(timeout_seconds__gte=1, timeout_seconds__lte=3600),
                name="step_timeout_range",
            ),
            models.CheckConstraint(
                condition=models.Q(applied_at__isnull=True)
                | models.Q(apply_started_at__isnull=False),
                name="step_applied_after_apply_started",
            ),
            models.CheckConstraint(
                condition=~models.Q(state__in=["succeeded", "failed", "skipped", "cancelled"])
                | models.Q(finished_at__isnull=False),
                name="step_finished_has_instant",
            ),
            models.CheckConstraint(
                condition=~models.Q(state="running")
                | (
                    models.Q(started_at__isnull=False, deadline__isnull=False)
                    & ~models.Q(claim_token="")
                ),
                name="step_running_is_claimed",
            ),
        ]
        indexes = [models.Index(fields=["state", "heartbeat_at"], name="step_state_heartbeat")]

    def __str__(self) -> str:
        return f"Step {self.position} of run #{self.run_id}: {self.service.name} ({self.state})"

    @property
    def is_finished(self) -> bool:
        return self.state in STEP_FINISHED_STATES

    @property
    def target_label(self) -> str:
        """The target as people say it: a release, "previous revision", or the options
        ("scale, replicas 0"; a saved backup by the release that saved it)."""
        options = self.options_label
        if self.to_version:
            return f"{self.to_version} ({options})" if options else self.to_version
        if self.to_previous:
            return f"previous revision ({options})" if options else "previous revision"
        return options or "as configured"

    @property
    def options_label(self) -> str:
        """The step's options in a few words, without saved content or engine markers."""
        words = []
        # PostgreSQL keeps JSON keys in its own order: what the step does first.
        ordered = sorted(
            self.params.items(), key=lambda item: (item[0] not in LEAD_PARAMS, item[0])
        )
        for name, value in ordered:
            if name in HIDDEN_PARAMS or value is None or value == "":
                continue
            if name == "arguments" and isinstance(value, dict):  # a command's, by name
                words += [
                    f"{key.replace('_', ' ')} {argument}"
                    for key, argument in sorted(value.items())
                    if isinstance(argument, str | int | float)
                ]
                continue
            if isinstance(value, dict | list):
                saved = self.params.get("backup_release")
                words.append(f"saved {name.replace('_', ' ')}" + (f" of {saved}" if saved else ""))
            elif (name, value) not in DEFAULT_PARAMS:
                words.append(f"{name.replace('_', ' ')} {value}")
        return ", ".join(words)[:300]

    @property
    def duration(self) -> timedelta | None:
        if self.started_at is None:
            return None
        end = self.finished_at or timezone.now()
        return end - self.started_at  # type: ignore[no-any-return]


# Parameters the engine or drafting set, and option values that go without saying.
HIDDEN_PARAMS = frozenset(
    {"already_ran", "backup_release", "restarted_at", "acknowledge_loss", "rollout_since"}
)
DEFAULT_PARAMS = frozenset({("operation", "undo"), ("mode", "backup")})
LEAD_PARAMS = frozenset({"operation", "mode", "method", "state"})


class StepLog(models.Model):
    """One progress line of a step, in order; a step keeps a bounded number of lines."""

    step = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="log_lines")
    seq = models.PositiveIntegerField()
    at = models.DateTimeField(default=timezone.now)
    line = models.TextField()

    class Meta:
        db_table = "incidents_steplog"
        ordering = ["step", "seq"]
        constraints = [models.UniqueConstraint(fields=["step", "seq"], name="steplog_unique_seq")]

    def __str__(self) -> str:
        return f"{self.seq}: {self.line[:60]}"


# -- verification after a rollback (rollbacks.verification, docs/verification.md) ------------


class VerificationState(models.TextChoices):
    """Where a verification round is: running until it concludes, then how it ended."""

    RUNNING = "running", "Running"
    PASSED = "passed", "Passed"
    FAILED = "failed", "Failed"
    INCONCLUSIVE = "inconclusive", "Inconclusive"
    # Concluded while the run was paused or cancelled: results kept, the run left alone.
    RECORDED = "recorded", "Recorded"


class VerificationOutcome(models.TextChoices):
    """What a concluded round found (a recorded round included), or that it never ran."""

    PASSED = "passed", "Passed"
    FAILED = "failed", "Failed"
    INCONCLUSIVE = "inconclusive", "Inconclusive"
    NOT_RUN = "not_run", "Not run"


class VerificationTrigger(models.TextChoices):
    """What started a round: the run's last step finishing, or the commander resuming a
    run that a round had left paused (or that was paused while one ran)."""

    STEPS_DONE = "steps_done", "Every step finished"
    RESUMED = "resumed", "The run was resumed"


class VerificationRound(models.Model):
    """One round of a run's verification: the checks of the services its steps rolled
    back, run once every step is done, and how they ended the run.

    `key` is the id the round's timeline entries (`payload.round`) and its worker's task
    carry. Rounds of a run are numbered from 1; a new one starts only once the latest has
    concluded, so at most one is running. The timeline records what happened; these rows
    are what the engine, the room and the rollback command read.
    """

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="verification_rounds")
    key = models.CharField(max_length=32, unique=True)
    number = models.PositiveSmallIntegerField()
    trigger = models.CharField(max_length=20, choices=VerificationTrigger.choices)
    state = models.CharField(
        max_length=20, choices=VerificationState.choices, default=VerificationState.RUNNING
    )
    outcome = models.CharField(max_length=20, choices=VerificationOutcome.choices, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    summary = models.TextField(blank=True, help_text="What the concluding timeline entry said")

    class Meta:
        ordering = ["run", "number"]
        constraints = [
            models.UniqueConstraint(fields=["run", "number"], name="verification_round_number"),
            models.UniqueConstraint(
                fields=["run"],
                condition=models.Q(state="running"),
                name="verification_one_running_round",
            ),
            models.CheckConstraint(
                condition=models.Q(number__gte=1), name="verification_round_number_from_1"
            ),
            models.CheckConstraint(
                condition=models.Q(number=1, trigger="steps_done")
                | models.Q(number__gt=1, trigger="resumed"),
                name="verification_round_trigger",
            ),
            models.CheckConstraint(
                condition=models.Q(state="running", finished_at__isnull=True, outcome="")
                | (
                    ~models.Q(state="running")
                    & models.Q(finished_at__isnull=False)
                    & ~models.Q(outcome="")
                ),
                name="verification_round_concluded_has_outcome",
            ),
            # A round that decided how its run ended found what its state says.
            models.CheckConstraint(
                condition=~models.Q(state__in=["passed", "failed", "inconclusive"])
                | models.Q(outcome=models.F("state")),
                name="verification_round_decided_by_outcome",
            ),
        ]

    def __str__(self) -> str:
        return f"Verification round {self.number} of run #{self.run_id} ({self.state})"

    @property
    def is_running(self) -> bool:
        return self.state == VerificationState.RUNNING


class VerificationCheckStatus(models.TextChoices):
    """A check's result (executors.base.CheckStatus), or pending until it is known."""

    PENDING = "pending", "Pending"
    PASSED = "passed", "Passed"
    FAILED = "failed", "Failed"
    INCONCLUSIVE = "inconclusive", "Inconclusive"


class VerificationCheck(models.Model):
    """One check of a round, listed when the round starts and given its result once.

    `index` is the check's place in the round (`payload.index` on the timeline); `service`
    and `name` are as they were when the round ran, since a service's checks may be
    edited later. `observed` and `threshold` are what was measured and what it was held
    against, as the check reported them (a number or a sentence).
    """

    round = models.ForeignKey(VerificationRound, on_delete=models.CASCADE, related_name="checks")
    index = models.PositiveSmallIntegerField()
    step = models.ForeignKey(
        Step, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    service = models.CharField(max_length=80)
    name = models.TextField()
    kind = models.CharField(max_length=30)
    status = models.CharField(
        max_length=20,
        choices=VerificationCheckStatus.choices,
        default=VerificationCheckStatus.PENDING,
    )
    observed = models.JSONField(null=True, blank=True)
    threshold = models.JSONField(null=True, blank=True)
    message = models.TextField(blank=True)
    ticks = models.CharField(
        max_length=50, blank=True, help_text="The checklist items' check_key it ticks"
    )
    recorded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["round", "index"]
        constraints = [
            models.UniqueConstraint(fields=["round", "index"], name="verification_check_index"),
            models.CheckConstraint(
                condition=models.Q(status="pending", recorded_at__isnull=True)
                | (~models.Q(status="pending") & models.Q(recorded_at__isnull=False)),
                name="verification_check_recorded_has_instant",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} on {self.service}: {self.status}"


# The watch's model (rollbacks.watch) lives beside; imported so Django finds it as ours.
from rollbacks.watch_models import RunWatch, WatchState  # noqa: E402, F401
