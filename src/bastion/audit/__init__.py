"""bastion.audit."""
