"""The Helm chart lints clean with Helm's own engine, renders every supported
configuration, and refuses wrong values at install time."""

import pytest
from deploy_support import (ALL_WORKERS, AUTOSCALED_WORKERS, SCENARIOS, WORKERS, containers, env_names, env_value,
                            named, of_kind, pod_spec)


def test_chart_lints_clean_in_strict_mode(chart):
    report = chart.lint()
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # warnings and errors
    assert not report["errors"] and not problems, report


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_chart_lints_clean_with_each_scenario(chart, scenario):
    report = chart.lint(SCENARIOS[scenario])
    assert not report["errors"] and not [m for m in report["messages"] if m["severity"] >= 2], report


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_scenario_renders_every_service(scenario_manifests, scenario):
    objects = scenario_manifests[scenario]
    for service in ("gateway", *ALL_WORKERS):
        named(objects, "Deployment", f"docflow-{service}")
    assert all(obj["metadata"].get("namespace") == "docflow"
               for obj in objects if obj["kind"] != "Namespace")
    names = [(obj["kind"], obj["metadata"]["name"]) for obj in objects]
    assert len(names) == len(set(names)), "duplicate objects"


def test_defaults_scale_each_worker_with_keda_on_its_own_queue(default_manifests):
    scaled = {obj["metadata"]["name"]: obj for obj in of_kind(default_manifests, "ScaledObject")}
    # The query-only workers scale on their query queue too; maintenance is one replica.
    assert set(scaled) == {f"docflow-{worker}" for worker in AUTOSCALED_WORKERS}
    assert of_kind(default_manifests, "TriggerAuthentication")
    hpas = [obj["metadata"]["name"] for obj in of_kind(default_manifests, "HorizontalPodAutoscaler")]
    assert hpas == ["docflow-gateway"], "with KEDA, workers must not also have a plain HPA"
    for worker in AUTOSCALED_WORKERS:
        assert "replicas" not in named(default_manifests, "Deployment", f"docflow-{worker}")["spec"], \
            "the autoscaler owns the replica count"


def test_without_keda_each_worker_gets_a_cpu_hpa(scenario_manifests):
    objects = scenario_manifests["keda-off"]
    assert not of_kind(objects, "ScaledObject") and not of_kind(objects, "TriggerAuthentication")
    for worker in AUTOSCALED_WORKERS:
        hpa = named(objects, "HorizontalPodAutoscaler", f"docflow-{worker}")
        assert hpa["spec"]["minReplicas"] >= 1
        assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
        assert hpa["spec"]["behavior"]["scaleDown"]["policies"]


def test_external_redis_replaces_the_bundled_one(scenario_manifests):
    objects = scenario_manifests["external-redis"]
    assert not of_kind(objects, "StatefulSet")
    assert "docflow-redis" not in [s["metadata"]["name"] for s in of_kind(objects, "Secret")]
    auth = named(objects, "TriggerAuthentication", "docflow-redis")
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": "docflow-external-redis", "key": "password"}]
    for scaled in of_kind(objects, "ScaledObject"):
        metadata = scaled["spec"]["triggers"][0]["metadata"]
        assert metadata["address"] == "redis.example.internal:6380"
        assert metadata["databaseIndex"] == "2" and metadata["enableTLS"] == "true"
    gateway = named(objects, "Deployment", "docflow-gateway")["spec"]["template"]["spec"]["containers"][0]
    url = next(e["value"] for e in gateway["env"] if e["name"] == "DOCFLOW_REDIS_URL")
    assert url == "rediss://:$(REDIS_PASSWORD)@redis.example.internal:6380/2"


def test_bundled_redis_keeps_every_accepted_document(default_manifests):
    redis = named(default_manifests, "StatefulSet", "docflow-redis")
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    claim = redis["spec"]["volumeClaimTemplates"][0]
    assert claim["metadata"]["name"] == "data" and claim["spec"]["resources"]["requests"]["storage"]


def test_monitoring_switches_off(scenario_manifests):
    kinds = {obj["kind"] for obj in scenario_manifests["monitoring-off"]}
    assert not kinds & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert "docflow-dashboards" not in [c["metadata"]["name"]
                                        for c in of_kind(scenario_manifests["monitoring-off"], "ConfigMap")]


def test_dashboards_configmap_is_labelled_for_the_grafana_sidecar(default_manifests):
    dashboards = named(default_manifests, "ConfigMap", "docflow-dashboards")
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboards["data"] and all(key.endswith(".json") for key in dashboards["data"])


