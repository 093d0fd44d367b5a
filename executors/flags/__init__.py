"""Turn feature flags off (or back on) in Redis, SSM Parameter Store or AWS AppConfig.

The config names one `flag`, or sets `kill_all: true` to act on every flag: those listed in
`flags`, or, without a list, every flag found in the store (under the Redis key prefix or
SSM parameter prefix, or every flag the AppConfig profile defines). A rollback turns the
flags off; `target.params["state"]` may say `"on"` to turn them back on. Turning flags on
with the kill switch needs an explicit `flags` list: switching on whatever happens to live
under a prefix would enable flags that were meant to stay off. `target.version` and
`target.artifact` play no part.

The backend is `backend.FeatureFlagBackend`. Where flags live, `store` in the config:

- `"redis"` and `"ssm"`: one key or parameter per flag, holding `on` or `off`
  (`stores.RedisFlags`, `stores.SsmFlags`);
- `"appconfig"`: a hosted AppConfig feature-flag profile, changed by deploying a new
  version of it (`appconfig.AppConfigFlags`).

Known gap: moto (5.2) does not implement AppConfig environments, deployments or deployment
strategies, so the AppConfig path is tested with botocore's Stubber (request and response
shapes checked against the service model, no server); the Redis and SSM paths are tested
against a real Redis and a moto server.

Errors: Redis connection failures and timeouts, AWS throttling, 5xx, unreachable endpoints
and AppConfig's "another deployment is in progress" raise a retryable BackendError;
everything else is permanent. A missing AppConfig resource, a flag the profile does not
define, or an unreadable configuration is a ConfigError.
"""
