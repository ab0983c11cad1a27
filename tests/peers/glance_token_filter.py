"""A paste filter that stands in for Keystone in front of the test Glance.

Loaded by Glance's paste pipeline (system python3, put on PYTHONPATH by
tests/peers/glance_server.py).  It answers 401 unless X-Auth-Token equals the
configured token, and otherwise sets the identity headers keystonemiddleware
would, so Glance's ``context`` filter builds a real project-scoped context.
Plain WSGI, standard library only, so it works whatever Glance's Python is.
"""

import hmac

#: identity headers a client must never be able to set itself
_IDENTITY_KEYS = ("HTTP_X_IDENTITY_STATUS", "HTTP_X_PROJECT_ID", "HTTP_X_TENANT_ID",
                  "HTTP_X_USER_ID", "HTTP_X_ROLES", "HTTP_X_PROJECT_NAME",
                  "HTTP_X_USER_NAME", "HTTP_X_SERVICE_CATALOG", "HTTP_X_PROJECT_DOMAIN_ID",
                  "HTTP_X_USER_DOMAIN_ID", "HTTP_X_SYSTEM_SCOPE", "HTTP_X_IS_ADMIN_PROJECT")


def filter_factory(global_conf, **local_conf):
    token = local_conf["token"]
    roles = local_conf.get("roles", "admin,member,reader")
    project = local_conf.get("project_id", "0123456789abcdef0123456789abcdef")
    user = local_conf.get("user_id", "fedcba9876543210fedcba9876543210")

    def wrap(app):
        def token_check(environ, start_response):
            for key in _IDENTITY_KEYS:
                environ.pop(key, None)
            given = environ.get("HTTP_X_AUTH_TOKEN", "")
            if not hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8")):
                body = b'{"error": {"code": 401, "title": "Unauthorized", ' \
                       b'"message": "The request you have made requires authentication."}}'
                start_response("401 Unauthorized", [
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(body))),
                    ("WWW-Authenticate", 'Keystone uri="http://127.0.0.1/identity"')])
                return [body]
            environ["HTTP_X_IDENTITY_STATUS"] = "Confirmed"
            environ["HTTP_X_PROJECT_ID"] = project
            environ["HTTP_X_TENANT_ID"] = project
            environ["HTTP_X_USER_ID"] = user
            environ["HTTP_X_ROLES"] = roles
            environ["HTTP_X_PROJECT_DOMAIN_ID"] = "default"
            environ["HTTP_X_USER_DOMAIN_ID"] = "default"
            return app(environ, start_response)
        return token_check
    return wrap
