"""Test doubles for the outside world only (Alpha Vantage), speaking its real wire format."""
