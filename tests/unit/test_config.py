"""Settings from the environment: defaults per role, and errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from pixelflow.config import Address, ConfigError, Role, is_loopback, load_settings, redact_url

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


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("127.evil.example", False),
        ("localhost.evil.example", False),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
    ],
)
def test_loopback_is_an_address_check_not_a_prefix(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_urls_in_messages_hide_their_password() -> None:
    assert redact_url("postgresql://app:s3cret@db:5432/pf") == "postgresql://app:***@db:5432/pf"
    assert redact_url("redis://:s3cret@redis:6379/0") == "redis://:***@redis:6379/0"
    assert redact_url("postgresql://app@db/pf") == "postgresql://app@db/pf"
    with pytest.raises(ConfigError) as caught:
        load_settings(Role.API, {**PRODUCTION, "PIXELFLOW_DATABASE_URL": "mysql://a:s3cret@h/d"})
    assert "s3cret" not in str(caught.value) and "a:***@h" in str(caught.value)


def test_a_loopback_listener_answers_only_loopback_host_names(tmp_path: Path) -> None:
    environ = {"PIXELFLOW_DATA_DIR": str(tmp_path)}
    assert load_settings(Role.SERVE, environ).allowed_hosts == ("localhost", "127.0.0.1", "::1")
    widened = load_settings(Role.SERVE, {**environ, "PIXELFLOW_ALLOWED_HOSTS": "Dev.Example,*.lan"})
    assert widened.allowed_hosts == ("localhost", "127.0.0.1", "::1", "dev.example", "*.lan")
    public = load_settings(Role.SERVE, {**environ, "PIXELFLOW_PUBLIC_URL": "http://pf.test:80"})
    assert public.allowed_hosts is not None and "pf.test" in public.allowed_hosts
    assert (
        load_settings(Role.SERVE, {**environ, "PIXELFLOW_ALLOWED_HOSTS": "*"}).allowed_hosts is None
    )
    # Off loopback the gateway decides, unless the operator names the hosts.
    assert load_settings(Role.API, PRODUCTION).allowed_hosts is None
    named = load_settings(Role.API, {**PRODUCTION, "PIXELFLOW_ALLOWED_HOSTS": "api.example"})
    assert named.allowed_hosts == ("api.example",)
    with pytest.raises(ConfigError, match="PIXELFLOW_ALLOWED_HOSTS"):
        load_settings(Role.SERVE, {**environ, "PIXELFLOW_ALLOWED_HOSTS": "a..b"})


def test_the_pipeline_budget_defaults_to_the_job_timeout(tmp_path: Path) -> None:
    environ = {"PIXELFLOW_DATA_DIR": str(tmp_path), "WORKER_JOB_TIMEOUT": "90"}
    assert load_settings(Role.SERVE, environ).pipeline_budget == 90
    off = load_settings(Role.SERVE, {**environ, "PIXELFLOW_PIPELINE_BUDGET": "0"})
    assert off.pipeline_budget == 0
