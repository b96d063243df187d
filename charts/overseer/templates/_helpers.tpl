{{/*
Expand the name of the chart.
*/}}
{{- define "overseer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name, truncated at 63 characters (the DNS label limit).
*/}}
{{- define "overseer.fullname" -}}
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

{{- define "overseer.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "overseer.labels" -}}
helm.sh/chart: {{ include "overseer.chart" . }}
{{ include "overseer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "overseer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "overseer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The bundled PostgreSQL's name, and its labels (a different component of the same instance).
*/}}
{{- define "overseer.postgresql.fullname" -}}
{{- printf "%s-postgresql" (include "overseer.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "overseer.postgresql.selectorLabels" -}}
app.kubernetes.io/name: {{ include "overseer.name" . }}-postgresql
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The database URL: explicit, or the bundled PostgreSQL's.
*/}}
{{- define "overseer.databaseUrl" -}}
{{- if .Values.databaseUrl }}
{{- .Values.databaseUrl }}
{{- else }}
{{- with .Values.postgresql }}
{{- printf "postgresql://%s:%s@%s:5432/%s" .username .password (include "overseer.postgresql.fullname" $) .database }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Where Overseer and the migrations read DATABASE_URL from.
*/}}
{{- define "overseer.envFrom" -}}
- configMapRef:
    name: {{ include "overseer.fullname" . }}-config
{{- with .Values.existingDatabaseSecret }}
- secretRef:
    name: {{ . }}
{{- end }}
- secretRef:
    name: {{ include "overseer.tokenSecretName" . }}
- secretRef:
    name: {{ include "overseer.secretKeySecretName" . }}
{{- with .Values.gitops.existingSecret }}
- secretRef:
    name: {{ . }}
{{- end }}
{{- end }}

{{/*
The Secret holding OVERSEER_SECRET_KEY.
*/}}
{{- define "overseer.secretKeySecretName" -}}
{{- default (printf "%s-secret-key" (include "overseer.fullname" .)) .Values.secretKey.existingSecret }}
{{- end }}

{{/*
The Secret holding OVERSEER_API_TOKEN.
*/}}
{{- define "overseer.tokenSecretName" -}}
{{- default (printf "%s-api-token" (include "overseer.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{/*
Host and port the wait-for-postgres init container polls.
*/}}
{{- define "overseer.postgresHost" -}}
{{- if .Values.postgresql.enabled }}
{{- include "overseer.postgresql.fullname" . }}
{{- else }}
{{- regexReplaceAll "^[a-z+]+://([^@/]*@)?([^:/?]+).*$" (include "overseer.databaseUrl" .) "${2}" }}
{{- end }}
{{- end }}

{{/*
The init container that waits until PostgreSQL accepts TCP connections, locked down like the rest.
*/}}
{{- define "overseer.waitForPostgres" -}}
- name: wait-for-postgres
  image: {{ .Values.waitForPostgres.image }}
  command: ["sh", "-c", "until nc -z {{ include "overseer.postgresHost" . }} 5432; do echo waiting for postgres; sleep 2; done"]
  {{- with .Values.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.waitForPostgres.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/*
Labels of the `helm test` pod: not the selector labels, so the Service never routes to it.
*/}}
{{- define "overseer.testLabels" -}}
app.kubernetes.io/name: {{ include "overseer.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: connection-test
{{- end }}

{{/*
Labels of the migrations Job's pod.
*/}}
{{- define "overseer.migrations.selectorLabels" -}}
app.kubernetes.io/name: {{ include "overseer.name" . }}-migrations
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: migrations
{{- end }}

{{/*
The ServiceAccount Overseer runs as.
*/}}
{{- define "overseer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "overseer.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
A remote for the GitOps repository, or the user's word that losing it is fine.
*/}}
{{- define "overseer.requireRemote" -}}
{{- if not (or .Values.gitops.remote .Values.gitops.existingSecret .Values.gitops.ephemeral) }}
{{- fail "gitops.remote (or gitops.existingSecret) is required: the pod's repository is a cache, and main must live on a remote. Set gitops.ephemeral=true to accept losing the repository with the pod." }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not (or .Values.gitops.remote .Values.gitops.existingSecret)) }}
{{- fail "replicaCount above 1 needs gitops.remote (or gitops.existingSecret): replicas agree on the remote's main. Set replicaCount=1 for gitops.ephemeral." }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) .Values.gitops.cache.existingClaim }}
{{- fail "gitops.cache.existingClaim holds one clone: use it with replicaCount=1, or leave it empty (an emptyDir per replica)." }}
{{- end }}
{{- end }}
