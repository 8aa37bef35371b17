{{/* The chart's name, shortened to what a label allows. */}}
{{- define "runctl.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: the release name alone when it already names the chart. */}}
{{- define "runctl.fullname" -}}
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

{{- define "runctl.selectorLabels" -}}
app.kubernetes.io/name: {{ include "runctl.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "runctl.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 }}
{{ include "runctl.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: runctl
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "runctl.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "runctl.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "runctl.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "runctl.webhookHost" -}}
{{- printf "%s-webhook.%s.svc" (include "runctl.fullname" .) .Release.Namespace }}
{{- end }}

{{/*
What the operator does in a namespace it watches, verb by verb (and nothing else):
- reads StoryRuns, Stories, StepRuns, Deployments and Pods (kopf watches; one list each at
  start-up);
- writes StoryRun status only (never the spec, never deletes a StoryRun);
- creates, patches (finalizers) and deletes StepRuns, and writes their status;
- creates and deletes a batch attempt's pod or a realtime step's Deployment, creates its Service
  (the StepRun owns each, so the garbage collector deletes them); a realtime stop also deletes
  the Deployment's ReplicaSets and pods at once, so no replacement pod starts after it; a stop
  of a fan-out deletes its items' live pods in one request (`deletecollection`, by label);
- creates Events (kopf's own event posting is off);
- `update` on the `finalizers` subresources only lets it set blockOwnerDeletion on the owner
  references of what it creates (enforced where OwnerReferencesPermissionEnforcement is on).
*/}}
{{- define "runctl.operatorRules" -}}
- apiGroups: [runctl.dev]
  resources: [storyruns, stories]
  verbs: [get, list, watch]
- apiGroups: [runctl.dev]
  resources: [storyruns]
  verbs: [patch]
- apiGroups: [runctl.dev]
  resources: [storyruns/status]
  verbs: [patch]
- apiGroups: [runctl.dev]
  resources: [stepruns]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [runctl.dev]
  resources: [stepruns/status]
  verbs: [patch]
- apiGroups: [runctl.dev]
  resources: [storyruns/finalizers, stepruns/finalizers]
  verbs: [update]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [apps]
  resources: [replicasets]
  verbs: [delete]
- apiGroups: [""]
  resources: [services]
  verbs: [create]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, create, delete, deletecollection]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}

{{/* Cluster-scoped reads kopf needs to discover resources (and, for a list, namespaces). */}}
{{- define "runctl.clusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- if .Values.watchNamespaces }}
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}
{{- if .Values.webhook.enabled }}
- apiGroups: [admissionregistration.k8s.io]
  resources: [validatingwebhookconfigurations]
  verbs: [create]
- apiGroups: [admissionregistration.k8s.io]
  resources: [validatingwebhookconfigurations]
  resourceNames: [runctl.dev]
  verbs: [get, patch]
{{- end }}
{{- end }}
