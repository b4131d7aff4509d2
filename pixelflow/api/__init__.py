"""The control plane: a Starlette app that validates, stores and enqueues (never decodes)."""
