"""The daemon's HTTP side: Linq webhooks, health, readiness and metrics."""
