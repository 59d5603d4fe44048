"""bastion.http."""
