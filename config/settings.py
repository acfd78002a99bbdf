"""One settings module, driven by the environment (see README, "Configuration")."""

import hashlib
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import (
    env_bool,
    env_choice,
    env_email,
    env_float,
    env_int,
    env_list,
    env_str,
)

# Importing this module reads the environment and nothing else: no folder, no file is created
# here. What writes under VAR_DIR makes its folder (runstack, the broker, the SQLite backend,
# the import uploads).
BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR") or BASE_DIR / "var")

# "development" (the default: a laptop, `make run`) or "production".
DJANGO_ENV = env_choice("DJANGO_ENV", "development", ("development", "production"))
PRODUCTION = DJANGO_ENV == "production"

DEBUG = env_bool("DEBUG", default=not PRODUCTION)

# Development only: `make run` (runstack) writes a random key here on its first start, so
# sessions survive restarts. Without the file (tests, a bare `manage.py`), a key derived from
# this checkout's VAR_DIR: stable across restarts, never accepted in production.
DEV_SECRET_KEY_FILE = VAR_DIR / "secret_key"

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY must be set when DJANGO_ENV=production.")
    if DEV_SECRET_KEY_FILE.is_file():
        SECRET_KEY = DEV_SECRET_KEY_FILE.read_text().strip()
    else:
        SECRET_KEY = "development-" + hashlib.sha256(str(VAR_DIR).encode()).hexdigest()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "" if PRODUCTION else "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    # Django's admin, whose login asks for the second factor (accounts.sites).
    "accounts.apps.TwoStepAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_filters",
    "django_tables2",
    "django_celery_beat",
    "axes",
    "csp",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "crm",
    "segmentation",
    "offers",
    "pages",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "api",
    # After django-otp's plugins: its admin takes their device pages out of the admin.
    "accounts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Dates on every page in the business's time zone (the Settings page, crm.BusinessSettings).
    "config.middleware.BusinessTimeZoneMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.user.is_verified(): whether this session passed the second step of the login.
    "django_otp.middleware.OTPMiddleware",
    # Before the staff check, so an expired session is sent to the login page.
    "config.middleware.SessionTimeoutMiddleware",
    # Django's LoginRequiredMiddleware, also requiring is_staff (login_not_required opts out).
    "config.middleware.StaffRequiredMiddleware",
    # Then the second step: a user with an authenticator app enters a code first, an owner
    # without one sets it up first when OTP_REQUIRED_FOR_OWNERS (accounts.middleware).
    "accounts.middleware.TwoStepMiddleware",
    # Then the permission each page needs (config.access), per role.
    "config.middleware.PermissionRequiredMiddleware",
    # What was viewed or started, for the audit trail (crm.AuditEntry).
    "config.middleware.AuditTrailMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns lockouts into a response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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
                "config.context_processors.business",
            ],
        },
    },
]

# Database: SQLite under var/ unless DATABASE_URL says otherwise (PostgreSQL in production).
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}")
DATABASES = {
    "default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("CONN_MAX_AGE", 0, low=0))
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Django's backend, plus: it creates the database file's folder (VAR_DIR) when missing.
    DATABASES["default"]["ENGINE"] = "config.sqlite3"
    DATABASES["default"]["OPTIONS"] = {
        # IMMEDIATE takes the write lock at BEGIN, so two writers queue on busy_timeout
        # instead of one failing with "database is locked" when it upgrades its lock.
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
        ),
    }
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test_db.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5, low=1)
AXES_COOLOFF_TIME = 1  # hours
# Locked per user name at an address, and per address across user names, so one address
# cannot try user names forever.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]
AXES_CLIENT_IP_CALLABLE = "config.client_ip.axes_client_ip"
AXES_RESET_ON_SUCCESS = True

# Two-step sign-in (accounts/): owners (superusers and the Owner group) must set up an
# authenticator app before any other page, on by default in production. Codes of the
# authenticator app are named after OTP_TOTP_ISSUER in the app; a half-done login (password
# right, code not yet entered) is forgotten after TWO_STEP_PENDING_SECONDS.
OTP_REQUIRED_FOR_OWNERS = env_bool("OTP_REQUIRED_FOR_OWNERS", default=PRODUCTION)
OTP_TOTP_ISSUER = "Customer CRM"
TWO_STEP_PENDING_SECONDS = 5 * 60

LOGIN_URL = "admin:login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "admin:login"

