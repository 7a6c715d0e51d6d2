#!/usr/bin/env bash
# ansible-test sanity and units on the collection exactly as it ships: build the Galaxy tarball,
# install it into a fresh collections path, and test that copy.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

ansible-galaxy collection build --output-path "$work" "$root" >/dev/null
ansible-galaxy collection install --offline -p "$work/install" "$work"/imagestore-upload-*.tar.gz >/dev/null
cd "$work/install/ansible_collections/imagestore/upload"
git init -q && git add -A && git -c user.name=ci -c user.email=ci@invalid commit -qm "as built" >/dev/null

# ansible-test puts pip into each sanity venv with a bootstrap script it downloads from a host
# this machine cannot reach; hand it the stand-in under the name it looks for.
pip_version=$(python -c "import re, ansible_test._internal.python_requirements as m; print(re.search(r\"pip='([0-9.]+)'\", open(m.__file__).read()).group(1))")
mkdir -p ~/.ansible/test/cache
cp "$root/.ci/get_pip_offline.py" ~/.ansible/test/cache/get_pip_${pip_version//./_}.py

ansible-test sanity --python "$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" --color no
ansible-test units --python "$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" --color no --requirements
