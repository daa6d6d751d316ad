"""Data: image decoding (`images`), dataset writers (`writers`); dataset plugins live in toolkit_plugins."""
