"""A throw-away user for the benches that need one: registered and signed in through the API."""

from __future__ import annotations

import uuid

import requests

PASSWORD = "quiet harbour lantern 42"  # passes the sign-in rules (12+ characters, not common)


def sign_up(api: str) -> tuple[str, str]:
    """A new user's id and bearer token."""
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    user = requests.post(f"{api}/api/users/register", timeout=30,
                         json={"name": "b", "email": email, "password": PASSWORD}).json()["user_id"]
    token = requests.post(f"{api}/api/users/login", timeout=30,
                          json={"email": email, "password": PASSWORD}).json()["token"]
    return user, token
