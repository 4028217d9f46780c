"""What the chart says in two places agrees, and agrees with shared/: each worker's
queue (its -Q, its KEDA listName and docflow.shared.names), its metrics port (pod spec,
PodMonitor/ServiceMonitor, DOCFLOW_METRICS_PORT), and its time limits (task limits,
visibility timeout, termination grace period)."""

import pytest
from deploy_support import (SCENARIOS, WORKERS, containers, container_port, env_value, named, of_kind,
                            selected_workloads, selects)

from docflow.shared.names import QUEUE_OF_STAGE, SERVICE_OF_STAGE, Stage, queues_of_stage
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
    for scaled in of_kind(objects, "ScaledObject"):
        if scaled["spec"]["scaleTargetRef"]["name"] == f"docflow-{service}":
            triggers = scaled["spec"]["triggers"]
            assert all(t["type"] == "redis" and t["metricType"] == "AverageValue" for t in triggers)
            assert [t["metadata"]["listName"] for t in triggers] == queues


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
        assert {component_of(m) for m in pod_monitors} == set(WORKERS)
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
        assert len(limits) == 2 * len(Stage) + 1, f"{service} lacks some stage's limits"
        seen.add(tuple(sorted(limits.items())))
        settings = Settings(**{k.removeprefix("DOCFLOW_").lower(): v for k, v in limits.items()})
        for stage in Stage:
            soft, hard = settings.time_limits(stage)
            assert soft < hard < settings.visibility_timeout
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


def test_the_broker_keeps_each_backlog_in_the_one_list_keda_reads():
    """KEDA counts LLEN of listName only (DESIGN.md): kombu must use one priority step
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
