"""The rollback engine: executes a run's steps through the backends in `executors/`.

The entry points, each idempotent and safe to call twice with the same ids:

- `advance.run_advance(run_id)` looks at a running run under a row lock: when its current
  parallel group still has steps to do it hands them to the dispatcher; when the group is
  finished it moves on to the next group, or ends the run (`run_finish`: succeeded, or
  failed with the reason and the later steps cancelled). `advance.advance_locked(run)` is
  the same for a caller already holding the lock (starting or resuming a run).
- `execution.step_execute(step_id)` claims a pending step (`claims`), applies it unless
  `applied_at` says an earlier delivery already did, waits for the infrastructure to settle
  before the step's deadline while streaming log lines into StepLog (`step_logs`), runs the
  backend's checks, records the outcome, and asks for the run to advance.
- `batches.steps_execute(step_ids)` does the same for several steps of a parallel group:
  one transaction claims them all, then each runs on a thread of the worker's step pool.
- `recovery.recover_stalled()` hands out work a dead worker or a lost message left behind.
- `inline.run_inline(run_id)` executes a run in this process, with no Celery worker (the
  terminal command).

When the last group is done, the services' own verification checks may hold the run before
it ends (rollbacks.verification, docs/verification.md): a round of checks is dispatched like
a step, and its outcome fails, pauses or succeeds the run.

Every state change is a row update plus its timeline entry (`entries` says what they say)
in one transaction; the entry is announced on Redis after commit
(incidents.timeline.timeline_append). What several steps of a process record at the same
moment shares one transaction (`shared_writes`, `step_records`).

A worker that dies mid-step leaves its step `running` with a heartbeat (`heartbeats`) that
stops moving. The recovery sweep (run periodically by every worker, see rollbacks.tasks)
hands such steps to a new delivery, which takes the claim over and carries on from what
`applied_at` says. Writes after the claim are fenced by a claim token, so a worker presumed
dead that comes back cannot overwrite its successor's record. Retryable backend errors are
retried with backoff (`retries`).

Every entry point takes a dispatcher (`dispatch`), which decides how work is handed out: to
Celery after commit (rollbacks.tasks.CeleryDispatcher), or collected for `run_inline`.
Backends are built, and live values named by release, in `backends`.

This package's modules are imported by name (`from rollbacks.engine.execution import
step_execute`); the package itself re-exports nothing, so importing one module never
imports the rest.
"""
