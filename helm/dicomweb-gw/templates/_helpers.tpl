{{- define "dicomweb-gw.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dicomweb-gw.fullname" -}}
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

{{- define "dicomweb-gw.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dicomweb-gw.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dicomweb-gw.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "dicomweb-gw.labels" -}}
helm.sh/chart: {{ include "dicomweb-gw.chart" . }}
{{ include "dicomweb-gw.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "dicomweb-gw.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dicomweb-gw.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "dicomweb-gw.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
DICOMWEB_GW_CACHE_MAX_BYTES: cache.maxBytesPercent of cache.size, in bytes.
cache.size is a Kubernetes quantity with a binary or decimal suffix (schema-checked).
*/}}
{{- define "dicomweb-gw.cacheMaxBytes" -}}
{{- $size := .Values.cache.size | toString }}
{{- $number := regexFind "^[0-9]+" $size | int64 }}
{{- $suffix := trimPrefix (regexFind "^[0-9]+" $size) $size }}
{{- $units := dict "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "M" 1000000 "G" 1000000000 "T" 1000000000000 }}
{{- $unit := get $units $suffix | int64 }}
{{- div (mul $number $unit (int64 .Values.cache.maxBytesPercent)) 100 }}
{{- end }}

{{/*
"true" when more than one pod may run at once (replicaCount > 1 or the autoscaler),
else empty.
*/}}
{{- define "dicomweb-gw.severalReplicas" -}}
{{- if or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/* The value that asks for several pods, for messages. */}}
{{- define "dicomweb-gw.replicasSetting" -}}
{{- if .Values.autoscaling.enabled }}autoscaling.enabled=true{{ else }}replicaCount={{ .Values.replicaCount }}{{ end }}
{{- end }}

{{/* "true" when a Redis is configured (DICOMWEB_GW_REDIS_URL is set), else empty. */}}
{{- define "dicomweb-gw.hasRedis" -}}
{{- if or .Values.cluster.redis.url .Values.cluster.redis.existingSecret }}true{{ end }}
{{- end }}

{{/* Where a ReadWriteMany shared store (cluster.sharedStore.type=volume) is mounted. */}}
{{- define "dicomweb-gw.sharedMountPath" -}}
/shared
{{- end }}

{{/*
Scale-out values that the schema cannot check. Several replicas share single
flight, the cache and C-MOVE routing (a C-STORE landing on any pod reaches the pod
that sent the C-MOVE) through Redis and the shared store: without both they would
each retrieve on their own, and C-MOVE sub-operations would land on pods that never
asked. Each pod's local cache must be its own (an emptyDir): a PVC is either
ReadWriteOnce (one node) or shared, and the local cache (with its SQLite index) is
not made to be shared.
*/}}
{{- define "dicomweb-gw.clusterChecks" -}}
{{- $cluster := .Values.cluster }}
{{- if and $cluster.redis.url $cluster.redis.existingSecret }}
{{- fail "set cluster.redis.url or cluster.redis.existingSecret, not both" }}
{{- end }}
{{- if regexMatch "^rediss?://[^/@]*:[^/@]*@" $cluster.redis.url }}
{{- fail "cluster.redis.url holds a password, which would be readable in the Deployment: put the URL in a Secret and set cluster.redis.existingSecret (and existingSecretKey) instead" }}
{{- end }}
{{- if and (eq $cluster.sharedStore.type "s3") (not $cluster.sharedStore.s3.url) }}
{{- fail "cluster.sharedStore.type=s3 needs cluster.sharedStore.s3.url (s3://bucket/prefix)" }}
{{- end }}
{{- $shared := include "dicomweb-gw.sharedMountPath" . }}
{{- if and (eq $cluster.sharedStore.type "volume") (or (eq .Values.cache.mountPath $shared) (hasPrefix (printf "%s/" $shared) .Values.cache.mountPath)) }}
{{- fail (printf "cache.mountPath=%s is inside %s, where cluster.sharedStore.type=volume is mounted: choose another cache.mountPath" .Values.cache.mountPath $shared) }}
{{- end }}
{{- if include "dicomweb-gw.severalReplicas" . }}
{{- $why := include "dicomweb-gw.replicasSetting" . }}
{{- if not (include "dicomweb-gw.hasRedis" .) }}
{{- fail (printf "%s needs cluster.redis.url or cluster.redis.existingSecret: several replicas share single flight, the cache and C-MOVE routing through Redis" $why) }}
{{- end }}
{{- if not $cluster.sharedStore.type }}
{{- fail (printf "%s needs cluster.sharedStore.type (volume or s3): several replicas find the instances the others retrieved in the shared store" $why) }}
{{- end }}
{{- if eq .Values.cache.type "pvc" }}
{{- fail (printf "%s cannot use cache.type=pvc: each replica's local cache must be its own (cache.type=emptyDir); cluster.sharedStore is what persists" $why) }}
{{- end }}
{{- include "dicomweb-gw.pdbChecks" . }}
{{- end }}
{{- end }}

{{/* An IntOrString: a number of pods, or a percentage quoted. */}}
{{- define "dicomweb-gw.intOrPercent" -}}
{{- if kindIs "string" . }}{{ quote . }}{{ else }}{{ int . }}{{ end }}
{{- end }}

{{/*
A PodDisruptionBudget that no eviction can satisfy blocks every node drain.
*/}}
{{- define "dicomweb-gw.pdbChecks" -}}
{{- $pdb := .Values.podDisruptionBudget }}
{{- $pods := ternary .Values.autoscaling.minReplicas .Values.replicaCount .Values.autoscaling.enabled | int }}
{{- if not (kindIs "invalid" $pdb.maxUnavailable) }}
{{- if or (eq (toString $pdb.maxUnavailable) "0%") (and (not (kindIs "string" $pdb.maxUnavailable)) (eq (int $pdb.maxUnavailable) 0)) }}
{{- fail (printf "podDisruptionBudget.maxUnavailable=%v would block every node drain: allow at least 1 pod" $pdb.maxUnavailable) }}
{{- end }}
{{- else if kindIs "invalid" $pdb.minAvailable }}
{{- fail "podDisruptionBudget needs minAvailable or maxUnavailable" }}
{{- else if or (eq (toString $pdb.minAvailable) "100%") (and (not (kindIs "string" $pdb.minAvailable)) (ge (int $pdb.minAvailable) $pods)) }}
{{- fail (printf "podDisruptionBudget.minAvailable=%v would block every node drain with %s: make it less, or set maxUnavailable" $pdb.minAvailable (ternary (printf "autoscaling.minReplicas=%d" $pods) (printf "replicaCount=%d" $pods) .Values.autoscaling.enabled)) }}
{{- end }}
{{- end }}

{{- define "dicomweb-gw.configToml" -}}
ae_title = {{ .Values.gateway.aeTitle | quote }}
store_port = {{ .Values.gateway.storePort | int }}
default_pacs = {{ .Values.pacs.name | quote }}

[pacs.{{ .Values.pacs.name }}]
host = {{ .Values.pacs.host | quote }}
port = {{ .Values.pacs.port | int }}
ae_title = {{ .Values.pacs.aeTitle | quote }}
retrieve = {{ .Values.pacs.retrieve | quote }}
max_associations = {{ .Values.pacs.maxAssociations | int }}
timeout = {{ .Values.pacs.timeout }}
{{- range $name, $node := .Values.extraPacs }}

[pacs.{{ $name }}]
host = {{ $node.host | quote }}
port = {{ $node.port | int }}
ae_title = {{ $node.aeTitle | quote }}
retrieve = {{ default "c-move" $node.retrieve | quote }}
{{- if $node.maxAssociations }}
max_associations = {{ $node.maxAssociations | int }}
{{- end }}
{{- if $node.timeout }}
timeout = {{ $node.timeout }}
{{- end }}
{{- range $key, $value := $node.quirks }}
{{ $key }} = {{ toJson $value }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Where the API key Secret is mounted (DICOMWEB_GW_API_KEYS names the file): outside
/etc/dicomweb-gw, where the config map is mounted read-only.
*/}}
{{- define "dicomweb-gw.apiKeysFile" -}}
/run/secrets/dicomweb-gw/api-keys
{{- end }}

{{/*
With authentication on, the kubelet's probes (and Prometheus, with a ServiceMonitor)
carry no credentials: their paths must stay in auth.openPaths.
*/}}
{{- define "dicomweb-gw.probesStayOpen" -}}
{{- if or .Values.auth.apiKeys.existingSecret .Values.auth.oidc.issuer }}
{{- $open := .Values.auth.openPaths | default (list "/healthz" "/readyz" "/metrics" "/openapi.json") }}
{{- $needed := list "/healthz" "/readyz" }}
{{- if .Values.serviceMonitor.enabled }}{{ $needed = append $needed "/metrics" }}{{ end }}
{{- range $needed }}
{{- if not (or (has . $open) (has "/" $open)) }}
{{- fail (printf "auth.openPaths must include %s: with authentication on, the probes and Prometheus carry no credentials" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
