{{/* Names, labels, paths and the layout of the gpuaf chart. */}}

{{- define "gpuaf.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* release-chart, or the release name alone when it already contains the chart name */}}
{{- define "gpuaf.fullname" -}}
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

{{- define "gpuaf.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of one component: include "gpuaf.matchLabels" (list $ "hub") */}}
{{- define "gpuaf.matchLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "gpuaf.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* All labels of one component's objects: include "gpuaf.labels" (list $ "hub") */}}
{{- define "gpuaf.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ include "gpuaf.chart" $root }}
{{ include "gpuaf.matchLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: gpuaf
{{- end }}

{{- define "gpuaf.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "gpuaf.dataClaimName" -}}
{{- default (printf "%s-data" (include "gpuaf.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}

{{/*
"true" when the proxy and the portal API run in their own pods (z2jh's layout). With the
local backend, sessions are processes of the hub pod listening on its loopback, so the
proxy and the API must share that pod: the hub starts them, as on a single machine.
*/}}
{{- define "gpuaf.split" -}}
{{- if ne (toString (dig "backend" "kind" "local" .Values.settings)) "local" }}true{{- end }}
{{- end }}

{{- define "gpuaf.htcondor" -}}
{{- if eq (toString (dig "backend" "kind" "local" .Values.settings)) "htcondor" }}true{{- end }}
{{- end }}

{{/* Where the ledger's password comes from: the bundled PostgreSQL's Secret, or the site's. */}}
{{- define "gpuaf.ledgerPasswordSecret" -}}
{{- if .Values.postgresql.enabled }}
{{- default (printf "%s-postgresql" (include "gpuaf.fullname" .)) .Values.postgresql.auth.existingSecret }}
{{- else }}
{{- .Values.ledger.passwordSecret.existingSecret }}
{{- end }}
{{- end }}

{{- define "gpuaf.ledgerPasswordKey" -}}
{{- if .Values.postgresql.enabled }}password{{ else }}{{ .Values.ledger.passwordSecret.key }}{{ end }}
{{- end }}

{{/* Service names and the in-cluster URLs the components reach each other by. */}}
{{- define "gpuaf.hubService" -}}{{ include "gpuaf.fullname" . }}-hub{{- end }}
{{- define "gpuaf.apiService" -}}{{ include "gpuaf.fullname" . }}-api{{- end }}
{{- define "gpuaf.proxyPublic" -}}{{ include "gpuaf.fullname" . }}-proxy-public{{- end }}
{{- define "gpuaf.proxyApi" -}}{{ include "gpuaf.fullname" . }}-proxy-api{{- end }}
{{- define "gpuaf.postgresql" -}}{{ include "gpuaf.fullname" . }}-postgresql{{- end }}
{{- define "gpuaf.secret" -}}{{ include "gpuaf.fullname" . }}-secret{{- end }}
{{- define "gpuaf.hubUrl" -}}
{{- printf "http://%s:%v" (include "gpuaf.hubService" .) .Values.settings.portal.hub_port }}
{{- end }}

{{/* Paths inside the gpuaf containers (hub and portal API). */}}
{{- define "gpuaf.settingsDir" -}}/etc/gpuaf{{- end }}
{{- define "gpuaf.settingsPath" -}}{{ include "gpuaf.settingsDir" . }}/settings.yaml{{- end }}
{{- define "gpuaf.secretsDir" -}}/etc/gpuaf-secrets{{- end }}
{{- define "gpuaf.clientSecretPath" -}}{{ include "gpuaf.secretsDir" . }}/iam-client-secret{{- end }}
{{- define "gpuaf.ledgerDir" -}}/etc/gpuaf-ledger{{- end }}
{{- define "gpuaf.ledgerPasswordPath" -}}{{ include "gpuaf.ledgerDir" . }}/password{{- end }}
{{- define "gpuaf.condorDir" -}}/etc/gpuaf-htcondor{{- end }}

{{/*
A value of the shared Secret: kept from the Secret already in the cluster (lookup; empty
under `helm template`), else generated. include "gpuaf.keptSecret" (list $ "key" "generated")
*/}}
{{- define "gpuaf.keptSecret" -}}
{{- $root := index . 0 }}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace (include "gpuaf.secret" $root) }}
{{- $data := dict }}
{{- if $existing }}{{ $data = default dict $existing.data }}{{ end }}
{{- get $data (index . 1) | default (index . 2 | b64enc) }}
{{- end }}

{{/* n random hexadecimal digits (as zero-to-jupyterhub makes the cookie secret) */}}
{{- define "gpuaf.randHex" -}}
{{- $result := "" }}
{{- range $i := until . }}
{{- $result = print $result (mod (randNumeric 4 | atoi) 16 | printf "%x") }}
{{- end }}
{{- $result }}
{{- end }}
