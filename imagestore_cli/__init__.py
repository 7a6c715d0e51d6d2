# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
"""imagestore-upload: the command line of the collection imagestore.upload, on the same upload engine.

It imports the collection's module_utils (GPL-3.0-or-later), so it is GPL-3.0-or-later too. See docs/progress.md.
"""
