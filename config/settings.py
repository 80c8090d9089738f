"""Portcullis settings: one module, driven by environment variables.

Defaults run locally with no configuration (SQLite under var/). Every variable
is listed in README.md's configuration table.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_float, env_int, env_list, env_positive_int, env_rate, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("PORTCULLIS_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is required when DEBUG is off. Set SECRET_KEY (or SECRET_KEY_FILE) "
            "to a long random string, or set DEBUG=true for local development."
        )
    SECRET_KEY = "insecure-development-key-only-used-when-DEBUG-is-on"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# The public base URL, used in links in emails and in the callback URL shown to admins.
SITE_URL = env_str("SITE_URL", "http://localhost:8000").rstrip("/")

INSTALLED_APPS = [
    "config.apps.PortcullisAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_filters",
    "import_export",
    # Before django_q: its qcluster command is replaced by one that also runs the loops.
    "config.apps.PortcullisConfig",
    "django_q",
    "csp",
    "audit",
    "access",
    "aws_integration",
    "reviews",
]
# The demo and its stand-ins (`manage.py demo`, `seed_aws`, `standin_change`,
# `create_demo_users`): the demo and the tests run with DEBUG; production never has them.
if DEBUG:
    INSTALLED_APPS.append("demo")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "audit.middleware.RequestContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "config.errors.method_not_allowed_page",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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
                "access.context_processors.roles",
            ],
        },
    },
]

# Database -------------------------------------------------------------------
VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'portcullis.sqlite3'}")
try:
    _db = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 0))
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from exc
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE makes every transaction take the write lock up front, so two
    # writers queue instead of failing mid-transaction; this is also what keeps
    # the audit hash chain linear on SQLite.
    _db["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif _db["ENGINE"] == "django.db.backends.postgresql":
    # Opt-in (README): with DB_PREPARE_THRESHOLD set, parameters are bound by the server and
    # psycopg prepares a statement a connection sends again (from that many executions on):
    # PostgreSQL then plans it once per connection instead of at every execution (planning
    # was half of a request's database time). Off by default, as Django has it: poolers in
    # transaction mode do not keep prepared statements, and a migration can change what a
    # kept one returns. (A statement bound by the server takes at most 65,535 parameters:
    # config/lookups.py sends each `__in` list as one.)
    _prepare = env_str("DB_PREPARE_THRESHOLD", "off").strip().lower()
    if _prepare not in ("", "off"):
        if not _prepare.isdigit():
            raise ImproperlyConfigured(
                f"DB_PREPARE_THRESHOLD={_prepare!r} is neither 'off' nor a whole number."
            )
        _db.setdefault("OPTIONS", {}).update(
            server_side_binding=True, prepare_threshold=int(_prepare)
        )
else:
    raise ImproperlyConfigured("DATABASE_URL must be a sqlite:// or postgres:// URL.")
DATABASES = {"default": _db}
# The tables' owner, for migrate and grant_app_role only: the application itself then
# connects (DATABASE_URL) as a role that may not alter, empty or unprotect the audit log.
MIGRATE_DATABASE_URL = env_str("MIGRATE_DATABASE_URL")
MIGRATE_DATABASE: dj_database_url.DBConfig | None = None
if MIGRATE_DATABASE_URL:
    try:
        MIGRATE_DATABASE = dj_database_url.parse(MIGRATE_DATABASE_URL)
    except ValueError as exc:
        raise ImproperlyConfigured(f"MIGRATE_DATABASE_URL is not a database URL: {exc}") from exc
    if _db["ENGINE"] != "django.db.backends.postgresql" or (
        MIGRATE_DATABASE["ENGINE"] != _db["ENGINE"]
    ):
        raise ImproperlyConfigured(
            "MIGRATE_DATABASE_URL is for PostgreSQL only: set it, and DATABASE_URL, to "
            "postgres:// URLs, or unset it."
        )
    if MIGRATE_DATABASE["NAME"] != _db["NAME"]:
        raise ImproperlyConfigured(
            f"MIGRATE_DATABASE_URL names database {MIGRATE_DATABASE['NAME']!r} but "
            f"DATABASE_URL names {_db['NAME']!r}: both must name the same database "
            "(only the role, and perhaps the host, differ)."
        )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Error pages and mails hide the connection URLs too (they hold passwords).
DEFAULT_EXCEPTION_REPORTER_FILTER = "config.reporting.SafeSettingsFilter"

# Cache: Redis when configured (shared rate limits across web processes), else local memory.
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Authentication -------------------------------------------------------------
AUTH_USER_MODEL = "access.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"

ACCOUNT_ADAPTER = "access.adapters.AccountAdapter"
SOCIALACCOUNT_ADAPTER = "access.adapters.SocialAccountAdapter"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = "username"
ACCOUNT_EMAIL_VERIFICATION = env_str("ACCOUNT_EMAIL_VERIFICATION", "none")
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_SESSION_REMEMBER = False
ACCOUNT_LOGOUT_ON_GET = False
# allauth's own rate limits; failed logins are limited per IP and per account.
ACCOUNT_RATE_LIMITS = {
    "login": "30/m/ip",
    "login_failed": env_str("LOGIN_FAILED_RATE_LIMIT", "10/m/ip,5/5m/key"),
    "signup": "20/m/ip",
    "reset_password": "20/m/ip,5/m/key",
    "reset_password_from_key": "20/m/ip",
}
OPEN_SIGNUP = env_bool("OPEN_SIGNUP", False)

# OpenID Connect single sign-on for the portal login (allauth).
SSO_ISSUER = env_str("SSO_OIDC_ISSUER").rstrip("/")
SSO_CLIENT_ID = env_str("SSO_OIDC_CLIENT_ID")
SSO_CLIENT_SECRET = env_str("SSO_OIDC_CLIENT_SECRET")
SSO_NAME = env_str("SSO_OIDC_NAME", "Single sign-on")
# Create a portal user on first SSO login (just-in-time provisioning).
SSO_CREATE_USERS = env_bool("SSO_CREATE_USERS", True)
SOCIALACCOUNT_PROVIDERS: dict = {"openid_connect": {"OAUTH_PKCE_ENABLED": True, "APPS": []}}
if SSO_ISSUER:
    if not SSO_CLIENT_ID:
        raise ImproperlyConfigured("SSO_OIDC_CLIENT_ID is required when SSO_OIDC_ISSUER is set.")
    SOCIALACCOUNT_PROVIDERS["openid_connect"]["APPS"].append(
        {
            "provider_id": "sso",
            "name": SSO_NAME,
            "client_id": SSO_CLIENT_ID,
            "secret": SSO_CLIENT_SECRET,
            "settings": {
                "server_url": SSO_ISSUER,
                "token_auth_method": "client_secret_post",
                # Trust the provider's emails as verified even without an email_verified
                # claim (Entra ID, for one, sends none). Only for a provider you run.
                "verified_email": env_bool("SSO_OIDC_TRUST_EMAIL", False),
            },
        }
    )
SOCIALACCOUNT_EMAIL_AUTHENTICATION = True
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = True
SOCIALACCOUNT_EMAIL_VERIFICATION = "none"
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_LOGIN_ON_GET = False
SOCIALACCOUNT_STORE_TOKENS = False

# Secrets stored in the database are encrypted with Fernet. Several keys may be
# given (comma-separated): the first encrypts, all decrypt, which allows rotation.
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS")
if not FIELD_ENCRYPTION_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS is required when DEBUG is off. Generate one with: "
            "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
        )
    FIELD_ENCRYPTION_KEYS = [
        base64.urlsafe_b64encode(hashlib.sha256(SECRET_KEY.encode()).digest()).decode()
    ]

# AWS ------------------------------------------------------------------------
# Points every boto3 client at a stand-in (moto server) instead of AWS.
AWS_ENDPOINT_URL = env_str("AWS_ENDPOINT_URL")
AWS_DEFAULT_REGION = env_str("AWS_DEFAULT_REGION", "us-east-1")
AWS_MAX_ATTEMPTS = env_int("AWS_MAX_ATTEMPTS", 8)
# Threads of a full sync listing accounts, regions and services at once.
AWS_SYNC_WORKERS = env_positive_int("AWS_SYNC_WORKERS", 8)
# The IAM principal Portcullis itself runs as; ingester roles trust it (with the External ID).
PORTCULLIS_AWS_PRINCIPAL_ARN = env_str("PORTCULLIS_AWS_PRINCIPAL_ARN")
# The tag (value "true") that makes a customer's IAM role or permission set requestable;
# Portcullis's AWS policy lets it edit nothing else outside its own /portcullis/ roles.
PORTCULLIS_REQUESTABLE_TAG = env_str("PORTCULLIS_REQUESTABLE_TAG", "portcullis:requestable")
if not re.fullmatch(r"[\w .:/=+\-@]{1,128}", PORTCULLIS_REQUESTABLE_TAG) or (
    PORTCULLIS_REQUESTABLE_TAG.lower().startswith("aws:")
):
    raise ImproperlyConfigured(
        f"PORTCULLIS_REQUESTABLE_TAG={PORTCULLIS_REQUESTABLE_TAG!r} is not a tag key AWS "
        "accepts: 1 to 128 letters, digits, spaces and _ . : / = + - @, not starting with aws:."
    )

# The OIDC issuer check fetches only https URLs on public addresses; with DEBUG it may
# also fetch http and local ones (a test identity provider on this machine). A setting of
# its own because pytest-django turns DEBUG off while tests run.
OIDC_DISCOVERY_ALLOW_LOCAL = DEBUG

# Access workflow ------------------------------------------------------------
# A request with no decision after this many hours expires.
ACCESS_REQUEST_PENDING_HOURS = env_int("ACCESS_REQUEST_PENDING_HOURS", 72)
# Consecutive failed attempts at a grant or revoke in AWS before the admin alert.
GRANT_ALERT_AFTER_ATTEMPTS = env_int("GRANT_ALERT_AFTER_ATTEMPTS", 3)
# Threads of the grant engine (access.engine) applying and removing access in AWS.
GRANT_ENGINE_THREADS = env_int("GRANT_ENGINE_THREADS", 8)
# Seconds between the grant engine's looks for due work (it wakes sooner for an expiry).
GRANT_ENGINE_TICK = env_float("GRANT_ENGINE_TICK", 0.25)
# Run background tasks in the caller instead of queueing them (tests, one-off scripts).
TASKS_INLINE = env_bool("TASKS_INLINE", False)

# Background work (django-q2) ------------------------------------------------
Q_CLUSTER: dict[str, Any] = {
    "name": "portcullis",
    # Workers for bounded tasks (syncs, validations, mail). The long-running loops (the
    # grant engine, the events poller) do not take workers: `manage.py qcluster` runs each
    # in a process of its own beside these (config/loops.py).
    "workers": env_int("Q_WORKERS", 2),
    "timeout": env_int("Q_TIMEOUT", 600),
    "retry": env_int("Q_TIMEOUT", 600) + 60,
    "max_attempts": 3,
    "catch_up": False,
    "label": "Tasks",
    "save_limit": 1000,
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# Email ----------------------------------------------------------------------
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
# Seconds any one step of talking to the mail server may take. Notifications are sent by
# tasks; allauth's account mail (verification links, password resets) is sent during the
# request, so this bounds how long a slow or silent mail server can hold a web worker.
EMAIL_TIMEOUT = env_positive_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Portcullis <portcullis@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# API ------------------------------------------------------------------------
# The longest an API token lasts; every token expires, at most this many days after creation.
API_TOKEN_MAX_DAYS = env_positive_int("API_TOKEN_MAX_DAYS", 365)
REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "access.api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "access.api.schema.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.CursorPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # Over the rate: 429 with Retry-After. Counted in the cache (Redis when configured,
    # so that every web process shares the counts). See access/api/throttling.py.
    "DEFAULT_THROTTLE_CLASSES": [
        "access.api.throttling.AnonThrottle",
        "access.api.throttling.UserThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        # Per client IP: anonymous calls and calls with a bad API token.
        "anon": env_rate("API_THROTTLE_ANON", "60/minute"),
        # Per user, over every endpoint.
        "user": env_rate("API_THROTTLE_USER", "600/minute"),
        # Per user, creating API tokens (the API and the tokens page).
        "token_create": env_rate("API_THROTTLE_TOKEN_CREATE", "20/hour"),
    },
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append(
        "rest_framework.renderers.BrowsableAPIRenderer"
    )
SPECTACULAR_SETTINGS = {
    "TITLE": "Portcullis API",
    "DESCRIPTION": "Access governance for AWS: inventory, requests, grants and the audit log.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # Required text fields say minLength 1, as the serializers check.
    "ENFORCE_NON_BLANK_FIELDS": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Audit ----------------------------------------------------------------------
# The audit app imports no other app; the rule deciding who may read the log
# lives with every other rule, in access.permissions.
AUDIT_READ_RULE = "access.permissions.can_view_audit_log"
# The client IP (audit log, login and API rate limits) is the address the trusted
# proxies saw: the TRUSTED_PROXY_COUNT-th hop of X-Forwarded-For from the right. The hops
# to its left are written by the client and are never believed. 0: no proxy, the peer.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
if TRUSTED_PROXY_COUNT < 0:
    raise ImproperlyConfigured(
        f"TRUSTED_PROXY_COUNT={TRUSTED_PROXY_COUNT} must be 0 or more: the number of proxies "
        "you run in front of Portcullis that append to X-Forwarded-For."
    )
if env_bool("USE_X_FORWARDED_FOR", False):
    raise ImproperlyConfigured(
        "USE_X_FORWARDED_FOR is gone: it believed the first hop of X-Forwarded-For, which the "
        "client writes. Remove it and set TRUSTED_PROXY_COUNT to the number of proxies in "
        "front of Portcullis (1 behind a single load balancer)."
    )
# allauth reads the client IP through AccountAdapter.get_client_ip, which uses the same
# rule; its own setting is kept in step for any code of allauth that reads it directly.
ALLAUTH_TRUSTED_PROXY_COUNT = TRUSTED_PROXY_COUNT
# Keys (comma-separated, kept outside the database) chaining audit events with HMAC-SHA256:
# the first signs new events, all verify. Unset: plain SHA-256.
AUDIT_CHAIN_KEY = [key.strip() for key in env_str("AUDIT_CHAIN_KEY").split(",") if key.strip()]
if any(len(key) < 32 for key in AUDIT_CHAIN_KEY):
    raise ImproperlyConfigured(
        "AUDIT_CHAIN_KEY: each key must be at least 32 characters; generate one with: "
        "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
    )

# Internationalisation and static files --------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
# The portal's own CSS beside templates/ (the apps keep theirs in <app>/static/).
STATICFILES_DIRS = [BASE_DIR / "static"]

# Security -------------------------------------------------------------------
# Content-Security-Policy (django-csp): scripts and styles only from our own static
# files, never inline, on every page (the portal, the admin, the API docs). Images may
# also be data: URLs (Swagger UI's icons). No form-action: signing in with SSO and
# connecting to AWS post a form that redirects to the identity provider, whose address
# is configuration, and browsers hold form-action to that redirect too.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'none'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "manifest-src": ["'self'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
        "frame-ancestors": ["'none'"],
    },
}
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 8 * 3600)
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        # Preloading binds the whole registrable domain to HTTPS in browsers for
        # good; that is the operator's decision (SECURE_HSTS_PRELOAD=true), so
        # check --deploy does not warn about it being off.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
    if env_bool("BEHIND_TLS_PROXY", True):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "botocore": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
    },
}
