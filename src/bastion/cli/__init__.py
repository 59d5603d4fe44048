"""bastion.cli."""
