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

{{/* proxy.yaml as rendered into the ConfigMap. Standalone mode listens on all interfaces. */}}
{{- define "token-sidecar.proxyYaml" -}}
{{- $cfg := deepCopy .values.config -}}
{{- if and (eq .values.mode "standalone") (hasPrefix "127.0.0.1:" (toString $cfg.listen)) -}}
{{- $_ := set $cfg "listen" (printf "0.0.0.0:%v" .values.ports.proxy) -}}
{{- end -}}
{{- if and .values.tlsIntercept.enabled (not (hasKey $cfg "tls_intercept")) -}}
{{- $_ := set $cfg "tls_intercept" (dict "ca_cert_file" (printf "%s/ca.crt" .values.tlsIntercept.mountPath) "ca_key_file" (printf "%s/ca.key" .values.tlsIntercept.mountPath)) -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* Pod annotations: Prometheus scraping, and a config checksum when reload is off. */}}
{{- define "token-sidecar.podAnnotations" -}}
{{- if .values.metrics.podAnnotations }}
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
