"""KEDA's scaling decision on real queues, and a scale-down that loses nothing.

The Helm chart gives each worker a KEDA ScaledObject with a Redis trigger per queue it
consumes, each reading `LLEN <listName>`, summed by its scalingModifiers formula
(docs/architecture.md). Here the real gateway fills the real Redis queues while the
embed stage is stopped -- past the fair-share limit, so the backlog is split between
the document queue and the bulk lane -- each queue's length is read exactly as KEDA's
scaler reads it, and KEDA's AverageValue rule on the sum, with the ScaledObjects the
chart renders from its default values, scales out the embed stage and nothing else. Then the embedder is
started and sent SIGTERM mid-task, as a scale-down does, and every document still
completes.
"""

import importlib.util
import json
import math
import os
import random
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from docflow.devstack import samples
from docflow.devstack.faults import wait_for
from docflow.shared.names import (BULK_QUEUE_OF_STAGE, QUEUE_OF_STAGE, SERVICE_OF_STAGE, Queue, Stage,
                                  queues_of_stage)

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RedisListTrigger:
    """One ScaledObject's Redis list triggers, summed by its scalingModifiers formula, and
    its replica bounds, as the chart renders them."""

    list_names: tuple[str, ...]
    list_length: int
    activation_list_length: int
    min_replicas: int
    max_replicas: int

    def desired_replicas(self, length: int) -> int:
        """KEDA with an AverageValue target on the formula's value (the lists' summed
        LLEN): inactive while it is <= activationTarget, which leaves the Deployment at
        minReplicaCount (zero if allowed); active, the HPA it drives wants
        ceil(sum / target), clamped to [max(min, 1), max]."""
        if length <= self.activation_list_length:
            return self.min_replicas
        wanted = math.ceil(length / self.list_length)
        return min(self.max_replicas, max(self.min_replicas, 1, wanted))


def chart_triggers() -> dict[Stage, RedisListTrigger]:
    """The ScaledObjects of the chart rendered with its default values (values.yaml)
    by Helm's own engine, the same render deploy/k8s is made of."""
    spec = importlib.util.spec_from_file_location("docflow_deploy_render", REPO / "deploy" / "render.py")
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    scaled = {obj["spec"]["scaleTargetRef"]["name"]: obj["spec"]
              for obj in render.manifests() if obj["kind"] == "ScaledObject"}
    triggers = {}
    for stage, service in SERVICE_OF_STAGE.items():
        spec = scaled[f"docflow-{service}"]
        # One trigger per queue the stage's worker consumes, summed by the formula: the
        # document queue and bulk lane this test fills (a search queue is empty here).
        by_list = {t["metadata"]["listName"]: t for t in spec["triggers"]}
        assert set(by_list) == {queue.value for queue in queues_of_stage(stage)}
        assert all(t["type"] == "redis" and t.get("metricType", "AverageValue") == "AverageValue"
                   for t in by_list.values())
        modifiers = spec["advanced"]["scalingModifiers"]
        assert modifiers["formula"] == " + ".join(t["name"] for t in spec["triggers"])
        assert modifiers.get("metricType", "AverageValue") == "AverageValue"
        triggers[stage] = RedisListTrigger(
            list_names=tuple(by_list),
            list_length=int(modifiers["target"]),
            activation_list_length=int(modifiers.get("activationTarget", "0")),
            min_replicas=spec["minReplicaCount"],
            max_replicas=spec["maxReplicaCount"],
        )
    return triggers


def waiting(client: redis.Redis, trigger: RedisListTrigger) -> int:
    """What the formula computes: the sum of LLEN of the triggers' listNames."""
    return sum(client.llen(name) for name in trigger.list_names)


def queue_lengths(client: redis.Redis, triggers: dict[Stage, RedisListTrigger]) -> dict[Stage, int]:
    """What KEDA scales each stage on: its lists' summed LLEN."""
    return {stage: waiting(client, trigger) for stage, trigger in triggers.items()}


def pipeline_idle(client: redis.Redis, triggers: dict[Stage, RedisListTrigger]) -> bool:
    """No message queued and none held by a worker: kombu keeps the messages workers
    hold in its `unacked` hash until they are acknowledged. (The maintenance worker
    holds the run the index writes scheduled until its countdown: not a document's.)"""
    held = [raw for raw in client.hvals("unacked") if json.loads(raw)[2] != Queue.MAINTENANCE.value]
    return not any(queue_lengths(client, triggers).values()) and not held


def held_by_workers(client: redis.Redis, trigger: RedisListTrigger) -> int:
    """Messages of the trigger's lists a worker has taken and not yet acknowledged
    (acks_late: the task is still running). kombu stores each as [payload, exchange,
    routing key]."""
    return sum(1 for raw in client.hvals("unacked") if json.loads(raw)[2] in trigger.list_names)



def long_text(paragraphs: int, seed: int) -> bytes:
    """Distinct prose, many chunks: an embed task that runs for seconds, not milliseconds."""
    rng = random.Random(seed)
    words = ("river station survey morning heron colony canal winter lantern harbour orchard "
             "granite meadow archive ledger signal valley timber copper beacon glacier ferry "
             "market quarry mill bridge tower garden island delta marsh forest").split()
    return samples.text([
        " ".join(f"Observation {p}.{s}: the {' '.join(rng.choices(words, k=12))}." for s in range(6))
        for p in range(paragraphs)
    ])


