"""Backout settings, read from the environment (see .env.example)."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP
from kombu import Exchange, Queue

from accounts.role_map import parse_role_map

BASE_DIR = Path(__file__).resolve().parent.parent


def _load_dotenv(path: Path) -> None:
    """Fill os.environ from a .env file without overriding what is already set."""
    if not path.is_file():
        return
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        os.environ.setdefault(key.strip(), value.strip().strip("'\""))


_load_dotenv(BASE_DIR / ".env")


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off (see .env.example)")
    SECRET_KEY = "insecure-development-key-set-SECRET_KEY-in-production"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1")
# The status page's own host (statuspage.hosts): the public page, its JSON and its feed at
# the root of that host, and nothing of the console there. Allowed as a host by itself.
STATUS_PAGE_HOST = os.environ.get("STATUS_PAGE_HOST", "").strip().lower()
if STATUS_PAGE_HOST and STATUS_PAGE_HOST not in ALLOWED_HOSTS and "*" not in ALLOWED_HOSTS:
    ALLOWED_HOSTS.append(STATUS_PAGE_HOST)
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "ninja",
    "accounts",
    "incidents",
    "rollbacks",
    "statuspage",
    "postmortems",
    "playbooks",
    "alerts",
    "api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # A request for STATUS_PAGE_HOST sees the public status page's URLs only.
    "statuspage.hosts.StatusHostMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "accounts.middleware.RequireTwoFactorMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# Password guessing (django-axes): after AXES_FAILURE_LIMIT failures for one user name, or
# from one address, signing in is refused for AXES_COOLOFF_MINUTES with a 429 and a page
# that says so; staff unlock in the admin (Access attempts) or with
# `manage.py axes_reset_username` / `axes_reset_ip`. It covers /accounts/login/ and the
# admin's login alike.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("AXES_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=float(os.environ.get("AXES_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# A success does not clear the failures counted against the address: whoever holds one account
# must not be able to wipe another user name's failures from the same address.
AXES_RESET_ON_SUCCESS = False
AXES_HTTP_RESPONSE_CODE = 429
AXES_LOCKOUT_TEMPLATE = "accounts/locked.html"
# Named apart from django-axes's own (deprecated) AXES_PROXY_COUNT setting.
SIGN_IN_PROXY_COUNT = int(os.environ.get("AXES_PROXY_COUNT", "0"))
AXES_CLIENT_IP_CALLABLE = "accounts.client_address.client_address"
# Single sign-on with OpenID Connect (mozilla-django-oidc; accounts/sso.py, docs/roles.md).
# On when a client id is set; the endpoints are the provider's (its discovery document lists
# them: `manage.py sso discover <issuer>` prints these lines).
OIDC_RP_CLIENT_ID = os.environ.get("OIDC_RP_CLIENT_ID", "")
SSO_ENABLED = bool(OIDC_RP_CLIENT_ID)
OIDC_RP_CLIENT_SECRET = os.environ.get("OIDC_RP_CLIENT_SECRET", "")
OIDC_OP_ISSUER = os.environ.get("OIDC_OP_ISSUER", "")
OIDC_OP_AUTHORIZATION_ENDPOINT = os.environ.get("OIDC_OP_AUTHORIZATION_ENDPOINT", "")
OIDC_OP_TOKEN_ENDPOINT = os.environ.get("OIDC_OP_TOKEN_ENDPOINT", "")
OIDC_OP_USER_ENDPOINT = os.environ.get("OIDC_OP_USER_ENDPOINT", "")
OIDC_OP_JWKS_ENDPOINT = os.environ.get("OIDC_OP_JWKS_ENDPOINT", "")
OIDC_RP_SIGN_ALGO = os.environ.get("OIDC_RP_SIGN_ALGO", "RS256")
OIDC_RP_SCOPES = os.environ.get("OIDC_RP_SCOPES", "openid email profile groups")
OIDC_USE_PKCE = True
OIDC_TIMEOUT = float(os.environ.get("OIDC_TIMEOUT_SECONDS", "10"))
OIDC_ROLES_CLAIM = os.environ.get("OIDC_ROLES_CLAIM", "groups")
OIDC_ROLE_MAP = parse_role_map(os.environ.get("OIDC_ROLE_MAP", ""))
SSO_TRUSTS_PROVIDER_MFA = env_bool("SSO_TRUSTS_PROVIDER_MFA", False)
SSO_BUTTON_LABEL = os.environ.get("SSO_BUTTON_LABEL", "Sign in with SSO")
if SSO_ENABLED:
    AUTHENTICATION_BACKENDS.append("accounts.sso.SsoBackend")
# Alerts in (alerts/, docs/api.md): the labels naming the service, its environment and the
# severity, and how a severity label's value maps to an incident's.
ALERT_SERVICE_LABEL = os.environ.get("ALERT_SERVICE_LABEL", "service")
ALERT_ENVIRONMENT_LABEL = os.environ.get("ALERT_ENVIRONMENT_LABEL", "environment")
ALERT_SEVERITY_LABEL = os.environ.get("ALERT_SEVERITY_LABEL", "severity")
ALERT_DEFAULT_SEVERITY = os.environ.get("ALERT_DEFAULT_SEVERITY", "P2")
try:
    ALERT_SEVERITY_MAP: dict[str, str] = {
        str(key).lower(): str(value)
        for key, value in json.loads(
            os.environ.get("ALERT_SEVERITY_MAP")
            or '{"critical": "P1", "page": "P1", "error": "P2", "warning": "P3", "info": "P3"}'
        ).items()
    }
except (ValueError, AttributeError) as error:
    raise ImproperlyConfigured(f"ALERT_SEVERITY_MAP must be a JSON object: {error}") from error
# The JSON API (api/, django-ninja): calls per token, e.g. 120/m or 2000/h (docs/api.md).
API_RATE = os.environ.get("API_RATE", "120/m")
# Second factor (TOTP, django-otp) for Incident Commanders and staff; see accounts/two_factor.py.
REQUIRE_TWO_FACTOR = env_bool("REQUIRE_TWO_FACTOR", False)
OTP_TOTP_ISSUER = os.environ.get("OTP_TOTP_ISSUER", "Backout")

ROOT_URLCONF = "console.urls"
ASGI_APPLICATION = "console.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "rollbacks.context_processors.approvals_badge",
                "accounts.sso_views.sso_context",
            ],
        },
    },
]

DATABASE_URL = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/backout")
if not DATABASE_URL.startswith(("postgres://", "postgresql://")):
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL (postgres://...)")
# Each process keeps a pool of connections (psycopg_pool, through Django): a thread takes
# one for a request, task or rollback step and hands it back, so the dozens of step
# threads a parallel group starts do not each open (and fork) a PostgreSQL backend, as
# they did with per-thread persistent connections. The pool gives back one idle connection
# a minute (psycopg_pool's max_idle), so a process keeps a burst's connections for a while.
# DATABASE_POOL_MAX_SIZE=0 turns pooling off (a persistent connection per thread instead).
DATABASE_POOL_MAX_SIZE = int(os.environ.get("DATABASE_POOL_MAX_SIZE", "100"))
if DATABASE_POOL_MAX_SIZE < 0:
    raise ImproperlyConfigured("DATABASE_POOL_MAX_SIZE must be 0 (no pool) or more")
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=0 if DATABASE_POOL_MAX_SIZE else 60,
        conn_health_checks=True,  # a connection broken by a server restart is replaced
    )
}
if DATABASE_POOL_MAX_SIZE:
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 0,
        "max_size": DATABASE_POOL_MAX_SIZE,
        "max_idle": 60.0,
        "timeout": 30.0,  # waiting for a free connection, then an error
    }
# Query parameters travel apart from the SQL text (psycopg's server-side binding), in
# PostgreSQL's extended protocol, instead of being quoted into it in Python: a parallel
# group's engine work cost the workers about a fifth less CPU (bench/scale_out.py). No
# statement is prepared (Django's default), so a pooler in transaction mode still works.
# DATABASE_SERVER_SIDE_BINDING=0 goes back to quoting on the client.
DATABASE_SERVER_SIDE_BINDING = env_bool("DATABASE_SERVER_SIDE_BINDING", True)
if DATABASE_SERVER_SIDE_BINDING:
    DATABASES["default"].setdefault("OPTIONS", {})["server_side_binding"] = True
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("TEST_DATABASE_NAME", "test_backout")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# JSON, not pickle (console/cache.py). REDIS_URL may carry a password
# (redis://:password@host:6379/0) and TLS (rediss://...).
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {"serializer": "console.cache.JsonSerializer"},
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
# `manage.py collectstatic` copies the files here and whitenoise serves them from here
# (DEBUG off); a production install points it outside the code, e.g. /var/lib/backout/static.
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT") or BASE_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
# Under uvicorn in development, whitenoise serves files straight from the app folders.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# Celery: Redis is the broker; results are not kept (PostgreSQL is the record).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_IGNORE_RESULT = True
# One result backend object per process rather than one per thread: with no backend set it is
# Celery's stateless "disabled" one, and building it scans every installed package's entry
# points (tens of ms), which each rollback-step thread that sends a task paid the first time.
CELERY_RESULT_BACKEND_THREAD_SAFE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Longer than the longest step may take, so a slow step is not delivered twice.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 4 * 3600}
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# Two queues (docs/deploy.md, "Queues"): `steps` carries what moves a rollback forward (its
# steps, the hand-over to the next group, recovering stalled steps), `celery` everything else
# (notices, verification and watch rounds, the beat's sweeps, alerts). A worker started
# without --queues consumes both; `--queues steps` dedicates a worker, or a machine, to
# steps, so a flood of notices or verification rounds never stands in front of one. Each
# queue has an exchange and routing key of its own (what Celery makes for a queue it was
# not told of), so a message routed to one lands in that queue alone.
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES = [
    Queue(name, Exchange(name, type="direct"), routing_key=name) for name in ("celery", "steps")
]
CELERY_TASK_ROUTES = {
    f"rollbacks.tasks.{task}": {"queue": "steps"}
    for task in ("step_execute", "steps_execute", "run_advance", "steps_recover")
}

# Infrastructure the rollback backends talk to. Credentials come from the SDKs' own
# environment variables or files, never from the database.
AWS_ENDPOINT_URL = os.environ.get("AWS_ENDPOINT_URL") or None
AWS_REGION = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
KUBE_HOST = os.environ.get("KUBE_HOST") or None
KUBECONFIG = os.environ.get("KUBECONFIG") or None
KUBE_CONTEXT = os.environ.get("KUBE_CONTEXT") or None

# Feature flags in Redis may live in another Redis than the console's own.
FLAGS_REDIS_URL = os.environ.get("FLAGS_REDIS_URL") or None


def _registered_commands(path: str) -> dict[str, Any]:
    """Commands an administrator allows rollbacks to run, from a JSON file (never the
    database); see executors/command.py for the shape."""
    if not path:
        return {}
    try:
        commands = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ImproperlyConfigured(f"REGISTERED_COMMANDS_FILE {path}: {error}") from error
    if not isinstance(commands, dict):
        raise ImproperlyConfigured(f"REGISTERED_COMMANDS_FILE {path}: expected a JSON object")
    return commands


REGISTERED_COMMANDS = _registered_commands(os.environ.get("REGISTERED_COMMANDS_FILE", ""))

# Rollback engine: a running step beats every ROLLBACK_HEARTBEAT_SECONDS; a step silent for
# ROLLBACK_STALE_AFTER_SECONDS is taken over by another worker's recovery sweep.
ROLLBACK_HEARTBEAT_SECONDS = float(os.environ.get("ROLLBACK_HEARTBEAT_SECONDS", "5"))
ROLLBACK_STALE_AFTER_SECONDS = float(os.environ.get("ROLLBACK_STALE_AFTER_SECONDS", "30"))
ROLLBACK_RECOVERY_INTERVAL_SECONDS = float(
    os.environ.get("ROLLBACK_RECOVERY_INTERVAL_SECONDS", "10")
)
ROLLBACK_STEP_MAX_RETRIES = int(os.environ.get("ROLLBACK_STEP_MAX_RETRIES", "5"))
ROLLBACK_RETRY_BACKOFF_SECONDS = float(os.environ.get("ROLLBACK_RETRY_BACKOFF_SECONDS", "2"))
ROLLBACK_STEP_LOG_MAX_LINES = int(os.environ.get("ROLLBACK_STEP_LOG_MAX_LINES", "50000"))
# A parallel group goes out in messages of this many steps, each claimed at once and run on
# the worker's step threads (at most ROLLBACK_STEP_THREADS per worker process).
ROLLBACK_STEPS_PER_MESSAGE = int(os.environ.get("ROLLBACK_STEPS_PER_MESSAGE", "25"))
ROLLBACK_STEP_THREADS = int(os.environ.get("ROLLBACK_STEP_THREADS", "64"))
# Keyword arguments for each backend kind's constructor, set by a settings module that
# imports this one, e.g. {"kubernetes": {"poll_interval": 1.0, "request_timeout": 10}}.
ROLLBACK_BACKEND_OPTIONS: dict[str, dict[str, Any]] = {}
# How long the plan builder waits for each backend kind to say what runs now and what a
# step may choose (the rest of the page never waits): ROLLBACK_LIVE_READ_SECONDS=3 for all,
# or e.g. "kubernetes=2,database=6" with the rest at 3.
ROLLBACK_LIVE_READ_SECONDS: dict[str, float] = {"default": 3.0} | {
    kind.strip(): float(seconds)
    for kind, _, seconds in (
        item.partition("=")
        for item in os.environ.get("ROLLBACK_LIVE_READ_SECONDS", "").split(",")
        if "=" in item
    )
}
if os.environ.get("ROLLBACK_LIVE_READ_SECONDS", "").replace(".", "", 1).isdigit():
    ROLLBACK_LIVE_READ_SECONDS["default"] = float(os.environ["ROLLBACK_LIVE_READ_SECONDS"])

# The room's live stream (incidents/live.py, docs/live-room.md): how often a feed reads
# PostgreSQL without being told to, the keep-alive interval, and how long a feed nobody
# watches keeps its Redis subscription.
LIVE_RESYNC_SECONDS = float(os.environ.get("LIVE_RESYNC_SECONDS", "5"))
LIVE_KEEPALIVE_SECONDS = float(os.environ.get("LIVE_KEEPALIVE_SECONDS", "15"))
LIVE_IDLE_SECONDS = float(os.environ.get("LIVE_IDLE_SECONDS", "30"))

# Verification after a rollback (rollbacks/verification.py, docs/verification.md): where
# Prometheus answers when a check names no url, each kind's request timeout, and how long a
# whole round may take before a worker's recovery sweep hands it out again.
PROMETHEUS_URL = os.environ.get("PROMETHEUS_URL", "http://127.0.0.1:9090")
VERIFY_HTTP_TIMEOUT_SECONDS = float(os.environ.get("VERIFY_HTTP_TIMEOUT_SECONDS", "5"))
VERIFY_PROMETHEUS_TIMEOUT_SECONDS = float(os.environ.get("VERIFY_PROMETHEUS_TIMEOUT_SECONDS", "5"))
VERIFY_KUBE_TIMEOUT_SECONDS = float(os.environ.get("VERIFY_KUBE_TIMEOUT_SECONDS", "10"))
VERIFY_TIMEOUT_SECONDS = float(os.environ.get("VERIFY_TIMEOUT_SECONDS", "300"))

# Decision helper (incidents/decisions/, docs/decision-helper.md): changes to the runbook's
# rollback thresholds as a JSON object laid over the defaults, e.g. {"error_rate_critical": 25},
# and the share of the RTO after which the recovery clock reads "close".
try:
    DECISION_THRESHOLDS = json.loads(os.environ.get("DECISION_THRESHOLDS") or "{}")
except ValueError as error:
    raise ImproperlyConfigured(f"DECISION_THRESHOLDS is not valid JSON: {error}") from error
RECOVERY_CLOCK_CLOSE_SHARE = float(os.environ.get("RECOVERY_CLOCK_CLOSE_SHARE", "0.8"))
if not 0 < RECOVERY_CLOCK_CLOSE_SHARE <= 1:
    raise ImproperlyConfigured("RECOVERY_CLOCK_CLOSE_SHARE must be above 0 and at most 1")

# The debug page and error reports hide credentials whatever the setting is called.
DEFAULT_EXCEPTION_REPORTER_FILTER = "console.reporting.SettingsFilter"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"
# Transport, from the environment: a production install behind TLS sets these (see
# .env.example; `manage.py check --deploy` is clean with them).
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Probes from the platform (kubelet, load balancer) ask over plain HTTP on the pod's port: a
# redirect to https would read as a failure.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Behind a proxy that terminates TLS and sets X-Forwarded-Proto (only then: a client could
# set it too).
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REFERRER_POLICY = "same-origin"
# Every console page may load scripts, styles, fonts and images from the console only, and
# connect (htmx, the live stream) to it only; nothing may frame it. The public status page
# sets a stricter policy of its own (no scripts at all).
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "font-src": [CSP.SELF],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}

# Status page and communications (statuspage/, docs/status-page.md). The webhook URL is a
# secret: it is read here and never stored or logged.
COMMS_SLACK_WEBHOOK_URL = os.environ.get("COMMS_SLACK_WEBHOOK_URL", "")
COMMS_EMAIL_TO = env_list("COMMS_EMAIL_TO")
COMMS_EMAIL_FROM = os.environ.get("COMMS_EMAIL_FROM", "")
COMMS_CUSTOMER_EMAIL_TO = env_list("COMMS_CUSTOMER_EMAIL_TO")
COMMS_CUSTOMER_MAX_RECIPIENTS = int(os.environ.get("COMMS_CUSTOMER_MAX_RECIPIENTS", "2000"))
COMMS_EMAIL_BATCH_SIZE = int(os.environ.get("COMMS_EMAIL_BATCH_SIZE", "50"))
COMMS_CADENCE_MINUTES = float(os.environ.get("COMMS_CADENCE_MINUTES", "10"))
COMMS_PROGRESS_MINUTES = float(os.environ.get("COMMS_PROGRESS_MINUTES", "10"))
COMMS_MAX_RETRIES = int(os.environ.get("COMMS_MAX_RETRIES", "5"))
COMMS_RETRY_BACKOFF_SECONDS = float(os.environ.get("COMMS_RETRY_BACKOFF_SECONDS", "5"))
COMMS_TIMEOUT_SECONDS = float(os.environ.get("COMMS_TIMEOUT_SECONDS", "5"))
# PagerDuty Events API v2 (docs/notices-pagerduty.md); the routing key is a secret as well.
PAGERDUTY_ROUTING_KEY = os.environ.get("PAGERDUTY_ROUTING_KEY", "")
PAGERDUTY_EVENTS_URL = os.environ.get(
    "PAGERDUTY_EVENTS_URL", "https://events.pagerduty.com/v2/enqueue"
)
CUSTOMER_NOTICE_AFTER_MINUTES = float(os.environ.get("CUSTOMER_NOTICE_AFTER_MINUTES", "30"))
_EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
MAILERS = {
    "default": {
        "BACKEND": _EMAIL_BACKEND,
        "OPTIONS": {
            "host": os.environ.get("EMAIL_HOST", "localhost"),
            "port": int(os.environ.get("EMAIL_PORT", "25")),
            "timeout": 10,
        }
        if _EMAIL_BACKEND.endswith("smtp.EmailBackend")
        else {},
    }
}
STATUS_PAGE_NAME = os.environ.get("STATUS_PAGE_NAME", "Backout status")
STATUS_PAGE_URL = os.environ.get("STATUS_PAGE_URL", "")
# The page id in /status/api/v2/*.json (the Statuspage API names each page by one).
STATUS_PAGE_ID = os.environ.get("STATUS_PAGE_ID", "backout")
# The public page's branding (statuspage.conf; checked at start-up by statuspage.checks):
# a logo (an https URL or a path on this host), where the logo or name links, and the
# colour of the page's header band (#rgb or #rrggbb; the text on it is chosen for contrast).
STATUS_PAGE_LOGO_URL = os.environ.get("STATUS_PAGE_LOGO_URL", "").strip()
STATUS_PAGE_HOMEPAGE_URL = os.environ.get("STATUS_PAGE_HOMEPAGE_URL", "").strip()
STATUS_PAGE_BRAND_COLOR = os.environ.get("STATUS_PAGE_BRAND_COLOR", "#24478f").strip()
CONSOLE_BASE_URL = os.environ.get("CONSOLE_BASE_URL", "http://127.0.0.1:8000")
STATUS_SWEEP_SECONDS = float(os.environ.get("STATUS_SWEEP_SECONDS", "20"))
# Subscribers who have not confirmed this many days after their confirmation email are deleted.
STATUS_SUBSCRIBER_UNCONFIRMED_DAYS = int(os.environ.get("STATUS_SUBSCRIBER_UNCONFIRMED_DAYS", "7"))
# The watch after a run succeeds (rollbacks.watch): EVERY@UNTIL phases, and the beat.
ROLLBACK_WATCH_SCHEDULE = os.environ.get("ROLLBACK_WATCH_SCHEDULE", "60s@15m,15m@1h")
ROLLBACK_WATCH_SWEEP_SECONDS = float(os.environ.get("ROLLBACK_WATCH_SWEEP_SECONDS", "15"))
RELEASE_TRACK_SECONDS = float(os.environ.get("RELEASE_TRACK_SECONDS", "60"))
RELEASE_TRACK_READ_SECONDS = float(os.environ.get("RELEASE_TRACK_READ_SECONDS", "10"))
CELERY_BEAT_SCHEDULE = {
    # Completion and progress notices, cadence reminders, lost deliveries
    # (statuspage.comms.sweep).
    "statuspage-sweep": {
        "task": "statuspage.tasks.comms_sweep",
        "schedule": STATUS_SWEEP_SECONDS,
    },
    # Subscriber emails whose task or fan-out was lost (statuspage.subscriber_sending.sweep).
    "statuspage-subscribers": {
        "task": "statuspage.subscriber_tasks.subscribers_sweep",
        "schedule": STATUS_SWEEP_SECONDS,
    },
    # Watch rounds after successful runs (rollbacks.watch).
    "rollback-watches": {
        "task": "rollbacks.tasks.watches_sweep",
        "schedule": ROLLBACK_WATCH_SWEEP_SECONDS,
    },
    # Live versions nobody registered, and releases promoted to known-good after their
    # bake time (rollbacks.release_tracking).
    "release-tracking": {
        "task": "rollbacks.tasks.releases_track",
        "schedule": RELEASE_TRACK_SECONDS,
    },
    # Reminders to set back what a step set for a while (rollbacks.reminders).
    "rollback-reminders": {
        "task": "rollbacks.tasks.reminders_sweep",
        "schedule": float(os.environ.get("ROLLBACK_REMINDER_SWEEP_SECONDS", "30")),
    },
    # Scheduled maintenances starting and completing at their window's edges
    # (statuspage.maintenances.maintenances_due_advance); the general queue, never `steps`.
    "status-maintenances": {
        "task": "statuspage.maintenance_tasks.maintenances_advance",
        "schedule": float(os.environ.get("MAINTENANCE_SWEEP_SECONDS", "30")),
        "options": {"queue": "celery"},
    },
}
