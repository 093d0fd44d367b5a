"""Settings of the stand-in identity provider (devinfra.oidc_idp); read from IDP_* variables
that its launcher sets."""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
PORT = int(os.environ.get("IDP_PORT", "9400"))

DEBUG = False
SECRET_KEY = os.environ.get("IDP_SECRET_KEY", "stand-in-identity-provider-only")
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "oidc_provider",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "devinfra.oidc_idp.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [HERE / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("IDP_DATABASE", str(HERE / "idp.sqlite3")),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
# Both servers run on 127.0.0.1, and a browser sends a host's cookies to every port of it.
SESSION_COOKIE_NAME = "idp_sessionid"
CSRF_COOKIE_NAME = "idp_csrftoken"
LOGIN_URL = "/login/"
# A stand-in for tests and the demo, whose passwords are in a JSON file anyway: a fast hash
# keeps its start and each sign-in from costing a second of PBKDF2.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

SITE_URL = f"http://127.0.0.1:{PORT}"
OIDC_USERINFO = "devinfra.oidc_idp.claims.userinfo"
OIDC_EXTRA_SCOPE_CLAIMS = "devinfra.oidc_idp.claims.GroupsScopeClaims"
OIDC_IDTOKEN_PROCESSING_HOOK = "devinfra.oidc_idp.claims.add_authentication_methods"
OIDC_IDTOKEN_EXPIRE = 600
