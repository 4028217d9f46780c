"""The OpenAI-compatible provider against a local stand-in of `/v1/embeddings`.

The `fake_embeddings_api` fixture (conftest.py) is a real HTTP server on 127.0.0.1
that stands in for a remote OpenAI-compatible service, which cannot be reached from
here; the provider talks to it over real sockets with httpx.
"""

import socket

import numpy as np
import pytest

from docflow.embedder.providers import OpenAICompatibleProvider, create_provider
from docflow.shared.errors import ErrorCode, TransientError
from docflow.shared.settings import Settings


def provider_for(api, api_key: str = "sk-test", batch_size: int = 64,
                 timeout_seconds: float = 5.0) -> OpenAICompatibleProvider:
    return create_provider(Settings(
        embedder="openai", openai_base_url=api.url, openai_api_key=api_key,
        openai_model="text-embedding-3-small", openai_timeout_seconds=timeout_seconds,
        embedding_batch_size=batch_size,
    ))


def test_posts_model_and_input_list_with_bearer_key(fake_embeddings_api):
    provider_for(fake_embeddings_api).embed(["hello", "world"])
    [request] = fake_embeddings_api.requests
    assert request["path"] == "/v1/embeddings"
    assert request["body"] == {"model": "text-embedding-3-small", "input": ["hello", "world"]}
    assert request["authorization"] == "Bearer sk-test"


def test_sends_no_authorization_header_without_a_key(fake_embeddings_api):
    # Local TEI, vLLM and Ollama servers usually run without keys.
    provider_for(fake_embeddings_api, api_key="").embed(["hello"])
    assert fake_embeddings_api.requests[0]["authorization"] is None


def test_rows_follow_input_order_although_the_server_answers_out_of_order(fake_embeddings_api):
    texts = ["a", "bbbb", "cc"]
    matrix = provider_for(fake_embeddings_api).embed(texts)
    # The stand-in encodes each text's length in the first coordinate.
    first_coordinates = [np.array([len(t) + 1, 2, 3]) / np.linalg.norm([len(t) + 1, 2, 3]) for t in texts]
    np.testing.assert_allclose(matrix, np.vstack(first_coordinates), rtol=1e-6)


def test_batches_requests_and_keeps_rows_in_order(fake_embeddings_api):
    texts = ["one", "two", "three", "four", "five"]
    matrix = provider_for(fake_embeddings_api, batch_size=2).embed(texts)
    assert [r["body"]["input"] for r in fake_embeddings_api.requests] == [
        ["one", "two"], ["three", "four"], ["five"]]
    assert matrix.shape == (5, 3)
    np.testing.assert_allclose(matrix, provider_for(fake_embeddings_api).embed(texts), rtol=1e-6)


def test_returns_unit_length_float32_rows_and_learns_dimensions(fake_embeddings_api):
    fake_embeddings_api.dimensions = 5
    provider = provider_for(fake_embeddings_api)
    matrix = provider.embed(["x", "yy"])
    assert matrix.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, rtol=1e-6)
    assert provider.dimensions == 5
    assert len(fake_embeddings_api.requests) == 1  # known from the response, no probe


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_server_errors_and_rate_limits_are_transient(fake_embeddings_api, status):
    fake_embeddings_api.fail_with = status
    with pytest.raises(TransientError) as caught:
        provider_for(fake_embeddings_api).embed(["hello"])
    assert caught.value.code is ErrorCode.EMBEDDER_UNAVAILABLE
    assert str(status) in caught.value.message


def test_a_rejected_request_is_transient_and_carries_the_servers_reason(fake_embeddings_api):
    fake_embeddings_api.fail_with = 404
    fake_embeddings_api.error_body = '{"error": {"message": "The model `nope` does not exist"}}'
    with pytest.raises(TransientError) as caught:
        provider_for(fake_embeddings_api).embed(["hello"])
    assert caught.value.code is ErrorCode.EMBEDDER_UNAVAILABLE
    assert "HTTP 404" in caught.value.message
    assert "does not exist" in caught.value.message


def test_an_unreachable_server_is_transient():
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = OpenAICompatibleProvider(base_url=f"http://127.0.0.1:{port}/v1", api_key="",
                                        model="m", timeout_seconds=2, batch_size=8)
    with pytest.raises(TransientError) as caught:
        provider.embed(["hello"])
    assert caught.value.code is ErrorCode.EMBEDDER_UNAVAILABLE
    assert "cannot reach" in caught.value.message


def test_a_slow_server_times_out_as_transient(fake_embeddings_api):
    fake_embeddings_api.delay_seconds = 1.0
    with pytest.raises(TransientError) as caught:
        provider_for(fake_embeddings_api, timeout_seconds=0.2).embed(["hello"])
    assert caught.value.code is ErrorCode.EMBEDDER_UNAVAILABLE
    assert "timed out" in caught.value.message


def test_a_trailing_slash_in_the_base_url_is_harmless(fake_embeddings_api):
    fake_embeddings_api.url += "/"
    provider_for(fake_embeddings_api).embed(["hello"])
    assert fake_embeddings_api.requests[0]["path"] == "/v1/embeddings"
