"""What the commands do to a workspace (the layer between ``cli/`` and the core).

Modules: ``statistics`` (covariance statistics kept per layer), ``edit`` (resumable batched
edits), ``conflicts`` (new requests against the committed ones), ``evaluate``, ``export``,
``probe``, ``status``. Each takes a ``Workspace`` and returns a JSON-ready dict; none prints
(progress goes through callbacks).
"""
