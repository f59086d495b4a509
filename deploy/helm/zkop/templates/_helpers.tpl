{{/* Names and labels. */}}

{{- define "zkop.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "zkop.fullname" -}}
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

{{- define "zkop.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object beside the selector labels (name, instance, component). */}}
{{- define "zkop.baseLabels" -}}
helm.sh/chart: {{ include "zkop.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: zkop
{{- end }}

{{- define "zkop.labels" -}}
{{ include "zkop.baseLabels" . }}
app.kubernetes.io/name: {{ include "zkop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "zkop.operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "zkop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "zkop.zookeeper.selectorLabels" -}}
app.kubernetes.io/name: {{ include "zkop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: coordination-zookeeper
{{- end }}

{{- define "zkop.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "zkop.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Cluster-scoped objects are shared by every namespace: their names carry the release's namespace. */}}
{{- define "zkop.clusterScopedName" -}}
{{- printf "%s-%s" .Release.Namespace (include "zkop.fullname" .) }}
{{- end }}

{{- define "zkop.image" -}}
{{- $image := .image }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default .default $image.tag | toString) }}
{{- end }}
{{- end }}

{{/* ZooKeeper: the created ensemble's names, and the connection string the operator uses. */}}

{{- define "zkop.zookeeper.name" -}}
{{- printf "%s-zookeeper" (include "zkop.fullname" .) | trunc 52 | trimSuffix "-" }}
{{- end }}

{{- define "zkop.zookeeper.headless" -}}
{{- printf "%s-headless" (include "zkop.zookeeper.name" .) }}
{{- end }}

{{- define "zkop.zookeeper.client" -}}
{{- printf "%s-client" (include "zkop.zookeeper.name" .) }}
{{- end }}

{{- define "zkop.zookeeper.hosts" -}}
{{- if .Values.zookeeper.create }}
{{- if .Values.zookeeper.hosts }}
{{- fail "zookeeper.hosts names an existing ensemble: set zookeeper.create=false with it (or leave hosts empty to create one)" }}
{{- end }}
{{- printf "%s.%s.svc.%s:2181" (include "zkop.zookeeper.client" .) .Release.Namespace .Values.zookeeper.clusterDomain }}
{{- else }}
{{- required "zookeeper.hosts (host:port,...) is required when zookeeper.create is false" .Values.zookeeper.hosts }}
{{- end }}
{{- end }}

{{/* The static server list of the created ensemble: server.<id>=<member>:2888:3888;2181 ... */}}
{{- define "zkop.zookeeper.servers" -}}
{{- $name := include "zkop.zookeeper.name" . }}
{{- $domain := printf "%s.%s.svc.%s" (include "zkop.zookeeper.headless" .) .Release.Namespace .Values.zookeeper.clusterDomain }}
{{- $servers := list }}
{{- range $i := until (int .Values.zookeeper.replicas) }}
{{- $servers = append $servers (printf "server.%d=%s-%d.%s:2888:3888;2181" (add1 $i) $name $i $domain) }}
{{- end }}
{{- join " " $servers }}
{{- end }}

{{- define "zkop.authSecretName" -}}
{{- default (printf "%s-zookeeper-auth" (include "zkop.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{/*
The operator's RBAC rules: the one place they are written, used by the ClusterRole (all
namespaces) and by the Role (watchNamespace). Only the verbs the operator calls, and why:

- zookeeperclusters, applications, operatorconfigs, zookeeperznodes (zkop.io):
    get     the reconcilers read the object fresh (KubeStore.get), and before each write;
    list    informers start from a list (and relist after 410 Gone or periodically);
    watch   informers watch from the list's resourceVersion;
    update  finalizers are added and removed (modify -> replace), and the term's epoch is
            stamped as the annotation zkop.io/epoch (update, and the first status write of a term).
  Not create or delete: the operator never creates or deletes these objects (users do, with
  zkop or kubectl under their own identity).
- <kind>/status: update   the status subresource (replace_namespaced_custom_object_status).
- events (events.k8s.io): create, list, patch   an Event about an object; the newest one about
  it is looked up (list, field selector) and a repeat bumps its series count (patch).

A platform that runs members and instances as Pods adds its rules here (Pods, PVCs, Services,
PodDisruptionBudgets, Secrets, ConfigMaps), under a condition on the value that turns it on.

With platform: kubernetes (members and instances as Pods):
- pods: get, list, watch, create, delete   members and instances are Pods (read, listed by label,
  watched so a change is seen at once, created, deleted); never updated: a change is a new Pod.
- secrets: get, list, create, update, delete   a cluster's super-user Secret (made once, read; the
  members' file-agent token is added to one made before there was one), an
  Application's registry Secret (updated when its credentials change), a ZookeeperZnode's
  credentials (zkop-znode-<name>), with TLS a cluster's CA (<cluster>-ca, mounted by no Pod) and its
  members' key stores (<cluster>-<id>-tls, listed by label to see when each ends); deleted with
  their owner.
- persistentvolumeclaims: list, create, patch, delete   a member's volume; a removed member's is
  labelled zkop.io/removed (patch) or deleted by the reclaim policy.
- services, poddisruptionbudgets: create, delete; configmaps: create, update, delete   per cluster.
- nodes: get, list   the capacity the cluster offers (the sum of the Nodes' allocatable); Nodes are
  cluster-scoped, so a Role (watchNamespace) cannot grant this and capacity is then unknown.
- pods (metrics.k8s.io): get, list   CPU and memory use of instances when the cluster has a metrics
  API (metrics-server); without it CPU autoscaling says so in a condition.
*/}}
{{- define "zkop.rbac.rules" -}}
- apiGroups: ["zkop.io"]
  resources: ["zookeeperclusters", "applications", "operatorconfigs", "zookeeperznodes"]
  verbs: ["get", "list", "watch", "update"]
- apiGroups: ["zkop.io"]
  resources: ["zookeeperclusters/status", "applications/status", "operatorconfigs/status", "zookeeperznodes/status"]
  verbs: ["update"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "list", "patch"]
{{- if not (has .Values.platform (list "local" "kubernetes")) }}
{{- fail (printf "platform must be local or kubernetes, not %q" .Values.platform) }}
{{- end }}
{{- if eq .Values.platform "kubernetes" }}
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "create", "update", "delete"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["list", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["create", "delete"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["create", "update", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["create", "delete"]
- apiGroups: [""]
  resources: ["nodes"]
  verbs: ["get", "list"]
- apiGroups: ["metrics.k8s.io"]
  resources: ["pods"]
  verbs: ["get", "list"]
{{- end }}
{{- end }}

{{/* The operator's OperatorConfig (zkop operator run --config), from the values. */}}
{{- define "zkop.operatorConfig" -}}
{{- $le := .Values.operatorConfig.leaderElection }}
{{- if and (gt (int .Values.replicaCount) 1) (not $le.leaderElect) }}
{{- fail "operatorConfig.leaderElection.leaderElect must be true with more than one replica (replicaCount)" }}
{{- end }}
apiVersion: zkop.io/v1
kind: OperatorConfig
metadata:
  name: {{ include "zkop.fullname" . }}
spec:
  targetNamespace: {{ .Values.watchNamespace | quote }}
  leaderElection:
    leaderElect: {{ $le.leaderElect }}
    sessionTimeoutSeconds: {{ $le.sessionTimeoutSeconds }}
  replicas: {{ .Values.replicaCount }}
{{- $resources := dict }}
{{- range $part := list "requests" "limits" }}
{{- $given := index ($.Values.resources | default dict) $part | default dict }}
{{- $kept := dict }}
{{- range $key := list "cpu" "memory" }}
{{- with index $given $key }}
{{- $_ := set $kept $key (toString .) }}
{{- end }}
{{- end }}
{{- $_ := set $resources $part $kept }}
{{- end }}
  resources:
    {{- toYaml $resources | nindent 4 }}
{{- end }}

