"""scripts/check-tree (run by tests/run as lint.tracked_tree) on throw-away git repositories: it
passes on a clean tree and fails, naming the files, on each kind of tracked vendored or generated
file (issue 11: 7,047 files of bench/haraka/node_modules had been committed)."""

import os
import shutil
import subprocess
import tempfile
import unittest

from harness import _repo_root, require_tool

SCRIPT = os.path.join(_repo_root(), "scripts", "check-tree")


class CheckTree(unittest.TestCase):
    def repo(self, files):
        d = tempfile.mkdtemp(prefix="sg-it-tree-")
        self.addCleanup(shutil.rmtree, d, True)
        os.makedirs(os.path.join(d, "scripts"))
        shutil.copy(SCRIPT, os.path.join(d, "scripts", "check-tree"))
        for f in files + ["README.md", "src/main.c"]:
            p = os.path.join(d, f)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w") as fh:
                fh.write("x\n")
        env = dict(os.environ, GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1")
        subprocess.run(["git", "init", "-q"], cwd=d, check=True, env=env)
        subprocess.run(["git", "add", "-A"], cwd=d, check=True, env=env)   # forced: no .gitignore
        return d

    def check(self, d):
        return subprocess.run(["sh", "scripts/check-tree"], cwd=d, capture_output=True, text=True,
                              timeout=60)

    def test_clean_tree_passes(self):
        require_tool("git")
        r = self.check(self.repo(["bench/haraka/package.json", "tests/browser/package-lock.json",
                                  "debian/control", "debian/rules", "docs/build.md"]))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_each_kind_fails(self):
        require_tool("git")
        for bad in ("bench/haraka/node_modules/Haraka/package.json", "build/src/smtpgate",
                    "build-asan/build.ninja", "src/core/buf.o", "libsg.so", "libsg.a",
                    "tests/integration/__pycache__/harness.cpython-311.pyc", "tests/out/unit.log",
                    "bench/haraka/node_modules/.cache/jest/x", "smtpgate-data/smtpgate.db",
                    "debian/.debhelper/generated/x", "debian/smtpgate/usr/sbin/smtpgate",
                    "obj-x86_64-linux-gnu/meson-info/x.json", "smtpgate_0.1.0_amd64.deb"):
            with self.subTest(bad=bad):
                r = self.check(self.repo([bad]))
                self.assertEqual(r.returncode, 1, r.stdout)
                self.assertIn(bad, r.stdout)

    def test_outside_git_is_skipped(self):
        d = tempfile.mkdtemp(prefix="sg-it-tree-")
        self.addCleanup(shutil.rmtree, d, True)
        os.makedirs(os.path.join(d, "scripts"))
        shutil.copy(SCRIPT, os.path.join(d, "scripts", "check-tree"))
        env = dict(os.environ, GIT_CEILING_DIRECTORIES=os.path.dirname(d))
        r = subprocess.run(["sh", "scripts/check-tree"], cwd=d, capture_output=True, text=True,
                           timeout=60, env=env)
        self.assertEqual(r.returncode, 77, r.stdout)


if __name__ == "__main__":
    unittest.main()
