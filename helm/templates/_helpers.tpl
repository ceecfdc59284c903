{{/* Names, labels and the settings document of the gpuaf chart. */}}

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

{{- define "gpuaf.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gpuaf.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: hub
{{- end }}

{{- define "gpuaf.labels" -}}
helm.sh/chart: {{ include "gpuaf.chart" . }}
{{ include "gpuaf.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gpuaf
{{- end }}

{{- define "gpuaf.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "gpuaf.dataClaimName" -}}
{{- default (printf "%s-data" (include "gpuaf.fullname" .)) .Values.persistence.existingClaim }}
{{- end }}

{{/* Where the settings file and the IAM client secret appear inside the container. */}}
{{- define "gpuaf.settingsDir" -}}/etc/gpuaf{{- end }}
{{- define "gpuaf.settingsPath" -}}{{ include "gpuaf.settingsDir" . }}/settings.yaml{{- end }}
{{- define "gpuaf.secretsDir" -}}/etc/gpuaf-secrets{{- end }}
{{- define "gpuaf.clientSecretPath" -}}{{ include "gpuaf.secretsDir" . }}/iam-client-secret{{- end }}

{{/*
The settings document written to the ConfigMap: .Values.settings without any secret,
after the checks that only matter inside a pod (the schema checks everything else).
*/}}
{{- define "gpuaf.settings" -}}
{{- $s := deepCopy .Values.settings }}
{{- $portal := required "settings.portal is required" $s.portal }}
{{- $dataDir := toString (required "settings.portal.data_dir is required" $portal.data_dir) }}
{{- if not (hasPrefix "/" $dataDir) }}
{{- fail (printf "settings.portal.data_dir must be an absolute path inside the container (the volume is mounted there), not %q" $dataDir) }}
{{- end }}
{{- $host := toString (default "127.0.0.1" $portal.host) }}
{{- if or (hasPrefix "127." $host) (eq $host "localhost") (eq $host "::1") }}
{{- fail (printf "settings.portal.host is %q: in a pod the proxy must listen on 0.0.0.0 so that the Service reaches it" $host) }}
{{- end }}
{{- if not $portal.public_url }}
{{- fail "settings.portal.public_url is required: the URL users open (IAM redirects to <public_url>hub/oauth_callback)" }}
{{- end }}
{{- if and $s.ledger $s.ledger.url (regexMatch "^[^:/]+(\\+[^:/]+)?://[^/@]*:[^/@]*@" (toString $s.ledger.url)) }}
{{- fail "settings.ledger.url contains a password: settings are stored in a ConfigMap; use passwordless authentication (e.g. TLS client certificates, see examples/external-postgresql.yaml)" }}
{{- end }}
{{- if $s.iam }}
{{- $_ := unset $s.iam "client_secret" }}
{{- if .Values.iam.clientSecret.existingSecret }}
{{- $_ := set $s.iam "client_secret_file" (include "gpuaf.clientSecretPath" .) }}
{{- end }}
{{- end }}
{{- toYaml $s }}
{{- end }}
