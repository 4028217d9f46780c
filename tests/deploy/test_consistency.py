"""What the chart says in two places agrees, and agrees with shared/: each worker's
queue (its -Q, its KEDA listName and docflow.shared.names), its metrics port (pod spec,
PodMonitor/ServiceMonitor, DOCFLOW_METRICS_PORT), and its time limits (task limits,
visibility timeout, termination grace period)."""

import pytest
from deploy_support import (ALL_WORKERS, SCENARIOS, WORKERS, containers, container_port, env_value, named, of_kind,
                            selected_workloads, selects)

from docflow.shared.names import (BULK_QUEUE_OF_STAGE, QUEUE_OF_STAGE, SERVICE_OF_STAGE, TASK_ROUTES, Queue, Stage,
                                  WorkerRole, pool_of_role, queues_of_role, queues_of_stage, roles_of_stage)
from docflow.shared.settings import Settings

STAGE_OF_SERVICE = {service: stage for stage, service in SERVICE_OF_STAGE.items()}


def worker_container(objects: list[dict], service: str) -> dict:
    deployment = named(objects, "Deployment", f"docflow-{service}")
    return next(c for c in containers(deployment) if c["name"] == service)


def option(args: list[str], flag: str) -> str:
    assert args.count(flag) == 1, f"{flag} must appear once in {args}"
    return args[args.index(flag) + 1]


def test_the_chart_has_one_worker_per_stage():
    assert set(WORKERS) == set(SERVICE_OF_STAGE.values())


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("service", WORKERS)
def test_worker_queue_equals_keda_list_name_equals_shared_names(scenario_manifests, scenario, service):
    objects = scenario_manifests[scenario]
    stage = STAGE_OF_SERVICE[service]
    args = worker_container(objects, service)["args"]
    assert args[:4] == ["celery", "-A", f"docflow.{service}.worker", "worker"]
    queues = [queue.value for queue in queues_of_stage(stage)]
    assert option(args, "-Q") == ",".join(queues)
    assert option(args, "-n") == f"{service}@%h"
    assert option(args, "--pool") == pool_of_role(stage, WorkerRole.DOCUMENT)
    for scaled in of_kind(objects, "ScaledObject"):
        if scaled["spec"]["scaleTargetRef"]["name"] == f"docflow-{service}":
            triggers = scaled["spec"]["triggers"]
            assert all(t["type"] == "redis" and t["metricType"] == "AverageValue" for t in triggers)
            assert [t["metadata"]["listName"] for t in triggers] == queues
            # Scaled on everything waiting for the stage: the sum of its queues (fair
            # sharing's bulk lane included), against the same target a single list has.
            modifiers = scaled["spec"]["advanced"]["scalingModifiers"]
            assert modifiers["formula"] == " + ".join(t["name"] for t in triggers)
            assert all(t["name"].isidentifier() for t in triggers)
            assert modifiers["metricType"] == "AverageValue"
            assert {modifiers["target"]} == {t["metadata"]["listLength"] for t in triggers}
            assert {modifiers["activationTarget"]} == {t["metadata"]["activationListLength"] for t in triggers}


ROLE_DEPLOYMENTS = {f"{SERVICE_OF_STAGE[stage]}-{role.value}": (stage, role)
                    for stage in Stage for role in roles_of_stage(stage) if role is not WorkerRole.DOCUMENT}


def test_the_chart_runs_a_deployment_per_worker_role_of_shared_names():
    assert set(ROLE_DEPLOYMENTS) == set(ALL_WORKERS) - set(WORKERS)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("component", sorted(ROLE_DEPLOYMENTS))
