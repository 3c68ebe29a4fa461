"""`bankllm serve --ray`: the application on a local Ray cluster (started here, gone when this
process stops) or on the cluster at `--address`, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import ray
from ray import serve

from app.ray.app import APP, Scale, application
from app.ray.desired import forget
from app.settings import Settings

logger = logging.getLogger(__name__)


def serve_on_ray(
    settings: Settings, host: str, port: int, scale: Scale, address: str | None
) -> int:
    # "local" starts a cluster of this machine's cores; an address joins a running one
    ray.init(address=address or "local", include_dashboard=False, log_to_driver=True)
    stop = threading.Event()

    def asked(sig: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, asked)
    signal.signal(signal.SIGINT, asked)
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(application(settings, scale), name=APP, route_prefix="/")
        shape = (
            f"{scale.replicas} replica(s)"
            if scale.autoscale is None
            else "{}-{} replicas (autoscaled)".format(*scale.autoscale)
        )
        logger.info("serving on http://%s:%d with %s on Ray Serve", host, port, shape)
        stop.wait()
        logger.info("stopping: each replica finishes its requests (SHUTDOWN_GRACE_S)")
        serve.delete(APP)  # replicas drain, then their lifespans close logs and models
        forget(APP)  # a deliberate stop: the next start serves ACTIVE_MODEL again
        if address is None:
            serve.shutdown()  # type: ignore[no-untyped-call]
    finally:
        ray.shutdown()
    return 0
