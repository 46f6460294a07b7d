"""
`mailnet dkim keygen` and `mailnet dns`: run as an administrator would.
"""

from __future__ import annotations

import os

from mailnet.mailauth import keys


def test_keygen_command(tmp_path):
    """`mailnet dkim keygen`: the key 0600 under data_dir, the exact TXT record printed."""
    import subprocess
    import sys

    from tests.harness import writeConfig
    from tests.mailauth.helpers import ROOT, txtOf

    config = tmp_path / "mailnet.toml"
    writeConfig(str(config), {"server": {"data_dir": str(tmp_path / "data")}, "domains": {"local": ["a.test"]}})
    env = dict(os.environ, PYTHONPATH=ROOT)
    run = [sys.executable, "-m", "mailnet", "--config", str(config)]
    done = subprocess.run(run + ["dkim", "keygen", "a.test", "--selector", "s1"], capture_output=True, text=True,
                          env=env)
    assert done.returncode == 0, done.stderr
    name, value = txtOf(done.stdout)
    assert name == "s1._domainkey.a.test" and value.startswith("v=DKIM1; k=rsa; p=MII")
    [key] = keys.loadAll(str(tmp_path / "data"))["a.test"]
    assert value == keys.txtValue("rsa", keys.publicKey("rsa", key.private))
    again = subprocess.run(run + ["dkim", "keygen", "a.test", "--selector", "s1"], capture_output=True, text=True,
                           env=env)
    assert again.returncode == 1 and "exists" in again.stderr
    ed = subprocess.run(run + ["dkim", "keygen", "a.test", "--algorithm", "ed25519", "--selector", "e1"],
                        capture_output=True, text=True, env=env)
    assert txtOf(ed.stdout)[1].startswith("v=DKIM1; k=ed25519; p=")
    dns = subprocess.run(run + ["dns", "a.test"], capture_output=True, text=True, env=env)
    assert dns.returncode == 0
    for needle in ("IN MX 10", '"v=spf1 mx -all"', "s1._domainkey.a.test.", "e1._domainkey.a.test.",
                   "_dmarc.a.test.", '_smtp._tls.a.test. 3600 IN TXT "v=TLSRPTv1; rua=mailto:postmaster@a.test"',
                   "; MTA-STS (RFC 8461): [mtasts] serve_mode is off"):
        assert needle in dns.stdout, needle
