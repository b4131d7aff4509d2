"""Pure domain: models, validation, pipeline planning, job state machine. No I/O here."""
