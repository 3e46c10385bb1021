"""openhoof-router: a tiny local model that picks the tools for each agent turn."""
