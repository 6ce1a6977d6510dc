"""`autopilot serve`: a real uvicorn server on 127.0.0.1 in front of champions built here (a tiny causal LM
fine-tuned by the real task, the digits CNN), driven over HTTP with requests."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path

import pytest
import requests
import torch
import uvicorn
from click.testing import CliRunner
from helpers import make_project
from lm_helpers import HP, make_lm_project, write_config, write_jsonl
from ops_study import entry
from registry_study import tree_digest

from autopilot import fsio, guard
from autopilot.cli import main
from autopilot.paths import Project
from autopilot.registry import champion, store
from autopilot.serve.app import build_app
from autopilot.serve.model import ChampionHolder
from autopilot.study import Study
from autopilot.train import lm_tiny
from autopilot.train.contract import TrainerRun
from autopilot.train.tasks import causal_lm, cnn_digits

KEY = "s3cret-key-for-tests"
PROMPTS = ["What is 12 + 7?", "Reverse the word 'apple'.", "Which day comes after Monday?"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model on a shared CPU: threads only wait for each other
    yield
    torch.set_num_threads(threads)


def load(root: Path) -> Study:
    study = Study.load(Project(root), root / "config" / "config.yaml")
    study.freeze()
    return study


def journal_run(root: Path, study: str, run_id: str, verdict: str, summary: dict) -> None:
    """The judge's and the journal's part, made up: a verdict and a ledger line for a trained run."""
    run = root / "runs" / study / run_id
    fsio.atomic_write_json(run / "verdict.json", {"run_id": run_id, "verdict": verdict,
                                                  "reason": f"made up: {verdict}"})
    value = summary["metric"]["value"]
    with (root / "runs" / study / "history.jsonl").open("a") as f:
        f.write(json.dumps(entry(run_id, verdict, value, seed_values=[value])) + "\n")


@pytest.fixture(scope="module")
def lm_study(tmp_path_factory, tiny_model_dir):
    """A causal_lm study with two runs fine-tuned by the real task: run 00001 is the champion (scored on the test
    file), run 00002 is journaled as improved but not promoted yet."""
    root = tmp_path_factory.mktemp("serve") / "project"
    make_project(root, study="lm", task="causal_lm", model={"path": "models/tiny-lm"},
                 metric={"name": "val_loss", "goal": "minimize"}, baseline=HP,
                 search_space={"lr": {"type": "float", "low": 0.0001, "high": 0.1, "log": True}},
                 data={"source": "file", "train_file": "data/train.jsonl", "val_file": "data/val.jsonl",
                       "test_file": "data/test.jsonl", "spec": "chat_sft_v1"},
                 serve={"reload_seconds": 0.2, "max_tokens": 12})
    make_lm_project(root, tiny_model_dir)
    write_jsonl(root / "data" / "test.jsonl", lm_tiny.synthetic_chat(8, seed=5))
    torch.set_num_threads(1)
    for run_id, hp, verdict in (("00001", {}, "baseline"), ("00002", {"lr": 2e-2, "max_steps": 12}, "improved")):
        run = write_config(root, hp, run_id=run_id)
        summary = causal_lm.train(TrainerRun(fsio.read_json(run.config), root=root))
        journal_run(root, "lm", run_id, verdict, summary)
        if run_id == "00001":
            champion.settle(load(root))
    return root


@contextlib.contextmanager
def running(app):
    """The app under a real uvicorn server on 127.0.0.1 (a free port); yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def auth(key: str | None = KEY) -> dict:
    return {} if key is None else {"Authorization": f"Bearer {key}"}


def ask(url: str, prompt: str, key: str | None = KEY, **extra) -> requests.Response:
    body = {"model": "lm", "messages": [{"role": "user", "content": prompt}], "max_tokens": 12, **extra}
    return requests.post(f"{url}/v1/chat/completions", json=body, headers=auth(key), timeout=120)


def make_current(study: Study, run_id: str) -> None:
    if store.current_run(study.models) != run_id:
        champion.promote(study, run_id, reason="test setup", force=True)


