"""Which batch size each provider embeds with: the setting when given, else the provider's own."""

import pytest

from docflow.embedder.providers import batch_size
from docflow.shared.settings import Settings


@pytest.mark.parametrize(("embedder", "expected"), [("minilm", 16), ("openai", 64), ("hash", 64)])
def test_unset_means_the_providers_default(embedder, expected):
    assert batch_size(Settings(embedder=embedder)) == expected


def test_the_setting_wins_for_every_provider():
    for embedder in ("minilm", "openai", "hash"):
        assert batch_size(Settings(embedder=embedder, embedding_batch_size=5)) == 5


def test_the_setting_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("DOCFLOW_EMBEDDING_BATCH_SIZE", "24")
    assert batch_size(Settings()) == 24
