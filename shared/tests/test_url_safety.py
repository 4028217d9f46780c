"""The address rules against SSRF (docflow.shared.url_safety), without touching a network.

Names are resolved by a stub resolver that maps them to private, metadata or public
addresses, and `no_outside_connections` fails the test if anything opens a socket
to an address other than 127.0.0.1: nothing here may reach a real host, least of all
a metadata endpoint.
"""

import socket

import pytest

from docflow.shared.url_safety import (
    CLOUD_METADATA_ADDRESSES,
    MAX_URL_CHARS,
    ResolutionFailed,
    UrlRefused,
    check_literal_host,
    check_url,
    ip_or_none,
    parse_url,
    refusal,
    system_resolver,
)

NAMES = {
    "public.example": ["93.184.215.14"],
    "public6.example": ["2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    "intranet.example": ["10.1.2.3"],
    "home.example": ["192.168.1.20"],
    "loop.example": ["127.0.0.1"],
    "loop6.example": ["::1"],
    "metadata.example": ["169.254.169.254"],
    "metadata6.example": ["fd00:ec2::254"],
    "ecs.example": ["169.254.170.2"],
    "linklocal.example": ["169.254.10.10"],
    "ula.example": ["fd12:3456:789a::1"],
    "cgnat.example": ["100.64.0.7"],
    "multicast.example": ["224.0.0.251"],
    "reserved.example": ["240.0.0.1"],
    "zero.example": ["0.0.0.0"],
    "mapped.example": ["::ffff:10.0.0.1"],
    "nat64.example": ["64:ff9b::a9fe:a9fe"],  # 169.254.169.254 through NAT64
    "mixed.example": ["93.184.215.14", "10.0.0.5"],  # one public, one private
    "nothing.example": [],
}


def stub_resolver(host: str, port: int) -> list[str]:
    if host not in NAMES:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return NAMES[host]


@pytest.fixture(autouse=True)
def no_outside_connections(monkeypatch):
    """Fail the test if a socket connects (or a name resolves) to anything but 127.0.0.1."""
    attempts: list[object] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_create_connection, real_getaddrinfo = socket.create_connection, socket.getaddrinfo

    def allowed(address) -> bool:
        return isinstance(address, tuple) and address[0] == "127.0.0.1"

    def guard(real):
        def guarded(sock, address, *args):
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not allowed(address):
                attempts.append(address)
                raise AssertionError(f"the test tried to connect to {address!r}")
            return real(sock, address, *args)
        return guarded

    def create_connection(address, *args, **kwargs):
        if not allowed(address):
            attempts.append(address)
            raise AssertionError(f"the test tried to connect to {address!r}")
        return real_create_connection(address, *args, **kwargs)

    def getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost"):
            attempts.append(host)
            raise AssertionError(f"the test tried to resolve {host!r} through the system resolver")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guard(real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guard(real_connect_ex))
    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield attempts
    assert not attempts, f"connections attempted to {attempts}"


def test_the_guard_itself_fails_a_connection_to_an_outside_address(no_outside_connections):
    with socket.socket() as sock, pytest.raises(AssertionError, match="tried to connect"):
        sock.connect(("169.254.169.254", 80))
    with pytest.raises(AssertionError, match="tried to connect"):
        socket.create_connection(("10.0.0.1", 80), timeout=0.1)
    assert no_outside_connections == [("169.254.169.254", 80), ("10.0.0.1", 80)]
    no_outside_connections.clear()  # seen: the guard works; the teardown must not fail


@pytest.mark.parametrize("url, reason", [
    ("ftp://public.example/file.pdf", "only http and https"),
    ("file:///etc/passwd", "only http and https"),
    ("gopher://public.example/", "only http and https"),
    ("public.example/page", "only http and https"),
    ("https://user:secret@public.example/", "credentials"),
    ("https://user@public.example/", "credentials"),
    ("https:///path-only", "no host"),
    ("https://public.example:0/", "port"),
    ("https://public.example:99999/", "not a valid URL"),
    ("https://public.example/a b", "whitespace"),
    ("https://public.example/\x00", "control"),
    ("https://[::1/", "not a valid URL"),
    ("https://" + "a" * MAX_URL_CHARS + ".example/", "longer than"),
    ("", "non-empty"),
    ("https://public.example/\ud800", "lone surrogate"),
])
def test_malformed_or_unsafe_urls_are_refused_before_any_lookup(url, reason):
    with pytest.raises(UrlRefused, match=reason):
        check_url(url, resolver=stub_resolver)


@pytest.mark.parametrize("host, kind", [
    ("intranet.example", "private"), ("home.example", "private"), ("loop.example", "loopback"),
    ("loop6.example", "loopback"), ("metadata.example", "metadata"), ("metadata6.example", "metadata"),
    ("ecs.example", "metadata"), ("linklocal.example", "link-local"), ("ula.example", "unique-local"),
    ("cgnat.example", "not a public"), ("multicast.example", "multicast"), ("reserved.example", "reserved"),
    ("zero.example", "unspecified"), ("mapped.example", "private"), ("nat64.example", "metadata"),
    ("mixed.example", "private"),
])
def test_names_resolving_to_refused_addresses_are_refused(host, kind):
    with pytest.raises(UrlRefused, match=kind):
        check_url(f"https://{host}/doc.pdf", resolver=stub_resolver)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/", "http://[::1]/", "http://10.0.0.1/", "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:169.254.169.254]/",
    "http://0.0.0.0/", "http://100.100.100.200/",
])
def test_ip_literals_are_checked_without_a_resolver(url):
    def no_resolving(host, port):
        raise AssertionError("an IP literal must not be resolved")

    with pytest.raises(UrlRefused):
        check_url(url, resolver=no_resolving)
    with pytest.raises(UrlRefused):
        check_literal_host(parse_url(url))


