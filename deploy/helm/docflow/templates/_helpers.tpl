{{/* ---------------------------------------------------------------- names */}}
{{- define "docflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "docflow.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "docflow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "docflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "docflow.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------- labels
Called with (dict "root" $ "component" "gateway"). */}}
{{- define "docflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "docflow.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{- define "docflow.labels" -}}
helm.sh/chart: {{ include "docflow.chart" .root }}
{{ include "docflow.selectorLabels" . }}
app.kubernetes.io/part-of: docflow
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------- images */}}
{{- define "docflow.image" -}}
{{- $root := .root }}
{{- $values := index $root.Values .service }}
{{- $repository := $values.image.repository | default (printf "%s/docflow-%s" $root.Values.image.registry .service) }}
{{- $tag := $values.image.tag | default $root.Values.image.tag | default $root.Chart.AppVersion }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}

{{- define "docflow.imagePullSecrets" -}}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------- Redis */}}
{{- define "docflow.redis.secretName" -}}
{{- .Values.redis.auth.existingSecret | default (printf "%s-redis" (include "docflow.fullname" .)) }}
{{- end }}

{{/* Scheme, host:port and database of the broker, from the bundled Redis or from
redis.external.url (which must not carry credentials: the password comes from a Secret). */}}
{{- define "docflow.redis.endpoint" -}}
{{- if .Values.redis.bundled }}
scheme: redis
host: {{ printf "%s-redis.%s.svc.%s" (include "docflow.fullname" .) .Release.Namespace .Values.clusterDomain }}
port: 6379
database: {{ .Values.redis.database }}
{{- else }}
{{- $url := urlParse (required "redis.external.url is required when redis.bundled is false" .Values.redis.external.url) }}
{{- $port := "6379" }}
{{- if contains ":" $url.host }}{{ $port = last (splitList ":" $url.host) }}{{ end }}
scheme: {{ $url.scheme }}
host: {{ $url.hostname }}
port: {{ $port }}
database: {{ trimPrefix "/" $url.path | default .Values.redis.database }}
{{- end }}
{{- end }}

{{/* DOCFLOW_REDIS_URL, with the password from the Secret spliced in by the kubelet's
$(VAR) expansion so it never appears in the pod spec. */}}
{{- define "docflow.redis.env" -}}
{{- $endpoint := include "docflow.redis.endpoint" . | fromYaml }}
{{- if .Values.redis.auth.enabled }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "docflow.redis.secretName" . }}
      key: {{ .Values.redis.auth.existingSecretPasswordKey }}
- name: DOCFLOW_REDIS_URL
  value: {{ printf "%s://%s:$(REDIS_PASSWORD)@%s:%v/%v" $endpoint.scheme .Values.redis.auth.username $endpoint.host $endpoint.port $endpoint.database | quote }}
{{- else }}
- name: DOCFLOW_REDIS_URL
  value: {{ printf "%s://%s:%v/%v" $endpoint.scheme $endpoint.host $endpoint.port $endpoint.database | quote }}
{{- end }}
{{- with .Values.redis.tls }}
{{- if .existingSecret }}
- name: DOCFLOW_REDIS_TLS_CA_FILE
  value: /etc/docflow/redis-tls/ca.crt
{{- if .clientCertificate }}
- name: DOCFLOW_REDIS_TLS_CERT_FILE
  value: /etc/docflow/redis-tls/tls.crt
