"""Patterns every batch backend checks values against before they reach a job request."""

import re

ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # an environment variable's name
TAG_KEY = re.compile(r"^[a-z][a-z0-9_]{0,30}$")  # the key of a job tag (portal, user, ...)
