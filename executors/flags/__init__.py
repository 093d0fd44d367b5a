"""The feature-flag backend (`backend.FeatureFlagBackend`)."""