def test_pinecone_backend_reads_its_key_from_a_secret(scenario_manifests):
    indexer = named(scenario_manifests["pinecone"], "Deployment", "docflow-indexer")
    env = {e["name"]: e for e in indexer["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DOCFLOW_VECTOR_STORE"]["value"] == "pinecone"
    assert env["DOCFLOW_PINECONE_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "docflow-pinecone"
    assert "DOCFLOW_LANCEDB_URI" not in env
    for other in ("gateway", "extractor", "embedder"):
        container = named(scenario_manifests["pinecone"], "Deployment", f"docflow-{other}")
        assert "DOCFLOW_PINECONE_API_KEY" not in str(container), "only the indexer gets the Pinecone key"


def test_lancedb_on_s3_compatible_storage_gets_the_endpoint(scenario_manifests):
    indexer = named(scenario_manifests["lancedb-on-s3-compatible"], "Deployment", "docflow-indexer")
    env = {e["name"]: e for e in indexer["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DOCFLOW_LANCEDB_URI"]["value"] == "s3://docflow/lancedb"
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://minio.storage.svc:9000"
    assert env["AWS_ALLOW_HTTP"]["value"] == "true"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "docflow-s3"


def test_local_storage_shares_one_volume(scenario_manifests):
    objects = scenario_manifests["local-storage-no-autoscaling"]
    claim = named(objects, "PersistentVolumeClaim", "docflow-data")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    for service in ("gateway", *ALL_WORKERS):
        deployment = named(objects, "Deployment", f"docflow-{service}")
        assert deployment["spec"]["replicas"] >= 1
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        assert {"name": "data", "persistentVolumeClaim": {"claimName": "docflow-data"}} in volumes
    assert not of_kind(objects, "ScaledObject") and not of_kind(objects, "HorizontalPodAutoscaler")


def test_notes_render(chart):
    notes = chart.render()["NOTES.txt"]
    assert "docflow-gateway" in notes and "docflow.embed" in notes
    assert "no API keys are configured" in notes


@pytest.mark.parametrize("values, message", [
    ({"embedder": {"queue": "embeddings"}}, "docflow.embed"),
    ({"logLevel": "LOUD"}, "logLevel"),
    ({"extractor": {"autoscaling": {"minReplicas": -1}}}, "minReplicas"),
    ({"gateway": {"replica": 3}}, "replica"),
    ({"storage": {"backend": "gcs"}}, "backend"),
    ({"vectorStore": {"backend": "pinecone"}}, "existingSecret"),
    ({"redis": {"bundled": False}}, "url"),
    ({"redis": {"external": {"url": "redis://user:secret@redis:6379/0"}}}, "url"),
    ({"indexer": {"upsertBatchSize": 5000}}, "upsertBatchSize"),
    ({"gateway": {"apiKeys": {"value": "key-without-tenant"}}}, "value"),
    ({"redis": {"tls": {"verify": "sometimes"}}}, "verify"),
    ({"gateway": {"rateLimits": {"uploadsPerMinute": -1}}}, "uploadsPerMinute"),
    ({"redis": {"auth": {"username": "user:with-colon"}}}, "username"),
    ({"embedder": {"minilmRuntime": "tensorrt"}}, "minilmRuntime"),
    ({"embedder": {"gpu": {"enabled": "yes"}}}, "enabled"),
    ({"embedder": {"gpu": {"enabled": True, "resources": {"limits": {"nvidia.com/gpu": "one"}}}}}, "nvidia.com~1gpu"),
    ({"embedder": {"gpu": {"enabled": True, "nodeSelctor": {}}}}, "nodeSelctor"),
    ({"embedder": {"provider": "openai", "openai": {"existingSecret": "s"}, "gpu": {"enabled": True}}}, "provider"),
])
def test_schema_rejects_wrong_values(chart, values, message):
    import helm_python

    with pytest.raises(helm_python.HelmError, match=message):
        chart.render(values)


@pytest.mark.parametrize("values, message", [
    ({"celery": {"visibilityTimeoutSeconds": 360}}, r"must exceed \w+\.timeLimits\.hardSeconds"),
    ({"indexer": {"timeLimits": {"softSeconds": 200, "hardSeconds": 100}}}, "must exceed softSeconds"),
    ({"redis": {"bundled": False, "external": {"url": "redis://redis.example:6379/0"}}}, "password"),
    ({"celery": {"maxRetries": 10, "maxDeliveries": 10}}, "maxDeliveries .* must exceed celery.maxRetries"),
    ({"redis": {"tls": {"existingSecret": "ca"}}}, "rediss://"),
])
def test_render_refuses_inconsistent_values(chart, values, message):
    import helm_python

    with pytest.raises(helm_python.HelmError, match=message):
        chart.render(values)


def test_redis_tls_and_acl_user_reach_every_process_and_keda(scenario_manifests):
    """A rediss:// Redis with a private CA, client certificates and an ACL user: every
    service mounts the Secret and points DOCFLOW_REDIS_TLS_* at it, and KEDA's scaler
    reads the same CA, certificate, key, user and password."""
    objects = scenario_manifests["external-redis-mutual-tls-acl-user"]
    for service in ("gateway", *WORKERS):
        deployment = named(objects, "Deployment", f"docflow-{service}")
        pod = deployment["spec"]["template"]["spec"]
        (volume,) = [v for v in pod["volumes"] if v["name"] == "redis-tls"]
        assert volume["secret"]["secretName"] == "docflow-redis-tls"
        container = next(c for c in containers(deployment) if c["name"] == service)
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "redis-tls"]
        assert mount["readOnly"] is True
        for variable, file in [("DOCFLOW_REDIS_TLS_CA_FILE", "ca.crt"), ("DOCFLOW_REDIS_TLS_CERT_FILE", "tls.crt"),
                               ("DOCFLOW_REDIS_TLS_KEY_FILE", "tls.key")]:
            assert env_value(container, variable) == f"{mount['mountPath']}/{file}"
        assert env_value(container, "DOCFLOW_REDIS_URL").startswith("rediss://docflow:$(REDIS_PASSWORD)@")

    auth = named(objects, "TriggerAuthentication", "docflow-redis")
    refs = {ref["parameter"]: (ref["name"], ref["key"]) for ref in auth["spec"]["secretTargetRef"]}
    assert refs == {"password": ("docflow-external-redis", "redis-password"),
                    "ca": ("docflow-redis-tls", "ca.crt"), "cert": ("docflow-redis-tls", "tls.crt"),
                    "key": ("docflow-redis-tls", "tls.key")}
    for service in WORKERS:
        trigger = named(objects, "ScaledObject", f"docflow-{service}")["spec"]["triggers"][0]
        assert trigger["metadata"]["enableTLS"] == "true"
        assert trigger["metadata"]["username"] == "docflow"
        assert trigger["authenticationRef"] == {"name": "docflow-redis"}


def test_plain_redis_gets_no_tls_settings(default_manifests):
    for service in ("gateway", *WORKERS):
        deployment = named(default_manifests, "Deployment", f"docflow-{service}")
        container = next(c for c in containers(deployment) if c["name"] == service)
        assert not [e for e in container["env"] if e["name"].startswith("DOCFLOW_REDIS_TLS")]
        assert "redis-tls" not in [v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]]


def test_admin_keys_come_only_from_a_secret(default_manifests, scenario_manifests):
    gateway = next(c for c in containers(named(default_manifests, "Deployment", "docflow-gateway"))
                   if c["name"] == "gateway")
    assert "DOCFLOW_ADMIN_API_KEYS" not in [e["name"] for e in gateway["env"]], "off unless a Secret is given"
    objects = scenario_manifests["external-redis-mutual-tls-acl-user"]
    gateway = next(c for c in containers(named(objects, "Deployment", "docflow-gateway")) if c["name"] == "gateway")
    (admin,) = [e for e in gateway["env"] if e["name"] == "DOCFLOW_ADMIN_API_KEYS"]
    assert admin["valueFrom"]["secretKeyRef"] == {"name": "docflow-admin", "key": "admin-api-keys"}


def test_document_and_maintenance_workers_yield_the_cpu_to_query_workers(default_manifests):
    """Where they share a node, a search's work gets the CPU before a bulk ingest's."""
    for worker in ALL_WORKERS:
        nice = {env_value(c, "DOCFLOW_WORKER_NICE")
                for c in named(default_manifests, "Deployment", f"docflow-{worker}")["spec"]["template"]["spec"]
                ["containers"]}
        assert nice == ({None} if worker.endswith("-query") else {"10"}), (worker, nice)


def test_the_embedder_runs_the_default_minilm_runtime_on_cpu(default_manifests, default_values):
    from docflow.shared.settings import Settings

    # The chart's default is the services' own (the fastest runtime that passes the gate).
    assert default_values["embedder"]["minilmRuntime"] == Settings.model_fields["minilm_runtime"].default
    for name in ("docflow-embedder", "docflow-embedder-query"):
        (container,) = pod_spec(named(default_manifests, "Deployment", name))["containers"]
        assert env_value(container, "DOCFLOW_MINILM_RUNTIME") == "onnx-int8"
        assert env_value(container, "DOCFLOW_MINILM_DEVICE") is None
        assert "nvidia.com/gpu" not in container["resources"]["limits"]


def test_minilm_runtime_reaches_both_embedders(chart):
    objects = chart.manifests({"embedder": {"minilmRuntime": "torch"}})
    for name in ("docflow-embedder", "docflow-embedder-query"):
        (container,) = pod_spec(named(objects, "Deployment", name))["containers"]
        assert env_value(container, "DOCFLOW_MINILM_RUNTIME") == "torch"
    # Not for a provider without the bundled model.
    objects = chart.manifests({"embedder": {"provider": "hash", "minilmRuntime": "torch"}})
    (container,) = pod_spec(named(objects, "Deployment", "docflow-embedder"))["containers"]
    assert env_value(container, "DOCFLOW_MINILM_RUNTIME") is None


def test_the_document_embedder_on_a_gpu_gets_the_gpu_its_nodes_and_torch_on_cuda(scenario_manifests):
    objects = scenario_manifests["embedder-on-gpu"]
    spec = pod_spec(named(objects, "Deployment", "docflow-embedder"))
    (container,) = spec["containers"]
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "1Gi"},
                                      "limits": {"cpu": "2", "memory": "2Gi", "nvidia.com/gpu": 1}}
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert env_value(container, "DOCFLOW_MINILM_RUNTIME") == "torch"
    assert env_value(container, "DOCFLOW_MINILM_DEVICE") == "cuda"
    assert env_names(container).count("DOCFLOW_MINILM_RUNTIME") == 1
    # The query embedder stays on CPU with int8 (same model: it searches the GPU's vectors).
    query = pod_spec(named(objects, "Deployment", "docflow-embedder-query"))
    assert "nodeSelector" not in query and "tolerations" not in query
    assert env_value(query["containers"][0], "DOCFLOW_MINILM_RUNTIME") == "onnx-int8"
    assert "nvidia.com/gpu" not in query["containers"][0]["resources"]["limits"]
    # Other workers are untouched.
    assert "nodeSelector" not in pod_spec(named(objects, "Deployment", "docflow-extractor"))


