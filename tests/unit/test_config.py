"""Settings from the environment: defaults per role, and errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from pixelflow.config import Address, ConfigError, Role, load_settings

PRODUCTION = {
    "PIXELFLOW_DATABASE_URL": "postgresql://u@db/pixelflow",
    "PIXELFLOW_REDIS_URL": "redis://redis:6379/0",
    "PIXELFLOW_STORAGE_URL": "s3://bucket/prefix",
    "PIXELFLOW_AUTH": "header",
    "WEBHOOK_SIGNING_SECRET": "a-shared-secret-of-some-length",
}


def test_serve_needs_no_configuration(tmp_path: Path) -> None:
    settings = load_settings(Role.SERVE, {"PIXELFLOW_DATA_DIR": str(tmp_path)})
    assert settings.api_addr == Address("127.0.0.1", 8080)
    assert settings.database_url == f"sqlite:///{tmp_path / 'pixelflow.db'}"
    assert settings.storage_url == f"file://{tmp_path / 'objects'}"
    assert settings.redis_url is None
    assert settings.auth == "none"
    assert settings.local_source_root == Path.cwd()
    assert settings.public_url == "http://127.0.0.1:8080"
    assert (settings.max_source_pixels, settings.max_source_bytes, settings.max_steps) == (
        100_000_000,
        52_428_800,
        32,
    )


def test_production_roles_need_their_urls() -> None:
    for missing in ("PIXELFLOW_DATABASE_URL", "PIXELFLOW_REDIS_URL", "PIXELFLOW_STORAGE_URL"):
        environ = {k: v for k, v in PRODUCTION.items() if k != missing}
        with pytest.raises(ConfigError, match=missing):
            load_settings(Role.API, environ)
    settings = load_settings(Role.WORKER, PRODUCTION)
    assert settings.api_addr == Address("0.0.0.0", 8080)
    assert settings.local_source_root is None  # local_file is refused unless configured


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WORKER_MAX_ATTEMPTS", "many"),
        ("WORKER_MAX_ATTEMPTS", "0"),
        ("WORKER_JOB_TIMEOUT", "-1"),
        ("PIXELFLOW_RATE_LIMIT_CAPACITY", "1.5"),
        ("PIXELFLOW_WEBHOOK_ALLOW_PRIVATE", "maybe"),
        ("PIXELFLOW_LOG_FORMAT", "xml"),
        ("PIXELFLOW_API_ADDR", "8080"),
        ("PIXELFLOW_API_METRICS_ADDR", "host:http"),
        ("PIXELFLOW_DATABASE_URL", "mysql://db"),
        ("PIXELFLOW_STORAGE_URL", "gs://bucket"),
        ("PIXELFLOW_QUEUE_NAME", "has space"),
        ("PIXELFLOW_AUTH", "basic"),
        ("PIXELFLOW_LOCAL_SOURCE_ROOT", "/does/not/exist"),
        ("WEBHOOK_TIMEOUT", "0"),
        ("WEBHOOK_TIMEOUT", "soon"),
        ("WEBHOOK_MAX_ATTEMPTS", "0"),
        ("WEBHOOK_INITIAL_BACKOFF", "-1"),
        ("WEBHOOK_MAX_BACKOFF", "0.5"),  # less than the initial backoff (1)
        ("WEBHOOK_POLL_INTERVAL", "0"),
        ("WEBHOOK_CONCURRENCY", "0"),
        ("WEBHOOK_SIGNING_SECRET", "short"),
        ("WEBHOOK_SIGNING_SECRET", "whsec_not base64 at all!!"),
        ("PIXELFLOW_PUBLIC_URL", "garbage"),
        ("PIXELFLOW_PUBLIC_URL", "https://images.example.com/?q=1"),
        ("PIXELFLOW_USER_ID_HEADER", "X User"),
        ("WORKER_RETRY_BACKOFF", "301"),
        ("PIXELFLOW_DATABASE_URL", "sqlite:///"),
    ],
)
def test_an_invalid_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings(Role.WORKER, {**PRODUCTION, variable: value})


def test_empty_metrics_address_disables_metrics() -> None:
    settings = load_settings(Role.API, {**PRODUCTION, "PIXELFLOW_API_METRICS_ADDR": ""})
    assert settings.api_metrics_addr is None


def test_serve_without_auth_binds_only_to_loopback(tmp_path: Path) -> None:
    environ = {"PIXELFLOW_DATA_DIR": str(tmp_path)}
    with pytest.raises(ConfigError, match="loopback"):
        load_settings(Role.SERVE, environ, overrides={"PIXELFLOW_API_ADDR": "0.0.0.0:8080"})
    exposed = load_settings(
        Role.SERVE,
        {**environ, "PIXELFLOW_AUTH": "header"},
        overrides={"PIXELFLOW_API_ADDR": "0.0.0.0:8080"},
    )
    assert exposed.api_addr.host == "0.0.0.0"


def test_api_defaults_to_api_keys() -> None:
    environ = {k: v for k, v in PRODUCTION.items() if k != "PIXELFLOW_AUTH"}
    assert load_settings(Role.API, environ).auth == "api_key"
    assert load_settings(Role.WORKER, environ).auth == "api_key"


def test_webhook_delivery_defaults_follow_the_spec() -> None:
    settings = load_settings(Role.WORKER, PRODUCTION)
    assert (
        settings.webhook_timeout,
        settings.webhook_max_attempts,
        settings.webhook_initial_backoff,
        settings.webhook_max_backoff,
    ) == (10, 8, 1, 3600)


@pytest.mark.parametrize("role", [Role.API, Role.WORKER])
@pytest.mark.parametrize("auth", ["header", "none"])
def test_shared_signing_secret_is_required_outside_api_key_mode(role: Role, auth: str) -> None:
    environ = {k: v for k, v in PRODUCTION.items() if k != "WEBHOOK_SIGNING_SECRET"}
    environ["PIXELFLOW_AUTH"] = auth
    environ["PIXELFLOW_API_ADDR"] = "127.0.0.1:8080"
    with pytest.raises(ConfigError, match=r"^WEBHOOK_SIGNING_SECRET: required"):
        load_settings(role, environ)


def test_api_key_mode_and_serve_need_no_shared_secret(tmp_path: Path) -> None:
    environ = {k: v for k, v in PRODUCTION.items() if k != "WEBHOOK_SIGNING_SECRET"}
    environ["PIXELFLOW_AUTH"] = "api_key"
    assert load_settings(Role.WORKER, environ).webhook_signing_secret is None
    serve = load_settings(Role.SERVE, {"PIXELFLOW_DATA_DIR": str(tmp_path)})
    assert serve.webhook_signing_secret is None  # serve keeps one in its data dir


def test_valid_public_url_and_header_are_kept() -> None:
    settings = load_settings(
        Role.API,
        {
            **PRODUCTION,
            "PIXELFLOW_PUBLIC_URL": "https://images.example.com/base/",
            "PIXELFLOW_USER_ID_HEADER": "X-Forwarded-User",
            "WORKER_RETRY_BACKOFF": "300",
        },
    )
    assert settings.public_url == "https://images.example.com/base"
    assert settings.user_id_header == "X-Forwarded-User"
    assert settings.worker_retry_backoff == settings.worker_retry_max_backoff == 300


def test_serve_refuses_a_worker_metrics_address_but_not_an_empty_one(tmp_path: Path) -> None:
    environ = {"PIXELFLOW_DATA_DIR": str(tmp_path)}
    with pytest.raises(ConfigError, match="WORKER_METRICS_ADDR"):
        load_settings(Role.SERVE, {**environ, "WORKER_METRICS_ADDR": ":9091"})
    assert load_settings(Role.SERVE, {**environ, "WORKER_METRICS_ADDR": ""})
    assert load_settings(Role.WORKER, {**PRODUCTION, "WORKER_METRICS_ADDR": ":9091"})


def test_api_without_auth_binds_only_to_loopback() -> None:
    """The check serve makes, made for api too (its default address is every interface)."""
    environ = {**PRODUCTION, "PIXELFLOW_AUTH": "none"}
    with pytest.raises(ConfigError, match=r"PIXELFLOW_API_ADDR.*pixelflow api"):
        load_settings(Role.API, environ)
    local = load_settings(Role.API, {**environ, "PIXELFLOW_API_ADDR": "127.0.0.1:8080"})
    assert local.auth == "none"
    # A worker does not listen for API requests: the setting does not concern it.
    assert load_settings(Role.WORKER, environ).auth == "none"


def test_operator_commands_default_to_the_serve_database(tmp_path: Path) -> None:
    settings = load_settings(Role.ADMIN, {"PIXELFLOW_DATA_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'pixelflow.db'}"
    assert settings.redis_url is None
    configured = load_settings(Role.ADMIN, PRODUCTION)
    assert configured.database_url == PRODUCTION["PIXELFLOW_DATABASE_URL"]


def test_a_worker_takes_twice_as_many_jobs_as_it_renders_at_once(tmp_path: Path) -> None:
    environ = {"PIXELFLOW_DATA_DIR": str(tmp_path), "WORKER_MAX_ACTIVE_JOBS": "3"}
    settings = load_settings(Role.SERVE, environ)
    assert (settings.worker_max_active_jobs, settings.worker_concurrency) == (3, 6)
    explicit = load_settings(Role.SERVE, {**environ, "WORKER_CONCURRENCY": "1"})
    assert explicit.worker_concurrency == 1
