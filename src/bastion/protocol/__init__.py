"""bastion.protocol."""
