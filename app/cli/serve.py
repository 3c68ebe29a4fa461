"""`bankllm serve`: run the HTTP service with uvicorn."""

from __future__ import annotations

import argparse
import logging
from typing import Any

import uvicorn

from app.main import create_app
from app.settings import get_settings


def add_parser(commands: Any) -> None:
    p: argparse.ArgumentParser = commands.add_parser("serve", help="serve the HTTP API")
    p.add_argument("--env-file", help="a .env file, e.g. .env.custom (the environment wins)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = get_settings(args.env_file)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for chatty in ("httpx", "httpx2"):  # one INFO line per upstream request: metrics say it
        logging.getLogger(chatty).setLevel(logging.WARNING)
    uvicorn.run(
        create_app(settings), host=args.host, port=args.port, log_level=settings.log_level.lower()
    )
    return 0
