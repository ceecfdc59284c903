{{/*
The settings document written to the ConfigMap: .Values.settings without any secret,
after the checks that only matter inside a pod (the schema checks everything else), with
the keys the chart owns: where the parts reach each other, the files secrets are read from.
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
{{- range $key := list "proxy_api_url" "api_url" "api_ip" }}
{{- if hasKey $portal $key }}
{{- fail (printf "settings.portal.%s is set by the chart (from the backend's layout); leave it out" $key) }}
{{- end }}
{{- end }}
{{- if not $s.ledger }}{{ $_ := set $s "ledger" dict }}{{ end }}
{{- $url := toString (default "" $s.ledger.url) }}
{{- if regexMatch "^[^:/]+(\\+[^:/]+)?://[^/@]*:[^/@]*@" $url }}
{{- fail "settings.ledger.url contains a password: settings are stored in a ConfigMap; put the password in a Secret named in ledger.passwordSecret.existingSecret, or use the bundled PostgreSQL (postgresql.enabled)" }}
{{- end }}
{{- if hasKey $s.ledger "password_file" }}
{{- fail "settings.ledger.password_file is set by the chart: name the Secret in ledger.passwordSecret.existingSecret" }}
{{- end }}
{{- if .Values.postgresql.enabled }}
{{- if $url }}
{{- fail "postgresql.enabled and settings.ledger.url are both set: use the bundled PostgreSQL or an external one, not both" }}
{{- end }}
{{- $pg := .Values.postgresql.auth }}
{{- $_ := set $s.ledger "url" (printf "postgresql+psycopg://%s@%s:5432/%s" $pg.username (include "gpuaf.postgresql" .) $pg.database) }}
{{- $_ := set $s.ledger "password_file" (include "gpuaf.ledgerPasswordPath" .) }}
{{- else if .Values.ledger.passwordSecret.existingSecret }}
{{- if not $url }}
{{- fail "ledger.passwordSecret.existingSecret is set but settings.ledger.url is not: give the URL of your PostgreSQL server (without the password)" }}
{{- end }}
{{- $_ := set $s.ledger "password_file" (include "gpuaf.ledgerPasswordPath" .) }}
{{- end }}
{{- if include "gpuaf.split" . }}
{{- if not .Values.persistence.enabled }}
{{- fail "persistence.enabled is false, but with this backend the hub and portal API pods share settings.portal.data_dir on the volume: keep persistence enabled (or use backend.kind local)" }}
{{- end }}
{{- $_ := set $portal "hub_ip" "0.0.0.0" }}
{{- if not $portal.hub_connect_url }}
{{- $_ := set $portal "hub_connect_url" (include "gpuaf.hubUrl" .) }}
{{- end }}
{{- $_ := set $portal "proxy_api_url" (printf "http://%s:%v" (include "gpuaf.proxyApi" .) $portal.proxy_api_port) }}
{{- $_ := set $portal "api_url" (printf "http://%s:%v" (include "gpuaf.apiService" .) $portal.api_port) }}
{{- $_ := set $portal "api_ip" "0.0.0.0" }}
{{- end }}
{{- if $s.iam }}
{{- $_ := unset $s.iam "client_secret" }}
{{- if .Values.iam.clientSecret.existingSecret }}
{{- $_ := set $s.iam "client_secret_file" (include "gpuaf.clientSecretPath" .) }}
{{- end }}
{{- end }}
{{- toYaml $s }}
{{- end }}

{{/* The condor_config of the hub and the portal API: the pool, then the site's text. */}}
{{- define "gpuaf.condorConfig" -}}
{{- $collector := toString (dig "backend" "htcondor" "collector" "" .Values.settings) }}
{{- $text := toString .Values.htcondor.config }}
{{- if not (or $collector (regexMatch "(?m)^\\s*CONDOR_HOST\\s*=" $text)) }}
{{- fail "settings.backend.kind is htcondor: set settings.backend.htcondor.collector (host[:port] of the pool's collector) or CONDOR_HOST in htcondor.config" }}
{{- end -}}
# condor_config of gpuaf's hub and portal API, written by the Helm chart: a client of
# the pool, no daemons here.
{{- if $collector }}
CONDOR_HOST = {{ $collector }}
{{- end }}
SEC_TOKEN_DIRECTORY = {{ include "gpuaf.condorDir" . }}/tokens.d
SEC_CLIENT_AUTHENTICATION_METHODS = IDTOKENS, SSL
LOG = /tmp
{{- with $text }}
# htcondor.config
{{ . }}
{{- end }}
{{- end }}