LANGUAGE_CODE = "en"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Made by collectstatic, or by runstack in development: WhiteNoise warns while it is missing.
STATIC_ROOT = VAR_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# The currency purchases are recorded in unless an import says otherwise. This, TIME_ZONE and
# BUSINESS_NAME are the first values of the owner's Settings page, which wins once saved.
DEFAULT_CURRENCY = env_str("DEFAULT_CURRENCY", "EUR")

# Cache: per-process memory by default. Rate limits (the public feedback page) count per
# process then; with several web workers in production point CACHE_URL at a shared Redis,
# e.g. redis://127.0.0.1:6379/1.
if CACHE_URL := env_str("CACHE_URL"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
        }
    }

# Feedback links sent to customers: days a link stays valid; (requests, seconds) allowed per
# client IP on the page and per link for submissions; the request header holding the
# client's address (behind a reverse proxy, e.g. HTTP_X_REAL_IP set by the proxy).
FEEDBACK_LINK_MAX_AGE_DAYS = env_int("FEEDBACK_LINK_MAX_AGE_DAYS", 30, low=1)
# Days the audit trail keeps an entry (crm.audit.audit_prune, daily). At least 30: the
# database refuses to delete a younger entry (crm migration 0016).
AUDIT_RETENTION_DAYS = env_int("AUDIT_RETENTION_DAYS", 365, low=30)
# Per-customer rows of one run (predictions) are kept for the last RUN_ROWS_KEEP_RUNS
# succeeded runs and any run of the last RUN_ROWS_KEEP_DAYS days (segmentation.customer_rows,
# daily); the latest run's rows, the segment history and the stored figures always.
RUN_ROWS_KEEP_RUNS = env_int("RUN_ROWS_KEEP_RUNS", 3, low=1)
RUN_ROWS_KEEP_DAYS = env_int("RUN_ROWS_KEEP_DAYS", 30, low=0)
# `manage.py backup` (and its daily schedule) writes here and keeps the newest BACKUP_KEEP.
BACKUP_DIR = Path(env_str("BACKUP_DIR") or VAR_DIR / "backups")
BACKUP_KEEP = env_int("BACKUP_KEEP", 7, low=1)
FEEDBACK_LINK_RATE_PER_IP = (env_int("FEEDBACK_LINK_RATE_PER_IP", 30, low=1), 600)
FEEDBACK_LINK_RATE_PER_TOKEN = (env_int("FEEDBACK_LINK_RATE_PER_TOKEN", 10, low=1), 3600)

# The request header holding the client's address, for lockouts and rate limits. Empty:
# the connection's address (REMOTE_ADDR). Behind one reverse proxy, the header it sets, e.g.
# HTTP_X_FORWARDED_FOR (its rightmost address is used: the one the proxy appended).
# FEEDBACK_LINK_CLIENT_IP_HEADER is its older name.
CLIENT_IP_HEADER = env_str("CLIENT_IP_HEADER", env_str("FEEDBACK_LINK_CLIENT_IP_HEADER"))

# Segmentation engine overrides (segmentation.engine.EngineConfig): the range of k tried,
# the method ("auto", "rfm", "kmeans", "minibatch" or "agglomerative"), the scaling
# ("standard" or "robust"), whether the actionable splits run, and the age in days of the
# newest purchase above which a run warns that the data looks stale. Unset variables leave
# the engine's own defaults (0 and "" mean unset).
SEGMENTATION_ENGINE = {
    key: value
    for key, value in {
        "k_min": env_int("SEGMENTATION_K_MIN", 0, low=0),
        "k_max": env_int("SEGMENTATION_K_MAX", 0, low=0),
        "method": env_choice(
            "SEGMENTATION_METHOD", "", ("auto", "rfm", "kmeans", "minibatch", "agglomerative")
        ),
        "scaling": env_choice("SEGMENTATION_SCALING", "", ("standard", "robust")),
        "stale_days": env_int("SEGMENTATION_STALE_DAYS", 0, low=0),
    }.items()
    if value
}
if env_str("SEGMENTATION_REFINE"):
    SEGMENTATION_ENGINE["refine"] = env_bool("SEGMENTATION_REFINE")

