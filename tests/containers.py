"""Stand-ins for what a registry would give a Docker build, made here: a Python base image
from Debian's own packages (mmdebstrap), and a package index on 127.0.0.1 that serves this
machine's CPU torch wheel and sends every other project to PyPI."""

from __future__ import annotations

import hashlib
import http.server
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers import ROOT

CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
PACKAGES = "python3.11,python3-pip,passwd,ca-certificates"
_BASE_DOCKERFILE = """\
FROM {rootfs}
RUN ln -s /usr/bin/python3 /usr/local/bin/python && ln -s /usr/bin/pip3 /usr/local/bin/pip \\
    && rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
"""


def docker(*args: str, timeout_s: float = 600, check: bool = True) -> str:
    """Run the docker CLI; its stdout."""
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def engine_problem() -> str | None:
    """Why no Docker engine can be used here, or None."""
    if shutil.which("docker") is None:
        return "no docker CLI (apt-get install docker.io)"
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        return "no Docker engine answers (start one: dockerd --bridge=none, as root)"
    if shutil.which("mmdebstrap") is None:
        return "no mmdebstrap to build the stand-in base image (apt-get install mmdebstrap)"
    return None


def base_image() -> str:
    """The stand-in for python:3.11-slim, built once and then found by its recipe's hash."""
    recipe = f"{PACKAGES}\n{_BASE_DOCKERFILE}\n".encode() + CA_BUNDLE.read_bytes()
    tag = f"bankllm-test-base:{hashlib.sha256(recipe).hexdigest()[:12]}"
    if docker("images", "-q", tag).strip():
        return tag
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rootfs = folder / "rootfs.tar"
        subprocess.run(
            ["mmdebstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm", str(rootfs)],
            capture_output=True,
            check=True,
            timeout=900,
        )
        imported = f"bankllm-test-rootfs:{tag.split(':')[1]}"
        docker("import", str(rootfs), imported)
        shutil.copy(CA_BUNDLE, folder / "ca-certificates.crt")
        (folder / "Dockerfile").write_text(_BASE_DOCKERFILE.format(rootfs=imported))
        docker("build", "--network", "host", "-t", tag, str(folder))
    return tag


def torch_wheel() -> Path | None:
    """This machine's CPU wheel of torch 2.13.0, from the folders pip is told to look in."""
    listed = subprocess.run(
        ["pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    folders = {Path("/opt/wheels")}
    for line in listed.splitlines():
        if "find-links" in line:
            folders.update(Path(p) for p in line.split("=", 1)[1].strip("'\" ").split())
    for folder in sorted(folders):
        for wheel in sorted(folder.glob("torch-2.13.0+cpu-*.whl")) if folder.is_dir() else []:
            return wheel
    return None


@contextmanager
def torch_index(wheel: Path) -> Iterator[str]:
    """A PEP 503 index on 127.0.0.1: torch from `wheel`, any other project from PyPI."""

    class Index(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the http.server API
            name = urllib.parse.unquote(self.path).strip("/").split("/")
            if name[:2] == ["simple", "torch"]:
                page = f'<a href="/files/{wheel.name}">{wheel.name}</a>'.encode()
                self._answer(200, "text/html", page)
            elif name[:1] == ["files"] and name[-1] == wheel.name:
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(wheel.stat().st_size))
                self.end_headers()
                with wheel.open("rb") as f:
                    shutil.copyfileobj(f, self.wfile)
            elif name[:1] == ["simple"] and len(name) > 1:
                self.send_response(302)
                self.send_header("Location", f"https://pypi.org/simple/{name[1]}/")
                self.end_headers()
            else:
                self._answer(404, "text/plain", b"not here")

        def _answer(self, status: int, kind: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    finally:
        server.shutdown()
        server.server_close()


def build_cpu_image(tag: str, base: str, index: str) -> None:
    docker(
        "build",
        "--network",
        "host",
        "-f",
        str(ROOT / "Dockerfile.cpu"),
        "--build-arg",
        f"BASE_IMAGE={base}",
        "--build-arg",
        f"TORCH_INDEX_URL={index}",
        "-t",
        tag,
        str(ROOT),
        timeout_s=1800,
    )


def until_healthy(container: str, timeout_s: float = 120) -> float:
    """Seconds until Docker's own health check says healthy (its events, not a poll)."""
    started = time.monotonic()
    events = subprocess.Popen(
        [
            "docker",
            "events",
            "--filter",
            f"container={container}",
            "--filter",
            "event=health_status",
            "--format",
            "{{.Status}}",
            "--since",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert events.stdout is not None
        deadline = started + timeout_s
        for line in events.stdout:
            if "healthy" in line and "unhealthy" not in line:
                return time.monotonic() - started
            if time.monotonic() > deadline:
                break
        raise AssertionError(f"{container} not healthy within {timeout_s} s")
    finally:
        events.kill()
        events.wait()
        assert events.stdout is not None
        events.stdout.close()
