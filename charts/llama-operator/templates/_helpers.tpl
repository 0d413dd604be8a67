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

{{/* The `helm test` pod's name label: not the operator's, so no Service, PodMonitor or PDB of it picks the pod. */}}
{{- define "llama-operator.testName" -}}
{{- printf "%s-test" (include "llama-operator.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llama-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "llama-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: llama-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The release's own ServiceAccount, or the named existing one: never the namespace's `default` (see validate). */}}
{{- define "llama-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llama-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- .Values.serviceAccount.name }}
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

{{/* The webhook's namespaceSelector, as YAML; empty for every namespace. An explicit webhook.namespaceSelector or
webhook.namespaceLabels wins; otherwise the namespaces the operator watches: exact names by the label the API server
puts on every namespace, "!name" exclusions as NotIn. A glob (team-*) has no label selector, so with one every
namespace not excluded is sent (NOTES.txt says so). */}}
{{- define "llama-operator.webhookNamespaceSelector" -}}
{{- $webhook := .Values.webhook }}
{{- if $webhook.namespaceSelector }}
{{- toYaml $webhook.namespaceSelector }}
{{- else if $webhook.namespaceLabels }}
matchLabels:
  {{- toYaml $webhook.namespaceLabels | nindent 2 }}
{{- else if not .Values.watch.allNamespaces }}
{{- $names := list }}
{{- $excluded := list }}
{{- $globs := false }}
{{- range (include "llama-operator.namespaces" . | trim | splitList "\n") }}
{{- if hasPrefix "!" . }}
{{- if regexMatch "[*?\\[]" . }}{{ else }}{{ $excluded = append $excluded (trimPrefix "!" .) }}{{ end }}
{{- else if regexMatch "[*?\\[]" . }}
{{- $globs = true }}
{{- else }}
{{- $names = append $names . }}
{{- end }}
{{- end }}
{{- if or (and $names (not $globs)) $excluded }}
matchExpressions:
  {{- if and $names (not $globs) }}
  - key: kubernetes.io/metadata.name
    operator: In
    values: {{ toJson $names }}
  {{- end }}
  {{- if $excluded }}
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values: {{ toJson $excluded }}
  {{- end }}
{{- end }}
{{- end }}
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
{{- if and (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) }}
{{- fail "serviceAccount.create=false needs serviceAccount.name: the operator's rights would otherwise go to the namespace's default ServiceAccount, which every pod there runs as" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled .Values.metrics.podMonitor.enabled }}
{{- fail "metrics.serviceMonitor.enabled and metrics.podMonitor.enabled both scrape the operator (every series twice): enable one" }}
{{- end }}
{{- range $key, $_ := .Values.commonLabels }}
{{- if or (hasPrefix "app.kubernetes.io/" $key) (eq $key "helm.sh/chart") }}
{{- fail (printf "commonLabels.%s: the chart sets its own app.kubernetes.io/* and helm.sh/chart labels (selectors depend on them)" $key) }}
{{- end }}
{{- end }}
{{- if and .Values.webhook.namespaceSelector .Values.webhook.namespaceLabels }}
{{- fail "set either webhook.namespaceSelector or webhook.namespaceLabels (its matchLabels shorthand), not both" }}
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
  Deployments (also read and watched), Services and PodDisruptionBudgets (watched for deletion), ServiceMonitors,
  KEDA ScaledObjects (watched for deletion; deleted when spec.autoscaling is removed).
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
# spec.autoscaling (render/autoscaling.py): KEDA's ScaledObject, watched for deletion and deleted when autoscaling
# is turned off. KEDA's own HPA scales the LlamaDeployment through llamadeployments/scale (KEDA's chart grants it).
- apiGroups: [keda.sh]
  resources: [scaledobjects]
  verbs: [get, list, watch, create, patch, delete]
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
