"""The commander's operations on rollback runs and their steps.

A run is drafted from services and targets (`run_create`), previewed without side effects
(`run_dry_run`), sent for the approvals its incident's policy needs
(`run_request_approval`), and started only once those are in and the commander has typed
the confirmation word (`run_confirm_and_start`). While it runs it can be paused, resumed or
cancelled, and a failed step retried or skipped. The engine (rollbacks.engine) does the
work; these functions change state, each in one transaction with its timeline entry, and
hand work to Celery after commit.

Every function takes keyword arguments only and raises DomainError (PermissionDenied for a
missing role) with a message fit to show the user. They are this package's public names,
imported from `rollbacks.services` by views, the terminal command and the API alike.
"""

from rollbacks.services.plans import (
    DEFAULT_STEP_TIMEOUT,
    MAX_STEP_TIMEOUT,
    StepPreview,
    StepSpec,
    run_create,
    run_dry_run,
)
from rollbacks.services.runs import (
    run_cancel,
    run_confirm_and_start,
    run_pause,
    run_request_approval,
    run_resume,
    step_retry,
    step_skip,
)

__all__ = [
    "DEFAULT_STEP_TIMEOUT",
    "MAX_STEP_TIMEOUT",
    "StepPreview",
    "StepSpec",
    "run_cancel",
    "run_confirm_and_start",
    "run_create",
    "run_dry_run",
    "run_pause",
    "run_request_approval",
    "run_resume",
    "step_retry",
    "step_skip",
]
