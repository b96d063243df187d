{{/*
Expand the name of the chart.
*/}}
{{- define "echo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name. Overseer's release names are unique per deployment and at most
53 characters, so the release name alone is the default full name.
*/}}
{{- define "echo.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
Chart name and version, as used by the chart label.
*/}}
{{- define "echo.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "echo.labels" -}}
helm.sh/chart: {{ include "echo.chart" . }}
{{ include "echo.podLabels" . }}
{{- end }}

{{/*
The pod template's labels: the common ones but the chart's version. Flux's `Revision` strategy
versions a chart by the commit, so a version label there would roll the pods on every commit.
*/}}
{{- define "echo.podLabels" -}}
{{ include "echo.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
overseer.dev/plugin: {{ .Chart.Name | quote }}
overseer.dev/deployment-id: {{ .Values.deployment.id | quote }}
{{- end }}

{{/*
Selector labels. Kept minimal: selectors are immutable once created.
*/}}
{{- define "echo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "echo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the Secret holding the secret environment variables.
*/}}
{{- define "echo.secretName" -}}
{{- default (printf "%s-env" (include "echo.fullname" .)) .Values.existingSecret }}
{{- end }}

{{/*
Labels of the `helm test` pod. Not the selector labels: the Service must never route to it.
*/}}
{{- define "echo.testLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: connection-test
{{- end }}
