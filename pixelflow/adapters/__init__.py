"""Infrastructure adapters. Each folder holds one Protocol (``protocol.py``) and its twins:
the production implementation and the embedded one."""
