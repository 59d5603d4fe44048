"""bastion.credentials: the shape OAuth clients, API keys and signing keys share.

- :mod:`~bastion.credentials.validation` — the checks of names, string lists,
  scopes, JSON metadata and grace periods, each credential raising its own error;
- :mod:`~bastion.credentials.cache` — the cached lookup that every change drops,
  here at once and on every other node through the change feed's channel;
- :mod:`~bastion.credentials.lifecycle` — who changed a credential, recorded
  as one audit event whichever door (CLI, admin API) the change came through.

Each credential has the same parts beside its service: the checks of its
metadata (``apikeys/spec.py``, ``oauth/client_spec.py``), its JSON view
(``apikeys/views.py``, ``oauth/views.py``) and the operations an operator runs
on it (``apikeys/operations.py``, ``oauth/operations.py``) — the one service
layer the ``bastion keys|clients|signing-keys`` commands and the admin API's
endpoints adapt: parse, call the operation, render its document.
"""
