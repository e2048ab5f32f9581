{{/*
Named templates other charts include to run token-sidecar as a native sidecar.
Every template takes a dict: (dict "top" $ "values" <token-sidecar values>). From a
parent chart that depends on this one: (dict "top" $ "values" (index $.Values "token-sidecar")).
*/}}

{{- define "token-sidecar.name" -}}
{{- printf "%s-token-sidecar" .top.Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "token-sidecar.selectorLabels" -}}
app.kubernetes.io/name: token-sidecar
app.kubernetes.io/instance: {{ .top.Release.Name }}
{{- end -}}

{{- define "token-sidecar.labels" -}}
{{ include "token-sidecar.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .top.Release.Service }}
{{- end -}}

{{- define "token-sidecar.image" -}}
{{- printf "%s:%s" .values.image.repository (default .top.Chart.AppVersion .values.image.tag) -}}
{{- end -}}

{{/* The proxy Service's names, as apps in the cluster may write them in a URL or Host. */}}
{{- define "token-sidecar.serviceNames" -}}
{{- $svc := include "token-sidecar.name" . -}}
{{- $ns := .top.Release.Namespace -}}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .values.clusterDomain) -}}
{{- toJson $names -}}
{{- end -}}

{{/* "true" when admin_listen is a loopback address: then kubelet probes and Prometheus,
which connect to the pod IP, cannot reach it, and the chart renders neither. */}}
{{- define "token-sidecar.adminOnLoopback" -}}
{{- $admin := toString (default "" .values.config.admin_listen) -}}
{{- if or (hasPrefix "127." $admin) (hasPrefix "[::1]:" $admin) (hasPrefix "localhost:" $admin) (eq $admin "") -}}
true
{{- end -}}
{{- end -}}

{{/* proxy.yaml as rendered into the ConfigMap.
Standalone mode (a shared egress proxy) listens on all interfaces and tightens the defaults:
`unmatched: deny` unless config.unmatched says otherwise, and `server_names` listing the
Service's names (plus serverNames and config.server_names).
Sidecar mode keeps `listen` on loopback (the chart refuses anything else).
Both modes: `admin_token_file` from adminToken, `clients` from the clients Secret. */}}
{{- define "token-sidecar.proxyYaml" -}}
{{- $v := .values -}}
{{- $cfg := deepCopy $v.config -}}
{{- $listen := toString (default "" $cfg.listen) -}}
{{- if eq $v.mode "standalone" -}}
{{- if hasPrefix "127.0.0.1:" $listen -}}
{{- $_ := set $cfg "listen" (printf "0.0.0.0:%v" $v.ports.proxy) -}}
{{- end -}}
{{- if not (hasKey $cfg "unmatched") -}}
{{- $_ := set $cfg "unmatched" "deny" -}}
{{- end -}}
{{- $names := concat (include "token-sidecar.serviceNames" . | fromJsonArray) ($v.serverNames | default list) ($cfg.server_names | default list) -}}
{{- $_ := set $cfg "server_names" (uniq $names) -}}
{{- else if eq $v.mode "sidecar" -}}
{{- if not (or (hasPrefix "127." $listen) (hasPrefix "[::1]:" $listen) (hasPrefix "localhost:" $listen)) -}}
{{- fail (printf "sidecar mode: config.listen must be a loopback address (127.0.0.1:%v), not %q: the app reaches the sidecar on loopback, nobody else should" $v.ports.proxy $listen) -}}
{{- end -}}
{{- else -}}
{{- fail (printf "mode must be sidecar or standalone, not %q" $v.mode) -}}
{{- end -}}
{{- if $v.adminToken.enabled -}}
{{- if not $v.adminToken.secretName -}}
{{- fail "adminToken.enabled needs adminToken.secretName (an existing Secret holding the token)" -}}
{{- end -}}
{{- $_ := set $cfg "admin_token_file" (printf "%s/%s" $v.adminToken.mountPath $v.adminToken.key) -}}
{{- end -}}
{{- if $v.clients.secretName -}}
{{- if not $v.clients.names -}}
{{- fail "clients.secretName needs clients.names (the Secret's keys, one per client name)" -}}
{{- end -}}
{{- $clients := deepCopy ($cfg.clients | default dict) -}}
{{- range $v.clients.names -}}
{{- $_ := set $clients . (dict "password" (printf "${file:%s/%s}" $v.clients.mountPath .)) -}}
{{- end -}}
{{- $_ := set $cfg "clients" $clients -}}
{{- end -}}
{{- if and $v.tlsIntercept.enabled (not (hasKey $cfg "tls_intercept")) -}}
{{- $_ := set $cfg "tls_intercept" (dict "ca_cert_file" (printf "%s/ca.crt" $v.tlsIntercept.mountPath) "ca_key_file" (printf "%s/ca.key" $v.tlsIntercept.mountPath)) -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* Pod annotations: Prometheus scraping, and a config checksum when reload is off. */}}
{{- define "token-sidecar.podAnnotations" -}}
{{- if and .values.metrics.podAnnotations (not (include "token-sidecar.adminOnLoopback" .)) }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .values.ports.admin | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- if not .values.reload.enabled }}
checksum/token-sidecar-config: {{ include "token-sidecar.proxyYaml" . | sha256sum }}
{{- end }}
{{- end -}}

