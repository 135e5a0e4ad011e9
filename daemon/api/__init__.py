"""The control API: JSON under ``/api/v1``, described by the OpenAPI document at
``/api/v1/openapi.json``, on the control role's port. Handlers call the store's
operations, the same ones the CLI calls."""
