"""bastion.interaction."""
