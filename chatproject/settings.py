"""Settings for the chat product, driven by environment variables.

The defaults run on a fresh machine with nothing else: SQLite, the in-process event
log and the offline demo model. See README.md for every variable.
"""

import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from chatproject.env import env_bool, env_fernet_keys, env_int, env_number, env_str, env_url

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DJANGO_DEBUG", False)
# pytest sets PYTEST_VERSION while it runs.
TESTING = bool(env_str("PYTEST_VERSION"))

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG and not TESTING:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it to a long random string "
            "(python -c 'import secrets; print(secrets.token_urlsafe(50))'), "
            "or set DJANGO_DEBUG=1 for local development."
        )
    SECRET_KEY = "insecure-development-key-never-use-in-production"
elif not DEBUG and not TESTING and (len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5):
    # The bar of `manage.py check --deploy` (security.W009), enforced at start-up:
    # sessions and password-reset links are only as safe as this key.
    raise ImproperlyConfigured(
        f"SECRET_KEY is too weak ({len(SECRET_KEY)} characters, {len(set(SECRET_KEY))} different ones). "
        "Set it to a long random string (python -c 'import secrets; print(secrets.token_urlsafe(50))')."
    )

ALLOWED_HOSTS = [h.strip() for h in env_str("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in env_str("CSRF_TRUSTED_ORIGINS").split(",") if o.strip()]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "axes",
    "chat",
]

# Django's middleware, each as its subclass in chat/serving/middleware.py whose
# hooks run on the event loop instead of one trip to a thread per hook.
MIDDLEWARE = [
    "chat.serving.middleware.SecurityMiddleware",
    "chat.serving.middleware.SessionMiddleware",
    "chat.serving.middleware.CommonMiddleware",
    "chat.serving.middleware.CsrfViewMiddleware",
    "chat.serving.middleware.AuthenticationMiddleware",
    "chat.serving.middleware.MessageMiddleware",
    "chat.serving.middleware.XFrameOptionsMiddleware",
    "chat.serving.middleware.HtmxMiddleware",
    "chat.middleware.PrivateResponsesMiddleware",
    "chat.middleware.ContentSecurityPolicyMiddleware",
    # Last, as django-axes asks: it turns a refused sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]
# Django's deploy checks for these three middleware want its exact paths; the
# subclasses above are checked by chat.serving.middleware.check_security_middleware.
SILENCED_SYSTEM_CHECKS = ["security.W001", "security.W002", "security.W003"]

ROOT_URLCONF = "chatproject.urls"
ASGI_APPLICATION = "chatproject.asgi.application"

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
            ],
        },
    },
]

# Database: SQLite in WAL mode by default; DATABASE_URL selects PostgreSQL.
DATABASE_URL = env_url("DATABASE_URL", ("sqlite", "postgres", "postgresql"))
if DATABASE_URL:
    try:
        DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_health_checks=True)}
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not usable: {exc}") from None
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
        }
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Tests use a file too: generations write from their own threads, and an
    # in-memory shared-cache database would turn that into "table is locked".
    DATABASES["default"]["TEST"] = {"NAME": env_str("SQLITE_TEST_PATH", str(BASE_DIR / ".test-db.sqlite3"))}
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets the stream readers work while a generation writes; the busy
        # timeout and IMMEDIATE transactions turn lock contention into waiting.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }

# ORM calls run on CHAT_DB_THREADS shared threads (chat/serving/db_threads.py), so a
# process holds at most that many connections. SQLite takes one writer at a
# time: one thread, as more would only share the interpreter lock with the
# event loop and make every stream wait its turn (measured: docs/benchmarks.md).
# PostgreSQL: a few, as each waits on the network. Connections are kept
# DB_CONN_MAX_AGE seconds; tests close them after each use, so the test
# database can be dropped at the end.
CHAT_DB_THREADS = env_int("CHAT_DB_THREADS", 1 if DATABASES["default"]["ENGINE"].endswith("sqlite3") else 4, minimum=1)
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE", 0 if TESTING else 600, minimum=0)

# Event log: in-process by default; REDIS_URL selects Redis Streams.
REDIS_URL = env_url("REDIS_URL", ("redis", "rediss", "unix"))
if REDIS_URL:
    from redis.connection import parse_url

    try:
        parse_url(REDIS_URL)
    except ValueError as exc:
        raise ImproperlyConfigured(f"REDIS_URL is not usable: {exc}") from None
# Sessions: one process (no REDIS_URL) keeps them in its memory in front of the
# database, which saves a query per request (chat/serving/sessions.py). Several processes
# read them from the database: a memory cache per process would still accept a
# session that another process has logged out.
if not REDIS_URL:
    SESSION_ENGINE = "chat.serving.sessions"
