"""Settings from environment variables, validated once at startup.

An invalid value is a ``ConfigError`` naming the variable: never a silent fallback. Defaults
differ per role (``serve`` runs on the embedded defaults with no configuration at all).
"""

from __future__ import annotations

import enum
import ipaddress
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

from msgspec import Struct

from pixelflow.core.pipeline import DEFAULT_JPEG_SHRINK, JPEG_SHRINK_MODES, JpegShrink
from pixelflow.core.signing import InvalidSecret, hmac_key

T = TypeVar("T")

AuthMode = Literal["api_key", "header", "none"]
LogFormat = Literal["text", "json"]
TracesExporter = Literal["none", "console", "otlp"]


class Role(enum.StrEnum):
    SERVE = "serve"
    API = "api"
    WORKER = "worker"
    MIGRATE = "migrate"
    # Operator commands (`pixelflow keys`, `pixelflow usage`): the database only, defaulting
    # to the SQLite file of a `serve` data directory.
    ADMIN = "admin"


class ConfigError(Exception):
    """A configuration value is missing or invalid; the message names the variable."""


class Address(Struct, frozen=True):
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class Settings(Struct, kw_only=True, frozen=True):
    role: Role
    api_addr: Address
    api_metrics_addr: Address | None
    worker_metrics_addr: Address | None
    data_dir: Path
    database_url: str
    redis_url: str | None
    queue_name: str
    storage_url: str
    s3_endpoint_url: str | None
    public_url: str
    presign_expiry: int
    local_source_root: Path | None
    local_signing_secret: bytes
    auth: AuthMode
    user_id_header: str
    rate_limit_capacity: int
    rate_limit_window: float
    rate_limit_fail_open: bool
    max_source_pixels: int
    max_source_bytes: int
    max_steps: int
    max_body_bytes: int
    max_output_bytes: int
    # Seconds a pipeline may be estimated to cost on the largest allowed source (core.cost);
    # 0 turns the check off.
    pipeline_budget: float
    # Host header names the API answers to; None answers any (a non-loopback listener, whose
    # gateway decides). Entries are lower-case names, "*" (any) or "*.domain" (subdomains).
    allowed_hosts: tuple[str, ...] | None
    worker_concurrency: int
    jpeg_shrink: JpegShrink
    worker_max_active_jobs: int
    worker_max_attempts: int
    worker_job_timeout: float
    worker_retry_backoff: float
    worker_retry_max_backoff: float
    worker_lease_seconds: float
    worker_shutdown_grace: float
    reconcile_interval: float
    webhook_signing_secret: str | None
    webhook_allow_private: bool
    webhook_timeout: float
    webhook_max_attempts: int
    webhook_initial_backoff: float
    webhook_max_backoff: float
    webhook_poll_interval: float
    webhook_concurrency: int
    log_format: LogFormat
    log_level: str
    # `serve` answers /metrics on the API port unless PIXELFLOW_API_METRICS_ADDR is set.
    metrics_on_api_port: bool
    traces_exporter: TracesExporter
    service_name: str


# ---------------------------------------------------------------------------------------------
# Parsers: each takes the variable's name (for the message) and its raw text.
# ---------------------------------------------------------------------------------------------


def _int(name: str, raw: str, low: int = 0, high: int | None = None) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not an integer") from None
    if value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise ConfigError(f"{name}: {value} is out of range ({bound})")
    return value


def _float(name: str, raw: str, low: float = 0.0) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: {raw!r} is not a number") from None
    if value < low:
        raise ConfigError(f"{name}: {value} must be >= {low}")
    return value


def _bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}: {raw!r} is not a boolean (true/false)")


def _choice(name: str, raw: str, choices: tuple[str, ...]) -> str:
    if raw not in choices:
        raise ConfigError(f"{name}: {raw!r} must be one of {', '.join(choices)}")
    return raw


def parse_address(name: str, raw: str) -> Address | None:
    """``host:port``, ``:port`` (all interfaces) or empty (disabled)."""
    raw = raw.strip()
    if not raw:
        return None
    host, sep, port = raw.rpartition(":")
    if not sep:
        raise ConfigError(f"{name}: {raw!r} must look like host:port or :port")
    return Address(host.strip("[]") or "0.0.0.0", _int(name, port, 0, 65535))


