"""bastion.observability: what the process tells its operators about itself.

- :mod:`.metrics` — Prometheus metrics (one :class:`~bastion.observability.metrics.Metrics`
  per process, read at scrape time; needs ``prometheus_client``).
- :mod:`.tracing` — optional OpenTelemetry spans of gateway requests (the
  ``bastion[tracing]`` extra).
- :mod:`.logs` — process logging: JSON lines or a console format, to stderr.

Security decisions are not observability: they are the audit log (:mod:`bastion.audit`).
Nothing is re-exported here, so importing the package costs nothing; import the
submodules by name (the runtime imports metrics and tracing only when they are enabled).
"""