def greedy(folder: Path, prompt: str, max_new_tokens: int = 12) -> str:
    """Greedy decoding of `prompt` by the weights in `folder`, with transformers alone (no autopilot code)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    stop = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")]
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, eos_token_id=stop, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def sse(response: requests.Response) -> list[dict | str]:
    events = []
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("data: "):
            data = line[len("data: "):]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


# ---------------------------------------------------------------- the key

def test_every_route_without_a_key_with_a_wrong_key_and_with_the_right_key(lm_study):
    study = load(lm_study)
    make_current(study, "00001")
    chat_body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    routes = [("get", "/health", None), ("get", "/models/info", None), ("get", "/v1/models", None),
              ("post", "/v1/chat/completions", chat_body), ("post", "/v1/predict", {"images": [[0] * 64]})]
    with running(build_app(study, KEY)) as url:
        for method, path, body in routes:
            for key, expected in ((None, 401), ("wrong-key", 401), (KEY[:-1], 401), (KEY, 200)):
                r = requests.request(method, url + path, json=body, headers=auth(key), timeout=60)
                if path == "/health":
                    expected = 200  # the only open route
                elif path == "/v1/predict" and key == KEY:
                    expected = 404  # a language model champion: the classifier route says where to go instead
                assert r.status_code == expected, (method, path, key, r.text)
                if expected == 401:
                    assert r.json()["error"]["code"] == "invalid_api_key" and KEY not in r.text
        r = requests.get(url + "/v1/predict", headers={"Authorization": KEY}, timeout=10)  # no "Bearer"
        assert r.status_code == 401
        models = requests.get(url + "/v1/models", headers=auth(), timeout=10).json()
        assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["lm"]
        info = requests.get(url + "/models/info", headers=auth(), timeout=10).json()
        assert info["run_id"] == "00001" and info["champion"]["test"]["examples"] == 8


def test_the_server_refuses_a_public_address_without_a_key(lm_study, monkeypatch):
    monkeypatch.delenv("AUTOPILOT_SERVE_API_KEY", raising=False)
    result = CliRunner().invoke(main, ["--root", str(lm_study), "serve", "--host", "0.0.0.0", "--port", "0"])
    assert result.exit_code == 1 and "refusing to serve on 0.0.0.0 without an API key" in result.output
    assert "AUTOPILOT_SERVE_API_KEY" in result.output


# ---------------------------------------------------------------- chat

def test_a_chat_answer_comes_from_the_champions_weights_not_the_base_models(lm_study):
    study = load(lm_study)
    make_current(study, "00001")
    weights = study.models.champion("00001").weights
    answers = []
    with running(build_app(study, KEY)) as url:
        for prompt in PROMPTS:
            r = ask(url, prompt)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["object"] == "chat.completion" and body["model"] == "lm"
            assert body["system_fingerprint"] == "autopilot-run-00001"
            assert body["choices"][0]["finish_reason"] in ("stop", "length")
            assert 0 < body["usage"]["completion_tokens"] <= 12
            answers.append(body["choices"][0]["message"]["content"])
    assert answers == [greedy(weights, p) for p in PROMPTS]
    base = [greedy(lm_study / "models" / "tiny-lm", p) for p in PROMPTS]
    assert answers != base, "the served answers are the base model's"


def test_a_streamed_answer_is_the_same_text_in_openai_chunks(lm_study):
    study = load(lm_study)
    make_current(study, "00001")
    with running(build_app(study, KEY)) as url:
        whole = ask(url, PROMPTS[0]).json()["choices"][0]["message"]["content"]
        r = ask(url, PROMPTS[0], stream=True)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = sse(r)
        stopped = ask(url, PROMPTS[0], stop=[whole[2:4]]).json() if len(whole) >= 4 else None
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["system_fingerprint"] == "autopilot-run-00001"
               for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == whole
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    if stopped:
        assert stopped["choices"][0]["message"]["content"] == whole[:whole.index(whole[2:4])]
        assert stopped["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("body, param", [
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}, "model"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": 3}, "temperature"),
    ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, "n"),
])
def test_a_bad_chat_request_is_a_clear_openai_error(lm_study, body, param):
    with running(build_app(load(lm_study), KEY)) as url:
        r = requests.post(f"{url}/v1/chat/completions", json=body, headers=auth(), timeout=30)
    assert r.status_code in (400, 404) and r.json()["error"]["param"] == param


# ---------------------------------------------------------------- promotion and rollback while serving

def client(url: str, stream: bool, stop: threading.Event, seen: list, failures: list) -> None:
    """Ask again and again until told to stop; record (fingerprint) per answer, and anything that went wrong."""
    mine = []
    while not stop.is_set():
        try:
            r = ask(url, PROMPTS[len(mine) % len(PROMPTS)], max_tokens=6, stream=stream)
            if r.status_code != 200:
                failures.append(f"{r.status_code}: {r.text[:200]}")
                continue
            if stream:
                events = sse(r)
                assert events[-1] == "[DONE]" and all("error" not in e for e in events[:-1])
                mine.append(events[0]["system_fingerprint"])
            else:
                mine.append(r.json()["system_fingerprint"])
        except Exception as e:  # a dropped connection, a broken stream
            failures.append(repr(e))
    seen.append(mine)


def test_a_promotion_under_concurrent_load_loses_no_request_and_rollback_restores_the_weights(lm_study):
    study = load(lm_study)
    make_current(study, "00001")
    before = tree_digest(study.models.current)
    first_answer = greedy(study.models.champion("00001").weights, PROMPTS[0], 6)
    stop, seen, failures = threading.Event(), [], []
    with running(build_app(study, KEY)) as url:
        threads = [threading.Thread(target=client, args=(url, i % 2 == 1, stop, seen, failures)) for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(2.0)  # requests are flowing
        champion.promote(study, "00002", reason="promoted while serving", by="test@lab")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if requests.get(f"{url}/models/info", headers=auth(), timeout=30).json()["run_id"] == "00002":
                break
            time.sleep(0.1)
        time.sleep(2.0)  # more requests on the new champion
        stop.set()
        for t in threads:
            t.join(timeout=120)
        info = requests.get(f"{url}/models/info", headers=auth(), timeout=30).json()
        assert info["run_id"] == "00002" and info["reloads"] >= 1 and info["reload_error"] is None
        # rollback while serving: the previous champion's files come back byte for byte, and so do its answers
        champion.rollback(study, reason="back to the first", by="test@lab")
        while requests.get(f"{url}/health", timeout=30).json()["run_id"] != "00001":
            assert time.monotonic() < deadline + 60, "the server did not reload after the rollback"
            time.sleep(0.1)
        after = ask(url, PROMPTS[0], max_tokens=6).json()
    assert failures == [], failures[:5]
    answers = [f for mine in seen for f in mine]
    assert "autopilot-run-00001" in answers and "autopilot-run-00002" in answers, answers
    for mine in seen:  # a client that got the new champion never gets the old one again
        assert mine == sorted(mine), mine
    assert tree_digest(study.models.current) == before
    assert after["system_fingerprint"] == "autopilot-run-00001"
    assert after["choices"][0]["message"]["content"] == first_answer


# ---------------------------------------------------------------- LoRA export, and the classifier

def test_a_lora_champion_is_merged_into_one_folder_or_kept_as_an_adapter(lm_study, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run = write_config(lm_study, {"finetune": "lora", "lr": 2e-2, "max_steps": 4, "lora_r": 4, "lora_alpha": 8},
                       run_id="00003")
    summary = causal_lm.train(TrainerRun(fsio.read_json(run.config), root=lm_study))
    checkpoint = lm_study / summary["checkpoint"]
    base = lm_study / "models" / "tiny-lm"
    assert causal_lm.export(checkpoint, base, tmp_path / "merged", "merge") == "transformers"
    assert causal_lm.export(checkpoint, base, tmp_path / "adapter", "adapter") == "peft_adapter"
    ids = torch.tensor([[5, 17, 42, 99, 7]])
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()(ids).logits
        expected = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), checkpoint / "adapter")
        expected = expected.eval()(ids).logits
        plain = AutoModelForCausalLM.from_pretrained(base).eval()(ids).logits
    assert torch.allclose(merged, expected, atol=1e-5) and not torch.allclose(merged, plain, atol=1e-3)
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    assert (tmp_path / "adapter" / "adapter_config.json").exists()


def test_the_digits_champion_answers_predict(tmp_path):
    root = make_project(tmp_path / "project")
    study = load(root)
    run = study.paths.run("00001")
    config = guard.config_document("00001", "digits_cnn", "cnn_digits", seed=3, max_seconds=300,
                                   hparams={**study.config["baseline"], "epochs": 3}, metric=study.config["metric"],
                                   data={"split_seed": 0})
    fsio.atomic_write_json(run.config, config)
    summary = cnn_digits.train(TrainerRun(config, root=root)) or fsio.read_json(run.summary)
    journal_run(root, "digits_cnn", "00001", "baseline", summary)
    champion.settle(study)
    from autopilot.train.tasks import digits_data

    x, y = digits_data.held_out_split(0)
    images = (x[:40] * 16).reshape(40, 64).round().tolist()
    holder = ChampionHolder(study)
    with running(build_app(study, KEY, holder)) as url:
        r = requests.post(f"{url}/v1/predict", json={"images": images}, headers=auth(), timeout=60)
        bad = requests.post(f"{url}/v1/predict", json={"images": [[1, 2, 3]]}, headers=auth(), timeout=60)
        chat = ask(url, "hi", model="digits_cnn")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["run_id"] == "00001" and len(body["predictions"]) == 40
    assert all(abs(sum(p["probabilities"]) - 1) < 1e-4 for p in body["predictions"])
    accuracy = sum(p["label"] == int(t) for p, t in zip(body["predictions"], y[:40], strict=True)) / 40
    assert accuracy > 0.5  # well above the 0.1 of chance: the champion's weights
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "images"
    assert chat.status_code == 404 and "/v1/predict" in chat.json()["error"]["message"]
