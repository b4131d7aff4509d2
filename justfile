# Common tasks; `just --list` shows them.

# Install into .venv with the dev extra.
install:
    python3 -m venv .venv
    .venv/bin/pip install -e '.[dev]'

# Start the API with an in-process worker on the embedded defaults.
serve *ARGS:
    .venv/bin/pixelflow serve {{ARGS}}

# Lint, type-check and run the whole suite (needs PostgreSQL and Redis).
test *ARGS:
    ./scripts/test {{ARGS}}

# Lint and type-check only.
lint:
    .venv/bin/ruff check pixelflow tests bench
    .venv/bin/ruff format --check pixelflow tests bench
    .venv/bin/mypy pixelflow tests

# Benchmarks (not pass/fail tests; docs/benchmarks.md): worker, renditions, api, quality.
bench NAME *ARGS:
    .venv/bin/python bench/{{NAME}}.py {{ARGS}}

# Every benchmark at smoke size, as CI runs them.
bench-smoke:
    ./bench/smoke
