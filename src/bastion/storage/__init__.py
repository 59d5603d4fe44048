"""bastion.storage."""
