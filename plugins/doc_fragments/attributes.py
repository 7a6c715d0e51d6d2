# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Modules that change the store: full check mode and diff mode.
    DOCUMENTATION = r'''
attributes:
  check_mode:
    support: full
    description: Reads the store and the source, changes nothing, and says what a real run would do.
  diff_mode:
    support: full
    description: Shows what the destination holds before and after.
'''

    # Modules that only read.
    INFO = r'''
attributes:
  check_mode:
    support: full
    description: Changes nothing in any mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show.
'''
