"""bastion.settings."""
