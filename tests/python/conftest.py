"""Points LocalStack's unmodified Python SDK at the cryopod emulator under test.

The SDK's clients default to http://localhost.localstack.cloud:4566, and its `@cloudpods`
decorator builds its clients without arguments, so that default is what a test reaches.
The emulator under test listens on a free loopback port (`CRYOPOD_ENDPOINT`), and the name
`localhost.localstack.cloud` needs public DNS, so the default host is set to the emulator:
the SDK's code runs unchanged, only its configuration is this one.
"""

import os

import pytest

from localstack.sdk import clients


ENDPOINT = os.environ.get("CRYOPOD_ENDPOINT", "http://127.0.0.1:4566")


_original_init = clients.BaseClient.__init__


def _init_with_emulator_host(self, host=None, auth_token=None, **kwargs):
    _original_init(self, host=host or ENDPOINT, auth_token=auth_token, **kwargs)


clients.BaseClient.__init__ = _init_with_emulator_host


@pytest.fixture
def endpoint():
    return ENDPOINT
