"""The official OpenRouter Python SDK (``openrouter`` on PyPI), a client nobody here wrote, pointed
at ``infer serve --profile sim``'s ``/api/v1``: an app written against OpenRouter switches its base
URL and keeps working. Every call below validates the proxy's answer against the SDK's own models.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from openrouter import OpenRouter

from tests.helpers import stop_process
from tests.test_serve_sim import start_serve

USER = [{"role": "user", "content": "What is KV caching?"}]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("infer-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INFER_HOME", str(home))
        url, process = start_serve()
    try:
        yield url
    finally:
        stop_process(process)


@pytest.fixture
def sdk(served: str, infer_home: Path) -> Iterator[OpenRouter]:
    client = OpenRouter(api_key="any", server_url=served + "/api/v1", timeout_ms=20_000)
    with client:
        yield client


def test_models_list_validates_with_the_public_schema(sdk: OpenRouter) -> None:
    response = sdk.models.list()
    assert response is not None and response.next() is None  # one page
    page = response.result
    assert page.total_count == 1 and page.links.next is None
    [model] = page.data
    assert model.id == "sim-model"
    assert model.canonical_slug == "sim-model"
    assert model.context_length is not None and model.context_length > 0
    assert model.architecture.input_modalities == ["text"]
    assert model.architecture.modality == "text->text"
    assert model.top_provider.is_moderated is False
    assert model.top_provider.context_length == model.context_length
    assert "temperature" in model.supported_parameters
    assert model.pricing.prompt and model.pricing.completion  # strings, as OpenRouter sends
    # null where infer has nothing truthful to say, never an invented value
    assert model.default_parameters is None
    assert model.per_request_limits is None
    assert model.supported_voices is None


def test_chat_send_then_get_generation_validates(sdk: OpenRouter) -> None:
    answer = sdk.chat.send(model="sim-model", messages=USER, max_tokens=5)
    assert answer.choices[0].message.content
    assert answer.usage is not None and answer.usage.completion_tokens == 5
    record = sdk.generations.get_generation(id=answer.id).data
    assert record.id == answer.id
    assert record.model == "sim-model"
    assert record.tokens_completion == 5
    assert record.tokens_prompt == answer.usage.prompt_tokens
    assert record.streamed is False and record.cancelled is False
    assert record.is_byok is False
    assert record.total_cost == pytest.approx(answer.usage.cost or 0.0)
    assert record.latency is not None and record.latency > 0
    # fields a self-hosted proxy has no source for are null
    assert record.app_id is None and record.workspace_id is None and record.router is None


def test_a_streamed_answer_is_recorded_as_streamed(sdk: OpenRouter) -> None:
    chunks = list(sdk.chat.send(model="sim-model", messages=USER, max_tokens=4, stream=True))
    ids = {chunk.id for chunk in chunks}
    assert len(ids) == 1
    usage = [chunk.usage for chunk in chunks if chunk.usage is not None]
    assert len(usage) == 1 and usage[0].completion_tokens == 4
    record = sdk.generations.get_generation(id=ids.pop()).data
    assert record.streamed is True
    assert record.tokens_completion == 4