@pytest.fixture
def embedder_restored(stack):
    """Leave the stack as found: the embedder running for the tests after this one."""
    yield
    if not stack.workers[Stage.EMBED].alive():
        stack.start_worker(Stage.EMBED)
        stack.wait_for_worker(Stage.EMBED)


def test_only_the_backed_up_stage_scales_out_and_a_scale_down_loses_nothing(stack, api_a, embedder_restored):
    triggers = chart_triggers()
    for stage, trigger in triggers.items():
        assert QUEUE_OF_STAGE[stage].value in trigger.list_names and BULK_QUEUE_OF_STAGE[stage].value in \
            trigger.list_names, "the stage scales on both of its document lanes"
    client = redis.Redis.from_url(stack.redis_url)
    # Earlier tests' documents must be done: stopping a worker mid-task would put its
    # message back in a queue and into this test's counts.
    wait_for(lambda: pipeline_idle(client, triggers), 600, "an idle pipeline before the test", interval=0.5)

    # --- the embed stage stops; documents pile up in its queue --------------------------
    stack.workers[Stage.EMBED].stop()
    embed = triggers[Stage.EMBED]
    backlog = 2 * embed.list_length + 1  # enough for KEDA to want more than one embedder
    limit = stack.settings().fair_share_interactive_limit
    assert 0 < limit < backlog, "past the fair-share limit, part of the backlog waits in the bulk lane"

    # The long document goes first so that it heads the embed queue (kombu pushes on
    # the left and workers pop from the right: first in, first out).
    long_id = api_a.upload("survey-log.txt", long_text(paragraphs=120, seed=4))
    wait_for(lambda: waiting(client, embed) == 1, 120, "the long document to reach the embed queue")
    short_ids = [
        api_a.upload(f"note-{n}.txt", samples.text([f"Field note {n}: a heron stood in the canal at dawn."]))
        for n in range(backlog - 1)
    ]
    document_ids = [long_id, *short_ids]
    wait_for(lambda: waiting(client, embed) == backlog, 120, f"{backlog} messages waiting to be embedded")

    lengths = queue_lengths(client, triggers)
    assert lengths == {Stage.EXTRACT: 0, Stage.EMBED: backlog, Stage.INDEX: 0}
    lanes = [client.llen(Queue.EMBED.value), client.llen(Queue.BULK_EMBED.value)]
    # The tenant's first `limit` documents in flight take the document queue, the rest the
    # bulk lane (fewer in the document queue if documents of earlier tests are in flight).
    assert lanes[0] <= limit and lanes[1] >= backlog - limit and sum(lanes) == backlog, lanes
    # No stage's message hides in kombu's unacked hash (prefetch is off): LLEN is the whole
    # backlog. (The maintenance worker may hold a run scheduled with a countdown: no stage's.)
    assert [held_by_workers(client, trigger) for trigger in triggers.values()] == [0, 0, 0]
    desired = {stage: trigger.desired_replicas(lengths[stage]) for stage, trigger in triggers.items()}
    assert desired[Stage.EMBED] == min(embed.max_replicas, math.ceil(backlog / embed.list_length)) >= 2
    scaled_out = [stage for stage, replicas in desired.items() if replicas > triggers[stage].min_replicas]
    assert scaled_out == [Stage.EMBED], f"desired replicas {desired} for queue lengths {lengths}"
    for stage in (Stage.EXTRACT, Stage.INDEX):
        assert desired[stage] == triggers[stage].min_replicas

    # --- an embedder starts, takes the long document, and is scaled down mid-task -------
    # One pool process, as the chart runs an embedder pod (embedder.concurrency: 1): the
    # local stack's default of one MiniLM process per core would hold two messages.
    worker = stack.start_worker(Stage.EMBED, concurrency=1)
    stack.wait_for_worker(Stage.EMBED)
    wait_for(lambda: api_a.document(long_id)["status"] == "embedding", 120, "the long document's embedding",
             interval=0.02)
    # A scale-down's SIGTERM goes to the container's PID 1 (tini in the image, which
    # forwards it to the Celery main process only): signal that process, not its group.
    os.kill(worker.pid, signal.SIGTERM)
    assert held_by_workers(client, embed) == 1, "the signal must land mid-task"
    assert api_a.document(long_id)["status"] == "embedding"

    # Warm shutdown: the running task finishes (within the hard time limit that the
    # chart's terminationGracePeriodSeconds outlasts), nothing new is taken, the worker exits.
    _, hard_limit = stack.settings().time_limits(Stage.EMBED)
    assert worker.popen.wait(timeout=hard_limit + 15) == 0
    assert api_a.document(long_id)["status"] in {"indexing", "completed"}, "the in-flight task was finished"
    assert held_by_workers(client, embed) == 0, "and acknowledged, not left for redelivery"
    assert waiting(client, embed) == backlog - 1, "a stopping worker takes no new message"

    # --- a new embedder drains the rest: every document completes ----------------------
    stack.start_worker(Stage.EMBED)
    stack.wait_for_worker(Stage.EMBED)
    for document_id in document_ids:
        record = api_a.wait_final(document_id, timeout=240)
        assert record["status"] == "completed", (document_id, record["error"])
        assert record["chunks"] and record["vectors"] == record["chunks"]
    assert api_a.document(long_id)["chunks"] > 16, "the long document must make a long task"
    # (the last acknowledgement may trail the status update by a moment)
    wait_for(lambda: pipeline_idle(client, triggers), 30, "every message acknowledged")
