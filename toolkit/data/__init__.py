"""Data: image decoding (`images`), the letterbox (`letterbox`), the sample pipeline (`pipeline`),
loaders (`loader`), writers, statistics and previews; dataset plugins live in toolkit_plugins."""