def test_role_worker_consumes_only_its_roles_queue(scenario_manifests, scenario, component):
    """The query-only and maintenance Deployments: -Q from queues_of_role, their own node
    name, and a KEDA trigger (if any) on exactly that queue."""
    objects = scenario_manifests[scenario]
    stage, role = ROLE_DEPLOYMENTS[component]
    service = SERVICE_OF_STAGE[stage]
    deployment = named(objects, "Deployment", f"docflow-{component}")
    (container,) = containers(deployment)
    args = container["args"]
    assert args[:4] == ["celery", "-A", f"docflow.{service}.worker", "worker"]
    queues = [queue.value for queue in queues_of_role(stage, role)]
    assert option(args, "-Q") == ",".join(queues)
    assert option(args, "-n") == f"{component}@%h"
    assert option(args, "--pool") == pool_of_role(stage, role)
    for scaled in of_kind(objects, "ScaledObject"):
        if scaled["spec"]["scaleTargetRef"]["name"] == f"docflow-{component}":
            assert [t["metadata"]["listName"] for t in scaled["spec"]["triggers"]] == queues
    if role is WorkerRole.QUERY and service == "embedder":
        assert option(args, "--concurrency") == "1", "each query embedder process loads its own model"


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_routed_queue_is_consumed_by_some_deployment(scenario_manifests, scenario):
    """A task routed to a queue no Deployment consumes would wait forever (names.py's
    TASK_ROUTES against every worker's -Q)."""
    objects = scenario_manifests[scenario]
    consumed = set()
    for deployment in of_kind(objects, "Deployment"):
        for container in containers(deployment):
            args = container.get("args") or []
            if "-Q" in args:
                consumed.update(option(args, "-Q").split(","))
    routed = {route["queue"] for route in TASK_ROUTES.values()}
    assert routed <= consumed, f"routed but never consumed: {sorted(routed - consumed)}"


def test_maintenance_runs_one_at_a_time_with_its_own_limits(scenario_manifests):
    for scenario, objects in scenario_manifests.items():
        deployment = named(objects, "Deployment", "docflow-indexer-maintenance")
        spec = deployment["spec"]
        assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}, scenario
        assert not [o for o in of_kind(objects, "ScaledObject") + of_kind(objects, "HorizontalPodAutoscaler")
                    if o["spec"]["scaleTargetRef"]["name"] == "docflow-indexer-maintenance"], scenario
        (container,) = containers(deployment)
        assert option(container["args"], "--concurrency") == "1"
        soft = int(env_value(container, "DOCFLOW_MAINTAIN_SOFT_TIME_LIMIT"))
        hard = int(env_value(container, "DOCFLOW_MAINTAIN_TIME_LIMIT"))
        assert soft < hard < spec["template"]["spec"]["terminationGracePeriodSeconds"]
        assert hard < int(env_value(container, "DOCFLOW_VISIBILITY_TIMEOUT"))


def test_index_maintenance_settings_reach_every_indexer_role(default_manifests, default_values):
    """The document indexer schedules runs (writes, delay), the query indexer reads the
    vector index (nprobes, refine factor), the maintenance worker runs them: one set."""
    maintenance, vector_index = default_values["indexer"]["maintenance"], default_values["indexer"]["vectorIndex"]
    expected = {
        "DOCFLOW_INDEX_VERSION_RETENTION_SECONDS": maintenance["versionRetentionSeconds"],
        "DOCFLOW_INDEX_MAINTENANCE_WRITES": maintenance["writes"],
        "DOCFLOW_INDEX_MAINTENANCE_DELAY_SECONDS": maintenance["delaySeconds"],
        "DOCFLOW_VECTOR_INDEX_MIN_ROWS": vector_index["minRows"],
        "DOCFLOW_VECTOR_INDEX_NPROBES": vector_index["nprobes"],
        "DOCFLOW_VECTOR_INDEX_REFINE_FACTOR": vector_index["refineFactor"],
    }
    fields = Settings.model_fields
    for component in ("indexer", "indexer-query", "indexer-maintenance"):
        (container,) = containers(named(default_manifests, "Deployment", f"docflow-{component}"))
        for name, value in expected.items():
            assert env_value(container, name) == str(value), (component, name)
            # The chart's defaults are the services' defaults.
            assert fields[name.removeprefix("DOCFLOW_").lower()].default == value, name
    assert fields["maintain_time_limit"].default == maintenance["timeLimits"]["hardSeconds"]
    assert fields["maintain_soft_time_limit"].default == maintenance["timeLimits"]["softSeconds"]


