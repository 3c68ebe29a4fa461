"""The CPU image's figures: build time, rebuild time after a change to one file in `app/`,
size and layer sizes, and seconds from `docker run` to healthy and from `docker stop` to exit,
with the test suite's stand-ins (a Debian base image, a local torch index).

    python -m benchmarks.image      # as root, with a Docker engine and mmdebstrap
"""

from __future__ import annotations

import time

from tests.containers import (
    base_image,
    build_cpu_image,
    docker,
    engine_problem,
    torch_index,
    torch_wheel,
    until_healthy,
)
from tests.helpers import ROOT

TAG = "bankllm:cpu-bench"


def main() -> None:
    if (problem := engine_problem()) is not None:
        raise SystemExit(problem)
    wheel = torch_wheel()
    if wheel is None:
        raise SystemExit("no torch 2.13.0 CPU wheel on this machine")
    started = time.monotonic()
    base = base_image()
    print(f"stand-in base {base}: {time.monotonic() - started:.1f} s (0 when cached)")
    touched = ROOT / "app" / "main.py"
    with torch_index(wheel) as index:
        started = time.monotonic()
        build_cpu_image(TAG, base, index)
        print(f"build: {time.monotonic() - started:.1f} s")
        text = touched.read_text()
        try:
            touched.write_text(text + "# touched by benchmarks/image.py\n")
            started = time.monotonic()
            build_cpu_image(TAG, base, index)
            print(f"rebuild after one file in app/ changed: {time.monotonic() - started:.1f} s")
        finally:
            touched.write_text(text)
    print(f"size: {docker('images', TAG, '--format', '{{.Size}}').strip()}; layers:")
    print(docker("history", TAG, "--format", "  {{.Size}}\t{{.CreatedBy}}").rstrip()[:2000])
    started = time.monotonic()
    container = docker("run", "-d", "--network", "host", "-e", "API_KEYS=bench-user-key-0123", TAG)
    try:
        until_healthy(container.strip())
        print(f"docker run to healthy: {time.monotonic() - started:.1f} s")
        started = time.monotonic()
        docker("stop", "--time", "30", container.strip())
        code = docker("inspect", "--format", "{{.State.ExitCode}}", container.strip()).strip()
        print(f"docker stop to exit {code}: {time.monotonic() - started:.1f} s")
    finally:
        docker("rm", "-f", container.strip(), check=False)


if __name__ == "__main__":
    main()