def test_the_query_embedder_can_have_a_gpu_of_its_own(chart):
    objects = chart.manifests({"embedder": {"query": {"gpu": {"enabled": True,
                                                             "resources": {"limits": {"nvidia.com/gpu": 1}}}}}})
    (query,) = pod_spec(named(objects, "Deployment", "docflow-embedder-query"))["containers"]
    assert query["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert env_value(query, "DOCFLOW_MINILM_DEVICE") == "cuda"
    (document,) = pod_spec(named(objects, "Deployment", "docflow-embedder"))["containers"]
    assert env_value(document, "DOCFLOW_MINILM_DEVICE") is None


# The gateway's settings the chart passes (value path -> DOCFLOW_* variable).
GATEWAY_SETTINGS = {
    ("rateLimits", "reprocessesPerMinute"): "DOCFLOW_REPROCESS_RATE_LIMIT_PER_MINUTE",
    ("events", "maxStreams"): "DOCFLOW_EVENTS_MAX_STREAMS",
    ("events", "heartbeatSeconds"): "DOCFLOW_EVENTS_HEARTBEAT_SECONDS",
    ("idempotency", "ttlSeconds"): "DOCFLOW_IDEMPOTENCY_TTL_SECONDS",
    ("idempotency", "leaseSeconds"): "DOCFLOW_IDEMPOTENCY_LEASE_SECONDS",
    ("batches", "maxFiles"): "DOCFLOW_BATCH_MAX_FILES",
    ("batches", "maxBytes"): "DOCFLOW_BATCH_MAX_BYTES",
    ("webhooks", "maxPerTenant"): "DOCFLOW_WEBHOOK_MAX_PER_TENANT",
    ("allowPrivateUrls",): "DOCFLOW_ALLOW_PRIVATE_URLS",
    ("fairShare", "interactiveLimit"): "DOCFLOW_FAIR_SHARE_INTERACTIVE_LIMIT",
}


def _setting_default(variable: str):
    from docflow.shared.settings import Settings

    return Settings.model_fields[variable.removeprefix("DOCFLOW_").lower()].default


def _shown(value) -> str:
    """A value as the chart writes it into an env var (and pydantic reads it back)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def test_the_gateway_gets_its_settings_from_values_equal_to_the_services_defaults(default_manifests,
                                                                                  default_values):
    container = next(c for c in containers(named(default_manifests, "Deployment", "docflow-gateway"))
                     if c["name"] == "gateway")
    for path, variable in GATEWAY_SETTINGS.items():
        value = default_values["gateway"]
        for key in path:
            value = value[key]
        assert value == _setting_default(variable), variable
        assert env_value(container, variable) == _shown(value), variable


def test_gateway_settings_follow_their_values(chart):
    objects = chart.manifests({"gateway": {
        "idempotency": {"ttlSeconds": 3600, "leaseSeconds": 30},
        "batches": {"maxFiles": 50, "maxBytes": 10_000_000},
        "events": {"maxStreams": 7, "heartbeatSeconds": 5}, "webhooks": {"maxPerTenant": 3},
        "allowPrivateUrls": True, "fairShare": {"interactiveLimit": 0}}})
    container = next(c for c in containers(named(objects, "Deployment", "docflow-gateway"))
                     if c["name"] == "gateway")
    assert [env_value(container, name) for name in (
        "DOCFLOW_IDEMPOTENCY_TTL_SECONDS", "DOCFLOW_IDEMPOTENCY_LEASE_SECONDS", "DOCFLOW_BATCH_MAX_FILES",
        "DOCFLOW_BATCH_MAX_BYTES", "DOCFLOW_EVENTS_MAX_STREAMS", "DOCFLOW_EVENTS_HEARTBEAT_SECONDS",
        "DOCFLOW_WEBHOOK_MAX_PER_TENANT", "DOCFLOW_ALLOW_PRIVATE_URLS",
        "DOCFLOW_FAIR_SHARE_INTERACTIVE_LIMIT",
    )] == ["3600", "30", "50", "10000000", "7", "5", "3", "true", "0"]
    # The gateway's switch is its own: the extractor's fetches keep theirs.
    (extractor,) = containers(named(objects, "Deployment", "docflow-extractor"))
    assert env_value(extractor, "DOCFLOW_ALLOW_PRIVATE_URLS") == "false"


def test_the_extractor_fetches_private_urls_only_when_told(default_manifests, default_values, chart):
    (container,) = containers(named(default_manifests, "Deployment", "docflow-extractor"))
    default = _setting_default("DOCFLOW_ALLOW_PRIVATE_URLS")
    assert default_values["extractor"]["allowPrivateUrls"] is default is False
    assert env_value(container, "DOCFLOW_ALLOW_PRIVATE_URLS") == "false"
    objects = chart.manifests({"extractor": {"allowPrivateUrls": True}})
    (container,) = containers(named(objects, "Deployment", "docflow-extractor"))
    assert env_value(container, "DOCFLOW_ALLOW_PRIVATE_URLS") == "true"


def test_every_service_trims_the_event_streams_alike(default_manifests, default_values):
    """Every service's status scripts append and trim them: one value, in the shared ConfigMap."""
    config = named(default_manifests, "ConfigMap", "docflow-config")["data"]
    for key, variable in (("streamMaxLen", "DOCFLOW_EVENTS_STREAM_MAX_LEN"),
                          ("notificationsStreamMaxLen", "DOCFLOW_NOTIFICATIONS_STREAM_MAX_LEN")):
        assert default_values["events"][key] == _setting_default(variable), variable
        assert config[variable] == str(default_values["events"][key])


@pytest.mark.parametrize("values, message", [
    ({"gateway": {"idempotency": {"ttlSeconds": 0}}}, "ttlSeconds"),
    ({"gateway": {"batches": {"maxFiles": 0}}}, "maxFiles"),
    ({"gateway": {"fairShare": {"interactiveLimit": -1}}}, "interactiveLimit"),
    ({"gateway": {"webhooks": {"maxPerTenant": 1001}}}, "maxPerTenant"),
    ({"gateway": {"allowPrivateUrls": "yes"}}, "allowPrivateUrls"),
    ({"events": {"streamMaxLen": 10}}, "streamMaxLen"),
])
def test_schema_refuses_out_of_range_gateway_settings(chart, values, message):
    import helm_python

    with pytest.raises(helm_python.HelmError, match=message):
        chart.render(values)


def test_the_reembed_window_reaches_every_indexer_role_and_equals_the_setting(chart, default_values):
    """The re-embed coordinator runs on the maintenance worker; every indexer role gets
    the same indexer env, so the value is set once."""
    assert default_values["indexer"]["maintenance"]["reembedWindow"] == _setting_default("DOCFLOW_REEMBED_WINDOW")
    objects = chart.manifests({"indexer": {"maintenance": {"reembedWindow": 40}}})
    for name in ("docflow-indexer", "docflow-indexer-maintenance"):
        (container,) = containers(named(objects, "Deployment", name))
        assert env_value(container, "DOCFLOW_REEMBED_WINDOW") == "40", name

