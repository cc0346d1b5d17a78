{{/* Names and labels shared by every object. */}}
{{- define "tulle.labels" -}}
app.kubernetes.io/name: tulle
app.kubernetes.io/part-of: tulle
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{- define "tulle.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
