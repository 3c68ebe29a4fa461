"""The echo model's requests/s at c=1 and c=32, this tree against an earlier commit, side by
side in one run: the same venv, the same settings, alternating rounds, medians.

    python -m benchmarks.against_commit [--commit 082120c] [--rounds 3] [--seconds 8]

The commit is checked out into a temporary git worktree and served from there (its own `app`
package comes first on the path); the goal of a refactor is a ratio near 1.00x. Needs `hey`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.overhead import KEY, PROMPT, ROOT, Target, _free_port, alternating

LEVELS = (1, 32)


def _target(name: str, tree: Path, workdir: Path) -> Target:
    port = _free_port()
    env = {
        "ACTIVE_MODEL": "echo",
        "ENABLE_ECHO_MODEL": "true",
        "API_KEYS": KEY,
        "ADMIN_API_KEY": "bench-admin-key-0123",
        "LOG_LEVEL": "WARNING",
        "BENCHMARK_LOG": str(workdir / f"{name}.jsonl"),
        "MAX_CONCURRENCY": "64",
        "MAX_QUEUE": "1024",
        "PYTHONPATH": str(tree),
    }
    return Target(
        name,
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        env,
        f"http://127.0.0.1:{port}/generate",
        f"http://127.0.0.1:{port}/health",
        PROMPT,
        {"Authorization": f"Bearer {KEY}"},
        cwd=tree,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commit", default="082120c", help="the commit to compare against")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="per server, level and round")
    args = parser.parse_args()
    if shutil.which("hey") is None:
        raise SystemExit("needs hey: apt-get install hey")
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp) / "before"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before), args.commit],
            check=True,
            capture_output=True,
        )
        try:
            targets = [
                _target(f"before ({args.commit})", before, Path(tmp)),
                _target("this tree", ROOT, Path(tmp)),
            ]
            runs = alternating(targets, LEVELS, args.rounds, args.seconds)
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], check=True
            )
    print(f"\n{'server':<24}" + "".join(f"{f'c={c} req/s (runs)':>34}" for c in LEVELS))
    median: dict[str, dict[int, float]] = {}
    for name, by_level in runs.items():
        median[name] = {
            c: statistics.median(r.requests_per_s for r in rs) for c, rs in by_level.items()
        }
        cells = "".join(
            f"{median[name][c]:>10.0f} ({', '.join(f'{r.requests_per_s:.0f}' for r in rs)})".rjust(
                34
            )
            for c, rs in by_level.items()
        )
        print(f"{name:<24}{cells}")
    old, new = (median[t.name] for t in targets)
    print("this tree / before: " + ", ".join(f"c={c}: {new[c] / old[c]:.2f}x" for c in LEVELS))
    errors = sum(r.errors for by_level in runs.values() for rs in by_level.values() for r in rs)
    print(f"non-200 answers: {errors}")


if __name__ == "__main__":
    main()