# A running segmentation touches its heartbeat every RUN_HEARTBEAT_SECONDS; a run silent for
# RUN_STALE_SECONDS belongs to a worker that died and its slot is freed by the next trigger.
RUN_HEARTBEAT_SECONDS = env_int("RUN_HEARTBEAT_SECONDS", 30, low=1)
RUN_STALE_SECONDS = env_int("RUN_STALE_SECONDS", 5 * 60, low=60)

# Customer predictions (segmentation.predictions): the models' time unit in days (7: weeks,
# as the published BG/NBD tables, so fitted parameters can be compared with them; predictions
# do not depend on it) and the monthly discount rate of the 12-month customer value.
PREDICTIONS_TIME_UNIT_DAYS = env_float("PREDICTIONS_TIME_UNIT_DAYS", 7.0, low=1.0, high=31.0)
PREDICTIONS_MONTHLY_DISCOUNT = env_float("PREDICTIONS_MONTHLY_DISCOUNT", 0.01, low=0.0, high=0.5)
# A run reads and fits the predictions on a second connection while it computes and writes
# the segments; off, one after the other. Alongside is faster but keeps one more core busy:
# on a machine of two cores or fewer it would take the core the web pages need (measured at
# 1M customers: pages 2-2.4x slower during a run, against 1.1-1.2x one after the other), so
# it is on by default only with more cores.
PREDICTIONS_ALONGSIDE = env_bool("PREDICTIONS_ALONGSIDE", (os.cpu_count() or 1) > 2)
# A worker keeps the memory its runs free for their next arrays instead of asking the system
# for fresh pages for each (segmentation.run_memory); off, glibc's and numpy's defaults apply.
RUN_MEMORY_REUSE = env_bool("RUN_MEMORY_REUSE", True)

# CSV imports in the admin run on the worker (crm.import_jobs): the largest upload accepted,
# the most a gzip upload may expand to (counted while it expands, so a "zip bomb" stops
# there), the hours after which an upload nobody confirmed is deleted, and the seconds of
# silence after which a job's worker is taken for dead.
IMPORT_MAX_UPLOAD_MB = env_int("IMPORT_MAX_UPLOAD_MB", 200, low=1)
IMPORT_MAX_DECOMPRESSED_MB = env_int("IMPORT_MAX_DECOMPRESSED_MB", 250, low=1)
IMPORT_ABANDONED_HOURS = env_int("IMPORT_ABANDONED_HOURS", 24, low=1)
IMPORT_STALE_SECONDS = env_int("IMPORT_STALE_SECONDS", 10 * 60, low=60)

# E-mail. EMAIL_URL (smtp://user:pass@host:port, ?tls or ?ssl) or the EMAIL_HOST, EMAIL_PORT,
# EMAIL_HOST_USER, EMAIL_HOST_PASSWORD, EMAIL_USE_TLS variables; with neither, development
# prints messages on the console (`make run` shows them) and production uses Django's default
# (SMTP on localhost:25), so a message is never reported sent when it went nowhere.
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 30, low=1)
if _email_from_url := env_email("EMAIL_URL"):
    globals().update(_email_from_url)
elif env_str("EMAIL_HOST"):
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = env_str("EMAIL_HOST")
    EMAIL_PORT = env_int("EMAIL_PORT", 25, low=1, high=65535)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS")
    EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL")
    if EMAIL_USE_TLS and EMAIL_USE_SSL:
        raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL cannot both be on.")
elif not PRODUCTION:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "shop@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# The shop's name in offer e-mails ({business_name}) and the public offer pages.
BUSINESS_NAME = env_str("BUSINESS_NAME", "Our shop")
# The address customers reach the public pages at (links in e-mails are sent by the worker,
# which has no request to read it from), e.g. https://crm.example.com.
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
# Offer e-mails per second (a provider's limit; the sending task sleeps to stay under it), how
# many one task claims at a time, how long a personal offer link stays valid, and after how
# many minutes a message left "sending" by a worker that died is given up (not resent).
EMAIL_SEND_RATE = env_float("EMAIL_SEND_RATE", 10.0, low=0.01, high=10_000.0)
EMAIL_SEND_BATCH = env_int("EMAIL_SEND_BATCH", 100, low=1)
OFFER_LINK_MAX_AGE_DAYS = env_int("OFFER_LINK_MAX_AGE_DAYS", 30, low=1)
EMAIL_SENDING_STALE_MINUTES = env_int("EMAIL_SENDING_STALE_MINUTES", 15, low=1)
# Bounces (offers.bounces): the address bounce reports come back to, e.g.
# bounces@shop.example.com (each message is sent from bounces+<its own tag>@...; the mail
# server must deliver that address's "+" variants to one mailbox); unset, reports are matched
# by Message-ID. EMAIL_BOUNCE_MAILDIR: a Maildir the worker reads them from every 15 minutes
# (unset: run `manage.py bounces_process` yourself).
EMAIL_BOUNCE_ADDRESS = env_str("EMAIL_BOUNCE_ADDRESS")
EMAIL_BOUNCE_MAILDIR = env_str("EMAIL_BOUNCE_MAILDIR")
# Requests per client address per 10 minutes to the public pages behind offer e-mails (the
# offer link, the unsubscribe link); beyond it they answer 429.
PUBLIC_LINK_RATE_PER_IP = (env_int("PUBLIC_LINK_RATE_PER_IP", 60, low=1), 600)