- name: DOCFLOW_REDIS_TLS_KEY_FILE
  value: /etc/docflow/redis-tls/tls.key
{{- end }}
{{- end }}
{{- if ne .verify "required" }}
- name: DOCFLOW_REDIS_TLS_VERIFY
  value: {{ .verify | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------- settings
Every stage's time limits go to every container: Settings checks the visibility timeout
against all of them, and the Celery app annotates every task with its stage's limits. */}}
{{- define "docflow.stages" -}}
extractor: EXTRACT
embedder: EMBED
indexer: INDEX
{{- end }}

{{- define "docflow.celery.env" -}}
{{- $root := . }}
{{- range $service, $stage := include "docflow.stages" . | fromYaml }}
{{- $limits := (index $root.Values $service).timeLimits }}
- name: DOCFLOW_{{ $stage }}_SOFT_TIME_LIMIT
  value: {{ $limits.softSeconds | quote }}
- name: DOCFLOW_{{ $stage }}_TIME_LIMIT
  value: {{ $limits.hardSeconds | quote }}
{{- end }}
{{- /* Index maintenance runs on its own worker with its own, longer limits. */}}
{{- $maintain := .Values.indexer.maintenance.timeLimits }}
- name: DOCFLOW_MAINTAIN_SOFT_TIME_LIMIT
  value: {{ $maintain.softSeconds | quote }}
- name: DOCFLOW_MAINTAIN_TIME_LIMIT
  value: {{ $maintain.hardSeconds | quote }}
- name: DOCFLOW_VISIBILITY_TIMEOUT
  value: {{ .Values.celery.visibilityTimeoutSeconds | quote }}
{{- end }}

{{- define "docflow.s3.env" -}}
{{- if eq .Values.storage.backend "s3" }}
- name: AWS_REGION
  value: {{ .Values.storage.s3.region | quote }}
{{- with .Values.storage.s3.existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.storage.s3.accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.storage.s3.secretAccessKeyKey }}
{{- end }}
{{- end }}
{{- end }}

{{/* The environment every docflow container shares. */}}
{{- define "docflow.common.env" -}}
{{ include "docflow.redis.env" . | trim }}
{{ include "docflow.celery.env" . | trim }}
{{- include "docflow.s3.env" . }}
# The root filesystem is read-only: caches and home-directory writes go to /tmp.
- name: HOME
  value: /tmp
{{- end }}

{{- define "docflow.env.map" -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{- define "docflow.lancedb.uri" -}}
{{- if .Values.vectorStore.lancedb.uri }}
{{- .Values.vectorStore.lancedb.uri }}
{{- else if eq .Values.storage.backend "s3" }}
{{- printf "s3://%s/%slancedb" .Values.storage.s3.bucket .Values.storage.s3.prefix }}
{{- else }}
{{- "/data/lancedb" }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------- pods
Pod Security Standards "restricted": non-root, no privilege escalation, all
capabilities dropped, RuntimeDefault seccomp; plus a read-only root filesystem. */}}
{{- define "docflow.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.runAsUser }}
runAsGroup: {{ .Values.runAsUser }}
fsGroup: {{ .Values.runAsUser }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "docflow.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.runAsUser }}
runAsGroup: {{ .Values.runAsUser }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "docflow.podScheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Volumes and mounts every docflow pod has: /tmp, and the shared data volume with
local storage. */}}
{{- define "docflow.dataVolume" -}}
{{- if eq .Values.storage.backend "local" }}
- name: data
  persistentVolumeClaim:
    claimName: {{ .Values.storage.local.existingClaim | default (printf "%s-data" (include "docflow.fullname" .)) }}
{{- end }}
{{- with .Values.redis.tls.existingSecret }}
- name: redis-tls
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{- define "docflow.dataMount" -}}
{{- if eq .Values.storage.backend "local" }}
- name: data
  mountPath: /data
{{- end }}
{{- if .Values.redis.tls.existingSecret }}
- name: redis-tls
  mountPath: /etc/docflow/redis-tls
  readOnly: true
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------- checks
Misconfigurations the schema cannot express fail the render with a clear message. */}}
{{- define "docflow.validate" -}}
{{- $root := . }}
{{- range $service, $stage := include "docflow.stages" . | fromYaml }}
{{- $limits := (index $root.Values $service).timeLimits }}
{{- if le (int $limits.hardSeconds) (int $limits.softSeconds) }}
{{- fail (printf "%s.timeLimits.hardSeconds (%v) must exceed softSeconds (%v)" $service $limits.hardSeconds $limits.softSeconds) }}
{{- end }}
{{- if le (int $root.Values.celery.visibilityTimeoutSeconds) (int $limits.hardSeconds) }}
{{- fail (printf "celery.visibilityTimeoutSeconds (%v) must exceed %s.timeLimits.hardSeconds (%v): a longer task would be redelivered while it still runs" $root.Values.celery.visibilityTimeoutSeconds $service $limits.hardSeconds) }}
{{- end }}
{{- end }}
{{- $maintain := .Values.indexer.maintenance.timeLimits }}
{{- if le (int $maintain.hardSeconds) (int $maintain.softSeconds) }}
{{- fail (printf "indexer.maintenance.timeLimits.hardSeconds (%v) must exceed softSeconds (%v)" $maintain.hardSeconds $maintain.softSeconds) }}
{{- end }}
{{- if le (int .Values.celery.visibilityTimeoutSeconds) (int $maintain.hardSeconds) }}
{{- fail (printf "celery.visibilityTimeoutSeconds (%v) must exceed indexer.maintenance.timeLimits.hardSeconds (%v): a longer run would be redelivered while it still runs" .Values.celery.visibilityTimeoutSeconds $maintain.hardSeconds) }}
{{- end }}
{{- if and (not .Values.redis.bundled) (not .Values.redis.external.url) }}
{{- fail "redis.external.url is required when redis.bundled is false" }}
{{- end }}
{{- if and (not .Values.redis.bundled) .Values.redis.auth.enabled (not .Values.redis.auth.existingSecret) (not .Values.redis.auth.password) }}
{{- fail "an external Redis needs its password: set redis.auth.existingSecret (or redis.auth.password, or redis.auth.enabled=false)" }}
{{- end }}
{{- if le (int .Values.celery.maxDeliveries) (int .Values.celery.maxRetries) }}
{{- fail (printf "celery.maxDeliveries (%v) must exceed celery.maxRetries (%v): every retry is a delivery too" .Values.celery.maxDeliveries .Values.celery.maxRetries) }}
{{- end }}
{{- if and .Values.redis.tls.existingSecret (or .Values.redis.bundled (not (hasPrefix "rediss://" .Values.redis.external.url))) }}
{{- fail "redis.tls.existingSecret needs an external Redis with a rediss:// URL (the bundled Redis does not speak TLS)" }}
{{- end }}
{{- if and (eq .Values.vectorStore.backend "pinecone") (not .Values.vectorStore.pinecone.existingSecret) }}
{{- fail "vectorStore.pinecone.existingSecret is required with the pinecone backend" }}
{{- end }}
{{- if and (eq .Values.embedder.provider "openai") (not .Values.embedder.openai.existingSecret) }}
{{- fail "embedder.openai.existingSecret is required with the openai provider" }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------- network
Egress every docflow pod needs: DNS, Redis, and the external object store / vector
store / embedding APIs. */}}
{{- define "docflow.networkPolicy.egress" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- if .Values.redis.bundled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "docflow.selectorLabels" (dict "root" . "component" "redis") | nindent 10 }}
  ports:
    - port: 6379
      protocol: TCP
{{- else }}
{{- $endpoint := include "docflow.redis.endpoint" . | fromYaml }}
- ports:
    - port: {{ int $endpoint.port }}
      protocol: TCP
  {{- with .Values.redis.external.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- with .Values.networkPolicy.externalPorts }}
- ports:
    {{- range . }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
  {{- with $.Values.networkPolicy.externalTo }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- with .Values.networkPolicy.extraEgress }}
{{ toYaml . }}
{{- end }}
{{- end }}
