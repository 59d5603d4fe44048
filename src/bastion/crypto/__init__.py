"""bastion.crypto."""
