"""A load generator of the vLLM ecosystem, unchanged, against our `/v1/chat/completions`."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.service import Service
from app.settings import Settings
from tests.helpers import USER_KEY, read_log


def test_vllm_bench_serve_completes_every_request_it_sends(
    server: tuple[str, Settings, Service],
    checkpoints: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("vllm", reason="CPU vLLM: `make install-test` installs it (CI does)")
    from transformers import PreTrainedTokenizerFast
    from vllm.benchmarks.serve import add_cli_args, main
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    url, settings, service = server  # custom-random
    # the load generator counts tokens with a tokenizer folder: our model's own, saved as one
    saved = str(checkpoints["random"] / "tokenizer.json")
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=saved)  # type: ignore[no-untyped-call]
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    monkeypatch.setenv("OPENAI_API_KEY", USER_KEY)  # what it sends as the bearer key
    parser = FlexibleArgumentParser()  # type: ignore[no-untyped-call]
    add_cli_args(parser)
    args = parser.parse_args(
        [
            "--backend", "openai-chat",
            "--base-url", url,
            "--endpoint", "/v1/chat/completions",
            "--model", "custom-random",
            "--tokenizer", str(tmp_path / "tokenizer"),
            # not `random`, which sends vLLM's `ignore_eos: true`: a field we refuse
            "--dataset-name", "prefix_repetition",
            "--num-prompts", "6",
            "--prefix-repetition-prefix-len", "4",
            "--prefix-repetition-suffix-len", "4",
            "--prefix-repetition-num-prefixes", "2",
            "--prefix-repetition-output-len", "8",
            "--max-concurrency", "3",
            "--disable-tqdm",
        ]
    )  # fmt: skip
    result = main(args)
    assert service.log.wait_written(6, timeout_s=60)
    rows = [r for r in read_log(settings) if r["type"] == "request"]
    assert (result["completed"], result["failed"]) == (6, 0)
    assert {(r["api"], r["status"]) for r in rows} == {("chat", "ok")}
    assert len(rows) >= 6  # its own test request first, then the six
