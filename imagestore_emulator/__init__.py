"""A local, faithful emulator of three image-store upload APIs on one port.

Service Fabric Image Store (``/ImageStore/...``), vSphere Content Library (``/rest/...`` and
``/api/...``) and ZStack (``/zstack/v1/...``), with state on disk and a control API under
``/_emulator/``. Start it with ``python -m imagestore_emulator`` or ``imagestore-emulator``.
"""

__version__ = "0.1.0"
