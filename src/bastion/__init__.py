"""bastion — a self-hosted API security gateway and OAuth 2.0 / OpenID Connect provider."""

__version__ = "0.1.0"

__all__ = ["__version__"]
