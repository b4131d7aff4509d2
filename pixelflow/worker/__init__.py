"""The data plane: the in-process runner of ``serve`` and the arq worker of ``worker``."""
