"""bastion.ratelimit."""
