"""pytest plugin of imagestore.upload (entry point ``pytest11: imagestore``); see ``plugin.py``."""