{{/* The container. In sidecar mode, put it under initContainers: restartPolicy Always
makes it a native sidecar that starts (and is ready) before the app and stops after it. */}}
{{- define "token-sidecar.container" -}}
- name: token-sidecar
  image: {{ include "token-sidecar.image" . }}
  imagePullPolicy: {{ .values.image.pullPolicy }}
  {{- if eq .values.mode "sidecar" }}
  restartPolicy: Always
  {{- end }}
  args: ["run", "-c", "/etc/token-sidecar/config/proxy.yaml"]
  {{- if and (eq .values.mode "standalone") .values.preStopSleepSeconds }}
  lifecycle:
    preStop:
      sleep: { seconds: {{ .values.preStopSleepSeconds }} }
  {{- end }}
  ports:
    - { name: proxy, containerPort: {{ .values.ports.proxy }}, protocol: TCP }
    - { name: admin, containerPort: {{ .values.ports.admin }}, protocol: TCP }
  {{- /* Kubelet probes connect to the pod IP: none when admin_listen is loopback. */}}
  {{- if not (include "token-sidecar.adminOnLoopback" .) }}
  startupProbe:
    httpGet: { path: /readyz, port: admin }
    periodSeconds: {{ .values.probes.startup.periodSeconds }}
    failureThreshold: {{ .values.probes.startup.failureThreshold }}
  readinessProbe:
    httpGet: { path: /readyz, port: admin }
    periodSeconds: {{ .values.probes.readiness.periodSeconds }}
    failureThreshold: {{ .values.probes.readiness.failureThreshold }}
  livenessProbe:
    httpGet: { path: /healthz, port: admin }
    periodSeconds: {{ .values.probes.liveness.periodSeconds }}
    failureThreshold: {{ .values.probes.liveness.failureThreshold }}
  {{- end }}
  resources:
    {{- toYaml .values.resources | nindent 4 }}
  securityContext:
    {{- toYaml .values.securityContext | nindent 4 }}
  volumeMounts:
    - { name: token-sidecar-config, mountPath: /etc/token-sidecar/config, readOnly: true }
    {{- if .values.secret.name }}
    - { name: token-sidecar-secret, mountPath: {{ .values.secret.mountPath }}, readOnly: true }
    {{- end }}
    {{- if .values.serviceAccountToken.enabled }}
    - { name: token-sidecar-sa-token, mountPath: {{ .values.serviceAccountToken.mountPath }}, readOnly: true }
    {{- end }}
    {{- if .values.tlsIntercept.enabled }}
    - { name: token-sidecar-ca, mountPath: {{ .values.tlsIntercept.mountPath }}, readOnly: true }
    {{- end }}
    {{- if .values.adminToken.enabled }}
    - { name: token-sidecar-admin-token, mountPath: {{ .values.adminToken.mountPath }}, readOnly: true }
    {{- end }}
    {{- if .values.clients.secretName }}
    - { name: token-sidecar-clients, mountPath: {{ .values.clients.mountPath }}, readOnly: true }
    {{- end }}
{{- end -}}

