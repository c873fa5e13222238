"""Small Tether apps used by the CLI and multi-process tests (`apps.<name>:app`)."""
