"""The gateway's authentication methods: what the native core's lookups ask the control plane."""

from bastion.gateway.authn.identity import ANONYMOUS, Identity

__all__ = ["ANONYMOUS", "Identity"]