# Every key of the event log starts with this, so several sites can share one Redis.
CHAT_REDIS_PREFIX = env_str("CHAT_REDIS_PREFIX", "chat")
if TESTING:
    # Tests reuse message ids across runs, and several runs may share one Redis.
    CHAT_REDIS_PREFIX += f":test-{secrets.token_hex(4)}"
# Events kept per answer in Redis; a reader further behind reads the database.
CHAT_REDIS_STREAM_MAXLEN = env_int("CHAT_REDIS_STREAM_MAXLEN", 20000, minimum=100)
# Connections a worker may hold to Redis. Each stream waiting for events and
# each generation waiting for a Stop holds one for its blocking read: about two
# per answer a worker carries, plus one per viewer beyond the first.
CHAT_REDIS_MAX_CONNECTIONS = env_int("CHAT_REDIS_MAX_CONNECTIONS", 2000, minimum=10)
# An answer's events go to Redis in one write per round trip (those that come
# while a write is under way, together); a pause after each write, in
# milliseconds, makes the batches larger and the writes fewer, at the cost of as
# much delay for the events that wait.
CHAT_EVENT_LOG_COALESCE_MS = env_number("CHAT_EVENT_LOG_COALESCE_MS", 0)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    # Hashing is deliberately slow; tests create many users.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat-home"
LOGOUT_REDIRECT_URL = "login"

# Sign-in throttling (django-axes), for the site's and the admin's login alike:
# after LOGIN_FAILURE_LIMIT failed sign-ins for one username (from any address),
# or from one address (for any usernames), each within LOGIN_LOCKOUT_SECONDS of
# the last, every sign-in they make is refused, the right password too, until
# LOGIN_LOCKOUT_SECONDS pass without one. The attempts are rows in the database:
# every worker counts the same ones, and staff see them in the admin.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(seconds=env_number("LOGIN_LOCKOUT_SECONDS", 900, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# A success does not clear the address's count: a user with one account must not
# be able to reset it between guesses at another.
AXES_RESET_ON_SUCCESS = False
AXES_LOCKOUT_CALLABLE = "chat.lockout.locked_out"
# The address is REMOTE_ADDR (django-ipware is not installed): behind the proxy,
# daphne's --proxy-headers puts the client's address there (docs/production.md);
# no header that a client sends is read here.
# Only failures are stored (and dropped once they no longer count), not every sign-in.
AXES_DISABLE_ACCESS_LOG = True
# chat/admin.py shows the attempts with what they lock.
AXES_ENABLE_ADMIN = False

# Single sign-on with OpenID Connect (mozilla-django-oidc), on when OIDC_ISSUER is
# set. A user is found by the provider's subject (chat.models.SignOnIdentity) and
# created at the first sign-in; OIDC_GROUPS_CLAIM maps the provider's groups to
# Django groups at each sign-in (chat/sso/accounts.py).
OIDC_ISSUER = env_url("OIDC_ISSUER", ("http", "https"))
OIDC_PROVIDER_NAME = env_str("OIDC_PROVIDER_NAME", "single sign-on")
OIDC_USERNAME_CLAIM = env_str("OIDC_USERNAME_CLAIM", "preferred_username")
OIDC_GROUPS_CLAIM = env_str("OIDC_GROUPS_CLAIM")
OIDC_GROUPS_PREFIX = env_str("OIDC_GROUPS_PREFIX")
# Passwords of accounts kept here: off, only single sign-on signs anyone in, the
# admin's login too.
CHAT_LOCAL_LOGIN = env_bool("CHAT_LOCAL_LOGIN", True)
OIDC_OP_END_SESSION_ENDPOINT = ""
if OIDC_ISSUER:
    from chatproject.oidc import discover

    OIDC_RP_CLIENT_ID = env_str("OIDC_CLIENT_ID")
    OIDC_RP_CLIENT_SECRET = env_str("OIDC_CLIENT_SECRET")
    if not OIDC_RP_CLIENT_ID or not OIDC_RP_CLIENT_SECRET:
        raise ImproperlyConfigured("OIDC_ISSUER is set: OIDC_CLIENT_ID and OIDC_CLIENT_SECRET must be set too.")
    OIDC_RP_SCOPES = env_str("OIDC_SCOPES", "openid email profile")
    OIDC_RP_SIGN_ALGO = env_str("OIDC_SIGN_ALGO", "RS256")
    OIDC_USE_PKCE = True
    # Seconds each request to the provider may take (discovery, token, keys, user info).
    OIDC_TIMEOUT = env_number("OIDC_TIMEOUT", 10, minimum=0.1)
    _discovered = discover(OIDC_ISSUER, OIDC_TIMEOUT)
    # The issuer exactly as the provider spells it, which its ID tokens must carry.
    OIDC_ISSUER = _discovered["issuer"]
    OIDC_OP_AUTHORIZATION_ENDPOINT = _discovered["authorization_endpoint"]
    OIDC_OP_TOKEN_ENDPOINT = _discovered["token_endpoint"]
    OIDC_OP_USER_ENDPOINT = _discovered["userinfo_endpoint"]
    OIDC_OP_JWKS_ENDPOINT = _discovered["jwks_uri"]
    # Logging out also ends the provider's session where it offers that; the ID
    # token is kept in the session as the hint that request needs.
    OIDC_OP_END_SESSION_ENDPOINT = _discovered.get("end_session_endpoint", "")
    OIDC_STORE_ID_TOKEN = bool(OIDC_OP_END_SESSION_ENDPOINT)
    AUTHENTICATION_BACKENDS.append("chat.sso.backend.SignOnBackend")
