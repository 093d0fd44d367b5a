"""Rules PostgreSQL enforces even when the ORM is bypassed.

- The timeline is append-only: UPDATE and DELETE on a timeline entry raise. TRUNCATE is left
  alone so the test database can still be emptied between tests.
- The two-person rule: an approval by the person who requested it is refused.
"""

from django.db import migrations

TIMELINE_APPEND_ONLY = """
CREATE FUNCTION incidents_timeline_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'timeline entries are append-only: % refused', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER incidents_timeline_append_only
    BEFORE UPDATE OR DELETE ON incidents_timelineentry
    FOR EACH ROW EXECUTE FUNCTION incidents_timeline_append_only();
"""

TIMELINE_APPEND_ONLY_REVERSE = """
DROP TRIGGER IF EXISTS incidents_timeline_append_only ON incidents_timelineentry;
DROP FUNCTION IF EXISTS incidents_timeline_append_only();
"""

TWO_PERSON_RULE = """
CREATE FUNCTION incidents_approval_two_person() RETURNS trigger AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM incidents_approvalrequest
        WHERE id = NEW.request_id AND requested_by_id = NEW.approver_id
    ) THEN
        RAISE EXCEPTION 'an approval request cannot be decided by its requester'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER incidents_approval_two_person
    BEFORE INSERT OR UPDATE ON incidents_approval
    FOR EACH ROW EXECUTE FUNCTION incidents_approval_two_person();
"""

TWO_PERSON_RULE_REVERSE = """
DROP TRIGGER IF EXISTS incidents_approval_two_person ON incidents_approval;
DROP FUNCTION IF EXISTS incidents_approval_two_person();
"""


class Migration(migrations.Migration):
    dependencies = [("incidents", "0001_initial")]

    operations = [
        migrations.RunSQL(TIMELINE_APPEND_ONLY, TIMELINE_APPEND_ONLY_REVERSE),
        migrations.RunSQL(TWO_PERSON_RULE, TWO_PERSON_RULE_REVERSE),
    ]
