"""The web console: server-rendered pages (Starlette + Jinja2) over the same services as the
API, with the same tenancy. Its templates and static assets ship in this package, so it works
offline: every page's Content-Security-Policy allows its own origin only."""
