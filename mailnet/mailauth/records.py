"""
The DNS records an administrator publishes for a domain we serve
(``mailnet dns DOMAIN``), as zone-file lines, from the current config and
the DKIM keys under data_dir.
"""

from __future__ import annotations

from mailnet.mailauth import keys as keysmod, mtasts, mtastsserve


def _txt(name, value, comment=""):
    chunks = " ".join(f'"{value[i:i + 255]}"' for i in range(0, len(value), 255))
    return f"{name}. 3600 IN TXT {chunks}" + (f"  ; {comment}" if comment else "")


def records(config, domain: str) -> list[str]:
    """The lines to print: comments (``;``) and records."""
    domain = keysmod.checkDomain(domain)
    host = config.server.hostname.lower().rstrip(".")
    out = []
    if domain not in config.domains.local:
        out.append(f"; warning: {domain} is not in [domains] local: this server does not take its mail")
    out.append(f"; Mail for {domain}, served by {host}")
    out.append("")
    out.append("; MX (RFC 5321 s5.1): where other servers deliver")
    out.append(f"{domain}. 3600 IN MX 10 {host}.")
    out.append(f"; {host} needs A/AAAA records, and each address a PTR record naming {host}")
    out.append("")
    out.append("; SPF (RFC 7208): the hosts that send for the domain, and for the HELO name")
    if config.relay.smarthost:
        relay = config.relay.smarthost.rpartition(":")[0]
        out.append(f"; mail leaves through the smarthost {relay}: add what its operator says to include")
        out.append(_txt(domain, f"v=spf1 a:{host} -all"))
    else:
        out.append(_txt(domain, "v=spf1 mx -all"))
    out.append(_txt(host, "v=spf1 a -all"))
    out.append("")
    out.append("; DKIM (RFC 6376; ed25519: RFC 8463): one record per key in data_dir/dkim")
    found = keysmod.loadAll(config.server.data_dir).get(domain, [])
    if not found:
        out.append(f"; no DKIM key for {domain} yet: `mailnet dkim keygen {domain}` makes one")
    for key in found:
        public = keysmod.publicKey(key.algorithm, key.private)
        out.append(_txt(f"{key.selector}._domainkey.{domain}", keysmod.txtValue(key.algorithm, public)))
    out.append("")
    out.append("; DMARC (RFC 7489): what receivers do with mail failing SPF and DKIM alignment;")
    out.append("; start with p=none to watch the reports, then quarantine, then reject")
    out.append(_txt(f"_dmarc.{domain}", f"v=DMARC1; p=reject; adkim=r; aspf=r; rua=mailto:postmaster@{domain}"))
    out.append("")
    out.append("; TLS-RPT (RFC 8460): where other servers send their daily reports on TLS with us")
    out.append(_txt(f"_smtp._tls.{domain}", f"v=TLSRPTv1; rua=mailto:postmaster@{domain}"))
    out.append("")
    policy = mtastsserve.servedPolicy(config)
    if policy is None:
        out.append("; MTA-STS (RFC 8461): [mtasts] serve_mode is off, so no policy is served and none is")
        out.append("; published; set it to \"testing\" to serve one at /.well-known/mta-sts.txt")
    else:
        out.append("; MTA-STS (RFC 8461): the policy the http listener serves; it must be reached as")
        out.append(f"; https://mta-sts.{domain}/.well-known/mta-sts.txt with a certificate valid for mta-sts.{domain}")
        out.append(f"; (a TLS proxy in front), so mta-sts.{domain} needs an A/AAAA record. The policy:")
        out += [f";   {line}" for line in policy.splitlines()]
        out.append("; the id changes with the policy: publish this record again after changing [mtasts] serve_*")
        out.append(_txt(f"_mta-sts.{domain}", f"v=STSv1; id={mtasts.policyId(policy)}"))
    return out