if not CHAT_LOCAL_LOGIN:
    if not OIDC_ISSUER:
        raise ImproperlyConfigured("CHAT_LOCAL_LOGIN=0 needs OIDC_ISSUER: nobody could sign in.")
    # Without it no password signs in, here or in the admin, and sessions signed
    # in with a password end.
    AUTHENTICATION_BACKENDS.remove("django.contrib.auth.backends.ModelBackend")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
# Serve /static/ from the ASGI app itself; turn off behind a proxy that serves
# STATIC_ROOT (see README, Running in production).
SERVE_STATIC = env_bool("SERVE_STATIC", True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# HTTPS hardening: on whenever the site is served over HTTPS behind a proxy.
HTTPS = env_bool("HTTPS", False)
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    # Both reach beyond this site, so each is the operator's decision: every
    # subdomain must then serve HTTPS too, and a preloaded domain stays in the
    # browsers' lists for months after the header goes.
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    if SECURE_HSTS_PRELOAD and not SECURE_HSTS_INCLUDE_SUBDOMAINS:
        raise ImproperlyConfigured(
            "SECURE_HSTS_PRELOAD=1 needs SECURE_HSTS_INCLUDE_SUBDOMAINS=1: "
            "browsers preload only domains whose every subdomain is HTTPS-only."
        )
    # `check --deploy` warns when either is off (security.W005, W021): off is a choice here.
    if not SECURE_HSTS_INCLUDE_SUBDOMAINS:
        SILENCED_SYSTEM_CHECKS.append("security.W005")
    if not SECURE_HSTS_PRELOAD:
        SILENCED_SYSTEM_CHECKS.append("security.W021")
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# The model. With no OPENAI_API_KEY the offline demo model answers.
OPENAI_API_KEY = env_str("OPENAI_API_KEY")
OPENAI_BASE_URL = env_url("OPENAI_BASE_URL", ("http", "https"))
CHAT_MODEL = env_str("CHAT_MODEL", "gpt-4o-mini" if OPENAI_API_KEY else "demo")
CHAT_MAX_TOKENS = env_int("CHAT_MAX_TOKENS", 2048, minimum=1)
# Provider keys kept in the database are encrypted with these Fernet keys (the
# first encrypts, all decrypt: rotation); unset, with a key derived from
# SECRET_KEY (chat/secrets.py).
CHAT_ENCRYPTION_KEYS = env_fernet_keys("CHAT_ENCRYPTION_KEYS")
# The SDK retries a failed request until the response starts; mid-stream
# failures are ours to handle (see chat/provider/client.py).
CHAT_MAX_RETRIES = env_int("CHAT_MAX_RETRIES", 2)
CHAT_CONNECT_TIMEOUT = env_number("CHAT_CONNECT_TIMEOUT", 10, minimum=0.1)
# Longest wait for the next chunk of a streaming answer.
CHAT_IDLE_TIMEOUT = env_number("CHAT_IDLE_TIMEOUT", 60, minimum=0.1)
CHAT_MAX_TOOL_ROUNDS = env_int("CHAT_MAX_TOOL_ROUNDS", 5, minimum=1)
CHAT_TOOL_TIMEOUT = env_number("CHAT_TOOL_TIMEOUT", 10, minimum=0.1)
# How long a tool call that asks first waits for the user's Approve or Deny.
CHAT_APPROVAL_TIMEOUT = env_number("CHAT_APPROVAL_TIMEOUT", 300, minimum=0.1)
# How long checking an MCP server (connect and list its tools) may take.
CHAT_MCP_CHECK_TIMEOUT = env_number("CHAT_MCP_CHECK_TIMEOUT", 15, minimum=0.1)
# What a provider sends is bounded, so a broken or hostile one cannot exhaust a
# worker (past a limit, the answer ends with an error): tool calls per round, the
# length of a call's arguments, the longest line or event of its stream in bytes
# (a chunk carrying a whole tool call must fit, escaped), and the bytes of one
# reply (one model round; some 250 a token).
CHAT_MAX_TOOL_CALLS = env_int("CHAT_MAX_TOOL_CALLS", 16, minimum=1)
CHAT_MAX_TOOL_ARGUMENT_CHARS = env_int("CHAT_MAX_TOOL_ARGUMENT_CHARS", 50000, minimum=100)
CHAT_MAX_PROVIDER_LINE_BYTES = env_int("CHAT_MAX_PROVIDER_LINE_BYTES", 1_000_000, minimum=1000)
CHAT_MAX_PROVIDER_RESPONSE_BYTES = env_int("CHAT_MAX_PROVIDER_RESPONSE_BYTES", 64_000_000, minimum=100_000)
# A longer tool result is cut, with a note saying so, before the model and the
# page get it.
CHAT_MAX_TOOL_RESULT_CHARS = env_int("CHAT_MAX_TOOL_RESULT_CHARS", 20000, minimum=100)
# Seconds between characters of the demo model (a person can watch it).
CHAT_DEMO_DELAY = env_number("CHAT_DEMO_DELAY", 0.03)

# Streaming and persistence.
CHAT_FLUSH_INTERVAL = env_number("CHAT_FLUSH_INTERVAL", 0.25, minimum=0.01)
CHAT_HEARTBEAT_INTERVAL = env_number("CHAT_HEARTBEAT_INTERVAL", 2, minimum=0.05)
CHAT_HEARTBEAT_STALE = env_number("CHAT_HEARTBEAT_STALE", 15, minimum=0.1)
CHAT_PING_INTERVAL = env_number("CHAT_PING_INTERVAL", 15, minimum=0.1)
CHAT_SSE_RETRY_MS = env_int("CHAT_SSE_RETRY_MS", 2000, minimum=100)
# A generation nobody has watched for this long is stopped as interrupted.
CHAT_UNWATCHED_LIMIT = env_number("CHAT_UNWATCHED_LIMIT", 600, minimum=1)
# How long a finished answer's events stay in the event log for late readers.
CHAT_EVENT_LOG_TTL = env_number("CHAT_EVENT_LOG_TTL", 300, minimum=1)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "chat": {"handlers": ["console"], "level": env_str("CHAT_LOG_LEVEL", "INFO"), "propagate": False},
        # A line per failed sign-in and per lockout.
        "axes": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        # One line per provider request is noise next to the per-answer line.
        "httpx2": {"level": "WARNING"},
    },
}

