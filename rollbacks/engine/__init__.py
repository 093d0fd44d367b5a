"""The rollback engine: executes a run's steps through the backends in `executors/`.

The engine's code is in rollbacks.engine.execution, from which this package takes the names
its callers use while the module is split by responsibility.
"""

from rollbacks.engine.advance import advance_locked, run_advance
from rollbacks.engine.backends import (
    backend_for,
    release_label,
    release_labels,
    target_for,
    warm_up,
)
from rollbacks.engine.batches import steps_execute
from rollbacks.engine.claims import OwnershipLost, claim_pending
from rollbacks.engine.dispatch import Dispatcher, InlineDispatcher
from rollbacks.engine.execution import (
    StepExecution,
    step_execute,
)
from rollbacks.engine.heartbeats import heartbeats
from rollbacks.engine.inline import run_inline
from rollbacks.engine.recovery import recover_stalled
from rollbacks.engine.retries import StepRetry, retry_delay
from rollbacks.engine.shared_writes import SharedWrites, fenced
from rollbacks.engine.step_logs import StepLogWriter
from rollbacks.engine.step_records import Applied, Ending, write_applied, write_endings

__all__ = [
    "StepExecution",
    "Applied",
    "Ending",
    "SharedWrites",
    "fenced",
    "write_applied",
    "write_endings",
    "OwnershipLost",
    "claim_pending",
    "heartbeats",
    "Dispatcher",
    "InlineDispatcher",
    "StepLogWriter",
    "StepRetry",
    "advance_locked",
    "backend_for",
    "recover_stalled",
    "release_label",
    "release_labels",
    "retry_delay",
    "run_advance",
    "run_inline",
    "step_execute",
    "steps_execute",
    "target_for",
    "warm_up",
]
