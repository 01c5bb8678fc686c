{{/*
Names, labels and the pieces shared by several templates.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "mooring.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the objects: fullnameOverride, else the release name when it contains the chart
name, else <release>-<chart>. Cut to 63 characters (DNS label).
*/}}
{{- define "mooring.fullname" -}}
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

{{/* chart-version, for the helm.sh/chart label. */}}
{{- define "mooring.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels that select the server's Pods: never change them (Deployment selectors are immutable). */}}
{{- define "mooring.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mooring.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The labels of every object. */}}
{{- define "mooring.labels" -}}
helm.sh/chart: {{ include "mooring.chart" . }}
{{ include "mooring.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mooring
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The ServiceAccount the server runs as. */}}
{{- define "mooring.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mooring.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: repository:tag, or repository@digest when a digest is given. */}}
{{- define "mooring.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The webhook URL of webhook.url, with path /inject when it has none (as `mooring webhook-config
--url` does).
*/}}
{{- define "mooring.webhookURL" -}}
{{- $url := urlParse .Values.webhook.url }}
{{- if or (eq $url.path "") (eq $url.path "/") }}
{{- $_ := set $url "path" "/inject" }}
{{- end }}
{{- urlJoin $url }}
{{- end }}

{{/*
The URL of the validating webhook when webhook.url is set: the same server (scheme, host, port),
path /validate.
*/}}
{{- define "mooring.validateURL" -}}
{{- $url := urlParse .Values.webhook.url }}
{{- $_ := set $url "path" "/validate" }}
{{- urlJoin $url }}
{{- end }}

{{/*
What values.schema.json cannot say (it sees one value at a time): refused here, at template time,
with the message the server would give, instead of a Pod that crash-loops or a webhook that no
TLS handshake can trust.
*/}}
{{- define "mooring.validate" -}}
{{- with .Values.webhook }}
{{- if and .url (not .caBundle) }}
{{- fail "webhook.url needs webhook.caBundle: nothing else would set the caBundle of a webhook that calls a server outside the cluster (set it to that server's trust bundle: root-cert.pem of its --data-dir, or the trustBundle of its GET /v1/trust-bundle)" }}
{{- end }}
{{- if and .caBundle (not (contains "-----BEGIN CERTIFICATE-----" (include "mooring.caBundlePEM" $))) }}
{{- fail "webhook.caBundle must be PEM certificates, or the base64 of PEM certificates" }}
{{- end }}
{{- end }}
{{- $ca := .Values.config.ca }}
{{- if gt (float64 $ca.workloadDefaultTtlSeconds) (float64 $ca.workloadMaxTtlSeconds) }}
{{- fail (printf "config.ca.workloadDefaultTtlSeconds (%.0f) must not exceed config.ca.workloadMaxTtlSeconds (%.0f)" (float64 $ca.workloadDefaultTtlSeconds) (float64 $ca.workloadMaxTtlSeconds)) }}
{{- end }}
{{- $needed := addf $ca.rotation.beforeExpirySeconds $ca.rotation.propagationDelaySeconds }}
{{- if and $ca.rotation.auto (le (float64 $ca.rootLifetimeSeconds) (float64 $needed)) }}
{{- fail (printf "config.ca.rootLifetimeSeconds (%.0f) must exceed config.ca.rotation.beforeExpirySeconds + config.ca.rotation.propagationDelaySeconds (%.0f), or every new root would be rotated at once" (float64 $ca.rootLifetimeSeconds) (float64 $needed)) }}
{{- end }}
{{- end }}

{{/* webhook.caBundle as PEM text (base64 is decoded; what is not base64 decodes to an error text). */}}
{{- define "mooring.caBundlePEM" -}}
{{- $bundle := trim .Values.webhook.caBundle }}
{{- if contains "-----BEGIN" $bundle }}{{ $bundle }}{{ else }}{{ $bundle | nospace | b64dec }}{{ end }}
{{- end }}

{{/* webhook.caBundle as base64: a PEM is encoded, anything else is taken as base64 already. */}}
{{- define "mooring.caBundle" -}}
{{- $bundle := trim .Values.webhook.caBundle }}
{{- if contains "-----BEGIN" $bundle }}
{{- printf "%s\n" $bundle | b64enc }}
{{- else }}
{{- $bundle | nospace }}
{{- end }}
{{- end }}

{{/*
The server's configuration (config.yaml). Three layers:
  1. defaults the chart derives (the init and proxy images are the chart's image; the CA address is the
     chart's Service), used when config does not set them;
  2. .Values.config;
  3. what the chart owns, always set: namespace, Service and webhook configuration names (the
     validating one null when validatingWebhook.enabled is false), listen addresses and
     data directory (the ports and the volumes of the Deployment), the plug-in CA directory, and
     patchCABundle false when the caBundle is set explicitly or the webhook is a URL.
*/}}
{{- define "mooring.config" -}}
{{- $config := deepCopy (default dict .Values.config) }}
{{- $injector := default dict (get $config "injector") }}
{{- if not (hasKey $injector "initImage") }}
{{- $_ := set $injector "initImage" (include "mooring.image" .) }}
{{- end }}
{{- if not (hasKey $injector "proxyImage") }}
{{- $_ := set $injector "proxyImage" (include "mooring.image" .) }}
{{- end }}
{{- if not (hasKey $injector "caAddress") }}
{{- $_ := set $injector "caAddress" (printf "https://%s.%s.svc:443" (include "mooring.fullname" .) .Release.Namespace) }}
{{- end }}
{{- $_ := set $config "injector" $injector }}
{{- $server := default dict (get $config "server") }}
{{- $_ = set $server "listen" "0.0.0.0:8443" }}
{{- $_ = set $server "adminListen" "0.0.0.0:9090" }}
{{- $_ = set $server "dataDir" "/var/lib/mooring" }}
{{- $_ = set $config "server" $server }}
{{- $cluster := default dict (get $config "cluster") }}
{{- $_ = set $cluster "namespace" .Release.Namespace }}
{{- $_ = set $cluster "serviceName" (include "mooring.fullname" .) }}
{{- $_ = set $cluster "webhookConfigName" .Values.webhook.name }}
{{- $_ = set $cluster "validatingWebhookConfigName" (ternary .Values.validatingWebhook.name nil .Values.validatingWebhook.enabled) }}
{{- if or .Values.webhook.url .Values.webhook.caBundle }}
{{- $_ = set $cluster "patchCABundle" false }}
{{- end }}
{{- $_ = set $config "cluster" $cluster }}
{{- if .Values.ca.pluginSecretName }}
{{- $ca := default dict (get $config "ca") }}
{{- $_ = set $ca "pluginDir" .Values.ca.pluginMountPath }}
{{- $_ = set $config "ca" $ca }}
{{- end }}
{{- toYaml $config }}
{{- end }}
