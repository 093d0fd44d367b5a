"""Roll back Kubernetes Deployments through the official `kubernetes` client.

The backend is `backend.KubernetesDeploymentBackend`; what each operation changes is
decided without writing, in `operations`, `revisions` (undo) and `manifests`; `rollout`
judges a rollout and its checks, `templates` compares pod templates, `client` connects and
maps the API server's errors.

The default operation does what `kubectl rollout undo [--to-revision]` does: read the
ReplicaSets the Deployment owns, pick the revision to return to (the one before the live
revision, a chosen revision number, or the newest revision whose container image is the
target release's artifact), and patch the Deployment's pod template back to that
ReplicaSet's template (see executors.kubernetes.revisions).

Other operations, chosen with `target.params["operation"]`:

- "restart": set `kubectl.kubernetes.io/restartedAt` on the pod template (a new revision).
  Pass `params["restarted_at"]` (any stable string) to make a repeated apply a no-op.
- "scale": set `spec.replicas` to `params["replicas"]` through the scale subresource, e.g.
  0 before a database restore; `"restore"` returns to the count recorded when a previous
  scale changed it.
- "apply_manifest": replace the Deployment with the saved manifest `params["manifest"]`
  (a dict), or create it if it is gone (executors.kubernetes.manifests).

A target is one Deployment (`deployment`) or every Deployment of the namespace
(`all_in_namespace`, optionally narrowed by `label_selector`), handled in parallel.

Errors: 5xx, 429 and network timeouts raise a retryable BackendError; a 409 conflict is
retried by the backend (re-read, re-patch) a few times and then raised as retryable; any
other 4xx is permanent (executors.kubernetes.client). Responses are handled as plain JSON (not the
client's models) so templates compare exactly as kubectl compares them.
"""
