"""Shared pytest setup. Fixture modules live in tests/support/ and are loaded as plugins."""

import importlib.util

# Each area's reusable fixtures (real worker processes, fake v1 servers, the control plane)
# live in tests/support/<name>.py; a plugin is loaded only once its module exists.
_PLUGINS = ["tests.support.fake_server", "tests.support.worker_proc", "tests.support.stack"]
pytest_plugins = [p for p in _PLUGINS if importlib.util.find_spec(p) is not None]
