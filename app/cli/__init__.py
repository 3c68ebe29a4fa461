"""`bankllm`: the service's command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from app.cli import bench, finetune, report, serve, train
from app.cli import eval as eval_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bankllm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve.add_parser(commands)
    train.add_parser(commands)
    finetune.add_parser(commands)
    eval_command.add_parser(commands)
    bench.add_parser(commands)
    report.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
