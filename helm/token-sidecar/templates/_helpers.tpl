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

{{/* The recommended labels (selector labels plus chart, version and manager). The
version is the image tag that runs, made a valid label value. */}}
{{- define "token-sidecar.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .top.Chart.Name .top.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "token-sidecar.selectorLabels" . }}
app.kubernetes.io/version: {{ regexReplaceAll "[^A-Za-z0-9._-]" (toString (default .top.Chart.AppVersion .values.image.tag)) "_" | trunc 63 | trimAll "-_." | quote }}
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

{{/* Ports: `ports.proxy` and `ports.admin` are the only place a port is set. From them
(and `listenAddress`) the chart renders config.listen and config.admin_listen, the
containerPorts, the probes (by port name), the Services, the scrape annotation and the
app's http_proxy, so none of these can disagree. */}}

{{/* "host:port" from (list host port), an IPv6 host in brackets. */}}
{{- define "token-sidecar.hostPort" -}}
{{- $host := toString (index . 0) -}}
{{- if contains ":" $host -}}
[{{ $host }}]:{{ index . 1 }}
{{- else -}}
{{ $host }}:{{ index . 1 }}
{{- end -}}
{{- end -}}

{{/* "true" for a loopback IP (the argument is a string). */}}
{{- define "token-sidecar.isLoopback" -}}
{{- if or (hasPrefix "127." .) (eq . "::1") -}}
true
{{- end -}}
{{- end -}}

{{/* The proxy listener's IP: listenAddress.proxy, else 0.0.0.0 in standalone mode (a
shared egress proxy, reached through its Service) and 127.0.0.1 in sidecar mode (only
the app's own pod may use it). */}}
{{- define "token-sidecar.proxyAddress" -}}
{{- $a := toString (default "" .values.listenAddress.proxy) -}}
{{- if $a -}}
{{ $a }}
{{- else if eq .values.mode "sidecar" -}}
127.0.0.1
{{- else -}}
0.0.0.0
{{- end -}}
{{- end -}}

{{- define "token-sidecar.listen" -}}
{{- include "token-sidecar.hostPort" (list (include "token-sidecar.proxyAddress" .) .values.ports.proxy) -}}
{{- end -}}

{{- define "token-sidecar.adminListen" -}}
{{- include "token-sidecar.hostPort" (list .values.listenAddress.admin .values.ports.admin) -}}
{{- end -}}

{{/* "true" when admin listens on loopback: then kubelet probes and Prometheus, which
connect to the pod IP, cannot reach it, and the chart renders neither. */}}
{{- define "token-sidecar.adminOnLoopback" -}}
{{- include "token-sidecar.isLoopback" (toString .values.listenAddress.admin) -}}
{{- end -}}

{{/* The refresh-token stores (config.providers.*.refresh_token_store). The root
filesystem is read-only, so each must lie under refreshTokenStore.mountPath (where the
chart mounts an emptyDir) or under a writable extraVolumeMounts path; anything else
fails the render. Returns "true" when the emptyDir is needed. A path built from ${...}
cannot be checked here and gets the emptyDir. */}}
{{- define "token-sidecar.refreshTokenStoreDir" -}}
{{- $v := .values -}}
{{- $dir := trimSuffix "/" $v.refreshTokenStore.mountPath -}}
{{- $need := false -}}
{{- range $name, $p := ($v.config.providers | default dict) -}}
{{- $store := toString (default "" (and (kindIs "map" $p) (get $p "refresh_token_store"))) -}}
{{- if $store -}}
{{- $ok := false -}}
{{- if or (hasPrefix (printf "%s/" $dir) $store) (contains "$" $store) -}}
{{- $ok = true -}}
{{- $need = true -}}
{{- end -}}
{{- range ($v.extraVolumeMounts | default list) -}}
{{- if and (hasPrefix (printf "%s/" (trimSuffix "/" .mountPath)) $store) (not .readOnly) -}}
{{- $ok = true -}}
{{- end -}}
{{- end -}}
{{- if not $ok -}}
{{- fail (printf "config.providers.%s.refresh_token_store %q is not under refreshTokenStore.mountPath (%s) or a writable extraVolumeMounts path: the root filesystem is read-only, so the rotated refresh token could not be written" $name $store $dir) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $need -}}
true
{{- end -}}
{{- end -}}

{{/* proxy.yaml as rendered into the ConfigMap.
Both modes: `listen` and `admin_listen` from ports and listenAddress (a different value in
config fails the render), `admin_token_file` from adminToken, `clients` from the clients
Secret.
Standalone mode (a shared egress proxy) listens on all interfaces and tightens the defaults:
`unmatched: deny` unless config.unmatched says otherwise, and `server_names` listing the
Service's names (plus serverNames and config.server_names).
Sidecar mode keeps `listen` on loopback (the chart refuses anything else). */}}
{{- define "token-sidecar.proxyYaml" -}}
{{- $v := .values -}}
{{- $cfg := deepCopy $v.config -}}
{{- if eq (toString $v.ports.proxy) (toString $v.ports.admin) -}}
{{- fail (printf "ports.proxy and ports.admin are both %v: the proxy and admin listeners need a port each" $v.ports.proxy) -}}
{{- end -}}
{{- $listen := include "token-sidecar.listen" . -}}
{{- $adminListen := include "token-sidecar.adminListen" . -}}
{{- if and (hasKey $cfg "listen") (ne (toString $cfg.listen) $listen) -}}
{{- fail (printf "config.listen %q: leave it out and set ports.proxy (and listenAddress.proxy): the chart renders listen (here %s) from them, so the containerPort, the Service and the app's http_proxy agree with it" (toString $cfg.listen) $listen) -}}
{{- end -}}
{{- if and (hasKey $cfg "admin_listen") (ne (toString $cfg.admin_listen) $adminListen) -}}
{{- fail (printf "config.admin_listen %q: leave it out and set ports.admin (and listenAddress.admin): the chart renders admin_listen (here %s) from them, so the containerPort, the probes and the metrics Service agree with it" (toString $cfg.admin_listen) $adminListen) -}}
{{- end -}}
{{- $_ := set $cfg "listen" $listen -}}
{{- $_ := set $cfg "admin_listen" $adminListen -}}
{{- if eq $v.mode "standalone" -}}
{{- if not (hasKey $cfg "unmatched") -}}
{{- $_ := set $cfg "unmatched" "deny" -}}
{{- end -}}
{{- $names := concat (include "token-sidecar.serviceNames" . | fromJsonArray) ($v.serverNames | default list) ($cfg.server_names | default list) -}}
{{- $_ := set $cfg "server_names" (uniq $names) -}}
{{- else if eq $v.mode "sidecar" -}}
{{- if not (include "token-sidecar.isLoopback" (include "token-sidecar.proxyAddress" .)) -}}
{{- fail (printf "sidecar mode: listenAddress.proxy must be a loopback address (127.0.0.1 or ::1), not %q: the app reaches the sidecar on loopback, nobody else should" (include "token-sidecar.proxyAddress" .)) -}}
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
{{- with (include "token-sidecar.tokenStore" . | fromYaml) -}}
{{- if hasKey $cfg "token_store" -}}
{{- fail "config.token_store and tokenStore.enabled: set the store in tokenStore only (the chart mounts its Secrets and renders token_store from it)" -}}
{{- end -}}
{{- $_ := set $cfg "token_store" . -}}
{{- end -}}
{{- if and $v.tlsIntercept.enabled (not (hasKey $cfg "tls_intercept")) -}}
{{- $_ := set $cfg "tls_intercept" (dict "ca_cert_file" (printf "%s/ca.crt" $v.tlsIntercept.mountPath) "ca_key_file" (printf "%s/ca.key" $v.tlsIntercept.mountPath)) -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* token_store as rendered from tokenStore (empty when disabled): the Redis settings,
and the Secrets' files (password, encryption key, CA) as ${file:...}. */}}
{{- define "token-sidecar.tokenStore" -}}
{{- $t := .values.tokenStore -}}
{{- if $t.enabled -}}
{{- if not $t.encryptionKey.secretName -}}
{{- fail "tokenStore.enabled needs tokenStore.encryptionKey.secretName (an existing Secret holding at least 32 bytes of random key)" -}}
{{- end -}}
{{- $redis := dict "key_prefix" $t.redis.keyPrefix "timeout" $t.redis.timeout -}}
{{- if $t.redis.cluster -}}
{{- if not $t.redis.urls -}}
{{- fail "tokenStore.redis.cluster needs tokenStore.redis.urls (seed nodes of the Redis Cluster)" -}}
{{- end -}}
{{- $_ := set $redis "cluster" true -}}
{{- $_ := set $redis "urls" $t.redis.urls -}}
{{- else -}}
{{- if not $t.redis.url -}}
{{- fail "tokenStore.enabled needs tokenStore.redis.url (redis:// or rediss://), or cluster: true with urls" -}}
{{- end -}}
{{- $_ := set $redis "url" $t.redis.url -}}
{{- end -}}
{{- if $t.redis.username -}}
{{- $_ := set $redis "username" $t.redis.username -}}
{{- end -}}
{{- if $t.password.secretName -}}
{{- $_ := set $redis "password" (printf "${file:%s/%s}" $t.mountPath $t.password.key) -}}
{{- end -}}
{{- if $t.caCert.secretName -}}
{{- $_ := set $redis "ca_file" (printf "%s/%s" $t.mountPath $t.caCert.key) -}}
{{- end -}}
{{- toYaml (dict "redis" $redis "encryption_key" (printf "${file:%s/%s}" $t.mountPath $t.encryptionKey.key) "lease" $t.lease) -}}
{{- end -}}
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
  # The image's CMD, written out (a test checks they agree): the ConfigMap is mounted as a
  # directory, so a changed ConfigMap reaches the file and hot reload sees it.
  args: ["run", "-c", "/etc/token-sidecar/config/proxy.yaml"]
  {{- with .values.extraEnv }}
  env:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .values.extraEnvFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
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
    {{- if include "token-sidecar.refreshTokenStoreDir" . }}
    - { name: token-sidecar-refresh-tokens, mountPath: {{ .values.refreshTokenStore.mountPath }} }
    {{- end }}
    {{- if .values.tokenStore.enabled }}
    - { name: token-sidecar-store, mountPath: {{ .values.tokenStore.mountPath }}, readOnly: true }
    {{- end }}
    {{- with .values.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
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
{{- if include "token-sidecar.refreshTokenStoreDir" . }}
- name: token-sidecar-refresh-tokens
  emptyDir:
    sizeLimit: {{ .values.refreshTokenStore.sizeLimit }}
{{- end }}
{{- with .values.tokenStore }}
{{- if .enabled }}
- name: token-sidecar-store
  projected:
    sources:
      - secret:
          name: {{ .encryptionKey.secretName }}
          items: [{ key: {{ .encryptionKey.key }}, path: {{ .encryptionKey.key }} }]
      {{- if .password.secretName }}
      - secret:
          name: {{ .password.secretName }}
          items: [{ key: {{ .password.key }}, path: {{ .password.key }} }]
      {{- end }}
      {{- if .caCert.secretName }}
      - secret:
          name: {{ .caCert.secretName }}
          items: [{ key: {{ .caCert.key }}, path: {{ .caCert.key }} }]
      {{- end }}
{{- end }}
{{- end }}
{{- with .values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Environment for the app container: send traffic through the sidecar and, with
interception, trust its CA (the app mounts the CA with token-sidecar.appVolumeMounts).
Both spellings: curl reads only the lowercase http_proxy, other clients the uppercase. */}}
{{- define "token-sidecar.appEnv" -}}
{{- $host := include "token-sidecar.proxyAddress" . -}}
{{- if not (include "token-sidecar.isLoopback" $host) -}}
{{- $host = "127.0.0.1" -}}
{{- end -}}
{{- $url := printf "http://%s" (include "token-sidecar.hostPort" (list $host .values.ports.proxy)) }}
- { name: HTTP_PROXY, value: {{ $url | quote }} }
- { name: http_proxy, value: {{ $url | quote }} }
- { name: NO_PROXY, value: {{ .values.appEnv.noProxy | quote }} }
- { name: no_proxy, value: {{ .values.appEnv.noProxy | quote }} }
{{- if .values.tlsIntercept.enabled }}
- { name: HTTPS_PROXY, value: {{ $url | quote }} }
- { name: https_proxy, value: {{ $url | quote }} }
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