def test_the_notify_worker_gets_the_webhook_settings_and_is_not_autoscaled(scenario_manifests, default_values):
    """Webhook deliveries: one Deployment on docflow.webhooks with the chart's webhook
    values as its DOCFLOW_WEBHOOK_* (the services' defaults), never scaled on its queue
    (a retry waits inside the worker, so the list's length is not its backlog)."""
    webhooks = default_values["indexer"]["notify"]["webhooks"]
    expected = {
        "DOCFLOW_WEBHOOK_MAX_ATTEMPTS": webhooks["maxAttempts"],
        "DOCFLOW_WEBHOOK_RETRY_BACKOFF_SECONDS": webhooks["retryBackoffSeconds"],
        "DOCFLOW_WEBHOOK_RETRY_BACKOFF_MAX_SECONDS": webhooks["retryBackoffMaxSeconds"],
        "DOCFLOW_WEBHOOK_CONNECT_TIMEOUT_SECONDS": webhooks["connectTimeoutSeconds"],
        "DOCFLOW_WEBHOOK_TIMEOUT_SECONDS": webhooks["timeoutSeconds"],
        "DOCFLOW_ALLOW_PRIVATE_URLS": webhooks["allowPrivateUrls"],
    }
    fields = Settings.model_fields
    for scenario, objects in scenario_manifests.items():
        deployment = named(objects, "Deployment", "docflow-indexer-notify")
        (container,) = containers(deployment)
        assert option(container["args"], "-Q") == Queue.WEBHOOKS.value, scenario
        assert not [o for o in of_kind(objects, "ScaledObject") + of_kind(objects, "HorizontalPodAutoscaler")
                    if o["spec"]["scaleTargetRef"]["name"] == "docflow-indexer-notify"], scenario
        for name, value in expected.items():
            shown = str(value).lower() if isinstance(value, bool) else str(value)
            assert env_value(container, name) == shown, (scenario, name)
            assert fields[name.removeprefix("DOCFLOW_").lower()].default == value, name
        others = [c for o in of_kind(objects, "Deployment") if o["metadata"]["name"] != "docflow-indexer-notify"
                  for c in containers(o)]
        assert not any(env_value(c, "DOCFLOW_WEBHOOK_MAX_ATTEMPTS") for c in others), scenario


def test_each_scaled_object_targets_its_own_worker(default_manifests, default_values):
    for service in WORKERS:
        scaled = named(default_manifests, "ScaledObject", f"docflow-{service}")
        spec, autoscaling = scaled["spec"], default_values[service]["autoscaling"]
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                          "name": f"docflow-{service}"}
        assert spec["minReplicaCount"] == autoscaling["minReplicas"]
        assert spec["maxReplicaCount"] == autoscaling["maxReplicas"]
        assert spec["pollingInterval"] == autoscaling["pollingInterval"]
        assert spec["cooldownPeriod"] == autoscaling["cooldownPeriod"]
        assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == autoscaling["behavior"]
        metadata = spec["triggers"][0]["metadata"]
        assert metadata["listLength"] == str(autoscaling["listLength"])
        assert metadata["activationListLength"] == str(autoscaling["activationListLength"])
        assert spec["triggers"][0]["authenticationRef"] == {"name": "docflow-redis"}
    assert default_values["extractor"]["autoscaling"]["minReplicas"] == 0, "an idle extractor scales to zero"


