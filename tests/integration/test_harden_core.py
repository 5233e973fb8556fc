"""Issue 10 (round two hardening, server core) and issue 16 item 2: the chown walk at start,
no shared service account, one throttle for SMTP and HTTP (per account, canonical logins,
IPv6 prefixes, a full table), repeated identical failures counted once, DATA streamed to disk,
descriptor exhaustion, per-command deadlines, many local owners, accounts disabled during a
session. Each test starts the server it needs (the settings are part of what is tested)."""

import os
import pwd
import subprocess
import tempfile
import threading
import time
import unittest

from harness import (ALICE, BOB, R_AUTH_OK, R_QUEUED, STD_USERS, Server, User, assert_reply,
                     binary)
from sec_util import PLAIN_SUBMISSION, connect

ROOT = os.geteuid() == 0


def uid_of(path):
    return os.lstat(path).st_uid


@unittest.skipUnless(ROOT, "the privilege rules apply to a server started as root")
class Privileges(unittest.TestCase):
    """Item 2: root never follows or chowns through a tree the service user controls.
    Item 3: no fallback to a shared account."""

    def test_chown_walk_stays_inside_data_dir(self):
        srv = Server(users=(), listeners={"mx": "mx"}, start=False)
        try:
            outside = os.path.join(srv.tmp, "outside")
            os.makedirs(os.path.join(outside, "dir"))
            victims = [os.path.join(outside, n) for n in ("victim", "linked", "dir/file")]
            for v in victims:
                with open(v, "w") as f:
                    f.write("root's\n")
            d = srv.data_dir
            os.symlink(os.path.join(outside, "victim"), os.path.join(d, "link"))
            os.symlink(os.path.join(outside, "dir"), os.path.join(d, "dirlink"))
            # a hard link to a root-owned file elsewhere (what a service user could plant
            # where protected_hardlinks is off): chowning it by path gives the outside file away
            os.link(os.path.join(outside, "linked"), os.path.join(d, "hard"))
            os.makedirs(os.path.join(d, "sub", "deeper"))
            with open(os.path.join(d, "sub", "own"), "w") as f:
                f.write("x\n")
            os.symlink(os.path.join(outside, "dir"), os.path.join(d, "sub", "deeper", "l"))
            srv.start()
            uid = pwd.getpwnam("smtpgate").pw_uid
            for v in victims + [os.path.join(outside, "dir")]:
                self.assertEqual(uid_of(v), 0, "%s outside the data dir was given away" % v)
            self.assertEqual(uid_of(os.path.join(d, "hard")), 0)
            # what is really inside is handed over
            for p in (d, os.path.join(d, "sub"), os.path.join(d, "sub", "own"),
                      os.path.join(d, "sub", "deeper")):
                self.assertEqual(uid_of(p), uid, "%s not handed to smtpgate" % p)
        finally:
            srv.cleanup()

    def test_chown_walk_race_with_symlink_swaps(self):
        """A directory swapped for a symlink (to a root-owned tree) while root walks: the walk
        descends by descriptors, so the outside tree is never touched, over several starts."""
        srv = Server(users=(), listeners={"mx": "mx"}, start=False)
        stop = threading.Event()
        try:
            outside = os.path.join(srv.tmp, "outside")
            os.makedirs(outside)
            n_files = 1500
            victims = []
            for i in range(n_files):
                v = os.path.join(outside, "f%d" % i)
                open(v, "w").close()
                victims.append(v)
            race = os.path.join(srv.data_dir, "race")
            parked = os.path.join(srv.data_dir, "race.parked")
            os.makedirs(race)
            for i in range(n_files):
                open(os.path.join(race, "f%d" % i), "w").close()

            def swapper():
                for _ in range(100000):
                    if stop.is_set():
                        return
                    try:
                        os.rename(race, parked)
                        os.symlink(outside, race)
                        time.sleep(0.0005)
                        os.unlink(race)
                        os.rename(parked, race)
                    except OSError:
                        pass

            t = threading.Thread(target=swapper, daemon=True)
            t.start()
            for i in range(4):
                try:    # a start may also fail on the moving tree: what counts is the outside
                    srv.start() if i == 0 else srv._spawn()
                except AssertionError:
                    pass
                srv.stop()
            stop.set()
            t.join(10)
            for v in victims + [outside]:
                self.assertEqual(uid_of(v), 0, "%s outside the data dir was given away" % v)
        finally:
            stop.set()
            srv.cleanup()

    def _refused(self, user, expect):
        srv = Server(users=(), listeners={"mx": "mx"}, settings={"user": user}, start=False)
        try:
            with self.assertRaises(AssertionError):
                srv.start()
            log = srv.log()
            self.assertIn(expect, log)
            self.assertIn("useradd --system", log, "the message names the command to run")
        finally:
            srv.cleanup()

    def test_refuses_missing_user_without_fallback(self):
        self._refused("sg-no-such-user-%d" % os.getpid(), "does not exist")

    def test_refuses_shared_nobody(self):
        self._refused("nobody", "shared account")


if __name__ == "__main__":
    unittest.main()
