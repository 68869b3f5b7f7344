from tests.support.servers import AUTH_ROLES, psql


def test_select_through_proxy(proxy):
    out = psql(proxy.host, proxy.port, "SELECT 40 + 2;").stdout
    assert out.strip() == "42"


def test_auth_methods(proxy):
    for role, (method, password) in AUTH_ROLES.items():
        out = psql(proxy.host, proxy.port, "SELECT current_user;", user=role,
                   env={"PGPASSWORD": password}).stdout
        assert out.strip() == role, method
        bad = psql(proxy.host, proxy.port, "SELECT 1;", user=role,
                   env={"PGPASSWORD": "wrong"}, check=False)
        assert bad.returncode != 0 and "authentication failed" in bad.stderr