def test_trigger_authentication_reads_the_password_the_services_use(default_manifests):
    auth = named(default_manifests, "TriggerAuthentication", "docflow-redis")
    (ref,) = auth["spec"]["secretTargetRef"]
    for service in ("gateway", *WORKERS):
        container = worker_container(default_manifests, service)
        password = next(e for e in container["env"] if e["name"] == "REDIS_PASSWORD")
        assert password["valueFrom"]["secretKeyRef"] == {"name": ref["name"], "key": ref["key"]}
        assert env_value(container, "DOCFLOW_REDIS_URL").startswith("redis://:$(REDIS_PASSWORD)@")
        assert env_names_before(container, "REDIS_PASSWORD", "DOCFLOW_REDIS_URL"), \
            "$(VAR) expands only variables defined earlier"


def env_names_before(container: dict, first: str, second: str) -> bool:
    names = [e["name"] for e in container["env"]]
    return names.index(first) < names.index(second)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_each_pod_serves_metrics_on_the_port_its_monitor_scrapes(scenario_manifests, scenario):
    objects = scenario_manifests[scenario]
    config = named(objects, "ConfigMap", "docflow-config")["data"]
    pod_monitors = of_kind(objects, "PodMonitor")
    for monitor in pod_monitors:
        (workload,) = selected_workloads(objects, monitor["spec"]["selector"])
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        port = container_port(container, endpoint["port"])
        assert port is not None, f"{monitor['metadata']['name']} scrapes a port its pod does not declare"
        assert port == int(config["DOCFLOW_METRICS_PORT"]), "the worker listens on DOCFLOW_METRICS_PORT"
        assert endpoint["path"] == "/metrics"
    for monitor in of_kind(objects, "ServiceMonitor"):
        services = [s for s in of_kind(objects, "Service")
                    if selects(monitor["spec"]["selector"], s["metadata"]["labels"])]
        (service,) = [s for s in services if "clusterIP" not in s["spec"]]
        (endpoint,) = monitor["spec"]["endpoints"]
        service_port = next(p for p in service["spec"]["ports"] if p["name"] == endpoint["port"])
        (workload,) = selected_workloads(objects, {"matchLabels": service["spec"]["selector"]})
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        port = container_port(container, service_port["targetPort"])
        assert port == int(env_value(container, "DOCFLOW_GATEWAY_PORT")), \
            "the gateway listens where it is scraped"
    if scenario != "monitoring-off":
        # Every worker Deployment is scraped, the query-only and maintenance ones too.
        assert {component_of(m) for m in pod_monitors} == set(ALL_WORKERS)
        assert [component_of(m) for m in of_kind(objects, "ServiceMonitor")] == ["gateway"]


