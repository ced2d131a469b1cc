"""The README's first command: scripts/run-gateway.sh (what `make run`
starts) serves chat completions on 127.0.0.1:8080 with no API key set, from
the bundled demo providers, and stops cleanly on SIGTERM."""

import json
import os
import signal
import socket
import subprocess
import time

import pytest

from llmroute_harness import (MODULE_PATH, NGINX_BINARY, REPO_ROOT,
                              chat_body, post_json, stream_post)

PORT = 8080
KEYS = ("OPENAI_API_KEY", "DEEPSEEK_API_KEY", "ANTHROPIC_API_KEY")


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


@pytest.fixture
def gateway(tmp_path):
    if any(listening(p) for p in (PORT, 9101, 9102)):
        pytest.skip("port 8080, 9101 or 9102 is in use on this machine")
    env = {k: v for k, v in os.environ.items() if k not in KEYS}
    env["LLMROUTE_RUN_DIR"] = str(tmp_path / "run")
    # the module and nginx under test (scripts/test-asan.sh: ASan builds)
    env["LLMROUTE_MODULE"] = str(MODULE_PATH)
    env["NGINX_BINARY"] = NGINX_BINARY
    proc = subprocess.Popen([str(REPO_ROOT / "scripts" / "run-gateway.sh")],
                            env=env, cwd=str(REPO_ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        while not (listening(PORT) and listening(9101) and listening(9102)):
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def test_demo_gateway_answers_without_keys(gateway, tmp_path):
    resp = post_json(PORT, "/v1/chat/completions", chat_body("hello"))
    assert resp.status == 200, resp
    assert resp.header("X-LLMRoute-Provider").startswith("demo-")
    body = resp.json()
    assert body["object"] == "chat.completion" and body["choices"]
    assert body["usage"]["completion_tokens"] > 0
    res = stream_post(PORT, "/v1/chat/completions",
                      chat_body("hello", stream=True))
    assert res.status == 200
    assert res.events and res.events[-1][1] == "data: [DONE]"
    # the JSON access log of conf.d/gateway.conf carries both bills
    path = tmp_path / "run" / "logs" / "llmroute.log"
    deadline = time.monotonic() + 5
    while (not path.exists() or path.read_text().count("\n") < 2) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == 2, lines
    assert all(x["status"] == 200 and x["usage_source"] == "provider"
               and float(x["cost_usd"]) > 0 for x in lines), lines
    os.killpg(gateway.pid, signal.SIGTERM)
    gateway.wait(10)
    deadline = time.monotonic() + 5
    while listening(PORT) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not listening(PORT), "nginx still listening after SIGTERM"
