"""Start the emulator, run examples/demo.yml against it, stop the emulator.

Usage: python examples/run_demo.py [extra ansible-playbook arguments]
"""

import os
import subprocess
import sys
import tempfile

from imagestore_emulator.process import EmulatorProcess

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv):
    with tempfile.TemporaryDirectory(prefix="imagestore-demo-") as tmp:
        data_dir = os.path.join(tmp, "emulator")
        os.makedirs(data_dir)
        emulator = EmulatorProcess(data_dir).start()
        print("emulator listening on %s (data in %s)" % (emulator.url, data_dir), flush=True)
        env = dict(os.environ, IMAGESTORE_PROVIDER="servicefabric", IMAGESTORE_ENDPOINT=emulator.url,
                   DEMO_WORKDIR=os.path.join(tmp, "work"), ANSIBLE_NOCOLOR=os.environ.get("ANSIBLE_NOCOLOR", "1"),
                   ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
        playbook = os.path.join(HERE, "demo.yml")
        ansible_playbook = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
        try:
            return subprocess.call([ansible_playbook, "-i", "localhost,", playbook] + argv, env=env)
        finally:
            emulator.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
