"""The Kubernetes Deployment backend (`backend.KubernetesDeploymentBackend`)."""
