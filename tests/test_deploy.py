"""The container side, checked without a Docker engine: compose profiles, the Prometheus config,
the dashboard's metric names against a live /metrics, and a real Prometheus scraping the app."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Served
from tests.helpers import ROOT, USER_KEY
from tests.prometheus import prometheus_at

PROMETHEUS_CONFIG = ROOT / "docker" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "docker" / "grafana" / "dashboards" / "bankllm.json"
SERVICES = {"custom": "bankllm-custom", "gemini": "bankllm-gemini", "qlora": "bankllm-qlora"}
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",), "gauge": ("",)}


def _compose() -> list[str]:
    if (
        shutil.which("docker")
        and subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.skip("no `docker compose` or `docker-compose` (Debian: apt-get install docker-compose)")


KEYS = {"API_KEYS": "compose-user-key-0123456789", "ADMIN_API_KEY": "compose-admin-key-0123456"}


def _run_config(profile: str, keys: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_compose(), "--profile", profile, "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", "GEMINI_API_KEY": "", **keys},
    )


def _published(port: str | dict[str, Any]) -> tuple[str, str, str]:
    """(host address, host port, container port), as Compose 1 (a string) or 2 writes it."""
    if isinstance(port, dict):
        return port.get("host_ip", ""), str(port["published"]), str(port["target"])
    host, published, target = port.split("/")[0].rsplit(":", 2)
    return host, published, target


def _config(profile: str) -> dict[str, Any]:
    result = _run_config(profile, KEYS)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


@pytest.mark.parametrize("profile", ["custom", "gemini", "qlora"])
def test_each_profile_takes_the_keys_from_the_environment_and_refuses_to_start_without(
    profile: str,
) -> None:
    assert (
        _config(profile)["services"][SERVICES[profile]]["environment"] | KEYS
        == (_config(profile)["services"][SERVICES[profile]]["environment"])
    )
    refused = _run_config(profile, {})
    assert refused.returncode != 0
    assert "set API_KEYS" in refused.stderr or "set ADMIN_API_KEY" in refused.stderr


@pytest.mark.parametrize("profile", ["custom", "gemini", "qlora"])
def test_each_model_profile_validates_and_runs_its_image(profile: str) -> None:
    service = _config(profile)["services"][SERVICES[profile]]
    dockerfile = "Dockerfile.gpu" if profile == "qlora" else "Dockerfile.cpu"
    assert (service["profiles"], service["build"]["dockerfile"]) == ([profile], dockerfile)
    assert service["environment"]["ACTIVE_MODEL"] == profile  # from .env.<profile>
    assert service["healthcheck"]["test"][:2] == ["CMD", "python3"]
    assert "/health" in service["healthcheck"]["test"][3]
    # the loopback unless BIND_ADDRESS says otherwise
    assert [_published(p) for p in service["ports"]] == [("127.0.0.1", "8000", "8000")]
    assert (service["cap_drop"], service["security_opt"]) == (["ALL"], ["no-new-privileges:true"])
    assert (service["read_only"], service["tmpfs"]) == (True, ["/tmp"])
    assert service["environment"]["BANKLLM_CACHE_DIR"].startswith("/tmp/")
    assert service["networks"]["default"]["aliases"] == ["bankllm"]
    assert service["stop_grace_period"] == "40s"  # SHUTDOWN_GRACE_S and 10 s to spare
    assert any(str(v).startswith("bankllm-logs:/srv/bankllm/logs") for v in service["volumes"])


def test_qlora_reserves_a_gpu_and_mounts_the_models() -> None:
    service = _config("qlora")["services"]["bankllm-qlora"]
    assert service["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    ]
    assert any("/models" in str(v) for v in service["volumes"])


def test_the_gemini_key_comes_from_the_environment_or_a_secret_never_the_image() -> None:
    config = _config("gemini")
    service = config["services"]["bankllm-gemini"]
    assert service["environment"]["GEMINI_API_KEY"] in ("", None)
    sources = [s if isinstance(s, str) else s["source"] for s in service["secrets"]]
    assert sources == ["gemini_api_key"]
    assert config["secrets"]["gemini_api_key"]["file"].endswith("secrets/gemini_api_key")
    for dockerfile in ("Dockerfile.cpu", "Dockerfile.gpu"):
        assert "GEMINI_API_KEY" not in (ROOT / dockerfile).read_text()


def test_monitoring_waits_for_a_healthy_prometheus_and_is_closed() -> None:
    services = _config("monitoring")["services"]
    grafana = services["grafana"]
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"
    assert services["prometheus"]["healthcheck"]["test"][0] == "CMD"
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in grafana["environment"]  # a file, no default
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"].startswith("/run/secrets/")
    for service in services.values():
        assert {_published(p)[0] for p in service["ports"]} == {"127.0.0.1"}


def test_the_committed_dashboard_is_what_its_code_makes() -> None:
    spec = importlib.util.spec_from_file_location(
        "dashboard", DASHBOARD.parents[1] / "dashboard.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert json.loads(DASHBOARD.read_text()) == module.dashboard()


def _queried_series() -> set[str]:
    exprs = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]
    return {name for expr in exprs for name in re.findall(r"\bbankllm_[a-z_]+", expr)}


def test_every_metric_the_dashboard_queries_is_exported(
    server: Served,
) -> None:
    url, _, _ = server
    headers = {"Authorization": f"Bearer {USER_KEY}"}
    httpx.post(
        f"{url}/generate", json={"prompt": "hi", "max_tokens": 4}, headers=headers, timeout=60
    )
    exported = {
        family.name + suffix
        for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text)
        for suffix in _SUFFIXES.get(family.type, ("",))
    }
    queried = _queried_series()
    assert len(queried) >= 10
    assert queried <= exported, queried - exported


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("no promtool (Debian: apt-get install prometheus)")
    return path


@pytest.mark.parametrize("config", ["prometheus.yml", "ray.yml"])
def test_promtool_accepts_the_prometheus_configs(config: str) -> None:
    command = [_promtool(), "check", "config", str(PROMETHEUS_CONFIG.parent / config)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def prometheus(server: Served, tmp_path: Path) -> Iterator[str]:
    """A real Prometheus on 127.0.0.1 scraping the test app every second."""
    target = urllib.parse.urlparse(server[0]).netloc
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["scrape_configs"][0]["static_configs"] = [{"targets": [target]}]
    with prometheus_at(config, tmp_path) as url:
        yield url


def _until_scraped(condition: Callable[[], bool], timeout_s: float) -> None:
    """Prometheus is another process that scrapes on its own clock and tells nobody: the one
    wait in the suite that must ask again, every 250 ms, until it has an answer."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "Prometheus did not scrape the app in time"
        threading.Event().wait(0.25)


def _query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            result: list[dict[str, Any]] = json.load(response)["data"]["result"]
            return result
    except OSError:
        return []  # not up yet


def test_prometheus_scrapes_the_app_and_reads_the_median_latency(
    server: Served, prometheus: str
) -> None:
    url, _, _ = server
    headers = {"Authorization": f"Bearer {USER_KEY}"}
    for i in range(3):
        response = httpx.post(
            f"{url}/generate",
            json={"prompt": f"q {i}", "max_tokens": 8},
            headers=headers,
            timeout=60,
        )
        assert response.status_code == 200
    promql = "histogram_quantile(0.5, sum by (le, model) (bankllm_request_latency_seconds_bucket))"
    found: list[dict[str, Any]] = []

    def scraped() -> bool:
        found[:] = _query(prometheus, promql)
        return bool(found)

    _until_scraped(scraped, timeout_s=60)
    [series] = found
    assert series["metric"] == {"model": "custom-random"}
    assert 0.0 < float(series["value"][1]) <= 120.0
    [up] = _query(prometheus, "up")
    assert up["value"][1] == "1"
