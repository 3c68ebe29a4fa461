"""The other way to switch every replica: Ray Serve's own `user_config`, redeployed with the new
model's name; Ray calls `reconfigure` on each running replica, a few at a time. Measured here on
2 replicas of a probe that loads nothing, so the figure is the mechanism alone (beside our
desired-model actor's switch to `echo` in benchmarks/ray_scale.py)."""

from __future__ import annotations

import time
from typing import Any

import ray
from ray import serve
from ray.serve import Deployment

from benchmarks.overhead import _free_port


class _Probe:
    def __init__(self) -> None:
        self.model = ""
        self.replica = serve.get_replica_context().replica_id.unique_id

    def reconfigure(self, config: dict[str, Any]) -> None:
        self.model = config["model"]

    def __call__(self) -> tuple[str, str]:
        return self.replica, self.model


Probe: Deployment = serve.deployment(
    num_replicas=2, ray_actor_options={"num_cpus": 0}, user_config={"model": "a"}
)(_Probe)


def user_config_switch_ms(count: int) -> list[float]:
    """`count` switches of 2 replicas by user_config: from the redeploy until Serve reports the
    application running again, each checked to have reached both replicas."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    times = []
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": _free_port()})
        handle = serve.run(Probe.bind(), name="probe", route_prefix=None)
        for i in range(count * 2):
            model = "b" if i % 2 == 0 else "a"
            started = time.perf_counter()
            handle = serve.run(
                Probe.options(user_config={"model": model}).bind(), name="probe", route_prefix=None
            )
            times.append((time.perf_counter() - started) * 1000)
            seen = {handle.remote().result() for _ in range(20)}
            assert {m for _, m in seen} == {model}, seen
            assert len({r for r, _ in seen}) == 2, seen  # both replicas answered
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()
    return times
