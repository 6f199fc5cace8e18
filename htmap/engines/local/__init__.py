"""The embedded default engine: components run as processes on this machine."""