# REST API (api/): tokens or a staff session; requests per token (or per staff user) and
# period; webhook secrets (an endpoint whose secret is unset answers 503).
API_RATE_LIMIT = env_str("API_RATE_LIMIT", "600/min")
STRIPE_WEBHOOK_SECRET = env_str("STRIPE_WEBHOOK_SECRET")
STRIPE_WEBHOOK_TOLERANCE = env_int("STRIPE_WEBHOOK_TOLERANCE", 300, low=1)
SHOPIFY_WEBHOOK_SECRET = env_str("SHOPIFY_WEBHOOK_SECRET")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["api.permissions.TokenScopePermission"],
    "DEFAULT_THROTTLE_CLASSES": ["api.throttling.TokenRateThrottle"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Customer CRM API",
    "DESCRIPTION": "Customers, purchases and feedback in; segments out. "
    "Authenticate with `Authorization: Bearer <token>`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["api.permissions.TokenScopePermission"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# Celery: an embedded Valkey on a unix socket under var/ (started by `make run` and the
# tests) unless CELERY_BROKER_URL points at a Redis server.
EMBEDDED_BROKER_SOCKET = VAR_DIR / "valkey.sock"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", f"redis+socket://{EMBEDDED_BROKER_SOCKET}")
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", CELERY_BROKER_URL)
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 30 * 60, low=1)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 35 * 60, low=1)
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_TASK_TRACK_STARTED = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The worker and beat ride out a broker outage of any length: they keep reconnecting.
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# A frozen or absent broker must not hang a web request that enqueues a task: one connect
# of at most 2 s and one quick retry, then the request says the queue is down.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "socket_timeout": 2,
    "socket_connect_timeout": 2,
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 1,
    # Longer than the hard time limit so a long recluster is not redelivered mid-run.
    "visibility_timeout": 2 * 3600,
}
# The result backend (the same Redis): give up quickly too, instead of 20 retries a second apart.
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {
    "retry_policy": {"timeout": 2.0, "max_retries": 1, "interval_start": 0, "interval_step": 0.2}
}
CELERY_REDIS_SOCKET_TIMEOUT = 2
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = 2
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ALWAYS_EAGER = False

# Sessions end after SESSION_IDLE_MINUTES without a request and SESSION_MAX_HOURS after the
# login, whatever happens in between (config.middleware.SessionTimeoutMiddleware).
SESSION_IDLE_SECONDS = env_int("SESSION_IDLE_MINUTES", 30, low=1) * 60
SESSION_MAX_SECONDS = env_int("SESSION_MAX_HOURS", 12, low=1) * 3600
SESSION_COOKIE_AGE = SESSION_MAX_SECONDS

# Content-Security-Policy: scripts only from this site (no inline script anywhere); inline
# style attributes are allowed (templates size bars and swatches with them).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# Security headers; strict in production (`manage.py check --deploy` passes with no warning).
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # __Host- cookies: HTTPS only, this host only, whole site (no Domain attribute allowed).
    SESSION_COOKIE_NAME = "__Host-sessionid"
    CSRF_COOKIE_NAME = "__Host-csrftoken"
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000, low=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    # Customers' link tokens and search terms never reach a log (config.log_redaction).
    "filters": {"redact": {"()": "config.log_redaction.RedactingFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's own handlers (its DEBUG console, mail to ADMINS) replaced by the console
        # above, so nothing it logs skips the redaction.
        "django": {"level": LOG_LEVEL},
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.db.backends": {"level": "WARNING"},
    },
}
