"""toolkit's built-in plugins, installed as `toolkit_plugins` and found through entry points."""