def component_of(obj: dict) -> str:
    return obj["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]


def test_the_chart_metrics_port_is_the_services_default(default_values):
    assert default_values["metricsPort"] == Settings.model_fields["metrics_port"].default


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("service", WORKERS)
def test_grace_period_outlasts_the_hard_time_limit(scenario_manifests, scenario, service):
    objects = scenario_manifests[scenario]
    stage = STAGE_OF_SERVICE[service].value.upper()
    deployment = named(objects, "Deployment", f"docflow-{service}")
    container = worker_container(objects, service)
    soft = int(env_value(container, f"DOCFLOW_{stage}_SOFT_TIME_LIMIT"))
    hard = int(env_value(container, f"DOCFLOW_{stage}_TIME_LIMIT"))
    visibility = int(env_value(container, "DOCFLOW_VISIBILITY_TIMEOUT"))
    assert soft < hard < deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert visibility > hard


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_process_sees_the_same_limits_and_accepts_them(scenario_manifests, scenario):
    """Settings refuses to start unless the visibility timeout exceeds every stage's hard
    limit: build it from each container's literal DOCFLOW_* environment."""
    objects = scenario_manifests[scenario]
    seen = set()
    for service in ("gateway", *WORKERS):
        container = worker_container(objects, service)
        env = {e["name"]: e["value"] for e in container["env"]
               if e["name"].startswith("DOCFLOW_") and "value" in e and "$(" not in e["value"]}
        limits = {k: v for k, v in env.items()
                  if k.endswith("TIME_LIMIT") or k == "DOCFLOW_VISIBILITY_TIMEOUT"}
        # Each stage's two, the visibility timeout, and maintenance's two (Settings
        # checks the visibility timeout against those as well).
        assert len(limits) == 2 * len(Stage) + 1 + 2, f"{service} lacks some stage's limits"
        seen.add(tuple(sorted(limits.items())))
        settings = Settings(**{k.removeprefix("DOCFLOW_").lower(): v for k, v in limits.items()})
        for stage in Stage:
            soft, hard = settings.time_limits(stage)
            assert soft < hard < settings.visibility_timeout
        assert settings.maintain_soft_time_limit < settings.maintain_time_limit < settings.visibility_timeout
    assert len(seen) == 1, "every container must get the same limits"


def test_values_time_limits_match_the_services_defaults(default_values):
    fields = Settings.model_fields  # the defaults, whatever DOCFLOW_* this process has
    for service in WORKERS:
        stage = STAGE_OF_SERVICE[service].value
        limits = default_values[service]["timeLimits"]
        assert limits["softSeconds"] == fields[f"{stage}_soft_time_limit"].default
        assert limits["hardSeconds"] == fields[f"{stage}_time_limit"].default
    assert default_values["celery"]["visibilityTimeoutSeconds"] == fields["visibility_timeout"].default


def test_schema_pins_each_queue_to_shared_names(chart):
    import json

    schema = json.loads((chart.CHART / "values.schema.json").read_text())
    for service in WORKERS:
        queue = QUEUE_OF_STAGE[STAGE_OF_SERVICE[service]].value
        assert schema["properties"][service]["properties"]["queue"]["const"] == queue
        bulk = BULK_QUEUE_OF_STAGE[STAGE_OF_SERVICE[service]].value
        assert schema["properties"][service]["properties"]["bulkQueue"]["const"] == bulk


def test_the_broker_keeps_each_backlog_in_the_one_list_keda_reads():
    """KEDA counts LLEN of listName only (docs/architecture.md): kombu must use one priority step
    (no `queue\\x06\\x163` sub-lists), no global_keyprefix (listName would need it too),
    and no prefetch (prefetched messages hide in the unacked hash)."""
    from docflow.shared.celery_app import broker_transport_options, create_celery_app

    settings = Settings()
    options = broker_transport_options(settings)
    assert options["priority_steps"] == [0]
    assert "global_keyprefix" not in options
    app = create_celery_app("deploy-test", settings)
    assert app.conf.worker_disable_prefetch or app.conf.worker_prefetch_multiplier == 1
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.broker_transport_options.get("global_keyprefix") is None


def test_values_gateway_and_delivery_settings_match_the_services_defaults(default_manifests, default_values):
    """The chart's defaults are the services' defaults, and reach the processes as such."""
    fields = Settings.model_fields
    gateway = default_values["gateway"]
    expected = {
        "DOCFLOW_UPLOAD_RATE_LIMIT_PER_MINUTE": (gateway["rateLimits"]["uploadsPerMinute"], "upload_rate_limit_per_minute"),
        "DOCFLOW_SEARCH_RATE_LIMIT_PER_MINUTE": (gateway["rateLimits"]["searchesPerMinute"], "search_rate_limit_per_minute"),
        "DOCFLOW_RECOVERY_INTERVAL_SECONDS": (gateway["recovery"]["intervalSeconds"], "recovery_interval_seconds"),
        "DOCFLOW_RECOVERY_MIN_IDLE_SECONDS": (gateway["recovery"]["minIdleSeconds"], "recovery_min_idle_seconds"),
    }
    container = worker_container(default_manifests, "gateway")
    for variable, (value, field) in expected.items():
        assert value == fields[field].default, field
        assert env_value(container, variable) == str(value)
    assert default_values["celery"]["maxDeliveries"] == fields["max_deliveries"].default
    config = named(default_manifests, "ConfigMap", "docflow-config")["data"]
    assert config["DOCFLOW_MAX_DELIVERIES"] == str(default_values["celery"]["maxDeliveries"])