{{/* The pod volumes the container needs. */}}
{{- define "token-sidecar.volumes" -}}
- name: token-sidecar-config
  configMap:
    name: {{ include "token-sidecar.name" . }}
{{- if .values.secret.name }}
- name: token-sidecar-secret
  secret:
    secretName: {{ .values.secret.name }}
{{- end }}
{{- if .values.serviceAccountToken.enabled }}
- name: token-sidecar-sa-token
  projected:
    sources:
      - serviceAccountToken:
          audience: {{ .values.serviceAccountToken.audience }}
          expirationSeconds: {{ .values.serviceAccountToken.expirationSeconds }}
          path: {{ .values.serviceAccountToken.fileName }}
{{- end }}
{{- if .values.tlsIntercept.enabled }}
- name: token-sidecar-ca
  secret:
    secretName: {{ .values.tlsIntercept.secretName }}
{{- end }}
{{- if .values.adminToken.enabled }}
- name: token-sidecar-admin-token
  secret:
    secretName: {{ .values.adminToken.secretName }}
    items: [{ key: {{ .values.adminToken.key }}, path: {{ .values.adminToken.key }} }]
{{- end }}
{{- if .values.clients.secretName }}
- name: token-sidecar-clients
  secret:
    secretName: {{ .values.clients.secretName }}
    # Only the listed keys: a name missing from the Secret stops the pod from starting.
    items:
      {{- range .values.clients.names }}
      - { key: {{ . }}, path: {{ . }} }
      {{- end }}
{{- end }}
{{- end -}}

{{/* Environment for the app container: send traffic through the sidecar and, with
interception, trust its CA (the app mounts the CA with token-sidecar.appVolumeMounts). */}}
{{- define "token-sidecar.appEnv" -}}
- { name: HTTP_PROXY, value: "http://127.0.0.1:{{ .values.ports.proxy }}" }
- { name: http_proxy, value: "http://127.0.0.1:{{ .values.ports.proxy }}" }
- { name: NO_PROXY, value: {{ .values.appEnv.noProxy | quote }} }
- { name: no_proxy, value: {{ .values.appEnv.noProxy | quote }} }
{{- if .values.tlsIntercept.enabled }}
- { name: HTTPS_PROXY, value: "http://127.0.0.1:{{ .values.ports.proxy }}" }
- { name: https_proxy, value: "http://127.0.0.1:{{ .values.ports.proxy }}" }
- { name: NODE_EXTRA_CA_CERTS, value: "{{ .values.tlsIntercept.mountPath }}/ca.crt" }
{{- if .values.appEnv.replaceCaBundle }}
- { name: REQUESTS_CA_BUNDLE, value: "{{ .values.tlsIntercept.mountPath }}/ca.crt" }
- { name: CURL_CA_BUNDLE, value: "{{ .values.tlsIntercept.mountPath }}/ca.crt" }
- { name: SSL_CERT_FILE, value: "{{ .values.tlsIntercept.mountPath }}/ca.crt" }
{{- end }}
{{- end }}
{{- end -}}

{{/* Volume mounts for the app container: the interception CA certificate only. */}}
{{- define "token-sidecar.appVolumeMounts" -}}
{{- if .values.tlsIntercept.enabled }}
- name: token-sidecar-ca-public
  mountPath: {{ .values.tlsIntercept.mountPath }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* Volumes for token-sidecar.appVolumeMounts (ca.crt only, never the key). */}}
{{- define "token-sidecar.appVolumes" -}}
{{- if .values.tlsIntercept.enabled }}
- name: token-sidecar-ca-public
  secret:
    secretName: {{ .values.tlsIntercept.secretName }}
    items: [{ key: ca.crt, path: ca.crt }]
{{- end }}
{{- end -}}
