{{/*
One Celery worker stage: Deployment, its autoscaler (KEDA ScaledObject on the stage's
Redis list, or a CPU HPA without KEDA), PodDisruptionBudget, PodMonitor and
NetworkPolicy. Each worker's own template file calls this with
(dict "root" $ "service" "extractor" "env" <extra env entries as YAML>), and once more
per extra role with "role" "query", "maintenance" or "notify": a worker of that service
on that role's queue only, its values the service's with `<service>.<role>`'s keys instead
(docflow.shared.names.WorkerRole / queues_of_role).
*/}}
{{- define "docflow.worker" -}}
{{- $root := .root }}
{{- $service := .service }}
{{- $role := .role | default "" }}
{{- $base := index $root.Values $service }}
{{- $values := $base }}
{{- $component := $service }}
{{- /* One value sets both the worker's -Q and KEDA's listName. A search queue comes
first in the document worker's -Q (kept there as a fallback for while the query-only
worker restarts): kombu takes the first non-empty list, then rotates it to the back.
The bulk lane comes last, so with both document lanes full the worker takes them turn
about (fair sharing; docflow.shared.names.queues_of_stage). */}}
{{- $queues := compact (list $base.queryQueue $base.queue $base.bulkQueue) }}
{{- if $role }}
{{- /* Whole top-level keys: the role's win, the rest come from the service (no deep
merge: sprig's merges take a `false` for "unset"). */}}
{{- $values = deepCopy (index $base $role) }}
{{- range $key, $value := omit $base "query" "maintenance" "notify" }}
{{- if not (hasKey $values $key) }}{{- $_ := set $values $key $value }}{{- end }}
{{- end }}
{{- $component = printf "%s-%s" $service $role }}
{{- $queues = list (get (dict "query" $base.queryQueue "maintenance" $base.maintenanceQueue "notify" $base.notifyQueue) $role) }}
{{- end }}
{{- /* A worker on a GPU (embedder.gpu): its GPU resources, node selector and tolerations
added to its own. On a copy: $values may be the chart's own values. */}}
{{- if and $values.gpu $values.gpu.enabled }}
{{- $gpu := $values.gpu }}
{{- $values = deepCopy $values }}
{{- $resources := deepCopy ($values.resources | default dict) }}
{{- range $kind := list "requests" "limits" }}
{{- with get ($gpu.resources | default dict) $kind }}
{{- $_ := set $resources $kind (merge (deepCopy .) (get $resources $kind | default dict)) }}
{{- end }}
{{- end }}
{{- $_ := set $values "resources" $resources }}
{{- $_ := set $values "nodeSelector" (merge (deepCopy ($gpu.nodeSelector | default dict)) ($values.nodeSelector | default dict)) }}
{{- $_ := set $values "tolerations" (concat ($values.tolerations | default list) ($gpu.tolerations | default list)) }}
{{- end }}
{{- $fullname := printf "%s-%s" (include "docflow.fullname" $root) $component }}
{{- $labels := include "docflow.labels" (dict "root" $root "component" $component) }}
{{- $selector := include "docflow.selectorLabels" (dict "root" $root "component" $component) }}
{{- $autoscaling := $values.autoscaling }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $fullname }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- $labels | nindent 4 }}
spec:
  {{- if not $autoscaling.enabled }}
  replicas: {{ $values.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  {{- with $values.strategy }}
  strategy:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  selector:
    matchLabels:
      {{- $selector | nindent 6 }}
  template:
    metadata:
      labels:
        {{- $labels | nindent 8 }}
        {{- with $values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
        {{- with $values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "docflow.serviceAccountName" $root }}
      automountServiceAccountToken: false
      {{- with include "docflow.imagePullSecrets" $root | trim }}{{ . | nindent 6 }}{{- end }}
      securityContext:
        {{- include "docflow.podSecurityContext" $root | nindent 8 }}
      # A scale-down sends SIGTERM: Celery's warm shutdown stops consuming and lets the
      # running task finish. The grace period outlasts the task's hard time limit (the
      # same value sets DOCFLOW_*_TIME_LIMIT below), so the kubelet's SIGKILL never
      # lands mid-task; if it does (node loss), acks_late + task_reject_on_worker_lost
      # leave the message to be redelivered (docs/architecture.md).
      terminationGracePeriodSeconds: {{ add $values.timeLimits.hardSeconds $values.shutdownGraceSeconds }}
      {{- with include "docflow.podScheduling" $values | trim }}{{ . | nindent 6 }}{{- end }}
      containers:
        - name: {{ $service }}
          image: {{ include "docflow.image" (dict "root" $root "service" $service) | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          # args, not command: the image's entrypoint (tini) stays PID 1 and forwards
          # the kubelet's SIGTERM to the Celery main process only, as Kubernetes would.
          args:
            - celery
            - -A
            - docflow.{{ $service }}.worker
            - worker
            - -Q
            - {{ join "," $queues }}
            - -n
            - {{ $component }}@%h
            {{- /* docflow.shared.names.pool_of_role: the indexer's document worker runs
            its tasks in threads, so documents indexed side by side share LanceDB commits;
            its concurrency is threads. */}}
            - --pool
            - {{ ternary "threads" "prefork" (and (eq $service "indexer") (not $role)) }}
            - --concurrency
            - {{ $values.concurrency | quote }}
            - --loglevel
            - {{ $root.Values.logLevel }}
            - --without-gossip
            - --without-mingle
          ports:
            - name: metrics
              containerPort: {{ $root.Values.metricsPort }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "docflow.fullname" $root }}-config
          env:
            {{- with include "docflow.common.env" $root | trim }}{{ . | nindent 12 }}{{- end }}
            - name: DOCFLOW_WORKER_CONCURRENCY
              value: {{ $values.concurrency | quote }}
            {{- with $values.nice }}
            # Yield the CPU to the query-only workers on a shared node (Settings.worker_nice).
            - name: DOCFLOW_WORKER_NICE
              value: {{ . | quote }}
            {{- end }}
            # prometheus_client multiprocess mode for the prefork pool: the directory is
            # set before Python starts (docs/architecture.md); the worker empties it at start.
            - name: PROMETHEUS_MULTIPROC_DIR
              value: /var/run/docflow/metrics
            {{- with .env }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- with include "docflow.env.map" $values.env | trim }}{{ . | nindent 12 }}{{- end }}
          # Probes use the metrics endpoint the worker's main process serves: an HTTP
          # GET costs nothing, where `celery inspect ping` would start a Python
          # interpreter and a broker round trip every period. It proves the main
          # process is alive and responsive; a lost broker connection is Celery's to
          # retry, not a reason to restart the pod.
          startupProbe:
            httpGet:
              path: /metrics
              port: metrics
            periodSeconds: 5
            failureThreshold: 60
          livenessProbe:
            httpGet:
              path: /metrics
              port: metrics
            periodSeconds: 20
            timeoutSeconds: 5
            failureThreshold: 3
          readinessProbe:
            httpGet:
              path: /metrics
              port: metrics
            periodSeconds: 10
            timeoutSeconds: 5
            failureThreshold: 3
          resources:
            {{- toYaml $values.resources | nindent 12 }}
          securityContext:
            {{- include "docflow.containerSecurityContext" $root | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            - name: metrics
              mountPath: /var/run/docflow/metrics
            {{- with include "docflow.dataMount" $root | trim }}{{ . | nindent 12 }}{{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: {{ $values.tmpSizeLimit }}
        - name: metrics
          emptyDir:
            medium: Memory
            sizeLimit: 64Mi
        {{- with include "docflow.dataVolume" $root | trim }}{{ . | nindent 8 }}{{- end }}
{{- if $autoscaling.enabled }}
{{- if $root.Values.keda.enabled }}
{{- $endpoint := include "docflow.redis.endpoint" $root | fromYaml }}
{{- /* A trigger's name is its queue's, spelled as an identifier for the formula. */}}
{{- $triggerNames := list }}
{{- range $queues }}{{- $triggerNames = append $triggerNames (replace "." "_" .) }}{{- end }}
---
# KEDA's Redis list scaler reads LLEN of listName. With the AverageValue target the
# HPA it drives wants ceil(LLEN / listLength) replicas, clamped to [min, max]; 0 <-> 1
# is KEDA's own decision: active while LLEN > activationListLength (docs/architecture.md).
# A worker on several queues scales on their sum (scalingModifiers' formula): everything
# waiting for it, whichever lane it waits in. Separate triggers would take the largest.
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ $fullname }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- $labels | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $fullname }}
  minReplicaCount: {{ $autoscaling.minReplicas }}
  maxReplicaCount: {{ $autoscaling.maxReplicas }}
  pollingInterval: {{ $autoscaling.pollingInterval }}
  cooldownPeriod: {{ $autoscaling.cooldownPeriod }}
  advanced:
    restoreToOriginalReplicaCount: false
    horizontalPodAutoscalerConfig:
      behavior:
        {{- toYaml $autoscaling.behavior | nindent 8 }}
    {{- if gt (len $queues) 1 }}
    scalingModifiers:
      formula: {{ join " + " $triggerNames | quote }}
      target: {{ $autoscaling.listLength | quote }}
      activationTarget: {{ $autoscaling.activationListLength | quote }}
      metricType: AverageValue
    {{- end }}
  triggers:
    {{- range $index, $queue := $queues }}
    - type: redis
      name: {{ index $triggerNames $index }}
      metricType: AverageValue
      metadata:
        address: {{ printf "%s:%v" $endpoint.host $endpoint.port | quote }}
        databaseIndex: {{ $endpoint.database | quote }}
        enableTLS: {{ eq $endpoint.scheme "rediss" | quote }}
        {{- if eq $root.Values.redis.tls.verify "none" }}
        unsafeSsl: "true"
        {{- end }}
        {{- with $root.Values.redis.auth.username }}
        username: {{ . | quote }}
        {{- end }}
        listName: {{ $queue | quote }}
        listLength: {{ $autoscaling.listLength | quote }}
        activationListLength: {{ $autoscaling.activationListLength | quote }}
      {{- if or $root.Values.redis.auth.enabled $root.Values.redis.tls.existingSecret }}
      authenticationRef:
        name: {{ include "docflow.fullname" $root }}-redis
      {{- end }}
    {{- end }}
{{- else }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $fullname }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- $labels | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $fullname }}
  minReplicas: {{ $autoscaling.cpuMinReplicas }}
  maxReplicas: {{ $autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $autoscaling.targetCPUUtilizationPercentage }}
  behavior:
    {{- toYaml $autoscaling.behavior | nindent 4 }}
{{- end }}
{{- end }}
{{- if $values.podDisruptionBudget.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $fullname }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- $labels | nindent 4 }}
spec:
  maxUnavailable: {{ $values.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- $selector | nindent 6 }}
{{- end }}
{{- if $root.Values.monitoring.serviceMonitors.enabled }}
---
apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata:
  name: {{ $fullname }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- $labels | nindent 4 }}
    {{- with $root.Values.monitoring.serviceMonitors.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  # job="<component>" (extractor, embedder, indexer, embedder-query, indexer-query,
  # indexer-maintenance): what dashboards and rules select on.
  jobLabel: app.kubernetes.io/component
  namespaceSelector:
    matchNames: [{{ $root.Release.Namespace }}]
  selector:
    matchLabels:
      {{- $selector | nindent 6 }}
  podMetricsEndpoints:
    - port: metrics
      path: /metrics
      interval: {{ $root.Values.monitoring.serviceMonitors.interval }}
      scrapeTimeout: {{ $root.Values.monitoring.serviceMonitors.scrapeTimeout }}
{{- end }}
{{- if $root.Values.networkPolicy.enabled }}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ $fullname }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- $labels | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- $selector | nindent 6 }}
  policyTypes: [Ingress, Egress]
  # Workers take no requests: only Prometheus may reach the metrics port.
  ingress:
    - ports:
        - port: {{ $root.Values.metricsPort }}
          protocol: TCP
      {{- with $root.Values.networkPolicy.metricsFrom }}
      from:
        {{- toYaml . | nindent 8 }}
      {{- end }}
  egress:
    {{- with include "docflow.networkPolicy.egress" $root | trim }}{{ . | nindent 4 }}{{- end }}
{{- end }}
{{- end }}
