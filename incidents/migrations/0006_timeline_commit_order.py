"""Commit order of timeline entries, for the live stream (see models.TimelineOrder).

A deferred constraint trigger runs when the inserting transaction commits: it takes the
incident's transaction-scoped advisory lock and only then draws `seq`, so per incident the
order of `seq` is the order in which entries became visible. At commit the transaction only
has deferred foreign-key checks left to do, which take FOR KEY SHARE row locks; the code locks
rows with FOR NO KEY UPDATE (`select_for_update(no_key=True)`), which does not block those, so
waiting for the advisory lock at commit does not deadlock against the code's row locks.
Entries that exist already get their `seq` in id order.
"""

import django.db.models.deletion
from django.db import migrations, models

COMMIT_ORDER = """
-- No entry may commit between the backfill and the trigger: it would never get a seq.
LOCK TABLE incidents_timelineentry IN SHARE ROW EXCLUSIVE MODE;

CREATE SEQUENCE incidents_timeline_commit_seq;

INSERT INTO incidents_timelineorder (entry_id, incident_id, seq)
SELECT id, incident_id, nextval('incidents_timeline_commit_seq')
FROM incidents_timelineentry ORDER BY id;

CREATE FUNCTION incidents_timeline_commit_order() RETURNS trigger AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(
        hashtext('incidents_timeline'), (NEW.incident_id % 2147483647)::integer
    );
    INSERT INTO incidents_timelineorder (entry_id, incident_id, seq)
    VALUES (NEW.id, NEW.incident_id, nextval('incidents_timeline_commit_seq'));
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE CONSTRAINT TRIGGER incidents_timeline_commit_order
    AFTER INSERT ON incidents_timelineentry
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION incidents_timeline_commit_order();
"""

COMMIT_ORDER_REVERSE = """
DROP TRIGGER IF EXISTS incidents_timeline_commit_order ON incidents_timelineentry;
DROP FUNCTION IF EXISTS incidents_timeline_commit_order();
DROP SEQUENCE IF EXISTS incidents_timeline_commit_seq;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0005_more_timeline_kinds"),
    ]

    operations = [
        migrations.CreateModel(
            name="TimelineOrder",
            fields=[
                (
                    "entry",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="order",
                        serialize=False,
                        to="incidents.timelineentry",
                    ),
                ),
                ("seq", models.BigIntegerField(unique=True)),
                (
                    "incident",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="incidents.incident",
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(fields=["incident", "seq"], name="timeline_order_incident_seq")
                ],
            },
        ),
        migrations.RunSQL(COMMIT_ORDER, COMMIT_ORDER_REVERSE),
    ]