def _url(name: str, raw: str, schemes: tuple[str, ...]) -> str:
    scheme = raw.split("://", 1)[0] if "://" in raw else ""
    if scheme not in schemes:
        raise ConfigError(
            f"{name}: {redact_url(raw)!r} must start with one of "
            f"{', '.join(s + '://' for s in schemes)}"
        )
    return raw


def redact_url(raw: str) -> str:
    """``raw`` with any password replaced by ``***``, for messages and logs: a configuration
    error is printed to a terminal or a log collector, where a database password must not go."""
    try:
        parts = urlsplit(raw)
        password = parts.password
    except ValueError:  # not even parseable: show nothing of what follows the scheme
        return raw.split("://", 1)[0] + "://***" if "://" in raw else "***"
    if not password:
        return raw
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostinfo}"))


class _Env:
    """Reads variables, remembering which are required for the role."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self._environ.get(name)
        return default if value is None else value

    def parse(self, name: str, default: str, parser: Callable[[str, str], T]) -> T:
        return parser(name, self._environ.get(name, default))

    def require(self, name: str, role: Role) -> str:
        value = self._environ.get(name, "").strip()
        if not value:
            raise ConfigError(f"{name}: required for `pixelflow {role.value}`")
        return value


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def load_settings(
    role: Role,
    environ: Mapping[str, str] | None = None,
    *,
    overrides: Mapping[str, str] | None = None,
) -> Settings:
    """Build Settings for ``role`` from ``environ`` (default ``os.environ``) plus CLI overrides
    (given as the variables they stand for, so one parser serves both)."""
    merged = dict(os.environ if environ is None else environ)
    merged.update(overrides or {})
    env = _Env(merged)
    embedded = role is Role.SERVE
    cores = _cpu_count()

    data_dir = Path(env.get("PIXELFLOW_DATA_DIR", "./.pixelflow") or "./.pixelflow").resolve()
    api_addr = parse_address(
        "PIXELFLOW_API_ADDR",
        env.get("PIXELFLOW_API_ADDR") or ("127.0.0.1:8080" if embedded else ":8080"),
    )
    if api_addr is None:
        raise ConfigError("PIXELFLOW_API_ADDR: must not be empty")

    embedded_database = f"sqlite:///{data_dir / 'pixelflow.db'}"
    if embedded:
        database_url = env.get("PIXELFLOW_DATABASE_URL") or embedded_database
        redis_url = env.get("PIXELFLOW_REDIS_URL") or None
        storage_url = env.get("PIXELFLOW_STORAGE_URL") or f"file://{data_dir / 'objects'}"
        source_root: str | None = env.get("PIXELFLOW_LOCAL_SOURCE_ROOT") or os.getcwd()
    else:
        if role is Role.ADMIN:
            database_url = env.get("PIXELFLOW_DATABASE_URL") or embedded_database
        else:
            database_url = env.require("PIXELFLOW_DATABASE_URL", role)
        # Only the processes that run jobs need the queue and the object store.
        runs_jobs = role in {Role.API, Role.WORKER}
        redis_url = env.require("PIXELFLOW_REDIS_URL", role) if runs_jobs else None
        storage_url = env.require("PIXELFLOW_STORAGE_URL", role) if runs_jobs else "file:///"
        source_root = env.get("PIXELFLOW_LOCAL_SOURCE_ROOT") or None

    _url("PIXELFLOW_DATABASE_URL", database_url, ("sqlite", "postgresql", "postgres"))
    if database_url.startswith("sqlite") and not database_url.split("://", 1)[1].strip("/"):
        raise ConfigError(
            f"PIXELFLOW_DATABASE_URL: {database_url!r} names no file; use "
            "sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    if redis_url is not None:
        _url("PIXELFLOW_REDIS_URL", redis_url, ("redis", "rediss", "unix"))
    _url("PIXELFLOW_STORAGE_URL", storage_url, ("file", "s3"))

    local_root = Path(source_root).resolve() if source_root else None
    if local_root is not None and not local_root.is_dir():
        raise ConfigError(f"PIXELFLOW_LOCAL_SOURCE_ROOT: {local_root} is not a directory")

    auth = env.parse(
        "PIXELFLOW_AUTH",
        "none" if embedded else "api_key",
        lambda n, r: _choice(n, r, ("api_key", "header", "none")),
    )
    # Without authentication anyone who can connect is the one user: only the HTTP roles
    # listen, and they listen on loopback only.
    if role in {Role.SERVE, Role.API} and auth == "none" and not is_loopback(api_addr.host):
        raise ConfigError(
            f"PIXELFLOW_API_ADDR: {api_addr.host} is not a loopback address; with "
            f"PIXELFLOW_AUTH=none `pixelflow {role.value}` only binds to loopback"
        )

    # `serve` carries both roles' metrics on one endpoint: its own API port, unless an address
    # is set (empty still disables). The other roles listen on their metrics ports by default.
    metrics_on_api_port = embedded and "PIXELFLOW_API_METRICS_ADDR" not in merged
    default_metrics_host = "127.0.0.1" if embedded else ""
    if embedded and env.get("WORKER_METRICS_ADDR"):
        # serve's worker runs inside the API process and nothing would listen there.
        raise ConfigError(
            "WORKER_METRICS_ADDR: not used by `pixelflow serve`, whose in-process worker is "
            "measured with the API (/metrics on its port, or PIXELFLOW_API_METRICS_ADDR); "
            "unset it"
        )
    public_url = _public_url_setting(env.get("PIXELFLOW_PUBLIC_URL") or "") or _public_url(api_addr)
    job_timeout = env.parse("WORKER_JOB_TIMEOUT", "180", lambda n, r: _float(n, r, 0.1))
    retry_backoff = env.parse("WORKER_RETRY_BACKOFF", "2", _float)
    retry_max_backoff = env.parse("WORKER_RETRY_MAX_BACKOFF", "300", _float)
    if retry_backoff > retry_max_backoff:
        raise ConfigError(
            f"WORKER_RETRY_BACKOFF: {retry_backoff:g} s is above "
            f"WORKER_RETRY_MAX_BACKOFF ({retry_max_backoff:g} s)"
        )
    signing_secret = env.get("PIXELFLOW_LOCAL_SIGNING_SECRET") or ""
    webhook_secret = _webhook_secret(env.get("WEBHOOK_SIGNING_SECRET") or None, role, auth)
    webhook_initial_backoff = env.parse("WEBHOOK_INITIAL_BACKOFF", "1", _float)
    webhook_max_backoff = env.parse("WEBHOOK_MAX_BACKOFF", "3600", _float)
    if webhook_max_backoff < webhook_initial_backoff:
        raise ConfigError(
            f"WEBHOOK_MAX_BACKOFF: {webhook_max_backoff:g} is less than "
            f"WEBHOOK_INITIAL_BACKOFF ({webhook_initial_backoff:g})"
        )
    max_active_jobs = env.parse("WORKER_MAX_ACTIVE_JOBS", str(cores), lambda n, r: _int(n, r, 1))

    return Settings(
        role=role,
        api_addr=api_addr,
        api_metrics_addr=env.parse(
            "PIXELFLOW_API_METRICS_ADDR",
            "" if metrics_on_api_port else f"{default_metrics_host}:9090",
            parse_address,
        ),
        worker_metrics_addr=env.parse(
            "WORKER_METRICS_ADDR", f"{default_metrics_host}:9091", parse_address
        ),
        data_dir=data_dir,
        database_url=database_url,
        redis_url=redis_url,
        queue_name=env.parse("PIXELFLOW_QUEUE_NAME", "default", _queue_name),
        storage_url=storage_url,
        s3_endpoint_url=env.get("PIXELFLOW_S3_ENDPOINT_URL") or None,
        public_url=public_url,
        presign_expiry=env.parse(
            "PIXELFLOW_PRESIGN_EXPIRY", "900", lambda n, r: _int(n, r, 1, 604800)
        ),
        local_source_root=local_root,
        local_signing_secret=signing_secret.encode() if signing_secret else b"",
        auth=cast(AuthMode, auth),
        user_id_header=env.parse("PIXELFLOW_USER_ID_HEADER", "X-User-ID", _header_name),
        rate_limit_capacity=env.parse("PIXELFLOW_RATE_LIMIT_CAPACITY", "60", _int),
        rate_limit_window=env.parse(
            "PIXELFLOW_RATE_LIMIT_WINDOW", "60", lambda n, r: _float(n, r, 0.001)
        ),
        rate_limit_fail_open=env.parse("PIXELFLOW_RATE_LIMIT_FAIL_OPEN", "true", _bool),
        max_source_pixels=env.parse(
            "PIXELFLOW_MAX_SOURCE_PIXELS", "100000000", lambda n, r: _int(n, r, 1)
        ),
        max_source_bytes=env.parse(
            "PIXELFLOW_MAX_SOURCE_BYTES", "52428800", lambda n, r: _int(n, r, 1)
        ),
        max_steps=env.parse("PIXELFLOW_MAX_STEPS", "32", lambda n, r: _int(n, r, 1, 1000)),
        max_body_bytes=env.parse(
            "PIXELFLOW_MAX_BODY_BYTES", str(1 << 20), lambda n, r: _int(n, r, 1024)
        ),
        max_output_bytes=env.parse(
            "PIXELFLOW_MAX_OUTPUT_BYTES", str(256 << 20), lambda n, r: _int(n, r, 1024)
        ),
        pipeline_budget=env.parse("PIXELFLOW_PIPELINE_BUDGET", str(job_timeout), _float),
        allowed_hosts=_allowed_hosts(
            "PIXELFLOW_ALLOWED_HOSTS", env.get("PIXELFLOW_ALLOWED_HOSTS"), api_addr, public_url
        ),
        # Twice the jobs in libvips: a job uploading its outputs or writing to the database
        # leaves its libvips slot to one already taken from the queue (with as many as there
        # are slots, a worker idled between jobs: 0.61 of the raw loop against 0.79,
        # docs/benchmarks.md).
        worker_concurrency=env.parse(
            "WORKER_CONCURRENCY", str(2 * max_active_jobs), lambda n, r: _int(n, r, 1)
        ),
        jpeg_shrink=cast(
            JpegShrink,
            env.parse(
                "PIXELFLOW_JPEG_SHRINK",
                DEFAULT_JPEG_SHRINK,
                lambda n, r: _choice(n, r, JPEG_SHRINK_MODES),
            ),
        ),
        worker_max_active_jobs=max_active_jobs,
        worker_max_attempts=env.parse("WORKER_MAX_ATTEMPTS", "5", lambda n, r: _int(n, r, 1, 100)),
        worker_job_timeout=job_timeout,
        worker_retry_backoff=retry_backoff,
        worker_retry_max_backoff=retry_max_backoff,
        worker_lease_seconds=env.parse("WORKER_LEASE_SECONDS", "30", lambda n, r: _float(n, r, 1)),
        worker_shutdown_grace=env.parse("WORKER_SHUTDOWN_GRACE", "25", _float),
        reconcile_interval=env.parse(
            "WORKER_RECONCILE_INTERVAL", "15", lambda n, r: _float(n, r, 0.1)
        ),
        webhook_signing_secret=webhook_secret,
        webhook_allow_private=env.parse("PIXELFLOW_WEBHOOK_ALLOW_PRIVATE", "false", _bool),
        webhook_timeout=env.parse("WEBHOOK_TIMEOUT", "10", lambda n, r: _float(n, r, 0.1)),
        webhook_max_attempts=env.parse(
            "WEBHOOK_MAX_ATTEMPTS", "8", lambda n, r: _int(n, r, 1, 100)
        ),
        webhook_initial_backoff=webhook_initial_backoff,
        webhook_max_backoff=webhook_max_backoff,
        webhook_poll_interval=env.parse(
            "WEBHOOK_POLL_INTERVAL", "1", lambda n, r: _float(n, r, 0.05)
        ),
        webhook_concurrency=env.parse(
            "WEBHOOK_CONCURRENCY", "16", lambda n, r: _int(n, r, 1, 1000)
        ),
        log_format=cast(
            LogFormat,
            env.parse("PIXELFLOW_LOG_FORMAT", "text", lambda n, r: _choice(n, r, ("text", "json"))),
        ),
        log_level=env.parse(
            "PIXELFLOW_LOG_LEVEL",
            "info",
            lambda n, r: _choice(n, r.lower(), ("debug", "info", "warning", "error")),
        ),
        metrics_on_api_port=metrics_on_api_port,
        traces_exporter=cast(
            TracesExporter,
            env.parse(
                "OTEL_TRACES_EXPORTER",
                "none",
                lambda n, r: _choice(n, r.strip().lower(), ("none", "console", "otlp")),
            ),
        ),
        service_name=env.get("OTEL_SERVICE_NAME") or f"pixelflow-{role.value}",
    )


def _webhook_secret(raw: str | None, role: Role, auth: str) -> str | None:
    """The shared signing secret: required by ``api`` and ``worker`` unless every user has a
    secret of their own (``api_key`` mode); ``serve`` makes one in its data dir if unset."""
    name = "WEBHOOK_SIGNING_SECRET"
    if raw is None:
        if auth != "api_key" and role in {Role.API, Role.WORKER}:
            raise ConfigError(
                f"{name}: required for `pixelflow {role.value}` with PIXELFLOW_AUTH={auth} "
                "(it signs every webhook; with api_key each user has a secret of their own)"
            )
        return None
    if len(raw.strip()) < 16:
        raise ConfigError(f"{name}: must be at least 16 characters")
    try:
        hmac_key(raw)
    except InvalidSecret:
        raise ConfigError(f"{name}: a whsec_ secret must be followed by base64") from None
    return raw


# RFC 9110 field name: a token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _header_name(name: str, raw: str) -> str:
    value = raw.strip() or "X-User-ID"  # blank means the default, as when unset
    if not _TOKEN.fullmatch(value):
        raise ConfigError(f"{name}: {raw!r} is not a valid HTTP header name")
    return value


def _public_url_setting(raw: str) -> str:
    """``PIXELFLOW_PUBLIC_URL``: empty, or an absolute http(s) URL (no query or fragment); it
    prefixes every signed URL handed to clients."""
    if not raw:
        return ""
    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"} or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(
            f"PIXELFLOW_PUBLIC_URL: {raw!r} must be an absolute http:// or https:// URL "
            "such as https://images.example.com"
        )
    return raw.rstrip("/")


def _queue_name(name: str, raw: str) -> str:
    if not raw or not all(c.isalnum() or c in "-_.:" for c in raw):
        raise ConfigError(f"{name}: {raw!r} must be non-empty letters, digits, - _ . :")
    return raw


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only: an address compared as an address (so
    ``127.evil.example`` is not loopback), or the literal name ``localhost``."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def _allowed_hosts(
    name: str, raw: str | None, api_addr: Address, public_url: str
) -> tuple[str, ...] | None:
    """The Host names a listener answers to. A loopback listener answers only loopback names
    (plus the public URL's host and ``PIXELFLOW_ALLOWED_HOSTS``), so a web page that rebinds
    its own name to 127.0.0.1 cannot drive it; any other listener answers every name unless
    the variable is set."""
    extra = tuple(h.strip().lower() for h in (raw or "").split(",") if h.strip())
    for host in extra:
        if host != "*" and not all(part for part in host.removeprefix("*.").split(".")):
            raise ConfigError(f"{name}: {host!r} is not a host name, '*' or '*.domain'")
    if "*" in extra:
        return None
    if not is_loopback(api_addr.host):
        return extra or None
    public_host = (urlsplit(public_url).hostname or "").lower()
    names = (*LOOPBACK_HOSTS, public_host, *extra) if public_host else (*LOOPBACK_HOSTS, *extra)
    return tuple(dict.fromkeys(names))


def _public_url(addr: Address) -> str:
    host = "127.0.0.1" if addr.host in {"0.0.0.0", "::", ""} else addr.host
    return f"http://{host}:{addr.port}"


def prepare_data_dir(settings: Settings) -> None:
    """Create the data directory and prove it writable, so a bad ``PIXELFLOW_DATA_DIR`` is one
    ``ConfigError`` line at startup rather than a traceback from whichever adapter touches it
    first."""
    path = settings.data_dir
    try:
        make_private_dir(path)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(
            f"PIXELFLOW_DATA_DIR: {path} cannot be created or written ({reason})"
        ) from None


def load_or_create_secret(path: Path) -> bytes:
    """The embedded default's URL-signing key: created once, kept in the data directory so
    signed URLs survive a restart."""
    if path.exists():
        return path.read_bytes()
    make_private_dir(path.parent)
    secret = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secret)
    return secret


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) readable by this user only. An existing directory
    is left as its owner set it."""
    if path.is_dir():
        return
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)  # mkdir's mode is filtered by the umask; the intent is not
