"""bastion.ui."""
