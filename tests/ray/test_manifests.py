"""serve.yaml and the KubeRay RayServices: their Serve configs pass Ray's own schema, and every
application in them builds through app.ray.app:build into the deployment they mean."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from app.ray.app import HEADROOM, build
from tests.helpers import ROOT

RAYSERVICE = ROOT / "deploy" / "kuberay" / "rayservice.yaml"


def _documents() -> list[dict[str, Any]]:
    return list(yaml.safe_load_all(RAYSERVICE.read_text()))


def _services() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _documents() if d["kind"] == "RayService"}


def _pods(service: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = service["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    return [group["template"] for group in groups]


def _serve_configs() -> dict[str, dict[str, Any]]:
    configs = {"serve.yaml": yaml.safe_load((ROOT / "serve.yaml").read_text())}
    for name, service in _services().items():
        configs[name] = yaml.safe_load(service["spec"]["serveConfigV2"])
    return configs


@pytest.mark.parametrize("name", sorted(_serve_configs()))
def test_each_serve_config_passes_rays_schema_and_builds(name: str) -> None:
    config = ServeDeploySchema.model_validate(_serve_configs()[name])
    [application] = config.applications
    assert application.import_path == "app.ray.app:build"
    built = build(application.args)
    deployment = built._bound_deployment  # what `serve run` deploys for these args
    settings = built._bound_deployment.init_args[0]
    assert deployment.max_ongoing_requests == (
        settings.max_concurrency + settings.max_queue + HEADROOM
    )


def test_the_rayservices_are_one_cpu_and_one_gpu_fleet() -> None:
    services = _services()
    assert sorted(services) == ["bankllm-custom", "bankllm-qlora"]
    for service in services.values():
        assert (service["apiVersion"], service["kind"]) == ("ray.io/v1", "RayService")
    custom = yaml.safe_load(services["bankllm-custom"]["spec"]["serveConfigV2"])
    [app] = custom["applications"]
    assert build(app["args"])._bound_deployment.init_args[0].active_model == "custom"
    qlora = yaml.safe_load(services["bankllm-qlora"]["spec"]["serveConfigV2"])
    [app] = qlora["applications"]
    settings = build(app["args"])._bound_deployment.init_args[0]
    assert (settings.active_model, settings.qlora.base_model) == (
        "qlora",
        "/models/llama-3.1-8b-instruct",
    )
    [replica] = app["deployments"]
    assert (replica["name"], replica["ray_actor_options"]["num_gpus"]) == ("Replica", 1)
    # one GPU per replica: each GPU worker pod has exactly one, and there is a pod per replica
    [gpu] = services["bankllm-qlora"]["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    [container] = gpu["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert gpu["maxReplicas"] == app["args"]["replicas"]


def test_build_refuses_unknown_arguments() -> None:
    with pytest.raises(ValueError, match=r"unknown arguments \['replica'\]"):
        build({"replica": 2})


def test_build_refuses_an_autoscale_yaml_read_as_a_number() -> None:
    # unquoted, YAML 1.1 reads 1:4 as 64 (base 60)
    args = yaml.safe_load("autoscale: 1:4")
    with pytest.raises(ValueError, match=r'autoscale takes "MIN:MAX" as a quoted string, not 64'):
        build(args)


def test_the_ray_clusters_are_closed() -> None:
    """Token authentication on; every container non-root, read-only, without capabilities,
    its keys mounted as files (never in the environment every Ray process inherits); and a
    NetworkPolicy over every pod that lets anyone reach the Serve port only."""
    [policy] = [d for d in _documents() if d["kind"] == "NetworkPolicy"]
    selected = policy["spec"]["podSelector"]["matchLabels"]
    for service in _services().values():
        cluster = service["spec"]["rayClusterConfig"]
        assert cluster["authOptions"] == {"mode": "token"}
        assert tuple(int(p) for p in cluster["rayVersion"].split(".")) >= (2, 52)
        for pod in _pods(service):
            assert selected.items() <= pod["metadata"]["labels"].items()
            volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
            assert volumes["keys"]["secret"]["secretName"] == "bankllm-keys"
            # the key files root's, readable by the app's group, uid 10001 in it
            assert volumes["keys"]["secret"]["defaultMode"] == 0o440
            assert pod["spec"]["securityContext"]["fsGroup"] == 10001
            for container in pod["spec"]["containers"]:
                context = container["securityContext"]
                assert context["runAsNonRoot"]
                assert context["readOnlyRootFilesystem"]
                assert not context["allowPrivilegeEscalation"]
                assert context["capabilities"] == {"drop": ["ALL"]}
                assert "envFrom" not in container
                assert not any("KEY" in e["name"] for e in container.get("env", []))
                mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
                assert mounts["/run/secrets"]["readOnly"]
                assert "/tmp" in mounts
    open_to_all = [rule for rule in policy["spec"]["ingress"] if "from" not in rule]
    assert open_to_all == [{"ports": [{"protocol": "TCP", "port": 8000}]}]
