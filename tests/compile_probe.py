"""A process that compiles the decoding step of a tiny model and says how it went:
`python -m tests.compile_probe` prints `compiled` or `eager: <why>` (the kernels' folder
from BANKLLM_CACHE_DIR)."""

from __future__ import annotations

import logging
import sys

import torch

from app.backends.custom.gpt.model import GPT, GPTConfig
from app.backends.custom.gpt.step import Stepper

TINY = GPTConfig(vocab_size=64, block_size=32, n_layer=1, n_head=2, n_embd=16)


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    torch.manual_seed(0)
    stepper = Stepper(GPT(TINY).eval(), 2, compile=True)
    stepper.settled.wait()
    verdict = "compiled" if stepper.compiled.is_set() else f"eager: {stepper.compile_error}"
    sys.stdout.write(verdict + "\n")
    stepper.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
