"""Tulle on Kubernetes: what the chart, the injector and the init container do.

``capture`` (the iptables rules ``tulle init`` installs in a pod), ``inject`` (the
sidecar and init container added to workloads, by ``tulle inject`` and the control
plane's admission webhook), ``chart`` and ``gotemplate`` (``tulle install``: the Helm
chart in deploy/helm/tulle rendered without helm). Nothing here is imported by the
proxy.
"""
