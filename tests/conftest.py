"""Fixtures load as plugins from tests/support; helpers shared by tests live there too."""

pytest_plugins = ["tests.support.fixtures", "tests.support.discord", "tests.support.slack"]
