"""What the status page announces to whoever listens, sent after the publishing transaction
commits (subscribers' emails, feeds' caches).

- `revision_published` (revision_id): an incident update went public.
- `maintenance_update_published` (update_id): a maintenance was scheduled or moved on.
"""

from __future__ import annotations

from django.dispatch import Signal

revision_published = Signal()
maintenance_update_published = Signal()
