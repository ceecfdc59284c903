{{/* What the hub and portal API containers share: settings, data, secrets, the pool. */}}

{{- define "gpuaf.volumeMounts" -}}
- name: settings
  mountPath: {{ include "gpuaf.settingsDir" . }}
  readOnly: true
- name: data
  mountPath: {{ .Values.settings.portal.data_dir }}
{{- if .Values.iam.clientSecret.existingSecret }}
- name: iam-client-secret
  mountPath: {{ include "gpuaf.secretsDir" . }}
  readOnly: true
{{- end }}
{{- if include "gpuaf.ledgerPasswordSecret" . }}
- name: ledger-password
  mountPath: {{ include "gpuaf.ledgerDir" . }}
  readOnly: true
{{- end }}
{{- if include "gpuaf.htcondor" . }}
- name: htcondor-config
  mountPath: {{ include "gpuaf.condorDir" . }}/config
  readOnly: true
{{- if .Values.htcondor.idtoken.existingSecret }}
- name: htcondor-idtoken
  mountPath: {{ include "gpuaf.condorDir" . }}/tokens.d
  readOnly: true
{{- end }}
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "gpuaf.volumes" -}}
- name: settings
  configMap:
    name: {{ include "gpuaf.fullname" . }}-settings
- name: data
  {{- if .Values.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ include "gpuaf.dataClaimName" . }}
  {{- else }}
  emptyDir: {}
  {{- end }}
{{- if .Values.iam.clientSecret.existingSecret }}
- name: iam-client-secret
  secret:
    secretName: {{ .Values.iam.clientSecret.existingSecret }}
    defaultMode: 288  # 0440
    items:
      - key: {{ .Values.iam.clientSecret.key }}
        path: iam-client-secret
{{- end }}
{{- with include "gpuaf.ledgerPasswordSecret" . }}
- name: ledger-password
  secret:
    secretName: {{ . }}
    defaultMode: 288  # 0440
    items:
      - key: {{ include "gpuaf.ledgerPasswordKey" $ }}
        path: password
{{- end }}
{{- if include "gpuaf.htcondor" . }}
- name: htcondor-config
  configMap:
    name: {{ include "gpuaf.fullname" . }}-htcondor
{{- with .Values.htcondor.idtoken.existingSecret }}
- name: htcondor-idtoken
  secret:
    secretName: {{ . }}
    defaultMode: 288  # 0440: read by the container user through its group (fsGroup)
    items:
      - key: {{ $.Values.htcondor.idtoken.key }}
        path: gpuaf
{{- end }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Environment of the hub and portal API containers. */}}
{{- define "gpuaf.env" -}}
- name: PYTHONUNBUFFERED
  value: "1"
{{- if include "gpuaf.htcondor" . }}
- name: CONDOR_CONFIG
  value: {{ include "gpuaf.condorDir" . }}/config/condor_config
{{- end }}
{{- end }}

{{/* A token of the shared Secret as an environment variable: (list $ "NAME" "key") */}}
{{- define "gpuaf.secretEnv" -}}
- name: {{ index . 1 }}
  valueFrom:
    secretKeyRef:
      name: {{ include "gpuaf.secret" (index . 0) }}
      key: {{ index . 2 }}
{{- end }}