def test_public_names_pass_with_every_address_returned_to_connect_to():
    parsed, addresses = check_url("https://Public.Example./a/b.pdf?x=1", resolver=stub_resolver)
    assert parsed.host == "public.example" and parsed.port == 443 and parsed.scheme == "https"
    assert [str(a) for a in addresses] == ["93.184.215.14"]
    assert parsed.with_address(addresses[0]) == "https://93.184.215.14/a/b.pdf?x=1"
    assert parsed.host_header == "public.example"

    parsed, addresses = check_url("http://public6.example:8080/", resolver=stub_resolver)
    assert parsed.with_address(addresses[0]) == "http://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]:8080/"
    assert parsed.host_header == "public6.example:8080"


def test_allow_private_lifts_every_rule_but_the_metadata_addresses():
    for host in ("intranet.example", "loop.example", "loop6.example", "ula.example", "linklocal.example",
                 "mapped.example"):
        check_url(f"http://{host}/", allow_private=True, resolver=stub_resolver)
    check_url("http://127.0.0.1:9000/", allow_private=True)
    for host in ("metadata.example", "metadata6.example", "ecs.example", "nat64.example"):
        with pytest.raises(UrlRefused, match="metadata"):
            check_url(f"http://{host}/", allow_private=True, resolver=stub_resolver)
    for literal in ("169.254.169.254", "[fd00:ec2::254]", "[::ffff:169.254.169.254]"):
        with pytest.raises(UrlRefused, match="metadata"):
            check_url(f"http://{literal}/", allow_private=True)


def test_the_refusal_says_how_to_allow_private_addresses_but_never_for_metadata():
    with pytest.raises(UrlRefused, match="DOCFLOW_ALLOW_PRIVATE_URLS"):
        check_url("http://intranet.example/", resolver=stub_resolver)
    with pytest.raises(UrlRefused) as refused:
        check_url("http://metadata.example/", resolver=stub_resolver)
    assert "DOCFLOW_ALLOW_PRIVATE_URLS" not in str(refused.value)


def test_every_metadata_address_is_refused_whatever_the_setting():
    for address in CLOUD_METADATA_ADDRESSES:
        assert refusal(address, allow_private=True) is not None
        assert refusal(address, allow_private=False) is not None
    assert refusal(ip_or_none("93.184.215.14")) is None


def test_unknown_and_empty_names_fail_resolution_permanently():
    with pytest.raises(ResolutionFailed) as failed:
        check_url("https://missing.example/", resolver=stub_resolver)
    assert failed.value.permanent
    with pytest.raises(ResolutionFailed, match="no address"):
        check_url("https://nothing.example/", resolver=stub_resolver)


def test_a_temporary_resolver_failure_is_not_permanent():
    def flaky(host, port):
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    with pytest.raises(ResolutionFailed) as failed:
        check_url("https://public.example/", resolver=flaky)
    assert not failed.value.permanent


def test_the_system_resolver_answers_for_loopback_only_here():
    assert "127.0.0.1" in system_resolver("127.0.0.1", 80)
