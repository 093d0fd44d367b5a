"""The recovery clock and the decision helper, for the incident room."""
