# -*- coding: utf-8 -*-
# Copyright: imagestore.upload contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
options:
  provider:
    description:
      - Which image store to talk to.
      - If not set, the value of the E(IMAGESTORE_PROVIDER) environment variable is used.
    type: str
    required: true
    choices: [servicefabric, vsphere, zstack]
  endpoint:
    description:
      - Base URL of the store's API, with its scheme and port, for example V(https://cluster.example.com:19080)
        (Service Fabric), V(https://vcenter.example.com) (vSphere) or V(http://zstack.example.com:8080) (ZStack).
      - If not set, the value of the E(IMAGESTORE_ENDPOINT) environment variable is used.
    type: str
    required: true
  username:
    description:
      - User to log in as (vSphere and ZStack). Service Fabric clusters authenticate with O(client_cert) instead.
      - If not set, the value of the E(IMAGESTORE_USERNAME) environment variable is used.
    type: str
  password:
    description:
      - Password of O(username). Never logged or returned.
      - If not set, the value of the E(IMAGESTORE_PASSWORD) environment variable is used.
    type: str
  client_cert:
    description:
      - PEM file with the client certificate (and its key, unless O(client_key) is given) for TLS client
        authentication, as Service Fabric clusters require.
      - If not set, the value of the E(IMAGESTORE_CLIENT_CERT) environment variable is used.
    type: path
  client_key:
    description:
      - PEM file with the private key of O(client_cert).
      - If not set, the value of the E(IMAGESTORE_CLIENT_KEY) environment variable is used.
    type: path
  validate_certs:
    description:
      - Verify the server's TLS certificate. Set to V(false) only for test systems with self-signed certificates.
      - If not set, the value of the E(IMAGESTORE_VALIDATE_CERTS) environment variable is used.
    type: bool
    default: true
  ca_path:
    description:
      - PEM bundle of the certificate authorities that sign the server's certificate.
      - If not set, the value of the E(IMAGESTORE_CA_PATH) environment variable is used.
    type: path
  request_timeout:
    description:
      - Seconds to wait for the answer to one HTTP request (connecting takes at most 15 of them).
    type: float
    default: 60
  retries:
    description:
      - How many times a failed request is tried again (connection errors, timeouts, HTTP 429 and 5xx),
        with exponential backoff and jitter; C(Retry-After) of a 429 or 503 answer is honoured.
      - Requests that may have changed something on the server are only repeated where that is safe.
    type: int
    default: 5
notes:
  - All modules of this collection belong to the action group C(imagestore.upload.upload), so
    C(module_defaults) can set the connection options once for a whole play.
requirements:
  - requests >= 2.25 (on the host that runs the module)
'''
