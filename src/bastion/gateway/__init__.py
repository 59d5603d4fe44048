"""bastion.gateway."""
