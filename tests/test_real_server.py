"""`calibrate serve`, `fit` and `validate` against a real OpenAI-compatible server: Hugging Face `transformers serve`
on the CPU, serving a tiny random-weight Llama built here (a BPE tokenizer trained on local text, no hub access), in
both batching modes. Needs the `serve-test` extra (torch, transformers[serving]); skipped, with the reason shown,
where it is absent (`pip install -e ".[dev,serve-test]"`, which .ci/run does)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from simfactory.cli import app

for _module in ("torch", "transformers", "fastapi", "uvicorn", "tokenizers"):
    pytest.importorskip(_module, reason=f"the serve-test extra is not installed ({_module} is missing): "
                                        "pip install -e '.[dev,serve-test]'")

STARTUP_TIMEOUT_S = 180.0
WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()


def build_tiny_model(out: Path) -> Path:
    """A 2-layer Llama (hidden 64) with random weights and a small byte-level BPE tokenizer trained on a few local
    words, saved as a Hugging Face folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # only the characters of the training text (no lone bytes >= 128): every token the random model emits decodes to
    # text, so each streamed chunk carries some
    tok.train_from_iterator([" ".join(WORDS * 20)] * 50, trainers.BpeTrainer(
        vocab_size=512, special_tokens=["<unk>", "<s>", "</s>"], initial_alphabet=[]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"
    fast.save_pretrained(out)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    # no end-of-sequence token to stop on: transformers serve refuses ignore_eos, and a random model would otherwise
    # end some answers at their first token
    model.generation_config.eos_token_id = None
    model.save_pretrained(out)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli() -> list[str]:
    exe = Path(sys.executable).parent / "transformers"
    return [str(exe)] if exe.exists() else [shutil.which("transformers") or "transformers"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(params=["--no-continuous-batching", "--continuous-batching"])
def server(request: pytest.FixtureRequest, tiny_model: Path, tmp_path: Path):
    """`transformers serve` on 127.0.0.1 at a free port; stopped by its PID (process group) afterwards."""
    import httpx

    port = _free_port()
    env = {**os.environ, "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf"), "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen(_cli() + ["serve", str(tiny_model), "--host", "127.0.0.1", "--port", str(port),
                                      request.param], stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited with {proc.returncode}: {(tmp_path / 'serve.log').read_text()[-2000:]}")
            try:
                if httpx.get(url + "/health", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve not up after {STARTUP_TIMEOUT_S:g} s")
            time.sleep(0.5)
        yield url, str(tiny_model)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)
        log.close()


def _serve(url: str, served: str, out: Path, lengths: str, deployment: list[str]) -> pd.DataFrame:
    res = CliRunner().invoke(app, ["calibrate", "serve", "--url", url + "/v1", "--served-model", served, *deployment,
                                   "--rates", "2,6", "--requests", "5", "--input-tokens", lengths, "--output-tokens",
                                   "6", "--warmup", "1", "--timeout", "120", "--out", str(out)])
    assert res.exit_code == 0, res.output
    # transformers serve refuses ignore_eos (HTTP 422): asked again without it, and said once
    assert res.output.count("note: the server refused ignore_eos (HTTP 422") == 1
    table = pd.read_csv(out / "requests.csv")
    assert table["ok"].all() and table["request_id"].is_unique, table[~table["ok"]]["error"].tolist()
    assert (table["output_tokens"] >= 1).all() and (table["ttft_s"] > 0).all() and (table["e2e_s"] >= table["ttft_s"]).all()
    meta = json.loads((out / "summary.json").read_text())
    assert meta["ignore_eos_sent"] is False and meta["summary"]["successful_requests"] == len(table)
    raw = [json.loads(x) for x in (out / "requests.jsonl").read_text().splitlines()]
    assert len(raw) == len(table) and all(r["status"] == 200 and r["chunk_s"] for r in raw)
    validation = pd.read_csv(out / "validation.csv")
    assert validation["measured"].notna().all() and validation["predicted"].notna().any()
    return table


DEPLOYMENT = ["--sku", "h100-sxm", "--model", "llama-3.2-1b", "--engine", "torch-eager"]


def test_serve_fit_and_validate_against_transformers_serve(server, tmp_path: Path, request: pytest.FixtureRequest):
    """Both batching modes: the client measures every request. With continuous batching the whole path runs:
    2 rates x 2 prompt lengths are 4 blocks; the fit (a linear step time: a CPU server is nothing like the H100
    roofline) either predicts every held-out block within 15% and writes the profile validate then uses, or is
    refused naming its worst block."""
    url, served = server
    if request.node.callspec.params["server"] == "--no-continuous-batching":
        table = _serve(url, served, tmp_path / "s", "16", DEPLOYMENT)
        assert len(table) == 10 and set(table["block"].astype(str)) == {"2", "6"}
        return
    table = _serve(url, served, tmp_path / "s", "16,48", DEPLOYMENT)
    assert len(table) == 20 and table["block"].nunique() == 4
    fit = CliRunner().invoke(app, ["calibrate", "fit", str(tmp_path / "s" / "requests.csv"), *DEPLOYMENT,
                                   "--profiles-dir", str(tmp_path / "profiles"), "--max-heldout-mape", "0.15",
                                   "--compute-bounds", "0.000001:1", "--memory-bounds", "0.000001:1",
                                   "--overhead-bounds", "0:2", "--max-evaluations", "24", "--fit", "linear"])
    assert "Traceback" not in fit.output
    print(fit.output)  # the held-out error per block (pytest -s shows it)
    if fit.exit_code == 0:
        assert "held out one block at a time" in fit.output and list((tmp_path / "profiles").rglob("*.yaml"))
        val = CliRunner().invoke(app, ["calibrate", "validate", str(tmp_path / "s" / "requests.csv"), *DEPLOYMENT,
                                       "--profiles-dir", str(tmp_path / "profiles"), "--out", str(tmp_path / "v")])
        assert val.exit_code == 0 and "step time simulated: measured" in val.output, val.output
    else:
        assert fit.exit_code == 1, fit.output
        assert "held-out block" in fit.output or "search bounds" in fit.output, fit.output
        assert not (tmp_path / "profiles").exists()
