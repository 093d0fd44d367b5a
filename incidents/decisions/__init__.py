"""The recovery clock and the decision helper, for the incident room.

- `rules`: the runbook's thresholds, the signals, and `decide`, the pure rules.
- `clock`: the recovery clock against the RTO, and the recovery figures.
- `forms`: `SignalsForm`, the signals as the commander types them.
- `services`: `decision_record`, which writes a decision on the timeline.
- `selectors`: the latest decision and `room_context`, what the room's two partials render.
- `views`: the helper's endpoints and the recovery panel's refresh.
"""