# Limits.
CHAT_SYSTEM_PROMPT = env_str("CHAT_SYSTEM_PROMPT")
# History sent to the model, in characters of JSON; the oldest turns go first.
CHAT_MAX_CONTEXT_CHARS = env_int("CHAT_MAX_CONTEXT_CHARS", 60000, minimum=1000)
CHAT_MAX_ANSWER_CHARS = env_int("CHAT_MAX_ANSWER_CHARS", 100000, minimum=100)
CHAT_MAX_PROMPT_CHARS = env_int("CHAT_MAX_PROMPT_CHARS", 20000, minimum=1)
# The largest file a user may import (their own export, or ChatGPT's conversations.json).
CHAT_MAX_IMPORT_BYTES = env_int("CHAT_MAX_IMPORT_BYTES", 50_000_000, minimum=1000)
# Share links anyone may open, logged in or not; off: only people logged in to the site.
CHAT_ALLOW_PUBLIC_SHARES = env_bool("CHAT_ALLOW_PUBLIC_SHARES", False)
CHAT_MAX_CONCURRENT_ANSWERS = env_int("CHAT_MAX_CONCURRENT_ANSWERS", 3, minimum=1)
CHAT_PROMPTS_PER_MINUTE = env_int("CHAT_PROMPTS_PER_MINUTE", 20, minimum=1)
# Answer streams one user may have open at once (tabs, devices, across workers):
# a newer one replaces the oldest, which asks its page to reload.
CHAT_MAX_STREAMS_PER_USER = env_int("CHAT_MAX_STREAMS_PER_USER", 10, minimum=1)
# How often a waiting stream checks the database for an answer its log lacks.
CHAT_STREAM_POLL = env_number("CHAT_STREAM_POLL", 3, minimum=0.05)
