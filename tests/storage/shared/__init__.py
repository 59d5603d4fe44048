"""Tests of bastion.storage.shared."""
