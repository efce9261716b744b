"""Provisioning of the emulated AWS side (moto server, or LocalStack where one answers)."""
