"""What redaction costs a request to a cloud model: the time to read a prompt of the longest
allowed length (MAX_PROMPT_CHARS) for customer numbers, plain ASCII and with other scripts
(which take the per-character normal form), with none and with a card in it.

    python -m benchmarks.pii_scan [--chars 4000] [--repeats 50]

It runs on the event loop, once a request (and once a shadow's): its time is what one cloud
request takes from every other request.
"""

from __future__ import annotations

import argparse
import time

from app.banking.pii import redact_all

WORDS = "my card has not arrived and I would like to know where it is please "
CARD = " 4111 1111 1111 1111 "


def per_request_ms(text: str, repeats: int) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        redact_all([text])
    return (time.perf_counter() - started) / repeats * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chars", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    plain = (WORDS * (args.chars // len(WORDS) + 1))[: args.chars]
    accented = plain.replace("please", "s'il vous plaît")[: args.chars]
    print(f"prompt of {args.chars} characters   ms a request")
    for name, text in (
        ("ASCII, no number", plain),
        ("ASCII, a card", plain[: -len(CARD)] + CARD),
        ("accented, no number", accented),
        ("accented, a card", accented[: -len(CARD)] + CARD),
    ):
        print(f"{name:<30} {per_request_ms(text, args.repeats):8.3f}")


if __name__ == "__main__":
    main()
