"""Orchestration: runs that span hosts or tools (mesh, lab run, one-shot probe, fleet preflight)."""
