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

{{- define "dicomweb-gw.retrieveNeedsSingleReplica" -}}
{{- if and (eq .Values.pacs.retrieve "c-move") (or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1)) }}
{{- fail "pacs.retrieve=c-move needs exactly one replica (the PACS sends C-MOVE sub-operations to one address, which cannot route them back to the pod that asked): set replicaCount=1 and autoscaling.enabled=false, or use pacs.retrieve=c-get" }}
{{- end }}
{{- range $name, $node := .Values.extraPacs }}
{{- if and (eq (default "c-move" $node.retrieve) "c-move") (or $.Values.autoscaling.enabled (gt (int $.Values.replicaCount) 1)) }}
{{- fail (printf "extraPacs.%s uses c-move, which needs exactly one replica: set replicaCount=1 and autoscaling.enabled=false, or retrieve: c-get" $name) }}
{{- end }}
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
