{{/* Names, labels and the image reference. */}}

{{- define "userservice-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "userservice-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "userservice-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "userservice-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "userservice-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "userservice-operator.labels" -}}
helm.sh/chart: {{ include "userservice-operator.chart" . }}
{{ include "userservice-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: userservice
{{- end -}}

{{- define "userservice-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "userservice-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "userservice-operator.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* A text of a generated file with its <<placeholders>> filled: (list TEXT (dict PLACEHOLDER VALUE ...)). */}}
{{- define "userservice-operator.fill" -}}
{{- $text := index . 0 -}}
{{- range $placeholder, $value := index . 1 -}}
{{- $text = replace $placeholder $value $text -}}
{{- end -}}
{{- $text -}}
{{- end -}}

{{/* The job label Prometheus gives the operator's metrics (the metrics Service's name, via ServiceMonitor). */}}
{{- define "userservice-operator.metricsService" -}}
{{- printf "%s-metrics" (include "userservice-operator.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The rules of one object of files/rbac.yaml (a copy of operator/userservice_operator/rbac.yaml, the single
source of the operator's permissions), by metadata.name.
*/}}
{{- define "userservice-operator.rbacRules" -}}
{{- $want := .name -}}
{{- $found := false -}}
{{- range $doc := regexSplit "(?m)^---[ \t]*$" (.root.Files.Get "files/rbac.yaml") -1 -}}
{{- $obj := fromYaml $doc -}}
{{- if and $obj.metadata (eq $obj.metadata.name $want) -}}
{{- $found = true -}}
{{- toYaml $obj.rules -}}
{{- end -}}
{{- end -}}
{{- if not $found -}}
{{- fail (printf "files/rbac.yaml has no object named %s" $want) -}}
{{- end -}}
{{- end -}}
