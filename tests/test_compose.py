"""docker-compose.yml cannot rot: every command names a real subcommand of its service module, every
environment variable is a setting of that service and parses, ports agree with PORT, and the start-up
order (healthy infrastructure, completed migrations) is declared."""

from __future__ import annotations

import functools
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
SERVICES = {"intake": 8001, "followup": 8002, "ledelsesinfo": 8003}
# read by the image (deploy/Dockerfile CMD, deploy/prestart.sh), not by Settings
IMAGE_ONLY_VARS = {"SERVICE"}
_VAR = re.compile(r"\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}")


@functools.cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def all_services() -> dict[str, dict[str, Any]]:
    services = compose()["services"]
    assert isinstance(services, dict)
    return services


def app_services() -> dict[str, dict[str, Any]]:
    """The containers built from this repository (deploy/Dockerfile)."""
    return {
        name: svc
        for name, svc in all_services().items()
        if "build" in svc and svc["build"].get("dockerfile") == "deploy/Dockerfile"
    }


def environment(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def interpolate_defaults(value: str) -> str:
    """What compose makes of `${VAR:-default}` when VAR is unset."""
    return _VAR.sub(lambda m: m.group(2) or "", value)


def argv(svc: dict[str, Any]) -> list[str]:
    command = svc.get("command")
    if command is None:
        return []
    return command.split() if isinstance(command, str) else [str(c) for c in command]


def module_and_subcommand(name: str, svc: dict[str, Any]) -> tuple[str, str]:
    """(service, subcommand) a container runs: `python -m services.<svc> <sub>`, deploy/prestart.sh
    (`migrate` of $SERVICE), or the image's default CMD (`serve` of $SERVICE)."""
    args = argv(svc)
    env = environment(svc)
    if args[:2] == ["python", "-m"] and len(args) >= 4 and args[2].startswith("services."):
        return args[2].removeprefix("services."), args[3]
    if args and args[-1].endswith("prestart.sh"):
        assert "SERVICE" in env, f"{name}: deploy/prestart.sh needs SERVICE"
        return env["SERVICE"], "migrate"
    if not args:
        assert "SERVICE" in env, f"{name}: the image's default CMD needs SERVICE"
        return env["SERVICE"], "serve"
    raise AssertionError(f"{name}: cannot tell which service command {args} runs")


@functools.cache
def subcommands(service: str) -> frozenset[str]:
    """The subcommands `python -m services.<service> --help` lists (argparse `{a,b,c}`)."""
    proc = subprocess.run(
        [sys.executable, "-m", f"services.{service}", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ENVIRONMENT": "development"},
        check=False,
    )
    assert proc.returncode == 0, f"python -m services.{service} --help failed:\n{proc.stderr}"
    choices = re.findall(r"\{([a-z][a-z0-9_,-]*)\}", proc.stdout)
    assert choices, f"no subcommands listed by python -m services.{service} --help:\n{proc.stdout}"
    return frozenset(c for group in choices for c in group.split(","))


def settings_class(service: str) -> Any:
    return importlib.import_module(f"services.{service}.config").Settings


def containers_running(service: str, subcommand: str) -> list[str]:
    return [n for n, s in app_services().items() if module_and_subcommand(n, s) == (service, subcommand)]


def test_infrastructure_services_are_kafka_kraft_and_postgres_with_healthchecks() -> None:
    services = all_services()
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    kenv = environment(kafka)
    assert set(kenv["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert kenv["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "test" in kafka["healthcheck"]
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_every_app_container_names_an_existing_module_subcommand() -> None:
    assert app_services(), "no containers built from deploy/Dockerfile"
    for name, svc in app_services().items():
        service, sub = module_and_subcommand(name, svc)
        assert service in SERVICES, f"{name}: unknown service {service!r}"
        assert (ROOT / "services" / service / "__main__.py").is_file()
        assert sub in subcommands(service), f"{name}: `{sub}` is not a subcommand of services.{service}"


def test_each_service_is_migrated_and_served() -> None:
    for service in SERVICES:
        assert len(containers_running(service, "serve")) == 1, service
        assert containers_running(service, "migrate"), service


def test_every_environment_variable_is_a_setting_of_that_service_and_parses() -> None:
    for name, svc in app_services().items():
        service, _sub = module_and_subcommand(name, svc)
        settings = settings_class(service)
        fields = set(settings.model_fields)
        env = environment(svc)
        unknown = sorted(k for k in env if k.lower() not in fields and k not in IMAGE_ONLY_VARS)
        assert not unknown, f"{name}: {unknown} are not fields of services.{service}.config.Settings"
        values = {k.lower(): interpolate_defaults(v) for k, v in env.items() if k not in IMAGE_ONLY_VARS}
        # the secrets have no defaults on purpose; check that the rest parses (types, literals)
        values["environment"] = "development"
        parsed = settings(**values)
        assert parsed.port == int(values.get("port", parsed.port))


def test_ports_match_the_port_setting_and_are_published_on_loopback_only() -> None:
    for service, port in SERVICES.items():
        assert settings_class(service).model_fields["port"].default == port
        (name,) = containers_running(service, "serve")
        svc = app_services()[name]
        env = environment(svc)
        assert int(env["PORT"]) == port
        assert env.get("HOST") == "0.0.0.0"  # inside the container; published on 127.0.0.1 below
        assert svc["ports"] == [f"127.0.0.1:{port}:{port}"]
        assert f"127.0.0.1:{port}/health" in " ".join(svc["healthcheck"]["test"])
    for name, svc in all_services().items():
        for mapping in svc.get("ports", []):
            assert str(mapping).startswith("127.0.0.1:"), f"{name} publishes {mapping} beyond loopback"


def test_start_up_order_waits_for_healthy_infrastructure_and_completed_migrations() -> None:
    services = all_services()
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            condition = cond["condition"]
            assert condition in {"service_healthy", "service_completed_successfully", "service_started"}
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy: no healthcheck"
    for name, svc in app_services().items():
        service, sub = module_and_subcommand(name, svc)
        deps = svc.get("depends_on") or {}
        assert deps.get("postgres", {}).get("condition") == "service_healthy", name
        if sub == "migrate":
            continue
        assert deps.get("kafka", {}).get("condition") == "service_healthy", name
        migrations = [
            d
            for d in deps
            if d in app_services() and module_and_subcommand(d, services[d]) == (service, "migrate")
        ]
        assert migrations, f"{name} does not wait for the migration of {service}"
        assert all(deps[d]["condition"] == "service_completed_successfully" for d in migrations)


def test_background_processes_run_once_not_also_inside_the_web_containers() -> None:
    for service, sub, flag in (
        ("intake", "relay", "RUN_RELAY"),
        ("followup", "work", "RUN_WORKER"),
        ("ledelsesinfo", "work", "RUN_WORKER"),
    ):
        if not containers_running(service, sub):
            continue
        assert flag.lower() in settings_class(service).model_fields
        (web,) = containers_running(service, "serve")
        assert environment(app_services()[web]).get(flag, "").lower() == "false", (
            f"{web} must set {flag}=false when {service} {sub} runs as its own container"
        )


def test_databases_named_in_urls_are_created_by_the_postgres_container() -> None:
    postgres = all_services()["postgres"]
    created = {environment(postgres)["POSTGRES_DB"]}
    init_sql = ROOT / "deploy" / "postgres" / "init-databases.sql"
    created |= set(re.findall(r"CREATE DATABASE (\w+)", init_sql.read_text()))
    mounted = " ".join(postgres.get("volumes", []))
    assert "deploy/postgres/init-databases.sql:/docker-entrypoint-initdb.d/" in mounted
    for name, svc in app_services().items():
        for key in ("EVENT_STORE_URL", "DATABASE_URL"):
            url = interpolate_defaults(environment(svc).get(key, ""))
            if url:
                assert url.startswith("postgresql+psycopg://"), f"{name} {key}"
                assert url.rsplit("/", 1)[1] in created, f"{name} {key}: database not created"


@pytest.mark.parametrize("path", ["deploy/prestart.sh", "deploy/Dockerfile"])
def test_image_entry_points_run_the_service_named_by_service(path: str) -> None:
    text = (ROOT / path).read_text()
    if path.endswith("prestart.sh"):
        assert os.access(ROOT / path, os.X_OK)
        assert 'python -m "services.$SERVICE" migrate' in text
    else:
        assert text.startswith("# ") or text.startswith("FROM")
        assert "FROM python:3.11-slim" in text
        assert re.search(r"CMD \[.*services\.\$\{SERVICE\}.*serve", text)
