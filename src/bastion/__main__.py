"""``python -m bastion`` runs the ``bastion`` command."""

from bastion.cli import main

if __name__ == "__main__":
    main()
