{{- define "llama-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llama-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "llama-operator.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "llama-operator.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "llama-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llama-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "llama-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "llama-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: llama-operator
{{- end }}

{{- define "llama-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llama-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The watched namespaces (patterns allowed with rbac.clusterWide), one per line; the release's by default. */}}
{{- define "llama-operator.namespaces" -}}
{{- $namespaces := .Values.watch.namespaces | default (list .Release.Namespace) }}
{{- range $namespaces }}
{{ . }}
{{- end }}
{{- end }}

{{/* Whether any watched namespace is a kopf pattern (glob or exclusion) rather than an exact name. */}}
{{- define "llama-operator.hasPatterns" -}}
{{- range .Values.watch.namespaces }}
{{- if regexMatch "[*?\\[!]" . }}true{{ end }}
{{- end }}
{{- end }}

{{/* Whether peering goes through one ClusterKopfPeering: watching all namespaces, or patterns (no KopfPeering
can be made at install time in namespaces a pattern will match, and kopf pauses every replica while any watched
namespace lacks one). */}}
{{- define "llama-operator.clusterPeering" -}}
{{- if and .Values.peering.enabled (or .Values.watch.allNamespaces (include "llama-operator.hasPatterns" .)) }}true{{ end }}
{{- end }}

{{- define "llama-operator.webhookService" -}}
{{- printf "%s-webhook" (include "llama-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llama-operator.webhookSecret" -}}
{{- default (printf "%s-webhook-tls" (include "llama-operator.fullname" .)) .Values.webhook.certificates.secretName }}
{{- end }}

{{- define "llama-operator.webhookConfigName" -}}
{{- default (printf "%s.llamaops.dev" (include "llama-operator.fullname" .)) .Values.webhook.configName }}
{{- end }}

{{/* The operator's image: [registry/]repository, then @digest when set, else :tag (the chart's appVersion by
default). The helm test pod runs the same image. */}}
{{- define "llama-operator.image" -}}
{{- $image := .Values.image }}
{{- $repository := $image.repository }}
{{- with $image.registry }}
{{- $repository = printf "%s/%s" (trimSuffix "/" .) $repository }}
{{- end }}
{{- if $image.digest }}
{{- printf "%s@%s" $repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $repository ($image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{- define "llama-operator.metricsService" -}}
{{- printf "%s-metrics" (include "llama-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llama-operator.webhookCertDir" -}}
/etc/llama-operator/webhook-tls
{{- end }}

{{/* Consistency checks that the schema cannot express. */}}
{{- define "llama-operator.validate" -}}
{{- if and (or .Values.watch.allNamespaces (include "llama-operator.hasPatterns" .)) (not .Values.rbac.clusterWide) .Values.rbac.create }}
{{- fail "watch.allNamespaces and namespace patterns need rbac.clusterWide=true: a Role can only be made in a namespace known at install time" }}
{{- end }}
{{- if and .Values.watch.allNamespaces .Values.watch.namespaces }}
{{- fail "set either watch.allNamespaces or watch.namespaces, not both" }}
{{- end }}
{{- if and (gt (int .Values.replicas) 1) (not .Values.peering.enabled) }}
{{- fail "replicas > 1 needs peering.enabled=true: standalone operators would all reconcile the same objects" }}
{{- end }}
{{- end }}

{{/* `llama-operator run` arguments. tests/integration/test_chart_e2e.py runs the operator with exactly these. */}}
{{- define "llama-operator.args" -}}
- run
{{- if .Values.watch.allNamespaces }}
- --all-namespaces
{{- else }}
{{- range (include "llama-operator.namespaces" . | trim | splitList "\n") }}
- {{ printf "--namespace=%s" . | quote }}
{{- end }}
{{- end }}
- --liveness=http://0.0.0.0:{{ .Values.liveness.port }}/healthz
- --metrics-address=0.0.0.0
- --metrics-port={{ .Values.metrics.port }}
{{- if .Values.peering.enabled }}
- {{ printf "--peering=%s" .Values.peering.name | quote }}
- --peering-lifetime={{ .Values.peering.lifetime }}
{{- if and (include "llama-operator.clusterPeering" .) (not .Values.watch.allNamespaces) }}
- --peering-clusterwide
{{- end }}
{{- end }}
{{- if .Values.webhook.enabled }}
- --webhook=service
- --webhook-address=0.0.0.0
- --webhook-port={{ .Values.webhook.port }}
- --webhook-service={{ .Release.Namespace }}/{{ include "llama-operator.webhookService" . }}
- --webhook-service-port={{ .Values.webhook.service.port }}
- --webhook-config-name={{ include "llama-operator.webhookConfigName" . }}
{{- /* The chart installs the ValidatingWebhookConfiguration (templates/webhook.yaml); the operator sets its
caBundle only and never creates it. */}}
- --webhook-config=patch-ca
{{- if eq .Values.webhook.certificates.mode "cert-manager" }}
- --webhook-cert-dir={{ include "llama-operator.webhookCertDir" . }}
{{- else }}
- --webhook-cert-secret={{ .Release.Namespace }}/{{ include "llama-operator.webhookSecret" . }}
{{- end }}
{{- range $key, $value := .Values.webhook.namespaceLabels }}
- {{ printf "--webhook-namespace-label=%s=%s" $key $value | quote }}
{{- end }}
{{- end }}
{{- range .Values.imageRewrites }}
- {{ printf "--image-rewrite=%s=%s" .from .to | quote }}
{{- end }}
{{- if .Values.verbose }}
- --verbose
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{- /*
Exactly what the operator does (handlers/, webhook/, kopf):
- LlamaDeployments: kopf lists and watches them and patches its annotations; the handlers read one and patch
  status.
- Children, by server-side apply (a patch; the API server also asks for create when the object is new):
  Deployments (also read and watched), Services and PodDisruptionBudgets (watched for deletion), ServiceMonitors.
  A spec that moves between one node and several per replica swaps the workload kind: the Deployment or the
  LeaderWorkerSet of the earlier generation is deleted (handlers.kube.delete_workload).
- Pods of LlamaDeployments: the crash-loop handler keeps them in a kopf index (list and watch).
- Events: kopf and the handlers post them; the crash-loop handler lists a LeaderWorkerSet's RecreateGroup Events.
- Never Secrets: the HF token reaches the pod as an env secretKeyRef, resolved by the kubelet.
- kopf peering objects of the watched namespaces, when peering is on and per namespace.
*/}}
{{- define "llama-operator.namespacedRules" -}}
- apiGroups: [llamaops.dev]
  resources: [llamadeployments]
  verbs: [get, list, watch, patch]
- apiGroups: [llamaops.dev]
  resources: [llamadeployments/status]
  verbs: [patch]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [list, watch, create, patch]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [list, watch, create, patch]
# Multi-node replicas (render/lws.py); delete: a spec that moves between one node and several swaps the kind.
- apiGroups: [leaderworkerset.x-k8s.io]
  resources: [leaderworkersets]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [monitoring.coreos.com]
  resources: [servicemonitors]
  verbs: [create, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
# The last words of a serving container that exited 0 (vLLM 0.32 after its engine died): the kubelet records no
# termination message for an exit 0, so the operator reads the log tail to classify the crash.
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
- apiGroups: [""]
  resources: [events]
  verbs: [create, list]
{{- if and .Values.peering.enabled (not (include "llama-operator.clusterPeering" .)) }}
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}
{{- end }}
