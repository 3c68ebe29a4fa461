"""The service as a Ray Serve application: `application(settings, ...)` for `bankllm serve --ray`
and the tests, `build` for `serve run app.ray.app:build` and `serve.yaml`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ray import serve
from ray.serve import Application, Deployment

from app.ray.replica import Replica
from app.settings import Settings, get_settings

APP = "bankllm"  # the Serve application's name, and its desired-model actor's
# Ray may send a replica this many requests beyond MAX_CONCURRENCY + MAX_QUEUE: probes and
# scrapes get through a full replica, and a generation past the queue meets our own 429 (with
# Retry-After) rather than waiting unseen in Ray's router.
HEADROOM = 8


@dataclass(frozen=True)
class Scale:
    """How many replicas: a fixed number, or autoscaled between min and max."""

    replicas: int = 1
    autoscale: tuple[int, int] | None = None
    replica_cpus: float = 1.0
    # Ray's autoscaling policy, beyond min and max (its defaults wait 30 s before scaling out)
    autoscaling: dict[str, Any] | None = None

    @classmethod
    def parse(cls, replicas: int | None, autoscale: str | None, cpus: float = 1.0) -> Scale:
        if autoscale is None:
            return cls(replicas or 1, None, cpus)
        low, sep, high = autoscale.partition(":")
        if not sep or not low.isdigit() or not high.isdigit() or not 0 < int(low) <= int(high):
            raise ValueError(f"--autoscale takes MIN:MAX with 0 < MIN <= MAX, not {autoscale!r}")
        return cls(int(low), (int(low), int(high)), cpus)


def deployment_options(settings: Settings, scale: Scale) -> dict[str, Any]:
    options: dict[str, Any] = {
        "name": "Replica",
        "max_ongoing_requests": settings.max_concurrency + settings.max_queue + HEADROOM,
        "ray_actor_options": {"num_cpus": scale.replica_cpus},
        "graceful_shutdown_timeout_s": settings.shutdown_grace_s,
    }
    if scale.autoscale is None:
        options["num_replicas"] = scale.replicas
    else:
        low, high = scale.autoscale
        options["autoscaling_config"] = {
            "min_replicas": low,
            "max_replicas": high,
            # a replica running MAX_CONCURRENCY generations is full: the next one goes to a new one
            "target_ongoing_requests": settings.max_concurrency,
            **(scale.autoscaling or {}),
        }
    return options


def application(settings: Settings, scale: Scale | None = None) -> Application:
    """The Serve application for these settings: `serve.run(application(...), name=APP)`; each
    application (by its name) has its own desired model."""
    options = deployment_options(settings, scale or Scale())
    deployment: Deployment = serve.deployment(**options)(Replica)
    return deployment.bind(settings)


def build(args: dict[str, Any]) -> Application:
    """`serve run app.ray.app:build replicas=2 env_file=.env.custom` (or `autoscale=1:4`,
    `replica_cpus=1`); in a Serve config (serve.yaml, a KubeRay RayService) `args` may also
    hold `settings`, a mapping of settings that win over the environment and the env file."""
    known = {"env_file", "replicas", "autoscale", "replica_cpus", "settings"}
    if unknown := set(args) - known:
        raise ValueError(f"unknown arguments {sorted(unknown)}; known: {sorted(known)}")
    overrides = {str(k).lower(): v for k, v in dict(args.get("settings") or {}).items()}
    settings = get_settings(args.get("env_file"), **overrides)
    replicas = int(args["replicas"]) if "replicas" in args else None
    autoscale = args.get("autoscale")
    if autoscale is not None and not isinstance(autoscale, str):  # YAML reads 1:4 as 64
        raise ValueError(f'autoscale takes "MIN:MAX" as a quoted string, not {autoscale!r}')
    scale = Scale.parse(replicas, autoscale, float(args.get("replica_cpus", 1)))
    return application(settings, scale)
