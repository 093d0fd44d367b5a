"""`python manage.py rollback`: the emergency rollback from a terminal.

It goes through the same services and record as the console: the run is drafted, previewed,
approved as the incident's policy requires (the command waits for approvers deciding in the
console), confirmed by typing, and written to the incident's timeline step by step.

By default the engine runs in this process (rollbacks.engine.inline.run_inline): a rollback
from the terminal must work when the Celery workers or their broker are what is broken.
`--via-workers` hands the run to the workers instead and follows its timeline.

Exit status: 0 when the run succeeded, 1 when it failed, was cancelled or was refused.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

import rollbacks.services
from incidents.errors import DomainError
from incidents.management.lookups import add_actor_argument
from incidents.models import BackendKind, Incident, Release, Service, TimelineEntry
from rollbacks import verification
from rollbacks.approvals import reasons_text, run_policy
from rollbacks.engine.inline import run_inline
from rollbacks.management.option_args import options_by_service, options_text
from rollbacks.models import Run, RunState
from rollbacks.plan_sources import plan_source
from rollbacks.services import StepSpec


class Command(BaseCommand):
    help = (
        "Roll back a service (or every Kubernetes Deployment service of a namespace) to a "
        "release or to its previous revision, recorded on an incident."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("service", nargs="?", help="The service to roll back, by name")
        parser.add_argument(
            "--namespace",
            help="Roll back every Kubernetes Deployment service in this namespace, in parallel",
        )
        target = parser.add_mutually_exclusive_group()
        target.add_argument("--to", metavar="VERSION", help="The release to roll back to")
        target.add_argument(
            "--previous", action="store_true", help="Roll back to the previous revision"
        )
        parser.add_argument(
            "--set",
            dest="set_options",
            action="append",
            default=[],
            metavar="[SERVICE:]KEY=VALUE",
            help="A step option (e.g. operation=scale replicas=0, to_revision=3); repeat it. "
            "Without --to or --previous the options alone say what to do",
        )
        parser.add_argument(
            "--playbook",
            metavar="NAME",
            help="Draft the plan from this playbook (its current version) instead of naming "
            "services",
        )
        parser.add_argument(
            "--param",
            dest="params",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="A playbook parameter (services separated by commas); repeat it",
        )
        parser.add_argument(
            "--supersede",
            action="store_true",
            help="Cancel other runs in flight on these services (they are named) and go on",
        )
        parser.add_argument(
            "--show-options",
            action="store_true",
            help="Print the options each service takes, with what its infrastructure offers",
        )
        parser.add_argument("--incident", type=int, required=True, help="The incident's id")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Show and time what would change, change nothing",
        )
        parser.add_argument(
            "--yes", action="store_true", help="Do not ask for the typed confirmation"
        )
        add_actor_argument(parser)
        parser.add_argument("--reason", default="", help="Why (goes on the timeline)")
        parser.add_argument(
            "--step-timeout",
            type=int,
            default=rollbacks.services.DEFAULT_STEP_TIMEOUT,
            metavar="SECONDS",
        )
        parser.add_argument(
            "--approval-timeout",
            type=float,
            default=900.0,
            metavar="SECONDS",
            help="How long to wait for approvers (default 15 minutes)",
        )
        parser.add_argument(
            "--via-workers",
            action="store_true",
            help="Let the Celery workers execute the run and follow it",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["playbook"]:
            if options["service"] or options["namespace"]:
                raise CommandError("A playbook names its services: drop SERVICE / --namespace.")
        elif bool(options["service"]) == bool(options["namespace"]):
            raise CommandError("Name a SERVICE or give --namespace NS (one of the two).")
        actor = self._actor(options["username"])
        incident = self._incident(options["incident"])
        reason = options["reason"] or "Emergency rollback from the terminal"
        if options["playbook"]:
            parameters = dict(value.partition("=")[::2] for value in options["params"])
            try:
                run = plan_source("playbook")(
                    incident=incident,
                    name=options["playbook"],
                    parameters=parameters,
                    actor=actor,
                    reason=options["reason"],
                    dry_run=options["dry_run"],
                )
            except DomainError as error:
                raise CommandError(str(error)) from error
            self._carry_out(run, actor, reason, options)
            return
        services = self._services(incident, options["service"], options["namespace"])
        if options["show_options"]:
            for service in services:
                self.stdout.write("\n".join(options_text(service)))
            return
        if not (options["to"] or options["previous"] or options["set_options"]):
            raise CommandError("Give --to VERSION, --previous, or the step's options with --set.")
        step_options = options_by_service(options["set_options"], services)
        specs = [
            StepSpec(
                service=service,
                release=self._release(service, options["to"]) if options["to"] else None,
                previous=options["previous"],
                group=1,
                params=step_options[service.pk],
                timeout_seconds=options["step_timeout"],
            )
            for service in services
        ]
        try:
            run = rollbacks.services.run_create(
                incident=incident,
                steps=specs,
                actor=actor,
                reason=reason,
                dry_run=options["dry_run"],
            )
        except DomainError as error:
            raise CommandError(str(error)) from error
        self._carry_out(run, actor, reason, options)

    def _carry_out(self, run: Run, actor: Any, reason: str, options: dict[str, Any]) -> None:
        """Preview, approval, typed confirmation, start, and following the run."""
        try:
            self._show_plan(run, actor)
            if not options["dry_run"]:
                run = self._approve(
                    run, actor, reason, options["approval_timeout"], options["supersede"]
                )
            word = run.expected_confirmation()
            if not (options["yes"] or options["dry_run"]):
                typed = self._ask(f"Type {word} to roll back (anything else aborts): ")
                if typed.strip() != word:
                    rollbacks.services.run_cancel(
                        run=run, actor=actor, reason="confirmation not typed"
                    )
                    raise CommandError("The confirmation did not match; nothing was changed.")
            run = rollbacks.services.run_confirm_and_start(
                run=run,
                actor=actor,
                confirmation=word,
                enqueue=options["via_workers"],
                supersede=options["supersede"],
            )
        except DomainError as error:
            raise CommandError(str(error)) from error
        run = self._execute(run, actor, via_workers=options["via_workers"])
        self._report(run)

    # -- resolving the arguments ------------------------------------------------------------

    def _actor(self, username: str) -> Any:
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(
                f"No active console user named {username!r}; pass --as USERNAME "
                "(an Incident Commander)."
            )
        return user

    def _incident(self, incident_id: int) -> Incident:
        incident = Incident.objects.filter(pk=incident_id).first()
        if incident is None:
            raise CommandError(f"There is no incident #{incident_id}.")
        if not incident.is_open:
            raise CommandError(f"Incident #{incident_id} is resolved; reopen it first.")
        return incident

    def _services(
        self, incident: Incident, name: str | None, namespace: str | None
    ) -> list[Service]:
        in_environment = Service.objects.filter(environment=incident.environment)
        if name:
            service = in_environment.filter(name=name).first()
            if service is None:
                known = ", ".join(in_environment.values_list("name", flat=True)) or "none"
                raise CommandError(
                    f"No {incident.environment} service named {name!r} (known: {known})."
                )
            return [service]
        kubernetes = [
            service
            for service in in_environment.filter(backend=BackendKind.KUBERNETES).order_by("name")
            if service.target_config.get("namespace") == namespace
        ]
        single = [s for s in kubernetes if not s.target_config.get("all_in_namespace")]
        chosen = single or kubernetes  # a namespace-wide service only when nothing finer
        if not chosen:
            raise CommandError(
                f"No {incident.environment} Kubernetes service in namespace {namespace!r}."
            )
        return chosen

    def _release(self, service: Service, version: str) -> Release:
        release = Release.objects.filter(service=service, version=version).first()
        if release is None:
            known = ", ".join(
                service.releases.order_by("-shipped_at").values_list("version", flat=True)[:10]
            )
            raise CommandError(
                f"{service.name} has no release {version!r} (recent: {known or 'none'})."
            )
        return release

    # -- the conversation -------------------------------------------------------------------

    def _ask(self, prompt: str) -> str:
        self.stdout.flush()
        try:
            return input(prompt)
        except EOFError:
            return ""

    def _show_plan(self, run: Run, actor: Any) -> None:
        kind = "Dry run" if run.dry_run else "Rollback"
        self.stdout.write(f"{kind} plan #{run.pk} for incident #{run.incident_id}:")
        for preview in rollbacks.services.run_dry_run(run=run, actor=actor):
            step = preview.step
            self.stdout.write(
                f"  {step.position}. {step.service.name}: {step.from_version or '?'} → "
                f"{step.target_label}"
            )
            if preview.error:
                self.stdout.write(self.style.ERROR(f"     cannot plan: {preview.error}"))
            elif preview.is_noop:
                self.stdout.write("     nothing to change")
            for change in preview.changes:
                self.stdout.write(
                    f"     {change.resource} {change.attribute}: {change.before} → {change.after}"
                )

    def _approve(self, run: Run, actor: Any, reason: str, timeout: float, supersede: bool) -> Run:
        policy = run_policy(run)
        self.stdout.write(
            f"Approval needed: {reasons_text(policy)}"
            if policy
            else "No approval needed: no policy applies to this plan."
        )
        run = rollbacks.services.run_request_approval(
            run=run, actor=actor, reason=reason, supersede=supersede
        )
        if run.state == RunState.APPROVED:
            return run
        request = run.approval_request
        assert request is not None
        self.stdout.write(
            f"Waiting for approval from {', '.join(request.missing_roles())} "
            f"(approval request #{request.pk}; decide in the console)…"
        )
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                run.refresh_from_db()
                if run.state == RunState.APPROVED:
                    self.stdout.write("Approved.")
                    return run
                if run.state != RunState.AWAITING_APPROVAL:
                    raise CommandError("The approval request was rejected or withdrawn.")
                time.sleep(1.0)
        except KeyboardInterrupt:
            rollbacks.services.run_cancel(run=run, actor=actor, reason="interrupted while waiting")
            raise CommandError("Interrupted; the run was cancelled.") from None
        rollbacks.services.run_cancel(
            run=run, actor=actor, reason="approval did not arrive in time"
        )
        raise CommandError(f"No approval within {timeout:g} s; the run was cancelled.")

    def _execute(self, run: Run, actor: Any, *, via_workers: bool) -> Run:
        """Run (or let the workers run) the run, printing its timeline as it grows.
        Ctrl-C pauses the run: steps under way finish, nothing new starts."""
        try:
            return self._follow(run, via_workers=via_workers)
        except KeyboardInterrupt:
            current = Run.objects.get(pk=run.pk)
            if current.state == RunState.RUNNING:
                rollbacks.services.run_pause(
                    run=current, actor=actor, reason="interrupted in the terminal"
                )
            raise CommandError(
                f"Interrupted: run #{run.pk} is paused; steps under way finish. Resume or "
                "cancel it in the console."
            ) from None

    def _follow(self, run: Run, *, via_workers: bool) -> Run:
        failure: list[BaseException] = []
        worker: threading.Thread | None = None
        if not via_workers:

            def execute() -> None:
                try:
                    run_inline(run.pk)
                except BaseException as error:  # reported by the main thread
                    failure.append(error)
                finally:
                    connections.close_all()

            worker = threading.Thread(target=execute, name="rollback-inline")
            worker.start()
        last_entry = TimelineEntry.objects.filter(incident=run.incident_id).order_by("-id").first()
        seen = last_entry.pk if last_entry else 0
        warned_at = time.monotonic() + 30
        while True:
            for entry in TimelineEntry.objects.filter(incident=run.incident_id, pk__gt=seen):
                seen = entry.pk
                self.stdout.write(f"{entry.created_at:%H:%M:%S}  {entry.who}: {entry.body}")
            current = Run.objects.get(pk=run.pk)
            inline_done = worker is not None and not worker.is_alive()
            if current.is_finished or (inline_done and current.state != RunState.RUNNING):
                if worker is not None:
                    worker.join()
                if failure:
                    raise CommandError(f"The engine stopped: {failure[0]!r}")
                return current
            if via_workers and time.monotonic() > warned_at:
                warned_at = float("inf")
                if not current.steps.exclude(started_at=None).exists():
                    self.stderr.write(
                        "No worker has started a step in 30 s: is a Celery worker running? "
                        "(Ctrl-C pauses the run.)"
                    )
            time.sleep(0.2)

    def _report(self, run: Run) -> None:
        took = run.duration.total_seconds() if run.duration else 0.0
        if run.state == RunState.SUCCEEDED:
            done = "Dry run complete: nothing was changed" if run.dry_run else "Rollback succeeded"
            self.stdout.write(self.style.SUCCESS(f"{done} (run #{run.pk}, {took:.1f} s)."))
            return
        if run.state == RunState.PAUSED:
            raise CommandError(
                verification.pause_reason(run)
                or f"Run #{run.pk} was paused from the console; resume it there (the workers "
                "will carry on)."
            )
        raise CommandError(
            f"Run #{run.pk} {run.state}: {run.failure_reason or 'see the incident timeline'}"
        )
