"""Container tooling: image builds, the compose stack and `sam local` (see containers/*.sh)."""
