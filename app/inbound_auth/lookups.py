"""DNS for the trust checks: the operator's servers, a time limit, and threads of our own.

pyspf and dkimpy are synchronous libraries that ask DNS themselves. :class:`Lookups` runs
them in a dedicated thread pool (the event loop never waits on them), and gives them one
synchronous dnspython resolver over ``MAILROUTE_DNS_NAMESERVERS`` (the system's resolver
when that is empty), each query bounded by ``lifetime``. A timeout, SERVFAIL or
unreachable server raises :class:`~app.errors.DnsTemporaryFailure`; a name that does not
exist, or has no record of the type, is an empty answer.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar, TypeVarTuple

import dns.exception
import dns.name
import dns.nameserver
import dns.rdata
import dns.rdtypes.txtbase
import dns.resolver

from app.errors import DnsTemporaryFailure

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

DEFAULT_LIFETIME = 5.0
# Each waiting check holds a thread for up to one lifetime per query; the default executor
# (min(32, cores + 4) threads) would queue the checks of concurrent sessions behind
# each other on a small machine.
DEFAULT_THREADS = 32


class Lookups:
    """The resolver and the threads the SPF, DKIM and ARC checks run on."""

    def __init__(
        self,
        nameservers: Sequence[tuple[str, int]] | None = None,
        lifetime: float = DEFAULT_LIFETIME,
        *,
        threads: int = DEFAULT_THREADS,
        cache: dns.resolver.LRUCache | None = None,
    ) -> None:
        if nameservers:
            self.resolver = dns.resolver.Resolver(configure=False)
            self.resolver.nameservers = [
                dns.nameserver.Do53Nameserver(host, port) for host, port in nameservers
            ]
        else:
            self.resolver = dns.resolver.Resolver()
        self.resolver.lifetime = lifetime
        self.resolver.cache = cache  # answers kept for their TTL (app.inbound_auth.checker)
        self.lifetime = lifetime
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="inbound-auth")

    async def run(self, fn: Callable[[*Ts], T], *args: *Ts) -> T:
        """``fn(*args)`` in our threads, with the caller's context variables (as in
        asyncio.to_thread): the way every blocking library call of the checks is made."""
        context = contextvars.copy_context()
        call = functools.partial(context.run, fn, *args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def records(
        self, name: str, rdtype: str, lifetime: float | None = None
    ) -> list[dns.rdata.Rdata]:
        """The ``rdtype`` records at ``name`` (CNAMEs followed); [] for NXDOMAIN, no
        record of the type, or a name that cannot exist. Blocking: call it in run()'s
        threads. Raises DnsTemporaryFailure on timeout, SERVFAIL or no server answering."""
        try:
            qname = dns.name.from_text(name)
        except (dns.exception.DNSException, UnicodeError):
            return []  # too long, an empty label, bad IDNA: nothing can be published there
        limit = self.lifetime if lifetime is None else min(lifetime, self.lifetime)
        try:
            answer = self.resolver.resolve(
                qname, rdtype, search=False, raise_on_no_answer=False, lifetime=limit
            )
        except dns.resolver.NXDOMAIN:
            return []
        except dns.exception.DNSException as exc:
            # Timeout, NoNameservers (SERVFAIL, REFUSED, unreachable), a malformed reply.
            raise DnsTemporaryFailure(f"DNS look-up of {rdtype} {name} failed: {exc}") from exc
        return list(answer.rrset) if answer.rrset is not None else []

    def txt(self, name: str, lifetime: float | None = None) -> list[bytes]:
        """TXT records at ``name``, each record's strings joined (RFC 7208 3.3, RFC 6376
        3.6.2.2); see records()."""
        found = self.records(name, "TXT", lifetime)
        return [b"".join(rr.strings) for rr in found if isinstance(rr, dns.rdtypes.txtbase.TXTBase)]

    def close(self) -> None:
        """Stop the threads; look-ups under way end within their lifetime."""
        self._executor.shutdown(wait=False, cancel_futures=True)
