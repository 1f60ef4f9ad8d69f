"""The AWS environment of the tests: fake credentials for the local S3 server, and nothing
from this machine's AWS config or an instance's metadata service."""

from __future__ import annotations

import os

import pytest

REGION = "us-east-1"
FAKE_KEY, FAKE_SECRET = "testing-key", "testing-secret"
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": FAKE_KEY,
    "AWS_SECRET_ACCESS_KEY": FAKE_SECRET,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
UNSET_AWS_ENV = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL")


def use_fake_aws(env: pytest.MonkeyPatch) -> None:
    """Put the fake credentials in `env` and take out what would point boto elsewhere."""
    for name, value in FAKE_AWS_ENV.items():
        env.setenv(name, value)
    for name in UNSET_AWS_ENV:
        env.delenv(name, raising=False)
